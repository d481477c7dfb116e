//! After the provider has redeemed a refresh token, nothing may lose the new one: not a write
//! by someone else, not a database that fails for a while, not an ID token that fails
//! validation. Strict rotation makes any loss visible: the next refresh would present the old
//! token and the provider would revoke the user.

use super::{acquire, store, Rig};
use crate::serve::e2e_tests;
use std::time::Duration as StdDuration;
use time::Duration;
use tokenbridge::db::Backend;
use tokenbridge::identity::acquire::{AcquirerOptions, TokenAcquirer};
use tokenbridge::identity::AcquireError;
use tokenbridge::settings::Rotation;

e2e_tests!(
    a_write_by_someone_else_during_a_refresh_is_merged_not_redeemed_again,
    a_newer_refresh_token_in_the_row_survives_the_merge,
    a_save_failing_past_the_budget_keeps_the_tokens_in_memory_and_writes_them_later,
    a_failing_save_after_redemption_is_retried_and_loses_nothing,
    an_id_token_that_fails_validation_after_redemption_keeps_the_tokens,
    a_sign_out_and_a_new_sign_in_during_a_refresh_keep_the_new_sign_in_s_tokens,
);

async fn strict_rig(test: &str, backend: Backend) -> Option<Rig> {
    Rig::new(test, backend, |s| s.rotation = Rotation::Strict).await
}

async fn late_answer(rig: &Rig, delay_ms: u64) {
    let late = serde_json::json!({ "kind": "late_answer", "delay_ms": delay_ms });
    rig.idp
        .admin(reqwest::Method::POST, "faults", Some(late))
        .await;
}

/// ada signed in under strict rotation, her access token expired, and the provider's answer to
/// her next refresh held back `delay_ms`: the rig, her acquirer (options changed by `tune`), her
/// account id and refresh token.
async fn due_refresh(
    test: &str,
    backend: Backend,
    delay_ms: u64,
    tune: impl FnOnce(&mut AcquirerOptions),
) -> Option<(Rig, TokenAcquirer, String, String)> {
    let rig = strict_rig(test, backend).await?;
    let acquirer = rig.acquirer_tuned(&rig.clock, |_| {}, tune);
    let id = rig.sign_in(&acquirer, "ada").await;
    let old = rig.refresh_token(&id);
    rig.clock.advance(Duration::hours(2));
    late_answer(&rig, delay_ms).await;
    Some((rig, acquirer, id, old))
}

/// The user's next refresh works: the token saved is the one the provider rotated to.
async fn next_refresh_works(rig: &Rig, acquirer: &TokenAcquirer, id: &str) {
    let before = rig.counter("refreshes").await;
    rig.clock.advance(Duration::hours(2));
    let token = acquire(acquirer, id).await;
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(rig.counter("refreshes").await, before + 1);
    assert_eq!(rig.counter("reuse_detections").await, 0);
}

async fn a_write_by_someone_else_during_a_refresh_is_merged_not_redeemed_again(backend: Backend) {
    let Some((rig, acquirer, id, old)) =
        due_refresh("acquire::write_during_refresh", backend, 500, |_| {}).await
    else {
        return;
    };
    let refresh = acquire(&acquirer, &id);
    let interloper = async {
        // While the provider's answer is on its way, another program rewrites the row (same
        // tokens, new version), as an MSAL-based job sharing the cache might.
        rig.until_refreshes(1).await;
        let mut conn = rig.db.conn();
        let store = store(&rig.settings, &mut conn);
        let now = time::OffsetDateTime::now_utc();
        let loaded = store.load(&mut conn, &id, now).unwrap().unwrap();
        store
            .save(&mut conn, &id, &loaded.document, Some(loaded.version), now)
            .unwrap();
    };
    let (token, ()) = futures_util::future::join(refresh, interloper).await;
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(rig.counter("refreshes").await, 1);
    assert_eq!(rig.counter("reuse_detections").await, 0);
    assert_eq!(rig.row(&id).1, 3, "merged into the interloper's version");
    assert_ne!(rig.refresh_token(&id), old);
    next_refresh_works(&rig, &acquirer, &id).await;
}

/// The row someone wrote while our refresh was on its way holds a refresh token newer than the
/// one the provider is sending us (the user signed in again elsewhere): the merge keeps theirs.
async fn a_newer_refresh_token_in_the_row_survives_the_merge(backend: Backend) {
    let Some((rig, acquirer, id, old)) =
        due_refresh("acquire::newer_in_row", backend, 800, |_| {}).await
    else {
        return;
    };
    let refresh = acquire(&acquirer, &id);
    let interloper = async {
        rig.until_refreshes(1).await;
        rig.clock.advance(Duration::seconds(1));
        let elsewhere = rig.acquirer(&rig.clock);
        assert_eq!(rig.sign_in(&elsewhere, "ada").await, id);
        rig.refresh_token(&id)
    };
    let (token, theirs) = futures_util::future::join(refresh, interloper).await;
    assert!(token.is_ok(), "{token:?}");
    assert_ne!(theirs, old);
    assert_eq!(
        rig.refresh_token(&id),
        theirs,
        "the newer refresh token is kept"
    );
    assert_eq!(rig.counter("refreshes").await, 1);
    next_refresh_works(&rig, &acquirer, &id).await;
}

