//! Where the token caches live: the SQL database (the default) or Redis (`cache.url`). One
//! enum, one contract: the acquisition, sign-in, sign-out, readiness and worker code call these
//! methods and never ask which store it is. A write or deletion can carry a [`Companion`], a
//! write to the SQL database that goes with it (identity passes the user's activity row; this
//! layer knows nothing of activities): in the same transaction when the caches are in SQL, right
//! after the cache write when they are in Redis (a crash between the two leaves a cache that
//! expires, never an activity row that points at nothing).

use super::document::CacheDocument;
use super::redis::RedisCacheStore;
use super::seal::Sealer;
use super::store::{CacheStoreError, LeaseAttempt, LoadedCache, Saved, TokenCacheStore};
use crate::db::{Database, DbConnection, DbError};
use diesel::Connection;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// A write to the SQL database that goes with a cache write or deletion; it may run again (a
/// deferred retry), so it is `Fn`.
pub type Companion = Arc<dyn Fn(&mut DbConnection) -> Result<(), DbError> + Send + Sync>;

/// The row a compare-and-swap write goes over: its version, and the session epoch of the
/// sign-in it belongs to when known (a row deleted at sign-out and made again starts at version
/// 1 again; only the epoch tells the two apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub version: i64,
    pub session_epoch: Option<i64>,
}

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

