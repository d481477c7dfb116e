//! The token-cache contract through `CacheBackend`, the one interface the app uses, on every
//! store: SQLite, PostgreSQL, MySQL/MariaDB and Redis (its activities in SQLite). Races are
//! played by independent store instances (own pool, own Redis connection), as processes would.
//! Times are real: the lease runs on the store's clock, and Redis expires keys by its own.

use crate::fixtures::{ctx, document, KEY, NINETY_DAYS};
use crate::support::{self, RedisPrefix, TestDb};
use futures_util::future::join_all;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokenbridge::activity::store::{self as activities, ActivityRecord};
use tokenbridge::cache::backend::{CacheBackend, Companion, Expected, Read};
use tokenbridge::cache::document::{CacheDocument, Grant, TokenResponse};
use tokenbridge::cache::redis::RedisCacheStore;
use tokenbridge::cache::seal::{SealKeys, Sealer};
use tokenbridge::cache::store::{CacheStoreError, LeaseAttempt, Saved, TokenCacheStore};
use tokenbridge::db::{Backend, Database, DbError};
use tokenbridge::secret::Secret;
use tokio::sync::Barrier;

/// Where a test's caches live.
#[derive(Clone, Copy)]
pub enum Kind {
    Sql(Backend),
    Redis,
}

/// One test's storage: a migrated database for activities (and SQL caches), and for Redis a
/// key prefix of its own.
pub struct Rig {
    pub caches: CacheBackend,
    pub db: TestDb,
    pub redis: Option<RedisPrefix>,
}

pub fn sealer() -> Sealer {
    let keys = SealKeys::parse(&Secret::new(format!("k1={KEY}"))).unwrap();
    Sealer::new(Some(keys), false)
}

impl Rig {
    pub fn new(test: &str, kind: Kind) -> Option<Self> {
        let (db, redis) = match kind {
            Kind::Sql(backend) => match support::migrated(backend) {
                Some(db) => (db, None),
                None => {
                    support::skipped(test, backend);
                    return None;
                }
            },
            Kind::Redis => {
                let redis = RedisPrefix::new(test)?;
                (support::migrated(Backend::Sqlite)?, Some(redis))
            }
        };
        let mut rig = Self {
            caches: CacheBackend::sql(db.db.clone(), TokenCacheStore::new(sealer(), NINETY_DAYS)),
            db,
            redis,
        };
        rig.caches = rig.another(sealer(), NINETY_DAYS);
        Some(rig)
    }

    /// An independent store on the same storage (its own pool or connection), as another
    /// process would have, with its own keys and expiry.
    pub fn another(&self, sealer: Sealer, sliding: Duration) -> CacheBackend {
        let db = Database::connect(&self.db.settings).unwrap();
        match &self.redis {
            None => CacheBackend::sql(db, TokenCacheStore::new(sealer, sliding)),
            Some(redis) => CacheBackend::Redis {
                db,
                store: RedisCacheStore::new(
                    &redis.url,
                    &redis.prefix,
                    sealer,
                    sliding,
                    Duration::from_secs(5),
                )
                .unwrap(),
            },
        }
    }

    /// The stored value of a user's row, as the store keeps it.
    pub fn raw(&self, id: &str) -> Option<Vec<u8>> {
        match &self.redis {
            Some(redis) => ::redis::cmd("HGET")
                .arg(redis.cache_key(id))
                .arg("v")
                .query(&mut redis.connection())
                .unwrap(),
            None => {
                use diesel::prelude::*;
                use tokenbridge::db::schema::token_cache::dsl as tc;
                tc::token_cache
                    .filter(tc::id.eq(id))
                    .select(tc::value)
                    .get_result(&mut *self.db.conn())
                    .optional()
                    .unwrap()
            }
        }
    }

