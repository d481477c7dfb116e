//! Where the token caches live: the SQL database (the default) or Redis (`cache.url`). One
//! enum, one contract: the acquisition, sign-in, sign-out, readiness and worker code call these
//! methods and never ask which store it is. Account activity is always in SQL; with the SQL
//! store a cache write and its activity are one transaction, with Redis the cache is written
//! first (a crash between the two leaves a cache row that expires, never an activity row that
//! points at nothing).

use super::document::CacheDocument;
use super::redis::RedisCacheStore;
use super::store::{CacheStoreError, LeaseAttempt, LoadedCache, Saved, TokenCacheStore};
use crate::activity::store::{self as activity_store, ActivityRecord};
use crate::db::{Database, DbError};
use diesel::Connection;
use std::time::Duration;
use time::OffsetDateTime;

/// What [`CacheBackend::read`] found.
#[derive(Debug)]
pub enum Read {
    /// The row is still at the version the caller knows.
    Unchanged {
        version: i64,
        session_epoch: i64,
    },
    Loaded(LoadedCache),
}

/// The token-cache store this process uses. Cheap to clone.
#[derive(Debug, Clone)]
pub enum CacheBackend {
    /// Rows in the `token_cache` table of `db`.
    Sql {
        db: Database,
        store: TokenCacheStore,
    },
    /// Keys in Redis; activities in `db`.
    Redis {
        db: Database,
        store: RedisCacheStore,
    },
}

impl CacheBackend {
    pub fn sql(db: Database, store: TokenCacheStore) -> Self {
        Self::Sql { db, store }
    }

    /// The store's name for people: "database" or "Redis at redis://host:6379/0".
    pub fn describe(&self) -> String {
        match self {
            Self::Sql { .. } => "the database".into(),
            Self::Redis { store, .. } => format!("Redis at {}", store.url()),
        }
    }

    pub fn is_redis(&self) -> bool {
        matches!(self, Self::Redis { .. })
    }

