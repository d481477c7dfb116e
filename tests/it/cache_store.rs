//! The token-cache store on every backend.

use crate::backend_tests;
use crate::fixtures::{activity, document, plain_store, sealed_store, NINETY_DAYS};
use crate::support::{TestDb, T0};
use diesel::connection::InstrumentationEvent;
use diesel::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;
use time::Duration;
use tokenbridge::activity::store as activities;
use tokenbridge::cache::document::CacheDocument;
use tokenbridge::cache::seal::SealError;
use tokenbridge::cache::store::{CacheStoreError, LeaseAttempt, TokenCacheStore};
use tokenbridge::db::schema::token_cache::dsl as tc;

backend_tests!(with_migrated:
    save_then_load_round_trips,
    a_stale_version_is_a_conflict_and_changes_nothing,
    inserting_over_a_live_row_is_a_conflict,
    expired_rows_are_absent_and_can_be_replaced,
    reading_slides_the_expiry_without_a_new_version,
    delete_removes_the_row,
    sweep_deletes_expired_rows_in_batches,
    lease_is_exclusive_until_released_or_expired,
    an_expired_lease_is_taken_over_and_cannot_be_confirmed,
    a_lease_on_a_stale_version_is_not_taken,
    the_write_of_refreshed_tokens_releases_its_own_lease_only,
    a_refresh_s_statements_are_prepared_once_per_connection,
    key_problems_are_told_apart_from_corrupt_rows,
    values_are_sealed_at_rest_and_bound_to_their_row,
    corrupt_rows_are_errors_and_are_left_alone,
    async_run_uses_a_blocking_thread,
);

/// A plain (unsealed) store holding one user's document at version 1.
fn one_row(db: &TestDb) -> (TokenCacheStore, CacheDocument, String) {
    let store = plain_store();
    let (doc, home) = document("u1", "at-1", T0.unix_timestamp());
    store.save(&mut db.conn(), &home, &doc, None, T0).unwrap();
    (store, doc, home)
}

fn raw_value(db: &TestDb, id: &str) -> Vec<u8> {
    tc::token_cache
        .filter(tc::id.eq(id))
        .select(tc::value)
        .get_result(&mut *db.conn())
        .unwrap()
}

fn save_then_load_round_trips(db: &TestDb) {
    let store = sealed_store();
    let (doc, home) = document("u1", "at-1", T0.unix_timestamp());
    let version = store.save(&mut db.conn(), &home, &doc, None, T0).unwrap();
    assert_eq!(version, 1);
    let loaded = store.load(&mut db.conn(), &home, T0).unwrap().unwrap();
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.document, doc);
    assert_eq!(loaded.expires_at, T0 + Duration::days(90));
    assert!(store.load(&mut db.conn(), "nobody", T0).unwrap().is_none());
    // Keys are case-sensitive, as in the .NET table.
    assert!(store
        .load(&mut db.conn(), &home.to_uppercase(), T0)
        .unwrap()
        .is_none());
}

