//! The `token_cache` table: one sealed MSAL-format document per user, written by
//! compare-and-swap on `version`, with a sliding expiry and a per-row refresh lease.
//!
//! Lookups by primary key end in `get_result`, never `first`: Diesel binds `first`'s `LIMIT 1`
//! as a parameter, and SQLite re-prepares (parses and plans again) a statement with a bound
//! `LIMIT` on every execution, which was most of a cached page's database time.

use super::document::{CacheDocument, DocumentError};
pub use super::lease::LeaseAttempt;
use super::seal::{SealError, Sealer};
use crate::clock::{from_db, to_db};
use crate::db::prepared::update;
use crate::db::schema::token_cache::dsl as tc;
use crate::db::{DbConnection, DbError};
use diesel::dsl::case_when;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

diesel::define_sql_function!(fn coalesce(x: Nullable<BigInt>, y: BigInt) -> BigInt);

#[derive(Debug, thiserror::Error)]
pub enum CacheStoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("token cache {id} was changed by someone else (now at version {current:?})")]
    Conflict { id: String, current: Option<i64> },
    #[error("token cache {id} cannot be opened: {source}")]
    Undecryptable { id: String, source: SealError },
    #[error("token cache {id} is corrupt: {source}")]
    Corrupt { id: String, source: DocumentError },
    #[error("cannot seal token cache {id}: {source}")]
    Seal { id: String, source: SealError },
    /// A configured key is not the one its id stands for in the store (see `key_check`).
    #[error("{0}")]
    Keys(SealError),
    /// Redis (`cache.url`) failed or did not answer; the URL is shown without its password.
    #[error("the token cache store Redis at {url} is unavailable: {reason}")]
    Redis { url: String, reason: String },
}

impl From<DieselError> for CacheStoreError {
    fn from(e: DieselError) -> Self {
        CacheStoreError::Db(DbError::from(e))
    }
}

impl CacheStoreError {
    /// A row this process is not configured to open: sealed with a key it does not have, sealed
    /// while it has no keys, or plain while plain rows are refused. That is a configuration
    /// error, never the user's: the row must be left as it is for a process that can open it.
    /// A key that differs from the one its id stands for in the store, or that has not been
    /// checked yet, is one too: no row is written with it, none taken for corrupt under it.
    pub fn is_key_problem(&self) -> bool {
        self.key_problem().is_some()
    }

    /// The key problem (see [`Self::is_key_problem`]), which names keys and never a user.
    pub fn key_problem(&self) -> Option<&SealError> {
        match self {
            Self::Undecryptable { source, .. } => matches!(
                source,
                SealError::UnknownKey(_)
                    | SealError::NoKeys
                    | SealError::PlaintextRefused
                    | SealError::KeyDiffers(_)
                    | SealError::KeyUnchecked(_)
            )
            .then_some(source),
            Self::Seal { source, .. } => matches!(
                source,
                SealError::KeyDiffers(_) | SealError::KeyUnchecked(_)
            )
            .then_some(source),
            Self::Keys(source) => Some(source),
            _ => None,
        }
    }

    /// A row that is genuinely corrupt: it fails authentication with a configured key, is
    /// truncated, or does not parse. Callers treat the user as signed out and report it.
    pub fn is_corrupt(&self) -> bool {
        match self {
            Self::Undecryptable { .. } => !self.is_key_problem(),
            Self::Corrupt { .. } => true,
            _ => false,
        }
    }
}

/// A document as loaded, with the version a later save must name.
#[derive(Debug, Clone)]
pub struct LoadedCache {
    pub document: CacheDocument,
    pub version: i64,
    pub expires_at: OffsetDateTime,
    /// Which sign-ins the row's sessions belong to (see [`new_session_epoch`]).
    pub session_epoch: i64,
}

/// What a save wrote: the row's new version, and the session epoch it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    pub version: i64,
    pub session_epoch: i64,
}

/// A row's session epoch, chosen at random when the row is created (never 0, the value of rows
/// from before epochs existed) and kept while it lives: sessions carry it, and deleting the
/// row at sign-out ends them all.
pub(crate) fn new_session_epoch() -> i64 {
    loop {
        let epoch = rand::random::<i64>();
        if epoch != 0 {
            return epoch;
        }
    }
}

/// Opens and parses a stored value: the same for every store.
pub(crate) fn open_document(
    sealer: &Sealer,
    id: &str,
    value: &[u8],
) -> Result<CacheDocument, CacheStoreError> {
    let plain = sealer
        .open(id, value)
        .map_err(|source| CacheStoreError::Undecryptable {
            id: id.to_owned(),
            source,
        })?;
    CacheDocument::parse(&plain).map_err(|source| CacheStoreError::Corrupt {
        id: id.to_owned(),
        source,
    })
}

