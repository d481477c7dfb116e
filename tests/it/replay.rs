//! One-time tokens seen (Back-Channel Logout `jti`s) on every store: the first sighting wins
//! across independent store instances (as replicas are), even when they race; a token is
//! forgotten once it has expired.

use crate::cache_backends::{now, run, store_tests, Kind, Rig};
use crate::fixtures::{keys, KEY, NINETY_DAYS};
use tokenbridge::cache::replay::token_key;
use tokenbridge::cache::seal::Sealer;

store_tests!(
    a_token_is_seen_first_once_across_replicas,
    replicas_racing_on_one_token_see_it_first_once,
);

async fn a_token_is_seen_first_once_across_replicas(rig: Rig) {
    let other = rig.another(
        Sealer::new(Some(keys(&format!("k1={KEY}"))), false),
        NINETY_DAYS,
    );
    let key = token_key("https://issuer.example", "jti-1");
    assert_eq!(key.len(), 64);
    assert_ne!(key, token_key("https://issuer.example", "jti-2"));
    assert_ne!(key, token_key("https://other.example", "jti-1"));
    let until = now() + time::Duration::seconds(2);
    assert!(rig.caches.first_sighting(&key, until, now()).await.unwrap());
    assert!(!rig.caches.first_sighting(&key, until, now()).await.unwrap());
    assert!(
        !other.first_sighting(&key, until, now()).await.unwrap(),
        "the other replica"
    );
    // Expired: forgotten (Redis by its own clock; SQL when a later sighting is past it).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let later = now();
    assert!(other
        .first_sighting(&key, later + time::Duration::seconds(60), later)
        .await
        .unwrap());
}

async fn replicas_racing_on_one_token_see_it_first_once(rig: Rig) {
    let replicas: Vec<_> = (0..8)
        .map(|_| {
            rig.another(
                Sealer::new(Some(keys(&format!("k1={KEY}"))), false),
                NINETY_DAYS,
            )
        })
        .collect();
    let key = token_key("https://issuer.example", "raced");
    let until = now() + time::Duration::seconds(120);
    let sightings = futures_util::future::join_all(
        replicas
            .iter()
            .map(|replica| replica.first_sighting(&key, until, now())),
    )
    .await;
    let first = sightings
        .into_iter()
        .map(Result::unwrap)
        .filter(|first| *first)
        .count();
    assert_eq!(first, 1);
}