async fn a_failing_save_after_redemption_is_retried_and_loses_nothing(backend: Backend) {
    let Some((rig, acquirer, id, old)) =
        due_refresh("acquire::failing_save", backend, 800, |_| {}).await
    else {
        return;
    };
    let refresh = acquire(&acquirer, &id);
    let locker = async {
        // Once the provider has rotated the token, the table is locked for longer than the
        // app waits for a lock (database.busy_timeout = 1 s): the first save fails.
        rig.until_refreshes(1).await;
        crate::support::lock_token_cache(&rig.db, StdDuration::from_millis(2500))
    };
    let (token, held) = futures_util::future::join(refresh, locker).await;
    held.join().unwrap();
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(rig.row(&id).1, 2, "written once the lock was gone");
    assert_ne!(rig.refresh_token(&id), old);
    assert_eq!(rig.counter("refreshes").await, 1);
    next_refresh_works(&rig, &acquirer, &id).await;
}

/// The write after a redemption fails for longer than the caller waits (`save_budget`): the
/// caller gets its token from this process's memory, and so does the next caller (no second
/// redemption); the write goes on in the background and lands once the database takes writes.
async fn a_save_failing_past_the_budget_keeps_the_tokens_in_memory_and_writes_them_later(
    backend: Backend,
) {
    let tune = |o: &mut AcquirerOptions| o.save_budget = StdDuration::from_millis(300);
    let Some((rig, acquirer, id, old)) =
        due_refresh("acquire::pending_write", backend, 800, tune).await
    else {
        return;
    };
    let refresh = acquire(&acquirer, &id);
    let locker = async {
        rig.until_refreshes(1).await;
        crate::support::lock_token_cache(&rig.db, StdDuration::from_millis(4000))
    };
    let (token, held) = futures_util::future::join(refresh, locker).await;
    assert!(token.is_ok(), "{token:?}");
    let again = acquire(&acquirer, &id).await;
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(rig.counter("refreshes").await, 1, "served from memory");
    held.join().unwrap();
    let started = std::time::Instant::now();
    while rig.row(&id).1 < 2 {
        assert!(
            started.elapsed() < StdDuration::from_secs(30),
            "the background write never landed"
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert_ne!(rig.refresh_token(&id), old);
    assert_eq!(rig.counter("refreshes").await, 1);
    next_refresh_works(&rig, &acquirer, &id).await;
}

/// An ID token for another audience comes back with the rotated refresh token: the refresh is
/// refused as a configuration problem, but the tokens are saved first.
async fn an_id_token_that_fails_validation_after_redemption_keeps_the_tokens(backend: Backend) {
    let Some(rig) = strict_rig("acquire::invalid_id_token", backend).await else {
        return;
    };
    let acquirer = rig.acquirer(&rig.clock);
    let id = rig.sign_in(&acquirer, "ada").await;
    let old = rig.refresh_token(&id);
    rig.clock.advance(Duration::hours(2));
    rig.idp.inject("wrong_audience", 1).await;
    let refused = acquire(&acquirer, &id).await;
    assert!(
        matches!(&refused, Err(AcquireError::Configuration(reason)) if reason.contains("ID token")),
        "{refused:?}"
    );
    assert_eq!(rig.row(&id).1, 2, "the tokens were saved before validating");
    assert_ne!(rig.refresh_token(&id), old);
    let token = acquire(&acquirer, &id).await;
    assert!(token.is_ok(), "the saved access token is used: {token:?}");
    assert_eq!(rig.counter("refreshes").await, 1);
    next_refresh_works(&rig, &acquirer, &id).await;
}

/// While the provider's answer to a refresh is on its way, the user signs out and signs in
/// again elsewhere: the new sign-in's row starts at version 1, the version the refresh read.
/// The refresh must not write the old sign-in's tokens over the new ones.
async fn a_sign_out_and_a_new_sign_in_during_a_refresh_keep_the_new_sign_in_s_tokens(
    backend: Backend,
) {
    let Some(rig) = Rig::new("acquire::sign_out_during_refresh", backend, |_| {}).await else {
        return;
    };
    let acquirer = rig.acquirer(&rig.clock);
    let id = rig.sign_in(&acquirer, "ada").await;
    assert_eq!(rig.row(&id).1, 1);
    rig.clock.advance(Duration::hours(2));
    late_answer(&rig, 500).await;
    let refresh = acquire(&acquirer, &id);
    let elsewhere = rig.acquirer(&rig.clock);
    let sign_out_and_in = async {
        rig.until_refreshes(1).await;
        let epoch = {
            let now = time::OffsetDateTime::now_utc();
            let conn = &mut rig.db.conn();
            let (_, epoch) = store(&rig.settings, conn)
                .version_and_epoch(conn, &id, now)
                .unwrap()
                .unwrap();
            epoch
        };
        let session = tokenbridge::identity::acquire::AppSessionRef { epoch, id: None };
        let signed_out = elsewhere.sign_out(&id, &session).await.unwrap();
        assert_eq!(signed_out, tokenbridge::identity::SignedOut::Done);
        rig.sign_in(&elsewhere, "ada").await;
        assert_eq!(rig.row(&id).1, 1, "a new row, at version 1 again");
        rig.refresh_token(&id)
    };
    let (refreshed, new_sign_in) = futures_util::future::join(refresh, sign_out_and_in).await;
    assert!(
        matches!(&refreshed, Err(AcquireError::InteractionRequired { reason }) if reason.contains("signed out")),
        "{refreshed:?}"
    );
    assert_eq!(
        rig.row(&id).1,
        1,
        "nothing was written over the new sign-in"
    );
    assert_eq!(rig.refresh_token(&id), new_sign_in);
}