    /// Deletes every cache key's check value, as in a store from before check values.
    pub fn forget_key_checks(&self) {
        match &self.redis {
            Some(redis) => {
                let checks: Vec<String> = redis
                    .keys()
                    .into_iter()
                    .filter(|k| k.starts_with(&redis.check_key("")))
                    .collect();
                let _: i64 = ::redis::cmd("DEL")
                    .arg(checks)
                    .query(&mut redis.connection())
                    .unwrap();
            }
            None => {
                use diesel::prelude::*;
                use tokenbridge::db::schema::cache_key_checks::dsl as ck;
                diesel::delete(ck::cache_key_checks)
                    .execute(&mut *self.db.conn())
                    .unwrap();
            }
        }
    }

    /// Overwrites the stored value of a user's row, version kept (tampering, corruption).
    pub fn set_raw(&self, id: &str, value: &[u8]) {
        match &self.redis {
            Some(redis) => {
                let _: i64 = ::redis::cmd("HSET")
                    .arg(redis.cache_key(id))
                    .arg("v")
                    .arg(value)
                    .query(&mut redis.connection())
                    .unwrap();
            }
            None => {
                use diesel::prelude::*;
                use tokenbridge::db::schema::token_cache::dsl as tc;
                diesel::update(tc::token_cache.filter(tc::id.eq(id)))
                    .set(tc::value.eq(value))
                    .execute(&mut *self.db.conn())
                    .unwrap();
            }
        }
    }
}

/// Runs `body` on a rig of `kind`, or reports the skip.
pub async fn run<F: std::future::Future<Output = ()>>(test: &str, kind: Kind, body: fn(Rig) -> F) {
    if let Some(rig) = Rig::new(test, kind) {
        body(rig).await;
    }
}

/// One `#[tokio::test]` per store for each named async body (the module using it imports
/// `run` and `Kind`).
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::run(concat!(module_path!(), "::", stringify!($name)), super::Kind::Sql(tokenbridge::db::Backend::Sqlite), super::$name).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::run(concat!(module_path!(), "::", stringify!($name)), super::Kind::Sql(tokenbridge::db::Backend::Postgres), super::$name).await } )*
        }
        mod mysql {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::run(concat!(module_path!(), "::", stringify!($name)), super::Kind::Sql(tokenbridge::db::Backend::Mysql), super::$name).await } )*
        }
        mod redis {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::run(concat!(module_path!(), "::", stringify!($name)), super::Kind::Redis, super::$name).await } )*
        }
    };
}

pub(crate) use store_tests;

store_tests!(
    save_then_read_round_trips_and_a_known_version_reads_no_value,
    a_stale_version_is_a_conflict_and_changes_nothing,
    two_stores_racing_a_compare_and_swap_one_wins,
    the_lease_is_exclusive_until_released_and_only_its_owner_releases_it,
    an_expired_lease_is_taken_over_and_cannot_be_confirmed,
    the_write_of_refreshed_tokens_releases_its_own_lease_only,
    rows_expire_and_reading_slides_the_expiry,
    values_are_sealed_at_rest_and_bound_to_their_row,
    corrupt_rows_are_errors_and_are_left_alone,
    a_process_without_the_key_is_told_so_and_changes_nothing,
    a_sign_out_removes_only_its_own_session_s_row,
    a_write_over_an_earlier_sign_in_s_row_is_a_conflict,
    cache_and_activity_are_saved_together,
    a_failed_companion_write_undoes_the_sql_cache_write_and_leaves_redis_s_to_expire,
    eight_stores_update_a_thousand_accounts_and_lose_no_write,
);