/// Runs `f` with the SQL store, a pooled connection (on a blocking thread) and the row's id.
async fn on_sql<T, F>(
    db: &Database,
    store: &TokenCacheStore,
    id: &str,
    f: F,
) -> Result<T, CacheStoreError>
where
    T: Send + 'static,
    F: FnOnce(&TokenCacheStore, &mut DbConnection, &str) -> Result<T, CacheStoreError>
        + Send
        + 'static,
{
    let (store, id) = (store.clone(), id.to_owned());
    db.run(move |conn| f(&store, conn, &id)).await
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

    pub fn sealer(&self) -> &Sealer {
        match self {
            Self::Sql { store, .. } => store.sealer(),
            Self::Redis { store, .. } => store.sealer(),
        }
    }

    /// Compares this process's cache keys with the check values the store holds for their ids
    /// (see `cache::key_check`): `Err` with [`CacheStoreError::is_key_problem`] naming a key
    /// that differs. Until a key has been compared, nothing is sealed with it and no row that
    /// fails to open under it is taken for corrupt.
    pub async fn verify_keys(&self, now: OffsetDateTime) -> Result<(), CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                on_sql(db, store, "", move |s, c, _| s.verify_keys(c, now)).await
            }
            Self::Redis { store, .. } => store.verify_keys().await,
        }
    }

    /// Keys not compared yet (the store did not answer at start) are compared before a row is
    /// read or written; a store that fails here fails the operation that follows anyway. A key
    /// known to differ stays refused until compared again (`/readyz` does).
    async fn keys_ready(&self, now: OffsetDateTime) {
        if self.sealer().keys_unchecked() {
            if let Err(e) = self.verify_keys(now).await {
                tracing::debug!(error = %e, "cache keys not compared with the store");
            }
        }
    }

    /// The user's row, or only its version and epoch when it is still at `known` (the check a
    /// page makes when it holds the document already).
    pub async fn read(
        &self,
        id: &str,
        known: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<Option<Read>, CacheStoreError> {
        self.keys_ready(now).await;
        match self {
            Self::Sql { db, store } => {
                on_sql(db, store, id, move |store, conn, id| {
                    if let Some(known) = known {
                        match store.version_and_epoch(conn, id, now)? {
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
                    Ok(store.load(conn, id, now)?.map(Read::Loaded))
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
        self.keys_ready(now).await;
        match self {
            Self::Sql { db, store } => {
                on_sql(db, store, id, move |s, c, id| s.load(c, id, now)).await
            }
            Self::Redis { store, .. } => store.load(id, now).await,
        }
    }

    /// The row a write goes over, with its document: a corrupt one (it fails to open with a
    /// configured key, or to parse) counts as empty at its version and epoch, so the write
    /// replaces it; a row this process has no key for is an error and is never written over.
    pub async fn load_to_write_over(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(Expected, CacheDocument)>, CacheStoreError> {
        let row = |version, epoch| Expected {
            version,
            session_epoch: Some(epoch),
        };
        match self.load(id, now).await {
            Ok(loaded) => Ok(loaded.map(|l| (row(l.version, l.session_epoch), l.document))),
            Err(e) if e.is_corrupt() => {
                tracing::warn!(error = %e, "writing over a corrupt token cache");
                let current = self.version_and_epoch(id, now).await?;
                Ok(current.map(|(version, epoch)| (row(version, epoch), CacheDocument::default())))
            }
            Err(e) => Err(e),
        }
    }

    /// The version and session epoch of a live row, without reading its value.
    pub async fn version_and_epoch(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(i64, i64)>, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                on_sql(db, store, id, move |s, c, id| {
                    s.version_and_epoch(c, id, now)
                })
                .await
            }
            Self::Redis { store, .. } => store.version_and_epoch(id).await,
        }
    }

    /// Saves refreshed tokens over `expected`, ending `ending_lease`'s lease in the same write.
    pub async fn save_refreshed(
        &self,
        id: &str,
        document: CacheDocument,
        expected: Expected,
        ending_lease: Option<String>,
        now: OffsetDateTime,
    ) -> Result<i64, CacheStoreError> {
        self.keys_ready(now).await;
        match self {
            Self::Sql { db, store } => noted_sql(
                db,
                on_sql(db, store, id, move |store, conn, id| {
                    store.save_refreshed(
                        conn,
                        id,
                        &document,
                        expected.version,
                        expected.session_epoch,
                        ending_lease.as_deref(),
                        now,
                    )
                })
                .await,
            ),
            Self::Redis { store, .. } => Ok(noted_redis(
                store,
                store
                    .save(id, &document, Some(expected), ending_lease.as_deref())
                    .await,
            )?
            .version),
        }
    }

    /// Saves a user's cache over `expected` (None: the row must be absent), ending
    /// `ending_lease`'s lease in the same write, with `companion` (see [`Companion`]). Returns
    /// the new version and the row's session epoch (the one a new session gets).
    pub async fn save_with(
        &self,
        id: &str,
        document: CacheDocument,
        expected: Option<Expected>,
        ending_lease: Option<String>,
        companion: Companion,
        now: OffsetDateTime,
    ) -> Result<Saved, CacheStoreError> {
        self.keys_ready(now).await;
        match self {
            Self::Sql { db, store } => {
                let saved = on_sql(db, store, id, move |store, conn, id| {
                    conn.transaction(|conn| {
                        let ending = ending_lease.as_deref();
                        let version = match expected {
                            Some(Expected {
                                version,
                                session_epoch,
                            }) => store.save_refreshed(
                                conn,
                                id,
                                &document,
                                version,
                                session_epoch,
                                ending,
                                now,
                            )?,
                            None => store.save(conn, id, &document, None, now)?,
                        };
                        companion(conn)?;
                        // A write over a known epoch kept it; otherwise read it in the same
                        // transaction: the epoch the row holds now.
                        let session_epoch = match expected.and_then(|e| e.session_epoch) {
                            Some(epoch) => epoch,
                            None => store
                                .version_and_epoch(conn, id, now)?
                                .map_or(0, |(_, epoch)| epoch),
                        };
                        Ok(Saved {
                            version,
                            session_epoch,
                        })
                    })
                })
                .await;
                noted_sql(db, saved)
            }
            Self::Redis { db, store } => {
                let saved = noted_redis(
                    store,
                    store
                        .save(id, &document, expected, ending_lease.as_deref())
                        .await,
                )?;
                let companion = db.run(move |conn| companion(conn)).await;
                db.note_write(&companion);
                companion?;
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
                let owner = owner.to_owned();
                on_sql(db, store, id, move |s, c, id| {
                    s.take_lease(c, id, version, &owner, lease_for)
                })
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
                let owner = owner.to_owned();
                on_sql(db, store, id, move |s, c, id| {
                    s.confirm_lease(c, id, &owner, lease_for)
                })
                .await
            }
            Self::Redis { store, .. } => store.confirm_lease(id, owner, lease_for).await,
        }
    }

    pub async fn release_lease(&self, id: &str, owner: &str) -> Result<bool, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let owner = owner.to_owned();
                on_sql(db, store, id, move |s, c, id| {
                    s.release_lease(c, id, &owner)
                })
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
                on_sql(db, store, id, move |s, c, id| {
                    s.version_and_lease(c, id, now)
                })
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
            Self::Sql { db, store } => on_sql(db, store, id, |s, c, id| s.lease(c, id)).await,
            Self::Redis { store, .. } => store.lease(id, now).await,
        }
    }

    /// Sign-out: deletes the row when its session epoch is `session_epoch`, with `companion`
    /// (in Redis, retried in the background while the database does not answer: the tokens are
    /// gone, which is the sign-out). `None`: the row was not that session's (nothing changed);
    /// otherwise the document it held, when this process could open it (for revocation).
    pub async fn remove_session(
        &self,
        id: &str,
        session_epoch: i64,
        companion: Companion,
        now: OffsetDateTime,
    ) -> Result<Option<Option<CacheDocument>>, CacheStoreError> {
        match self {
            Self::Sql { db, store } => {
                let removed = on_sql(db, store, id, move |store, conn, id| {
                    conn.transaction(|conn| {
                        match store.version_and_epoch(conn, id, now)? {
                            Some((_, epoch)) if epoch == session_epoch => {}
                            _ => return Ok(None),
                        }
                        // A row this process cannot open is still deleted.
                        let document = store.load(conn, id, now).ok().flatten();
                        store.delete(conn, id)?;
                        companion(conn)?;
                        Ok(Some(document.map(|loaded| loaded.document)))
                    })
                })
                .await;
                noted_sql(db, removed)
            }
            Self::Redis { db, store } => {
                let deleted = noted_redis(store, store.delete_session(id, session_epoch).await);
                let Some(document) = deleted? else {
                    return Ok(None);
                };
                let again = companion.clone();
                if let Err(e) = db.run(move |conn| again(conn)).await {
                    tracing::warn!(account = %id, error = %e, "signed out, but the database write that goes with it failed; retrying");
                    retry_later(db.clone(), id.to_owned(), companion);
                }
                Ok(Some(document))
            }
        }
    }

    /// Opens one stored row to check that this process has the keys rows are sealed with.
    pub async fn check_keys(&self) -> Result<(), CacheStoreError> {
        match self {
            Self::Sql { db, store } => on_sql(db, store, "", |s, c, _| s.check_keys(c)).await,
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
                on_sql(db, store, "", move |s, c, _| s.sweep_expired(c, now, batch)).await
            }
            Self::Redis { .. } => Ok(0),
        }
    }
}

/// Notes a real SQL write's outcome for `/readyz` (see `db::health`): a conflict or a pool
/// that timed out says nothing about whether the database takes writes.
fn noted_sql<T>(db: &Database, result: Result<T, CacheStoreError>) -> Result<T, CacheStoreError> {
    match &result {
        Ok(_) => db.writes().succeeded(),
        Err(CacheStoreError::Db(DbError::Query(e))) => db.writes().failed(e.to_string()),
        Err(_) => {}
    }
    result
}

/// The same for a write to Redis.
fn noted_redis<T>(
    store: &RedisCacheStore,
    result: Result<T, CacheStoreError>,
) -> Result<T, CacheStoreError> {
    match &result {
        Ok(_) => store.writes().succeeded(),
        Err(CacheStoreError::Redis { reason, .. }) => store.writes().failed(reason.clone()),
        Err(_) => {}
    }
    result
}

/// Keeps trying a companion write the database did not answer: 1 s doubling to a minute, for an
/// hour.
fn retry_later(db: Database, id: String, companion: Companion) {
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_secs(1);
        while started.elapsed() < Duration::from_secs(3600) {
            tokio::time::sleep(pause).await;
            let again = companion.clone();
            if db.run(move |conn| again(conn)).await.is_ok() {
                tracing::info!(account = %id, "the deferred database write went through");
                return;
            }
            pause = (pause * 2).min(Duration::from_secs(60));
        }
        tracing::error!(account = %id, "gave up the database write that goes with a sign-out");
    });
}