fn a_stale_version_is_a_conflict_and_changes_nothing(db: &TestDb) {
    let store = plain_store();
    let (doc1, home) = document("u1", "at-1", T0.unix_timestamp());
    let (doc2, _) = document("u1", "at-2", T0.unix_timestamp());
    let (doc3, _) = document("u1", "at-3", T0.unix_timestamp());
    store.save(&mut db.conn(), &home, &doc1, None, T0).unwrap();
    assert_eq!(
        store
            .save(&mut db.conn(), &home, &doc2, Some(1), T0)
            .unwrap(),
        2
    );
    let err = store
        .save(&mut db.conn(), &home, &doc3, Some(1), T0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            CacheStoreError::Conflict {
                current: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
    let loaded = store.load(&mut db.conn(), &home, T0).unwrap().unwrap();
    assert_eq!((loaded.version, loaded.document), (2, doc2));
    // Saving with a version for a row that is gone is a conflict with no current version.
    let err = store
        .save(&mut db.conn(), "gone", &doc3, Some(7), T0)
        .unwrap_err();
    assert!(
        matches!(err, CacheStoreError::Conflict { current: None, .. }),
        "{err:?}"
    );
}

fn inserting_over_a_live_row_is_a_conflict(db: &TestDb) {
    let (store, doc, home) = one_row(db);
    let err = store
        .save(&mut db.conn(), &home, &doc, None, T0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            CacheStoreError::Conflict {
                current: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
}

fn expired_rows_are_absent_and_can_be_replaced(db: &TestDb) {
    let (store, _, home) = one_row(db);
    let later = T0 + Duration::days(91);
    assert!(store.load(&mut db.conn(), &home, later).unwrap().is_none());
    assert_eq!(
        store.current_version(&mut db.conn(), &home, later).unwrap(),
        None
    );
    let (fresh_doc, _) = document("u1", "at-new", later.unix_timestamp());
    let version = store
        .save(&mut db.conn(), &home, &fresh_doc, None, later)
        .unwrap();
    assert_eq!(version, 2, "the version keeps counting up");
    let loaded = store.load(&mut db.conn(), &home, later).unwrap().unwrap();
    assert_eq!(loaded.document, fresh_doc);
}

fn reading_slides_the_expiry_without_a_new_version(db: &TestDb) {
    let (store, _, home) = one_row(db);
    // Soon after a write: no write on read.
    let soon = T0 + Duration::minutes(10);
    let loaded = store.load(&mut db.conn(), &home, soon).unwrap().unwrap();
    assert_eq!(loaded.expires_at, T0 + Duration::days(90));
    // A month later the expiry moves to 90 days from then; the version does not change.
    let month = T0 + Duration::days(30);
    let loaded = store.load(&mut db.conn(), &home, month).unwrap().unwrap();
    assert_eq!(loaded.expires_at, month + Duration::days(90));
    assert_eq!(loaded.version, 1);
    // So the row outlives the original 90 days.
    let after = T0 + Duration::days(100);
    assert!(store.load(&mut db.conn(), &home, after).unwrap().is_some());
    // The window is the store's setting, not a constant of the code.
    let window = Duration::seconds(i64::try_from(NINETY_DAYS.as_secs()).unwrap());
    let reloaded = store.load(&mut db.conn(), &home, after).unwrap().unwrap();
    assert_eq!(reloaded.expires_at, after + window);
}

fn delete_removes_the_row(db: &TestDb) {
    let (store, _, home) = one_row(db);
    assert!(store.delete(&mut db.conn(), &home).unwrap());
    assert!(!store.delete(&mut db.conn(), &home).unwrap());
    assert!(store.load(&mut db.conn(), &home, T0).unwrap().is_none());
}

fn sweep_deletes_expired_rows_in_batches(db: &TestDb) {
    let store = plain_store();
    for i in 0..25 {
        let (doc, home) = document(&format!("u{i:02}"), "at", T0.unix_timestamp());
        // 20 rows written at T0, 5 written 30 days later.
        let at = if i < 20 { T0 } else { T0 + Duration::days(30) };
        store.save(&mut db.conn(), &home, &doc, None, at).unwrap();
    }
    let now = T0 + Duration::days(91);
    assert_eq!(store.sweep_expired(&mut db.conn(), now, 7).unwrap(), 20);
    assert_eq!(store.sweep_expired(&mut db.conn(), now, 7).unwrap(), 0);
    let left: i64 = tc::token_cache.count().get_result(&mut *db.conn()).unwrap();
    assert_eq!(left, 5);
}

fn lease_is_exclusive_until_released_or_expired(db: &TestDb) {
    let (store, _, home) = one_row(db);
    let long = StdDuration::from_secs(30);
    let c = &mut db.conn();
    assert_eq!(
        store.take_lease(c, &home, 1, "worker-a", long).unwrap(),
        LeaseAttempt::Taken
    );
    assert_eq!(
        store.version_and_lease(c, &home, T0).unwrap(),
        Some((1, true))
    );
    // Not re-entrant: the same owner name does not take it twice.
    for owner in ["worker-b", "worker-a"] {
        assert_eq!(
            store.take_lease(c, &home, 1, owner, long).unwrap(),
            LeaseAttempt::Held,
            "{owner}"
        );
    }
    assert_eq!(store.lease(c, &home).unwrap().unwrap().0, "worker-a");
    // The holder confirms (renews) it; nobody else can.
    assert!(store.confirm_lease(c, &home, "worker-a", long).unwrap());
    assert!(!store.confirm_lease(c, &home, "worker-b", long).unwrap());
    assert!(!store.release_lease(c, &home, "worker-b").unwrap());
    assert!(store.release_lease(c, &home, "worker-a").unwrap());
    assert_eq!(store.lease(c, &home).unwrap(), None);
    assert_eq!(
        store.version_and_lease(c, &home, T0).unwrap(),
        Some((1, false))
    );
    // No row, no lease.
    assert_eq!(
        store.take_lease(c, "nobody", 1, "worker-a", long).unwrap(),
        LeaseAttempt::Changed
    );
}

/// Lease times are the database's clock: a lease lasts as long as it says in real time,
/// whatever time the processes think it is, and an expired one can be taken over, never
/// confirmed by its former holder.
fn an_expired_lease_is_taken_over_and_cannot_be_confirmed(db: &TestDb) {
    let (store, _, home) = one_row(db);
    let c = &mut db.conn();
    let short = StdDuration::from_millis(300);
    assert_eq!(
        store.take_lease(c, &home, 1, "worker-a", short).unwrap(),
        LeaseAttempt::Taken
    );
    std::thread::sleep(StdDuration::from_millis(1200));
    assert_eq!(
        store.version_and_lease(c, &home, T0).unwrap(),
        Some((1, false)),
        "expired by the database's clock"
    );
    assert!(
        !store.confirm_lease(c, &home, "worker-a", short).unwrap(),
        "an expired lease is lost, even if nobody has taken it yet"
    );
    assert_eq!(
        store
            .take_lease(c, &home, 1, "worker-b", StdDuration::from_secs(30))
            .unwrap(),
        LeaseAttempt::Taken
    );
    assert!(!store.confirm_lease(c, &home, "worker-a", short).unwrap());
    assert!(!store.release_lease(c, &home, "worker-a").unwrap());
    assert_eq!(store.lease(c, &home).unwrap().unwrap().0, "worker-b");
}

/// A refresh's write ends its lease in the same statement; a lease that is no longer the
/// writer's (it expired and someone else took it) stays with its new holder, whole.
fn the_write_of_refreshed_tokens_releases_its_own_lease_only(db: &TestDb) {
    let (store, doc, home) = one_row(db);
    let c = &mut db.conn();
    let long = StdDuration::from_secs(30);
    assert_eq!(
        store.take_lease(c, &home, 1, "worker-a", long).unwrap(),
        LeaseAttempt::Taken
    );
    let (refreshed, _) = document("u1", "at-2", T0.unix_timestamp());
    assert_eq!(
        store
            .save_refreshed(c, &home, &refreshed, 1, None, Some("worker-a"), T0)
            .unwrap(),
        2
    );
    assert_eq!(
        store.lease(c, &home).unwrap(),
        None,
        "released by the write"
    );
    assert_eq!(
        store.load(c, &home, T0).unwrap().unwrap().document,
        refreshed
    );
    // worker-b holds the lease now; worker-a's late write lands but leaves it alone.
    assert_eq!(
        store.take_lease(c, &home, 2, "worker-b", long).unwrap(),
        LeaseAttempt::Taken
    );
    let held = store.lease(c, &home).unwrap().unwrap();
    assert_eq!(
        store
            .save_refreshed(c, &home, &doc, 2, None, Some("worker-a"), T0)
            .unwrap(),
        3
    );
    assert_eq!(store.lease(c, &home).unwrap(), Some(held));
    // A stale version is a conflict, and the lease stays too.
    assert!(matches!(
        store.save_refreshed(c, &home, &doc, 2, None, Some("worker-b"), T0),
        Err(CacheStoreError::Conflict {
            current: Some(3),
            ..
        })
    ));
    assert_eq!(store.lease(c, &home).unwrap().unwrap().0, "worker-b");
    // The owner's write over the current version ends it.
    store
        .save_refreshed(c, &home, &doc, 3, None, Some("worker-b"), T0)
        .unwrap();
    assert_eq!(store.lease(c, &home).unwrap(), None);
}

/// Diesel keeps no UPDATE and no statement with an SQL fragment prepared unless told its text
/// is fixed: the statements of a refresh and of a worker's outcome are each prepared once per
/// connection, then reused.
fn a_refresh_s_statements_are_prepared_once_per_connection(db: &TestDb) {
    let store = plain_store();
    let (doc, home) = document("u1", "at-1", T0.unix_timestamp());
    let c = &mut db.conn();
    store.save(c, &home, &doc, None, T0).unwrap();
    activities::upsert(c, &activity(&home, "u1@contoso.com"), T0).unwrap();
    let prepared = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = prepared.clone();
    diesel::Connection::set_instrumentation(&mut **c, move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::CacheQuery { sql, .. } = event {
            seen.lock().unwrap().push(sql.to_owned());
        }
    });
    let long = StdDuration::from_secs(30);
    let mut round = |version: i64| {
        let owner = format!("worker-{version}");
        assert_eq!(
            store.take_lease(c, &home, version, &owner, long).unwrap(),
            LeaseAttempt::Taken
        );
        assert!(store.confirm_lease(c, &home, &owner, long).unwrap());
        assert_eq!(
            store.version_and_lease(c, &home, T0).unwrap(),
            Some((version, true))
        );
        store
            .save_refreshed(c, &home, &doc, version, None, Some(&owner), T0)
            .unwrap();
        assert_eq!(
            store
                .take_lease(c, &home, version + 1, &owner, long)
                .unwrap(),
            LeaseAttempt::Taken
        );
        assert!(store.release_lease(c, &home, &owner).unwrap());
        let until = T0 + Duration::minutes(5);
        assert!(activities::claim_key(c, &home, &owner, T0, until)
            .unwrap()
            .is_some());
        let success = activities::Outcome::Success;
        assert!(activities::record_outcome(c, &home, &owner, &success, T0).unwrap());
    };
    round(1);
    let first: Vec<String> = prepared.lock().unwrap().clone();
    let updates = |table: &str| {
        first
            .iter()
            .filter(|sql| sql.starts_with("UPDATE") && sql.contains(table))
            .count()
    };
    // Take, confirm, the write ending the lease, release; the worker's outcome.
    assert_eq!(updates("token_cache"), 4, "{first:#?}");
    assert_eq!(updates("account_activities"), 1, "{first:#?}");
    round(2);
    assert_eq!(
        *prepared.lock().unwrap(),
        first,
        "the second round prepared nothing again"
    );
}

/// The lease is taken only on the version the taker read: once another process has written
/// a newer document (and let go), the stale reader must read again, not redeem the refresh
/// token it holds, which the provider has already rotated.
fn a_lease_on_a_stale_version_is_not_taken(db: &TestDb) {
    let (store, doc, home) = one_row(db);
    let c = &mut db.conn();
    let long = StdDuration::from_secs(30);
    // Process A reads version 1; process B refreshes meanwhile and writes version 2.
    assert_eq!(
        store.take_lease(c, &home, 1, "process-b", long).unwrap(),
        LeaseAttempt::Taken
    );
    store.save(c, &home, &doc, Some(1), T0).unwrap();
    assert!(store.release_lease(c, &home, "process-b").unwrap());
    // The lease is free, but not on the version A read.
    assert_eq!(
        store.take_lease(c, &home, 1, "process-a", long).unwrap(),
        LeaseAttempt::Changed
    );
    assert_eq!(store.lease(c, &home).unwrap(), None);
    assert_eq!(
        store.take_lease(c, &home, 2, "process-a", long).unwrap(),
        LeaseAttempt::Taken
    );
}

fn values_are_sealed_at_rest_and_bound_to_their_row(db: &TestDb) {
    let store = sealed_store();
    let (doc_a, alice) = document("alice", "alice-access-token", T0.unix_timestamp());
    let (doc_b, bob) = document("bob", "bob-access-token", T0.unix_timestamp());
    store
        .save(&mut db.conn(), &alice, &doc_a, None, T0)
        .unwrap();
    store.save(&mut db.conn(), &bob, &doc_b, None, T0).unwrap();
    let stored = raw_value(db, &alice);
    let text = String::from_utf8_lossy(&stored);
    assert!(!text.contains("alice-access-token") && !text.contains("rt-for-alice"));
    // Copy Alice's sealed value into Bob's row: it must not open as Bob's.
    diesel::update(tc::token_cache.filter(tc::id.eq(&bob)))
        .set(tc::value.eq(&stored))
        .execute(&mut *db.conn())
        .unwrap();
    let err = store.load(&mut db.conn(), &bob, T0).unwrap_err();
    assert!(
        matches!(
            err,
            CacheStoreError::Undecryptable {
                source: SealError::Tampered,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_corrupt() && !err.is_key_problem());
    // A store without keys cannot open sealed rows and says why.
    let err = plain_store().load(&mut db.conn(), &alice, T0).unwrap_err();
    assert!(
        matches!(
            err,
            CacheStoreError::Undecryptable {
                source: SealError::NoKeys,
                ..
            }
        ),
        "{err:?}"
    );
}

fn corrupt_rows_are_errors_and_are_left_alone(db: &TestDb) {
    let (store, _, home) = one_row(db);
    let garbage = b"{\"AccessToken\": [not json".to_vec();
    diesel::update(tc::token_cache.filter(tc::id.eq(&home)))
        .set(tc::value.eq(&garbage))
        .execute(&mut *db.conn())
        .unwrap();
    let err = store
        .load(&mut db.conn(), &home, T0 + Duration::days(30))
        .unwrap_err();
    assert!(matches!(err, CacheStoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&home));
    assert_eq!(raw_value(db, &home), garbage, "the row is left as it was");
    let sealed = sealed_store().load(&mut db.conn(), &home, T0).unwrap_err();
    assert!(matches!(
        sealed,
        CacheStoreError::Undecryptable {
            source: SealError::PlaintextRefused,
            ..
        }
    ));
}

fn async_run_uses_a_blocking_thread(db: &TestDb) {
    let store = plain_store();
    let (doc, home) = document("u1", "at-1", T0.unix_timestamp());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let database = db.db.clone();
    let version = runtime
        .block_on(async move {
            database
                .run(move |conn| store.save(conn, &home, &doc, None, T0))
                .await
        })
        .unwrap();
    assert_eq!(version, 1);
}

/// A row this process has no key for is a configuration problem, never "corrupt": nothing may
/// treat it as absent and overwrite it. Only a row that fails with a configured key, or does
/// not parse, is corrupt.
fn key_problems_are_told_apart_from_corrupt_rows(db: &TestDb) {
    let sealed = sealed_store();
    let (doc, home) = document("u1", "at-1", T0.unix_timestamp());
    sealed.save(&mut db.conn(), &home, &doc, None, T0).unwrap();
    let c = &mut db.conn();
    assert!(sealed.check_keys(c).is_ok());
    let other_key = {
        let keys = tokenbridge::cache::seal::SealKeys::parse(&tokenbridge::secret::Secret::new(
            "k2=ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
        ))
        .unwrap();
        tokenbridge::cache::store::TokenCacheStore::new(
            tokenbridge::cache::seal::Sealer::new(Some(keys), false),
            NINETY_DAYS,
        )
    };
    for (store, what) in [(&other_key, "unknown key id"), (&plain_store(), "no keys")] {
        let err = store.load(c, &home, T0).unwrap_err();
        assert!(err.is_key_problem() && !err.is_corrupt(), "{what}: {err:?}");
        assert!(store.check_keys(c).unwrap_err().is_key_problem(), "{what}");
    }
    // A plain row while plain rows are refused.
    plain_store().save(c, "plain", &doc, None, T0).unwrap();
    let err = sealed.load(c, "plain", T0).unwrap_err();
    assert!(err.is_key_problem() && !err.is_corrupt(), "{err:?}");
}