/// A write over `version`, whoever's sign-in the row holds.
fn at(version: i64) -> Expected {
    Expected {
        version,
        session_epoch: None,
    }
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A sign-in's write: a new row for `home`, with its activity.
pub async fn first_save(
    caches: &CacheBackend,
    home: &str,
    doc: CacheDocument,
) -> Result<Saved, CacheStoreError> {
    caches
        .save_with(home, doc, None, None, with_activity(home), now())
        .await
}

/// The user's activity row, written with their cache as the web app writes it.
fn with_activity(id: &str) -> Companion {
    recorded(record(id))
}

fn recorded(activity: ActivityRecord) -> Companion {
    Arc::new(move |conn| {
        activities::upsert(conn, &activity.as_upsert(), now()).map_err(DbError::from)
    })
}

fn signed_out(id: &str) -> Companion {
    let id = id.to_owned();
    Arc::new(move |conn| {
        activities::mark_signed_out(conn, &id, activities::SignedOutBy::App, now())
            .map(drop)
            .map_err(DbError::from)
    })
}

fn record(id: &str) -> ActivityRecord {
    ActivityRecord {
        account_cache_key: id.into(),
        account_identifier: id.into(),
        object_id: Some("oid".into()),
        tenant_id: Some("tenant-1".into()),
        user_principal_name: Some("u@contoso.com".into()),
        subject: Some(format!("sub-of-{id}")),
        problem: None,
    }
}

/// `doc` with one more access token, for `scope`.
fn with_token(doc: &CacheDocument, home: &str, scope: &str, at: &str) -> CacheDocument {
    let mut doc = doc.clone();
    let response = TokenResponse {
        access_token: Secret::new(at),
        token_type: Some("Bearer".into()),
        expires_in: Some(3600),
        ext_expires_in: None,
        refresh_in: None,
        refresh_token: None,
        id_token: None,
        scope: Some(scope.into()),
        client_info: None,
        family_id: None,
        user_assertion_hash: None,
    };
    doc.add_token_response(
        &ctx(),
        &response,
        &[scope],
        Grant::RefreshToken,
        Some(home),
        now().unix_timestamp(),
    )
    .unwrap();
    doc
}

pub async fn one_row(rig: &Rig, uid: &str) -> (CacheDocument, String) {
    let (doc, home) = document(uid, "at-1", now().unix_timestamp());
    let saved = first_save(&rig.caches, &home, doc.clone()).await.unwrap();
    assert_eq!(saved.version, 1);
    (doc, home)
}

async fn save_then_read_round_trips_and_a_known_version_reads_no_value(rig: Rig) {
    let (doc, home) = document("u1", "at-1", now().unix_timestamp());
    let saved = first_save(&rig.caches, &home, doc.clone()).await.unwrap();
    assert_eq!(saved.version, 1);
    assert_ne!(saved.session_epoch, 0);
    let loaded = rig.caches.load(&home, now()).await.unwrap().unwrap();
    assert_eq!(
        (loaded.version, loaded.session_epoch),
        (1, saved.session_epoch)
    );
    assert_eq!(loaded.document, doc);
    let left = loaded.expires_at - now();
    assert!(left > time::Duration::days(89), "expires in {left}");
    match rig.caches.read(&home, Some(1), now()).await.unwrap() {
        Some(Read::Unchanged {
            version: 1,
            session_epoch,
        }) => assert_eq!(session_epoch, saved.session_epoch),
        other => panic!("expected the version only, got {other:?}"),
    }
    match rig.caches.read(&home, Some(7), now()).await.unwrap() {
        Some(Read::Loaded(loaded)) => assert_eq!(loaded.document, doc),
        other => panic!("expected the document, got {other:?}"),
    }
    assert!(rig.caches.load("nobody", now()).await.unwrap().is_none());
    assert!(rig
        .caches
        .read("nobody", Some(1), now())
        .await
        .unwrap()
        .is_none());
    // Keys are case-sensitive, as in the .NET table.
    let upper = home.to_uppercase();
    assert!(rig.caches.load(&upper, now()).await.unwrap().is_none());
    // The activity row was written beside it.
    let activity = activities::get(&mut rig.db.conn(), &home).unwrap().unwrap();
    assert_eq!(
        activity.user_principal_name.as_deref(),
        Some("u@contoso.com")
    );
}

async fn a_stale_version_is_a_conflict_and_changes_nothing(rig: Rig) {
    let (doc, home) = one_row(&rig, "u1").await;
    let newer = with_token(&doc, &home, "Mail.Read", "at-2");
    assert_eq!(
        rig.caches
            .save_refreshed(&home, newer.clone(), at(1), None, now())
            .await
            .unwrap(),
        2
    );
    let stale = with_token(&doc, &home, "Files.Read", "at-3");
    match rig
        .caches
        .save_refreshed(&home, stale, at(1), None, now())
        .await
    {
        Err(CacheStoreError::Conflict {
            current: Some(2), ..
        }) => {}
        other => panic!("expected a conflict at version 2, got {other:?}"),
    }
    // Inserting over a live row is a conflict too.
    let inserted = first_save(&rig.caches, &home, doc.clone()).await;
    assert!(
        matches!(
            inserted,
            Err(CacheStoreError::Conflict {
                current: Some(2),
                ..
            })
        ),
        "{inserted:?}"
    );
    // A write over a row that is gone is a conflict naming no version.
    let gone = rig
        .caches
        .save_refreshed("nobody", doc, at(1), None, now())
        .await;
    assert!(
        matches!(gone, Err(CacheStoreError::Conflict { current: None, .. })),
        "{gone:?}"
    );
    let loaded = rig.caches.load(&home, now()).await.unwrap().unwrap();
    assert_eq!((loaded.version, loaded.document), (2, newer));
}

async fn two_stores_racing_a_compare_and_swap_one_wins(rig: Rig) {
    let (doc, home) = one_row(&rig, "racer").await;
    let stores = [
        rig.another(sealer(), NINETY_DAYS),
        rig.another(sealer(), NINETY_DAYS),
    ];
    for round in 1..=10_i64 {
        let barrier = Arc::new(Barrier::new(2));
        let writes = stores.iter().enumerate().map(|(writer, store)| {
            let (barrier, store, home) = (barrier.clone(), store.clone(), home.clone());
            let doc = with_token(&doc, &home, "User.Read", &format!("at-{round}-{writer}"));
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .save_refreshed(&home, doc, at(round), None, now())
                    .await
            })
        });
        let results: Vec<_> = join_all(writes)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(wins, [&(round + 1)], "round {round}: {results:?}");
        let conflict = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(
            matches!(conflict, CacheStoreError::Conflict { current: Some(v), .. } if *v == round + 1),
            "round {round}: {conflict:?}"
        );
    }
}

