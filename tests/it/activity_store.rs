//! The activity store on every backend.

use crate::backend_tests;
use crate::fixtures::activity;
use crate::support::{TestDb, T0};
use std::collections::BTreeSet;
use time::Duration;
use tokenbridge::activity::passes;
use tokenbridge::activity::store::{self as activities, DueFilter, Outcome, SignedOutBy};
use tokenbridge::clock::to_db;
use tokenbridge::db::DbConnection;

backend_tests!(with_migrated:
    upsert_inserts_then_refreshes_one_row,
    due_accounts_respect_cutoff_failure_sign_out_and_backoff,
    due_pages_walk_the_table_by_key,
    claims_lease_rows_to_one_owner,
    outcomes_are_recorded_by_the_lease_holder_only,
    signed_out_accounts_are_skipped_until_the_next_sign_in,
    one_account_is_claimed_by_key_unless_another_worker_holds_it,
    find_by_upn_ignores_case,
    a_pass_leaves_what_the_passes_running_when_it_began_have_done,
    the_subject_is_kept_and_finds_the_account,
);

fn sign_in(conn: &mut DbConnection, key: &str, at: time::OffsetDateTime) {
    let upn = format!("{key}@contoso.com");
    activities::upsert(conn, &activity(key, &upn), at).unwrap();
}

fn keys(rows: &[activities::Activity]) -> Vec<String> {
    rows.iter().map(|a| a.account_cache_key.clone()).collect()
}

fn due(at: time::OffsetDateTime) -> DueFilter {
    DueFilter::idle_since(at - Duration::minutes(5), at, false)
}

fn upsert_inserts_then_refreshes_one_row(db: &TestDb) {
    let c = &mut db.conn();
    sign_in(c, "a.t", T0);
    let first = activities::get(c, "a.t").unwrap().unwrap();
    assert_eq!(first.account_identifier, "a.t");
    assert_eq!(first.account_object_id.as_deref(), Some("a"));
    assert_eq!(first.account_tenant_id.as_deref(), Some("tenant-1"));
    assert_eq!(first.last_activity(), T0);
    assert!(!first.failed_to_acquire_token);

    // A failure recorded by a worker...
    let claimed = activities::claim_due(
        c,
        due(T0 + Duration::hours(1)),
        None,
        10,
        "w",
        T0 + Duration::hours(2),
    )
    .unwrap();
    assert_eq!(keys(&claimed), ["a.t"]);
    let outcome = Outcome::InteractionRequired {
        reason: "invalid_grant".into(),
    };
    assert!(activities::record_outcome(c, "a.t", "w", &outcome, T0 + Duration::hours(1)).unwrap());
    // ...is cleared by the next sign-in, which also moves last_activity.
    let later = T0 + Duration::days(1);
    activities::upsert(c, &activity("a.t", "renamed@contoso.com"), later).unwrap();
    let row = activities::get(c, "a.t").unwrap().unwrap();
    assert_eq!(row.last_activity(), later);
    assert!(!row.failed_to_acquire_token);
    assert_eq!(row.last_error, None);
    assert_eq!(row.consecutive_failures, 0);
    assert_eq!(
        row.user_principal_name.as_deref(),
        Some("renamed@contoso.com")
    );
    assert_eq!(
        activities::find_by_upn(c, "renamed@contoso.com")
            .unwrap()
            .len(),
        1
    );
}