    /// The user's row, or only its version and epoch when it is still at `known` (the check a
    /// page makes when it holds the document already).
    pub async fn read(
        &self,
        id: &str,
        known: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<Option<Read>, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let (store, key) = (store.clone(), id.to_owned());
                db.run(move |conn| {
                    if let Some(known) = known {
                        match store.version_and_epoch(conn, &key, now)? {
                            None => return Ok(None),
                            Some((version, session_epoch)) if version == known => {
                                return Ok(Some(Read::Unchanged {
                                    version,
                                    session_epoch,
                                }))
                            }
                            Some(_) => {}
                        }
                    }
                    Ok(store.load(conn, &key, now)?.map(Read::Loaded))
                })
                .await
            }
            Self::Redis { store, .. } => store.read(id, known, now).await,
        }
    }

    pub async fn load(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<LoadedCache>, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let (store, key) = (store.clone(), id.to_owned());
                db.run(move |conn| store.load(conn, &key, now)).await
            }
            Self::Redis { store, .. } => store.load(id, now).await,
        }
    }

    pub async fn current_version(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let (store, key) = (store.clone(), id.to_owned());
                db.run(move |conn| store.current_version(conn, &key, now))
                    .await
            }
            Self::Redis { store, .. } => store.current_version(id).await,
        }
    }

    /// Saves refreshed tokens over `version`, ending `ending_lease`'s lease in the same write.
    pub async fn save_refreshed(
        &self,
        id: &str,
        document: CacheDocument,
        version: i64,
        ending_lease: Option<String>,
        now: OffsetDateTime,
    ) -> Result<i64, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let (store, key) = (store.clone(), id.to_owned());
                db.run(move |conn| {
                    store.save_refreshed(
                        conn,
                        &key,
                        &document,
                        version,
                        ending_lease.as_deref(),
                        now,
                    )
                })
                .await
            }
            Self::Redis { store, .. } => Ok(store
                .save(id, &document, Some(version), ending_lease.as_deref())
                .await?
                .version),
        }
    }

    /// Saves a user's cache and records their activity: one transaction in SQL; with Redis the
    /// cache first, then the activity row. Returns the new version and the row's session epoch
    /// (the one a new session gets).
    pub async fn save_with_activity(
        &self,
        document: CacheDocument,
        expected: Option<i64>,
        ending_lease: Option<String>,
        activity: ActivityRecord,
        now: OffsetDateTime,
    ) -> Result<Saved, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let store = store.clone();
                db.run(move |conn| {
                    conn.transaction(|conn| {
                        let version = store.save_with_activity(
                            conn,
                            &document,
                            expected,
                            ending_lease.as_deref(),
                            &activity.as_upsert(),
                            now,
                        )?;
                        // Read in the same transaction: the epoch the row holds now.
                        let session_epoch = store
                            .version_and_epoch(conn, &activity.account_cache_key, now)?
                            .map_or(0, |(_, epoch)| epoch);
                        Ok(Saved {
                            version,
                            session_epoch,
                        })
                    })
                })
                .await
            }
            Self::Redis { db, store } => {
                let id = &activity.account_cache_key;
                let saved = store
                    .save(id, &document, expected, ending_lease.as_deref())
                    .await?;
                db.run(move |conn| {
                    activity_store::upsert(conn, &activity.as_upsert(), now).map_err(DbError::from)
                })
                .await?;
                Ok(saved)
            }
        }
    }

    /// Takes the refresh lease on `version` of the row (see `TokenCacheStore::take_lease`).
    pub async fn take_lease(
        &self,
        id: &str,
        version: i64,
        owner: &str,
        lease_for: Duration,
    ) -> Result<LeaseAttempt, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let (store, key, owner) = (store.clone(), id.to_owned(), owner.to_owned());
                db.run(move |conn| store.take_lease(conn, &key, version, &owner, lease_for))
                    .await
            }
            Self::Redis { store, .. } => store.take_lease(id, version, owner, lease_for).await,
        }
    }

    pub async fn confirm_lease(
        &self,
        id: &str,
        owner: &str,
        lease_for: Duration,
    ) -> Result<bool, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let (store, key, owner) = (store.clone(), id.to_owned(), owner.to_owned());
                db.run(move |conn| store.confirm_lease(conn, &key, &owner, lease_for))
                    .await
            }
            Self::Redis { store, .. } => store.confirm_lease(id, owner, lease_for).await,
        }
    }

    pub async fn release_lease(&self, id: &str, owner: &str) -> Result<bool, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let (store, key, owner) = (store.clone(), id.to_owned(), owner.to_owned());
                db.run(move |conn| store.release_lease(conn, &key, &owner))
                    .await
            }
            Self::Redis { store, .. } => store.release_lease(id, owner).await,
        }
    }

    pub async fn version_and_lease(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(i64, bool)>, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let (store, key) = (store.clone(), id.to_owned());
                db.run(move |conn| store.version_and_lease(conn, &key, now))
                    .await
            }
            Self::Redis { store, .. } => store.version_and_lease(id).await,
        }
    }

    /// Who holds the row's lease and until when (tests and diagnostics).
    pub async fn lease(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(String, OffsetDateTime)>, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let (store, key) = (store.clone(), id.to_owned());
                db.run(move |conn| store.lease(conn, &key)).await
            }
            Self::Redis { store, .. } => store.lease(id, now).await,
        }
    }

    /// Sign-out: deletes the row when its session epoch is `session_epoch` and marks the
    /// activity signed out. `None`: the row was not that session's (nothing changed);
    /// otherwise the document it held, when this process could open it (for revocation).
    pub async fn remove_session(
        &self,
        id: &str,
        session_epoch: i64,
        now: OffsetDateTime,
    ) -> Result<Option<Option<CacheDocument>>, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let (store, key) = (store.clone(), id.to_owned());
                db.run(move |conn| {
                    conn.transaction(|conn| {
                        match store.version_and_epoch(conn, &key, now)? {
                            Some((_, epoch)) if epoch == session_epoch => {}
                            _ => return Ok(None),
                        }
                        // A row this process cannot open is still deleted.
                        let document = store.load(conn, &key, now).ok().flatten();
                        store.delete(conn, &key)?;
                        activity_store::mark_signed_out(conn, &key, now)?;
                        Ok(Some(document.map(|loaded| loaded.document)))
                    })
                })
                .await
            }
            Self::Redis { db, store } => {
                let Some(document) = store.delete_session(id, session_epoch).await? else {
                    return Ok(None);
                };
                let key = id.to_owned();
                let marked = db
                    .run(move |conn| {
                        activity_store::mark_signed_out(conn, &key, now).map_err(DbError::from)
                    })
                    .await;
                if let Err(e) = marked {
                    // The tokens are gone: that is the sign-out. The mark only keeps the
                    // worker from reporting the account; keep trying it in the background.
                    tracing::warn!(account = %id, error = %e, "signed out, but the activity row could not be marked yet; retrying");
                    mark_signed_out_later(db.clone(), id.to_owned(), now);
                }
                Ok(Some(document))
            }
        }
    }

    /// Opens one stored row to check that this process has the keys rows are sealed with.
    pub async fn check_keys(&self) -> Result<(), CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let store = store.clone();
                db.run(move |conn| store.check_keys(conn)).await
            }
            Self::Redis { store, .. } => store.check_keys().await,
        }
    }

    /// Redis answers (always true for the SQL store: the database probe covers it).
    pub async fn ping(&self) -> Result<(), CacheStoreError> {
        match self {
            Self::Sql { .. } => Ok(()),
            Self::Redis { store, .. } => store.ping().await,
        }
    }

    /// At start: Redis answers (an error with the reason otherwise), and a warning is logged
    /// when it may evict keys under memory pressure. Nothing to check for the SQL store.
    pub async fn check_at_start(&self) -> Result<(), CacheStoreError> {
        let Self::Redis { store, .. } = self else {
            return Ok(());
        };
        store.ping().await?;
        match store.eviction_policy().await.as_deref() {
            Some("noeviction") | None => {}
            Some(policy) => tracing::warn!(
                store = %self.describe(),
                "Redis evicts keys when it runs out of memory (maxmemory-policy {policy}): a \
                 user's tokens or a refresh lease can vanish; set maxmemory-policy noeviction"
            ),
        }
        tracing::info!("token caches: {}", self.describe());
        Ok(())
    }

    /// Deletes expired rows, `batch` at a time; Redis expires its keys itself (0).
    pub async fn sweep_expired(
        &self,
        now: OffsetDateTime,
        batch: u32,
    ) -> Result<usize, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let store = store.clone();
                db.run(move |conn| store.sweep_expired(conn, now, batch))
                    .await
            }
            Self::Redis { .. } => Ok(0),
        }
    }
}

/// Keeps marking a signed-out account's activity row while the database does not answer: 1 s
/// doubling to a minute, for an hour.
fn mark_signed_out_later(db: Database, id: String, now: OffsetDateTime) {
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_secs(1);
        while started.elapsed() < Duration::from_secs(3600) {
            tokio::time::sleep(pause).await;
            let key = id.clone();
            let marked = db
                .run(move |conn| {
                    activity_store::mark_signed_out(conn, &key, now).map_err(DbError::from)
                })
                .await;
            if marked.is_ok() {
                tracing::info!(account = %id, "signed-out account's activity marked");
                return;
            }
            pause = (pause * 2).min(Duration::from_secs(60));
        }
        tracing::error!(account = %id, "gave up marking a signed-out account's activity row");
    });
}
