//! Token lifetimes and the in-process copy.

use super::{acquire, Rig};
use crate::serve::e2e_tests;
use time::Duration;
use tokenbridge::db::Backend;
use tokenbridge::settings::Rotation;

e2e_tests!(
    short_lived_tokens_are_used_and_refreshed_at_half_their_lifetime,
    the_in_process_copy_can_be_turned_off,
);

/// 60-second tokens: the token just redeemed is used whatever its lifetime, saved first, and
/// refreshed when half its life is gone, not on every call (and never twice under strict
/// rotation).
async fn short_lived_tokens_are_used_and_refreshed_at_half_their_lifetime(backend: Backend) {
    let Some(rig) = Rig::new("acquire::short_lived_tokens", backend, |s| {
        s.access_token_ttl = std::time::Duration::from_secs(60);
        s.rotation = Rotation::Strict;
    })
    .await
    else {
        return;
    };
    let acquirer = rig.acquirer(&rig.clock);
    let id = rig.sign_in(&acquirer, "ada").await;
    acquire(&acquirer, &id).await.unwrap();
    assert_eq!(rig.counter("refreshes").await, 0);
    let steps = [(29, 0), (2, 1), (0, 1), (29, 1), (2, 2), (10, 2)];
    for (n, (seconds, refreshes)) in steps.into_iter().enumerate() {
        rig.clock.advance(Duration::seconds(seconds));
        let token = acquire(&acquirer, &id).await;
        assert!(token.is_ok(), "step {n}: {token:?}");
        assert_eq!(rig.counter("refreshes").await, refreshes, "step {n}");
    }
    assert_eq!(rig.row(&id).1, 3, "each refresh was written");
    assert_eq!(rig.counter("reuse_detections").await, 0);
}

/// A process that visits each user once (the worker) keeps no documents in memory.
async fn the_in_process_copy_can_be_turned_off(backend: Backend) {
    let Some(rig) = Rig::new("acquire::in_process_copy_off", backend, |_| {}).await else {
        return;
    };
    let web = rig.acquirer(&rig.clock);
    let worker = rig.acquirer_with(&rig.clock, |s| s.cache.memory_entries = 0);
    let id = rig.sign_in(&web, "ada").await;
    acquire(&web, &id).await.unwrap();
    acquire(&worker, &id).await.unwrap();
    assert_eq!(web.remembered(), 1);
    assert_eq!(worker.remembered(), 0);
    rig.clock.advance(Duration::hours(2));
    acquire(&worker, &id).await.unwrap();
    assert_eq!(worker.remembered(), 0, "not even after a refresh");
    assert_eq!(rig.counter("refreshes").await, 1);
}