/// Serializes and seals a document for storing, bound to its row's id.
pub(crate) fn seal_document(
    sealer: &Sealer,
    id: &str,
    document: &CacheDocument,
) -> Result<Vec<u8>, CacheStoreError> {
    sealer
        .may_seal()
        .and_then(|()| sealer.seal(id, &document.to_json()))
        .map_err(|source| CacheStoreError::Seal {
            id: id.to_owned(),
            source,
        })
}

/// Reads and writes cache rows. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TokenCacheStore {
    sealer: Sealer,
    sliding: Duration,
}

impl TokenCacheStore {
    pub fn new(sealer: Sealer, sliding_expiration: std::time::Duration) -> Self {
        Self {
            sealer,
            sliding: crate::clock::duration(sliding_expiration),
        }
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    fn expiry(&self, now: OffsetDateTime) -> PrimitiveDateTime {
        to_db(now.saturating_add(self.sliding))
    }

    /// Loads a user's document. Expired rows are absent. Reading slides the expiry (at most
    /// about once per 1% of the window, so reads stay reads). A row that cannot be opened or
    /// parsed is an error and is left as it is.
    pub fn load(
        &self,
        conn: &mut DbConnection,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<LoadedCache>, CacheStoreError> {
        let row: Option<(Vec<u8>, i64, PrimitiveDateTime, i64)> = tc::token_cache
            .filter(tc::id.eq(id))
            .filter(tc::expires_at.gt(to_db(now)))
            .select((tc::value, tc::version, tc::expires_at, tc::session_epoch))
            .get_result(conn)
            .optional()?;
        let Some((value, version, expires_at, session_epoch)) = row else {
            return Ok(None);
        };
        let document = open_document(&self.sealer, id, &value)?;
        let mut expires_at = from_db(expires_at);
        let slid = now.saturating_add(self.sliding);
        if slid - expires_at > self.sliding / 100 {
            let new_expiry = self.expiry(now);
            update(
                tc::token_cache,
                tc::id.eq(id),
                tc::expires_at.eq(new_expiry),
            )
            .execute(conn)?;
            expires_at = from_db(new_expiry);
        }
        Ok(Some(LoadedCache {
            document,
            version,
            expires_at,
            session_epoch,
        }))
    }

    /// The version of a live row, without reading its value (cheap freshness checks).
    pub fn current_version(
        &self,
        conn: &mut DbConnection,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, CacheStoreError> {
        Ok(tc::token_cache
            .filter(tc::id.eq(id))
            .filter(tc::expires_at.gt(to_db(now)))
            .select(tc::version)
            .get_result(conn)
            .optional()?)
    }

    /// The version and session epoch of a live row, without reading its value: the one query a
    /// signed-in page makes when it holds the document already.
    pub fn version_and_epoch(
        &self,
        conn: &mut DbConnection,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(i64, i64)>, CacheStoreError> {
        Ok(tc::token_cache
            .filter(tc::id.eq(id))
            .filter(tc::expires_at.gt(to_db(now)))
            .select((tc::version, tc::session_epoch))
            .get_result(conn)
            .optional()?)
    }

    /// Compare-and-swap write. `expected` is the version loaded (None: the row was absent).
    /// Returns the new version; [`CacheStoreError::Conflict`] when someone wrote meanwhile.
    pub fn save(
        &self,
        conn: &mut DbConnection,
        id: &str,
        document: &CacheDocument,
        expected: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<i64, CacheStoreError> {
        self.write(conn, id, document, expected, None, None, now)
    }

    /// [`Self::save`] over `version` of the row whose sessions have `session_epoch` (when
    /// known: a row deleted at sign-out and made again by a new sign-in starts at version 1
    /// again, and only its epoch tells it from the row the caller read); with `ending_lease`,
    /// the refresh lease that owner holds is released in the same statement (a lease someone
    /// else holds by now is left alone).
    #[allow(clippy::too_many_arguments)]
    pub fn save_refreshed(
        &self,
        conn: &mut DbConnection,
        id: &str,
        document: &CacheDocument,
        version: i64,
        session_epoch: Option<i64>,
        ending_lease: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<i64, CacheStoreError> {
        self.write(
            conn,
            id,
            document,
            Some(version),
            session_epoch,
            ending_lease,
            now,
        )
    }

    /// The write behind [`Self::save`]; `session_epoch` and `ending_lease` only count for a
    /// write over a version (an absent row has neither).
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        conn: &mut DbConnection,
        id: &str,
        document: &CacheDocument,
        expected: Option<i64>,
        session_epoch: Option<i64>,
        ending_lease: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<i64, CacheStoreError> {
        let sealed = seal_document(&self.sealer, id, document)?;
        let (now_db, expires) = (to_db(now), self.expiry(now));
        if let Some(version) = expected {
            // One statement text whether the epoch is known or not (NULL matches any), so it
            // stays prepared.
            let target = tc::id
                .eq(id)
                .and(tc::version.eq(version))
                .and(tc::session_epoch.eq(coalesce(
                    session_epoch.into_sql::<Nullable<BigInt>>(),
                    tc::session_epoch,
                )));
            let values = (
                tc::value.eq(&sealed),
                tc::version.eq(version + 1),
                tc::expires_at.eq(expires),
                tc::updated_at.eq(now_db),
            );
            let written = match ending_lease {
                None => update(tc::token_cache, target, values).execute(conn)?,
                Some(owner) => {
                    let ours = tc::lease_owner.eq(owner);
                    // `lease_until` before `lease_owner`: MySQL assigns left to right, each
                    // assignment seeing the ones before it.
                    let lease = (
                        tc::lease_until.eq(case_when(
                            ours,
                            None::<PrimitiveDateTime>.into_sql::<Nullable<Timestamp>>(),
                        )
                        .otherwise(tc::lease_until)),
                        tc::lease_owner.eq(case_when(
                            ours,
                            None::<String>.into_sql::<Nullable<Text>>(),
                        )
                        .otherwise(tc::lease_owner)),
                    );
                    update(tc::token_cache, target, (values, lease)).execute(conn)?
                }
            };
            return if written == 1 {
                Ok(version + 1)
            } else {
                Err(self.conflict(conn, id, now))
            };
        }
        // A savepoint (or transaction) around the insert, so a duplicate key does not abort a
        // surrounding PostgreSQL transaction.
        let inserted = conn.transaction(|c| {
            diesel::insert_into(tc::token_cache)
                .values((
                    tc::id.eq(id),
                    tc::value.eq(&sealed),
                    tc::version.eq(1_i64),
                    tc::expires_at.eq(expires),
                    tc::updated_at.eq(now_db),
                    tc::session_epoch.eq(new_session_epoch()),
                ))
                .execute(c)
        });
        match inserted {
            Ok(_) => Ok(1),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                // An expired row counts as absent: take it over.
                let taken = diesel::update(
                    tc::token_cache
                        .filter(tc::id.eq(id))
                        .filter(tc::expires_at.le(now_db)),
                )
                .set((
                    tc::value.eq(&sealed),
                    tc::version.eq(tc::version + 1),
                    tc::expires_at.eq(expires),
                    tc::updated_at.eq(now_db),
                    tc::session_epoch.eq(new_session_epoch()),
                ))
                .execute(conn)?;
                match self.current_version(conn, id, now)? {
                    Some(version) if taken == 1 => Ok(version),
                    current => Err(CacheStoreError::Conflict {
                        id: id.to_owned(),
                        current,
                    }),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn conflict(&self, conn: &mut DbConnection, id: &str, now: OffsetDateTime) -> CacheStoreError {
        match self.current_version(conn, id, now) {
            Ok(current) => CacheStoreError::Conflict {
                id: id.to_owned(),
                current,
            },
            Err(e) => e,
        }
    }

    /// Deletes a user's row (sign-out). Returns whether there was one.
    pub fn delete(&self, conn: &mut DbConnection, id: &str) -> Result<bool, CacheStoreError> {
        Ok(diesel::delete(tc::token_cache.filter(tc::id.eq(id))).execute(conn)? > 0)
    }

    /// Deletes expired rows, `batch` at a time so no statement locks much; returns how many.
    pub fn sweep_expired(
        &self,
        conn: &mut DbConnection,
        now: OffsetDateTime,
        batch: u32,
    ) -> Result<usize, CacheStoreError> {
        let now_db = to_db(now);
        let mut total = 0;
        loop {
            let ids: Vec<String> = tc::token_cache
                .filter(tc::expires_at.le(now_db))
                .select(tc::id)
                .order(tc::id)
                .limit(i64::from(batch))
                .load(conn)?;
            if ids.is_empty() {
                return Ok(total);
            }
            total += diesel::delete(
                tc::token_cache
                    .filter(tc::id.eq_any(&ids))
                    .filter(tc::expires_at.le(now_db)),
            )
            .execute(conn)?;
            if ids.len() < batch as usize {
                return Ok(total);
            }
        }
    }
}