fn due_accounts_respect_cutoff_failure_sign_out_and_backoff(db: &TestDb) {
    let c = &mut db.conn();
    let now = T0 + Duration::hours(1);
    for key in ["idle", "recent", "failed", "signed-out", "backing-off"] {
        sign_in(c, key, T0);
    }
    sign_in(c, "recent", now - Duration::minutes(1));
    activities::mark_signed_out(c, "signed-out", SignedOutBy::App, now).unwrap();
    let lease = now + Duration::minutes(1);
    activities::claim_due(c, due(now), None, 100, "w", lease).unwrap();
    let interaction = Outcome::InteractionRequired {
        reason: "invalid_grant".into(),
    };
    activities::record_outcome(c, "failed", "w", &interaction, now).unwrap();
    let retry = Outcome::Transient {
        error: "HTTP 503".into(),
        next_attempt_at: now + Duration::minutes(10),
    };
    activities::record_outcome(c, "backing-off", "w", &retry, now).unwrap();
    activities::release(c, "idle", "w").unwrap();

    let page = activities::due_page(c, due(now), None, 100).unwrap();
    assert_eq!(
        keys(&page),
        ["idle", "signed-out"],
        "a sign-out is due until a worker reports it"
    );

    let row = activities::get(c, "backing-off").unwrap().unwrap();
    assert_eq!(row.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(row.consecutive_failures, 1);
    // Once the backoff has elapsed the account is due again.
    let later = now + Duration::minutes(10);
    let page = activities::due_page(c, due(later), None, 100).unwrap();
    assert_eq!(keys(&page), ["backing-off", "idle", "recent", "signed-out"]);
    let with_failed = DueFilter {
        include_failed: true,
        ..due(later)
    };
    let page = activities::due_page(c, with_failed, None, 100).unwrap();
    assert_eq!(
        keys(&page),
        ["backing-off", "failed", "idle", "recent", "signed-out"]
    );
}

fn due_pages_walk_the_table_by_key(db: &TestDb) {
    let c = &mut db.conn();
    for i in 0..25 {
        sign_in(c, &format!("user-{i:02}"), T0);
    }
    let now = T0 + Duration::hours(1);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let page = activities::due_page(c, due(now), after.as_deref(), 10).unwrap();
        if page.is_empty() {
            break;
        }
        sizes.push(page.len());
        after = page.last().map(|a| a.account_cache_key.clone());
        seen.extend(keys(&page));
    }
    assert_eq!(sizes, [10, 10, 5]);
    let expected: Vec<String> = (0..25).map(|i| format!("user-{i:02}")).collect();
    assert_eq!(seen, expected);
}

fn claims_lease_rows_to_one_owner(db: &TestDb) {
    let c = &mut db.conn();
    for i in 0..6 {
        sign_in(c, &format!("user-{i}"), T0);
    }
    let now = T0 + Duration::hours(1);
    let lease = now + Duration::minutes(5);
    let first = activities::claim_due(c, due(now), None, 4, "worker-a", lease).unwrap();
    assert_eq!(keys(&first), ["user-0", "user-1", "user-2", "user-3"]);
    assert!(first.iter().all(
        |a| a.lease_owner.as_deref() == Some("worker-a") && a.lease_until == Some(to_db(lease))
    ));
    let second = activities::claim_due(c, due(now), None, 4, "worker-b", lease).unwrap();
    assert_eq!(keys(&second), ["user-4", "user-5"]);
    assert!(
        activities::claim_due(c, due(now), None, 4, "worker-c", lease)
            .unwrap()
            .is_empty()
    );
    // Claiming is not activity: last_activity stays the user's.
    assert_eq!(
        activities::get(c, "user-0")
            .unwrap()
            .unwrap()
            .last_activity(),
        T0
    );
    // Expired leases can be claimed again (a worker that died).
    let later = lease + Duration::seconds(1);
    let again = activities::claim_due(
        c,
        due(later),
        None,
        10,
        "worker-c",
        later + Duration::minutes(5),
    )
    .unwrap();
    assert_eq!(again.len(), 6);
    // Keyset: a claim can start after a key.
    activities::release(c, "user-0", "worker-c").unwrap();
    activities::release(c, "user-5", "worker-c").unwrap();
    let tail = activities::claim_due(
        c,
        due(later),
        Some("user-0"),
        10,
        "worker-d",
        later + Duration::minutes(5),
    )
    .unwrap();
    assert_eq!(keys(&tail), ["user-5"]);
}