async fn the_lease_is_exclusive_until_released_and_only_its_owner_releases_it(rig: Rig) {
    let (_, home) = one_row(&rig, "u1").await;
    let other = rig.another(sealer(), NINETY_DAYS);
    let term = Duration::from_secs(30);
    assert_eq!(
        rig.caches.take_lease(&home, 1, "a#1", term).await.unwrap(),
        LeaseAttempt::Taken
    );
    // Not re-entrant, not even for the same owner name; another process is told it is held.
    assert_eq!(
        rig.caches.take_lease(&home, 1, "a#1", term).await.unwrap(),
        LeaseAttempt::Held
    );
    assert_eq!(
        other.take_lease(&home, 1, "b#1", term).await.unwrap(),
        LeaseAttempt::Held
    );
    // Taken only on the version read.
    assert_eq!(
        other.take_lease(&home, 2, "b#1", term).await.unwrap(),
        LeaseAttempt::Changed
    );
    assert_eq!(
        other.take_lease("nobody", 1, "b#1", term).await.unwrap(),
        LeaseAttempt::Changed
    );
    assert_eq!(
        other.version_and_lease(&home, now()).await.unwrap(),
        Some((1, true))
    );
    let (owner, until) = other.lease(&home, now()).await.unwrap().unwrap();
    assert_eq!(owner, "a#1");
    assert!(until > now() + time::Duration::seconds(20), "{until}");
    assert!(!other.confirm_lease(&home, "b#1", term).await.unwrap());
    assert!(!other.release_lease(&home, "b#1").await.unwrap());
    assert!(rig.caches.confirm_lease(&home, "a#1", term).await.unwrap());
    assert!(rig.caches.release_lease(&home, "a#1").await.unwrap());
    assert_eq!(
        other.version_and_lease(&home, now()).await.unwrap(),
        Some((1, false))
    );
    assert!(!rig.caches.confirm_lease(&home, "a#1", term).await.unwrap());
    assert_eq!(
        other.take_lease(&home, 1, "b#1", term).await.unwrap(),
        LeaseAttempt::Taken
    );
    assert_eq!(
        other.version_and_lease("nobody", now()).await.unwrap(),
        None
    );
}

