//! Cache keys' check values on every store (SQLite, PostgreSQL, MySQL/MariaDB, Redis): the
//! first process to use a key id writes its key's check value; a key under that id with
//! another value (a typo, a truncated copy, a regenerated secret) is refused as a
//! configuration error, opens nothing as "corrupt" and seals nothing. Stores are independent
//! instances on one storage, as processes are.

use crate::cache_backends::{first_save, now, one_row, run, store_tests, Kind, Rig};
use crate::fixtures::{document, keys, KEY, NINETY_DAYS, OTHER_KEY};
use tokenbridge::cache::backend::CacheBackend;
use tokenbridge::cache::seal::{KeyState, SealError, Sealer};
use tokenbridge::cache::store::CacheStoreError;

store_tests!(
    the_first_user_of_a_key_writes_its_check_value_and_another_value_is_refused,
    a_wrong_key_cannot_become_the_reference_for_rows_sealed_before_check_values,
    a_new_first_key_is_checked_then_seals_and_the_old_one_still_opens,
    two_processes_with_different_values_for_a_new_key_at_once_one_wins,
);

fn store_with(rig: &Rig, spec: &str) -> CacheBackend {
    rig.another(Sealer::new(Some(keys(spec)), false), NINETY_DAYS)
}

/// The error is a key problem naming `key_id`, and holds no key material.
fn names_the_key(result: Result<impl std::fmt::Debug, CacheStoreError>, key_id: &str) {
    let err = result.expect_err("a key problem");
    assert!(err.is_key_problem() && !err.is_corrupt(), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&format!("`{key_id}`")), "{message}");
    assert!(
        !message.contains(KEY) && !message.contains(OTHER_KEY),
        "{message}"
    );
}

async fn the_first_user_of_a_key_writes_its_check_value_and_another_value_is_refused(rig: Rig) {
    let (doc, home) = one_row(&rig, "u1").await;
    let raw = rig.raw(&home).unwrap();
    assert_eq!(rig.caches.sealer().key_state("k1"), Some(KeyState::Matches));

    let impostor = store_with(&rig, &format!("k1={OTHER_KEY}"));
    names_the_key(impostor.verify_keys(now()).await, "k1");
    assert_eq!(impostor.sealer().key_state("k1"), Some(KeyState::Differs));
    // Its rows are not "corrupt", and it writes nothing: not over them, not for a new user.
    names_the_key(impostor.load(&home, now()).await, "k1");
    names_the_key(impostor.load_to_write_over(&home, now()).await, "k1");
    names_the_key(
        first_save(&impostor, "someone-new", doc.clone()).await,
        "k1",
    );
    assert_eq!(rig.raw(&home).unwrap(), raw, "nothing overwritten");
    assert_eq!(rig.raw("someone-new"), None, "nothing written");

    // A store that has not compared its key yet compares it before its first read.
    let fresh = store_with(&rig, &format!("k1={KEY}"));
    assert_eq!(fresh.sealer().key_state("k1"), Some(KeyState::Unchecked));
    let loaded = fresh.load(&home, now()).await.unwrap().unwrap();
    assert_eq!(loaded.document, doc);
    let impostor = store_with(&rig, &format!("k1={OTHER_KEY}"));
    names_the_key(impostor.load(&home, now()).await, "k1");
}

async fn a_wrong_key_cannot_become_the_reference_for_rows_sealed_before_check_values(rig: Rig) {
    let (_, home) = one_row(&rig, "u1").await;
    let raw = rig.raw(&home).unwrap();
    rig.forget_key_checks();
    // The first process after the upgrade has the wrong key: it proves it on the rows sealed
    // under `k1` and fails, so it does not write its check value.
    let impostor = store_with(&rig, &format!("k1={OTHER_KEY}"));
    let err = impostor.verify_keys(now()).await.unwrap_err();
    assert!(
        matches!(err.key_problem(), Some(SealError::KeyDiffers(id)) if id == "k1"),
        "{err:?}"
    );
    names_the_key(impostor.load(&home, now()).await, "k1");
    // The right key then opens the rows, writes the check value, and the impostor stays out.
    let right = store_with(&rig, &format!("k1={KEY}"));
    right.verify_keys(now()).await.unwrap();
    assert!(right.load(&home, now()).await.unwrap().is_some());
    names_the_key(
        store_with(&rig, &format!("k1={OTHER_KEY}"))
            .verify_keys(now())
            .await,
        "k1",
    );
    assert_eq!(rig.raw(&home).unwrap(), raw);
}

async fn a_new_first_key_is_checked_then_seals_and_the_old_one_still_opens(rig: Rig) {
    let (_, old_home) = one_row(&rig, "u1").await;
    let rotated = store_with(&rig, &format!("k2={OTHER_KEY},k1={KEY}"));
    rotated.verify_keys(now()).await.unwrap();
    assert!(rotated.sealer().keys_checked());
    assert!(rotated.load(&old_home, now()).await.unwrap().is_some());
    let (doc, home) = document("u2", "at-2", now().unix_timestamp());
    first_save(&rotated, &home, doc).await.unwrap();
    assert_eq!(
        tokenbridge::cache::seal::sealed_with(&rig.raw(&home).unwrap()),
        Some("k2")
    );
    // A replica given the new key under its id with another value is refused.
    names_the_key(
        store_with(&rig, &format!("k2={KEY},k1={KEY}"))
            .verify_keys(now())
            .await,
        "k2",
    );
}

/// Two processes given different values for a new key id compare them with the store at the
/// same moment (independent stores, each on its own connection): exactly one value becomes
/// the reference, and the other process is refused, never both accepted.
async fn two_processes_with_different_values_for_a_new_key_at_once_one_wins(rig: Rig) {
    for n in 0..10 {
        let id = format!("race{n}");
        let one = store_with(&rig, &format!("{id}={KEY}"));
        let other = store_with(&rig, &format!("{id}={OTHER_KEY}"));
        let (a, b) =
            futures_util::future::join(one.verify_keys(now()), other.verify_keys(now())).await;
        assert!(a.is_ok() != b.is_ok(), "round {n}: {a:?} {b:?}");
        let refused = if a.is_ok() { b } else { a };
        names_the_key(refused, &id);
    }
}