fn outcomes_are_recorded_by_the_lease_holder_only(db: &TestDb) {
    let c = &mut db.conn();
    sign_in(c, "u", T0);
    let now = T0 + Duration::hours(1);
    activities::claim_due(
        c,
        due(now),
        None,
        10,
        "worker-a",
        now + Duration::minutes(5),
    )
    .unwrap();
    assert!(!activities::record_outcome(c, "u", "worker-b", &Outcome::Success, now).unwrap());
    assert!(activities::record_outcome(c, "u", "worker-a", &Outcome::Success, now).unwrap());
    let row = activities::get(c, "u").unwrap().unwrap();
    assert_eq!(row.last_success_at, Some(to_db(now)));
    assert_eq!(row.lease_owner, None);
    assert_eq!(
        row.last_activity(),
        T0,
        "the worker never changes last_activity"
    );
    // The lease was released: recording again needs a new claim.
    assert!(!activities::record_outcome(c, "u", "worker-a", &Outcome::Success, now).unwrap());

    // Two transient failures count up; a success resets the count.
    for n in 1..=2 {
        let at = now + Duration::hours(n);
        activities::claim_due(c, due(at), None, 10, "worker-a", at + Duration::minutes(5)).unwrap();
        let retry = Outcome::Transient {
            error: format!("timeout {n}"),
            next_attempt_at: at,
        };
        assert!(activities::record_outcome(c, "u", "worker-a", &retry, at).unwrap());
    }
    let row = activities::get(c, "u").unwrap().unwrap();
    assert_eq!(
        (row.consecutive_failures, row.last_error.as_deref()),
        (2, Some("timeout 2"))
    );
    assert!(
        !row.failed_to_acquire_token,
        "transient failures never blame the user"
    );
    // An API refusal is recorded without marking the account or delaying it.
    let at = now + Duration::hours(3);
    activities::claim_due(c, due(at), None, 10, "worker-a", at + Duration::minutes(5)).unwrap();
    let refused = Outcome::ApiFailed {
        error: "HTTP 404".into(),
    };
    assert!(activities::record_outcome(c, "u", "worker-a", &refused, at).unwrap());
    let row = activities::get(c, "u").unwrap().unwrap();
    assert_eq!(
        (row.consecutive_failures, row.last_error.as_deref()),
        (3, Some("HTTP 404"))
    );
    assert!(!row.failed_to_acquire_token);
    // Not due again while a worker acted for it within the window.
    assert!(activities::due_page(c, due(at), None, 10)
        .unwrap()
        .is_empty());
    let at = at + Duration::hours(1);
    activities::claim_due(c, due(at), None, 10, "worker-a", at + Duration::minutes(5)).unwrap();
    assert!(activities::record_outcome(c, "u", "worker-a", &Outcome::Success, at).unwrap());
    let row = activities::get(c, "u").unwrap().unwrap();
    assert_eq!(
        (
            row.consecutive_failures,
            row.last_error,
            row.next_attempt_at
        ),
        (0, None, None)
    );
}

fn signed_out_accounts_are_skipped_until_the_next_sign_in(db: &TestDb) {
    let c = &mut db.conn();
    sign_in(c, "u", T0);
    let now = T0 + Duration::hours(1);
    assert!(activities::mark_signed_out(c, "u", SignedOutBy::Provider, now).unwrap());
    assert!(activities::get(c, "u")
        .unwrap()
        .unwrap()
        .signed_out_at_the_provider());
    assert!(!activities::mark_signed_out(c, "nobody", SignedOutBy::App, now).unwrap());
    // Reported once by a worker, which marks it...
    let claimed =
        activities::claim_due(c, due(now), None, 10, "w", now + Duration::minutes(5)).unwrap();
    assert_eq!(keys(&claimed), ["u"]);
    let signed_out = Outcome::InteractionRequired {
        reason: "signed out".into(),
    };
    assert!(activities::record_outcome(c, "u", "w", &signed_out, now).unwrap());
    // ... then skipped.
    assert!(activities::due_page(c, due(now), None, 10)
        .unwrap()
        .is_empty());
    assert!(activities::claim_due(c, due(now), None, 10, "w", now)
        .unwrap()
        .is_empty());
    sign_in(c, "u", now);
    let later = now + Duration::hours(1);
    assert_eq!(
        keys(&activities::due_page(c, due(later), None, 10).unwrap()),
        ["u"]
    );
}

fn find_by_upn_ignores_case(db: &TestDb) {
    let c = &mut db.conn();
    activities::upsert(c, &activity("a.t", "Ada@Contoso.com"), T0).unwrap();
    activities::upsert(c, &activity("b.t", "bob@contoso.com"), T0).unwrap();
    let found = activities::find_by_upn(c, "ada@contoso.COM").unwrap();
    assert_eq!(keys(&found), ["a.t"]);
    assert!(activities::find_by_upn(c, "nobody@contoso.com")
        .unwrap()
        .is_empty());
    let unique: BTreeSet<_> = keys(&activities::find_by_upn(c, "BOB@contoso.com").unwrap())
        .into_iter()
        .collect();
    assert_eq!(unique.len(), 1);
}