async fn an_expired_lease_is_taken_over_and_cannot_be_confirmed(rig: Rig) {
    let (_, home) = one_row(&rig, "u1").await;
    let other = rig.another(sealer(), NINETY_DAYS);
    let short = Duration::from_millis(300);
    assert_eq!(
        rig.caches.take_lease(&home, 1, "a#1", short).await.unwrap(),
        LeaseAttempt::Taken
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        other.version_and_lease(&home, now()).await.unwrap(),
        Some((1, false))
    );
    assert_eq!(
        other
            .take_lease(&home, 1, "b#1", Duration::from_secs(30))
            .await
            .unwrap(),
        LeaseAttempt::Taken
    );
    assert!(!rig.caches.confirm_lease(&home, "a#1", short).await.unwrap());
    assert!(!rig.caches.release_lease(&home, "a#1").await.unwrap());
    assert_eq!(other.lease(&home, now()).await.unwrap().unwrap().0, "b#1");
}

async fn the_write_of_refreshed_tokens_releases_its_own_lease_only(rig: Rig) {
    let (doc, home) = one_row(&rig, "u1").await;
    let term = Duration::from_secs(30);
    rig.caches.take_lease(&home, 1, "a#1", term).await.unwrap();
    let doc2 = with_token(&doc, &home, "Mail.Read", "at-2");
    let version = rig
        .caches
        .save_refreshed(&home, doc2.clone(), at(1), Some("a#1".into()), now())
        .await
        .unwrap();
    assert_eq!(version, 2);
    assert_eq!(rig.caches.lease(&home, now()).await.unwrap(), None);
    // Someone else's lease is left whole by a write naming another owner.
    rig.caches.take_lease(&home, 2, "b#1", term).await.unwrap();
    let doc3 = with_token(&doc2, &home, "Files.Read", "at-3");
    rig.caches
        .save_refreshed(&home, doc3, at(2), Some("a#1".into()), now())
        .await
        .unwrap();
    assert_eq!(
        rig.caches.lease(&home, now()).await.unwrap().unwrap().0,
        "b#1"
    );
    // With the web's activity too.
    let doc4 = with_token(&doc2, &home, "Sites.Read", "at-4");
    let saved = rig
        .caches
        .save_with(
            &home,
            doc4,
            Some(at(3)),
            Some("b#1".into()),
            with_activity(&home),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(saved.version, 4);
    assert_eq!(rig.caches.lease(&home, now()).await.unwrap(), None);
}

async fn rows_expire_and_reading_slides_the_expiry(rig: Rig) {
    // A two-second window: the SQL store compares with the `now` it is given, Redis expires
    // keys by its own clock; real time serves both.
    let window = Duration::from_secs(2);
    let store = rig.another(sealer(), window);
    let (doc, home) = document("u1", "at-1", now().unix_timestamp());
    let (other_doc, other) = document("u2", "at-1", now().unix_timestamp());
    first_save(&store, &home, doc.clone()).await.unwrap();
    first_save(&store, &other, other_doc).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // Read at 60% of the window: slid, so it outlives the first window.
        assert!(store.load(&home, now()).await.unwrap().is_some());
    }
    assert!(store.load(&other, now()).await.unwrap().is_none());
    assert_eq!(store.version_and_epoch(&other, now()).await.unwrap(), None);
    // An expired row counts as absent: a sign-in writes it anew.
    let saved = first_save(&store, &other, doc).await;
    assert!(saved.is_ok(), "{saved:?}");
}

async fn values_are_sealed_at_rest_and_bound_to_their_row(rig: Rig) {
    let (_, home) = one_row(&rig, "u1").await;
    let (_, second) = one_row(&rig, "u2").await;
    let raw = rig.raw(&home).unwrap();
    for secret in ["at-1", "rt-for-u1", "idt-for-u1"] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is readable at rest"
        );
    }
    // A sealed value moved to another user's row does not open there.
    rig.set_raw(&second, &raw);
    let moved = rig.caches.load(&second, now()).await;
    assert!(
        matches!(&moved, Err(e @ CacheStoreError::Undecryptable { .. }) if e.is_corrupt()),
        "{moved:?}"
    );
}

async fn corrupt_rows_are_errors_and_are_left_alone(rig: Rig) {
    let (_, home) = one_row(&rig, "u1").await;
    let mut raw = rig.raw(&home).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0x55;
    rig.set_raw(&home, &raw);
    let loaded = rig.caches.load(&home, now()).await;
    assert!(
        matches!(&loaded, Err(e) if e.is_corrupt() && !e.is_key_problem()),
        "{loaded:?}"
    );
    assert_eq!(rig.raw(&home).unwrap(), raw, "the row was changed");
    let version = rig.caches.version_and_epoch(&home, now()).await.unwrap();
    assert_eq!(version.map(|(v, _)| v), Some(1));
    // A write goes over it as an empty document at its version and epoch.
    let (row, document) = rig
        .caches
        .load_to_write_over(&home, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.version, 1);
    assert_eq!(row.session_epoch, version.map(|(_, e)| e));
    assert_eq!(document, CacheDocument::default());
    assert_eq!(rig.raw(&home).unwrap(), raw, "reading changes nothing");
}

async fn a_process_without_the_key_is_told_so_and_changes_nothing(rig: Rig) {
    let (_, home) = one_row(&rig, "u1").await;
    let raw = rig.raw(&home).unwrap();
    let other_key = SealKeys::parse(&Secret::new(
        "k2=ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
    ))
    .unwrap();
    let stranger = rig.another(Sealer::new(Some(other_key), false), NINETY_DAYS);
    let loaded = stranger.load(&home, now()).await;
    assert!(
        matches!(&loaded, Err(e) if e.is_key_problem()),
        "{loaded:?}"
    );
    let checked = stranger.check_keys().await;
    assert!(
        matches!(&checked, Err(e) if e.is_key_problem()),
        "{checked:?}"
    );
    let plain = rig
        .another(Sealer::plaintext(), NINETY_DAYS)
        .check_keys()
        .await;
    assert!(matches!(&plain, Err(e) if e.is_key_problem()), "{plain:?}");
    rig.caches.check_keys().await.unwrap();
    assert_eq!(rig.raw(&home).unwrap(), raw);
}