fn one_account_is_claimed_by_key_unless_another_worker_holds_it(db: &TestDb) {
    let c = &mut db.conn();
    sign_in(c, "u", T0);
    // Recent activity, so not due: `--user` takes it anyway.
    let lease = T0 + Duration::minutes(5);
    let claimed = activities::claim_key(c, "u", "worker-a", T0, lease).unwrap();
    assert_eq!(claimed.unwrap().lease_owner.as_deref(), Some("worker-a"));
    assert!(activities::claim_key(c, "u", "worker-b", T0, lease)
        .unwrap()
        .is_none());
    assert!(activities::claim_key(c, "nobody", "worker-b", T0, lease)
        .unwrap()
        .is_none());
    // An expired claim can be taken over.
    let later = lease + Duration::seconds(1);
    let taken = activities::claim_key(c, "u", "worker-b", later, later + Duration::minutes(5));
    assert_eq!(
        taken.unwrap().unwrap().lease_owner.as_deref(),
        Some("worker-b")
    );
}

/// With no idle time asked for (`older_than` 0), an account one pass has done is not done
/// again by a pass that began while the first was running, even after the first has ended;
/// a pass that begins after the first has ended does it again, and a pass whose worker died
/// stops counting once its row has expired.
fn a_pass_leaves_what_the_passes_running_when_it_began_have_done(db: &TestDb) {
    let c = &mut db.conn();
    sign_in(c, "a", T0);
    sign_in(c, "b", T0);
    let due_since = |now, since| DueFilter {
        acted_before: since,
        ..DueFilter::idle_since(now, now, false)
    };
    let ms = Duration::milliseconds;
    let lease = T0 + Duration::hours(1);
    let first = passes::begin(c, "first", T0 + ms(10), lease).unwrap();
    assert_eq!(first, T0 + ms(10));
    let claimed = activities::claim_due(c, due_since(T0 + ms(10), first), None, 1, "w1", lease);
    assert_eq!(keys(&claimed.unwrap()), ["a"]);
    assert!(activities::record_outcome(c, "a", "w1", &Outcome::Success, T0 + ms(20)).unwrap());

    // Begun while the first runs: "a" is the first pass's, even once it has ended.
    let second = passes::begin(c, "second", T0 + ms(30), lease).unwrap();
    assert_eq!(second, T0 + ms(10), "the earliest pass running");
    passes::end(c, "first", T0 + ms(40)).unwrap();
    let claimed = activities::claim_due(c, due_since(T0 + ms(50), second), None, 10, "w2", lease);
    assert_eq!(keys(&claimed.unwrap()), ["b"]);
    assert!(activities::record_outcome(c, "b", "w2", &Outcome::Success, T0 + ms(60)).unwrap());
    passes::end(c, "second", T0 + ms(70)).unwrap();

    // Begun after both ended: a new pass, which does both again.
    let third = passes::begin(c, "third", T0 + ms(80), T0 + ms(90)).unwrap();
    assert_eq!(third, T0 + ms(80));
    let claimed = activities::claim_due(c, due_since(T0 + ms(80), third), None, 10, "w3", lease);
    assert_eq!(keys(&claimed.unwrap()), ["a", "b"]);
    for key in ["a", "b"] {
        activities::record_outcome(c, key, "w3", &Outcome::Success, T0 + ms(85)).unwrap();
    }
    // Its worker died (no end, no renewal): once its row expires it holds nothing back.
    assert!(passes::renew(c, "third", T0 + ms(90)).unwrap());
    let fourth = passes::begin(c, "fourth", T0 + ms(100), lease).unwrap();
    assert_eq!(fourth, T0 + ms(100));
    assert_eq!(
        passes::earliest_running(c, T0 + ms(100)).unwrap(),
        Some(T0 + ms(100))
    );
    passes::end(c, "fourth", T0 + ms(110)).unwrap();
    assert_eq!(
        passes::earliest_running(c, T0 + ms(110)).unwrap(),
        None,
        "dead rows swept"
    );
}

/// The ID token's `sub` is stored at sign-in and kept by writes that do not know it (a refresh
/// without an ID token); it finds the account (how a Back-Channel Logout names the user).
fn the_subject_is_kept_and_finds_the_account(db: &TestDb) {
    let c = &mut db.conn();
    sign_in(c, "a.t", T0);
    let found = activities::find_by_subject(c, "a.t").unwrap();
    assert_eq!(keys(&found), ["a.t"]);
    let unknown = activities::ActivityUpsert {
        subject: None,
        ..activity("a.t", "a@contoso.com")
    };
    activities::upsert(c, &unknown, T0 + Duration::hours(1)).unwrap();
    assert_eq!(
        activities::get(c, "a.t")
            .unwrap()
            .unwrap()
            .subject
            .as_deref(),
        Some("a.t")
    );
    assert!(activities::find_by_subject(c, "nobody").unwrap().is_empty());
}