async fn a_sign_out_removes_only_its_own_session_s_row(rig: Rig) {
    let (doc, home) = document("u1", "at-1", now().unix_timestamp());
    let saved = first_save(&rig.caches, &home, doc.clone()).await.unwrap();
    let term = Duration::from_secs(30);
    rig.caches.take_lease(&home, 1, "a#1", term).await.unwrap();
    // A session from an earlier sign-in changes nothing.
    let stale = saved.session_epoch.wrapping_add(1);
    assert!(rig
        .caches
        .remove_session(&home, stale, signed_out(&home), now())
        .await
        .unwrap()
        .is_none());
    assert!(rig.caches.load(&home, now()).await.unwrap().is_some());
    let removed = rig
        .caches
        .remove_session(&home, saved.session_epoch, signed_out(&home), now())
        .await
        .unwrap();
    assert_eq!(removed, Some(Some(doc)));
    assert!(rig.caches.load(&home, now()).await.unwrap().is_none());
    assert_eq!(rig.caches.lease(&home, now()).await.unwrap(), None);
    let activity = activities::get(&mut rig.db.conn(), &home).unwrap().unwrap();
    assert!(activity.signed_out_at.is_some());
    // Signing in again starts a new row with a new epoch.
    let (doc, _) = document("u1", "at-2", now().unix_timestamp());
    let again = first_save(&rig.caches, &home, doc).await.unwrap();
    assert_eq!(again.version, 1);
    assert_ne!(again.session_epoch, saved.session_epoch);
    if let Some(redis) = &rig.redis {
        // Nothing but the cache row is left under the prefix.
        assert_eq!(redis.user_keys(), [redis.cache_key(&home)]);
    }
}

async fn cache_and_activity_are_saved_together(rig: Rig) {
    let (doc, home) = one_row(&rig, "u1").await;
    let before = activities::get(&mut rig.db.conn(), &home).unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let doc2 = with_token(&doc, &home, "Mail.Read", "at-2");
    let mut upn = record(&home);
    upn.user_principal_name = Some("renamed@contoso.com".into());
    rig.caches
        .save_with(&home, doc2, Some(at(1)), None, recorded(upn), now())
        .await
        .unwrap();
    let after = activities::get(&mut rig.db.conn(), &home).unwrap().unwrap();
    assert_eq!(
        after.user_principal_name.as_deref(),
        Some("renamed@contoso.com")
    );
    assert!(after.last_activity() > before.last_activity());
    // A refresh by the worker is not the user's activity.
    let doc3 = with_token(&doc, &home, "Files.Read", "at-3");
    rig.caches
        .save_refreshed(&home, doc3, at(2), None, now())
        .await
        .unwrap();
    let untouched = activities::get(&mut rig.db.conn(), &home).unwrap().unwrap();
    assert_eq!(untouched.last_activity(), after.last_activity());
}

async fn eight_stores_update_a_thousand_accounts_and_lose_no_write(rig: Rig) {
    const ACCOUNTS: usize = 1000;
    const WRITERS: usize = 8;
    let homes: Arc<Vec<String>> = Arc::new(
        join_all((0..ACCOUNTS).map(|i| {
            let caches = rig.caches.clone();
            async move {
                let (doc, home) = document(&format!("acct{i:04}"), "at-0", now().unix_timestamp());
                first_save(&caches, &home, doc).await.unwrap();
                home
            }
        }))
        .await,
    );
    // Each writer adds its own access token to every account: a load, a change and a
    // compare-and-swap, again on a conflict. A lost update would lose a writer's token.
    let writers = (0..WRITERS).map(|writer| {
        let (store, homes) = (rig.another(sealer(), NINETY_DAYS), homes.clone());
        tokio::spawn(async move {
            let mut conflicts = 0;
            // All in the same order, so writers meet on the same rows all the time.
            for home in homes.iter() {
                loop {
                    let loaded = store.load(home, now()).await.unwrap().unwrap();
                    let scope = format!("Writer{writer}.Read");
                    let doc = with_token(&loaded.document, home, &scope, &format!("at-{writer}"));
                    match store
                        .save_refreshed(home, doc, at(loaded.version), None, now())
                        .await
                    {
                        Ok(_) => break,
                        Err(CacheStoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("writer {writer}: {e}"),
                    }
                }
            }
            conflicts
        })
    });
    let conflicts: usize = join_all(writers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    for home in homes.iter() {
        let loaded = rig.caches.load(home, now()).await.unwrap().unwrap();
        assert_eq!(loaded.version, 1 + WRITERS as i64, "{home}");
        for writer in 0..WRITERS {
            let scope = format!("Writer{writer}.Read");
            assert!(
                loaded
                    .document
                    .find_access_token(&ctx(), home, &[scope.as_str()], now().unix_timestamp(), 0)
                    .is_some(),
                "{home} lost writer {writer}'s write"
            );
        }
    }
    eprintln!("{WRITERS} writers x {ACCOUNTS} accounts: {conflicts} conflicts retried");
}

/// The database write that goes with a cache write failing: in SQL one transaction, so neither
/// is written; in Redis the cache was written first and stays, to expire unused (the activity
/// row never points at nothing), and the caller is told.
async fn a_failed_companion_write_undoes_the_sql_cache_write_and_leaves_redis_s_to_expire(
    rig: Rig,
) {
    let (doc, home) = document("u1", "at-1", now().unix_timestamp());
    let failing: Companion = Arc::new(|_| Err(DbError::Unavailable("injected".into())));
    let saved = rig
        .caches
        .save_with(&home, doc, None, None, failing, now())
        .await;
    assert!(
        matches!(&saved, Err(CacheStoreError::Db(DbError::Unavailable(why))) if why == "injected"),
        "{saved:?}"
    );
    assert!(activities::get(&mut rig.db.conn(), &home)
        .unwrap()
        .is_none());
    let cached = rig.caches.load(&home, now()).await.unwrap();
    match &rig.redis {
        None => assert!(cached.is_none(), "the cache write was rolled back"),
        Some(_) => {
            let left = cached.unwrap().expires_at - now();
            assert!(left <= time::Duration::days(90), "it expires: {left}");
        }
    }
}

/// A row deleted at sign-out and made again by a new sign-in starts at version 1 again: a
/// refresh that read the old row (same version number, the old session epoch) must not write
/// over the new sign-in's tokens.
async fn a_write_over_an_earlier_sign_in_s_row_is_a_conflict(rig: Rig) {
    let (doc, home) = document("u1", "at-1", now().unix_timestamp());
    let first = first_save(&rig.caches, &home, doc.clone()).await.unwrap();
    let read_before_sign_out = Expected {
        version: first.version,
        session_epoch: Some(first.session_epoch),
    };
    rig.caches
        .remove_session(&home, first.session_epoch, signed_out(&home), now())
        .await
        .unwrap()
        .unwrap();
    let (new_doc, _) = document("u1", "at-new-sign-in", now().unix_timestamp());
    let second = rig
        .caches
        .save_with(
            &home,
            new_doc.clone(),
            None,
            None,
            with_activity(&home),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(
        second.version, first.version,
        "the same version number again"
    );
    let stale = with_token(&doc, &home, "Mail.Read", "at-stale");
    let written = rig
        .caches
        .save_refreshed(&home, stale.clone(), read_before_sign_out, None, now())
        .await;
    assert!(
        matches!(
            written,
            Err(CacheStoreError::Conflict {
                current: Some(1),
                ..
            })
        ),
        "{written:?}"
    );
    let with_activity_too = rig
        .caches
        .save_with(
            &home,
            stale,
            Some(read_before_sign_out),
            None,
            with_activity(&home),
            now(),
        )
        .await;
    assert!(
        matches!(with_activity_too, Err(CacheStoreError::Conflict { .. })),
        "{with_activity_too:?}"
    );
    assert_eq!(
        rig.caches
            .load(&home, now())
            .await
            .unwrap()
            .unwrap()
            .document,
        new_doc
    );
    // Over the new sign-in's row, the same write goes through.
    let current = Expected {
        version: second.version,
        session_epoch: Some(second.session_epoch),
    };
    let refreshed = with_token(&new_doc, &home, "Mail.Read", "at-2");
    assert_eq!(
        rig.caches
            .save_refreshed(&home, refreshed, current, None, now())
            .await
            .unwrap(),
        2
    );
}
