//! The `token_cache` table: one sealed MSAL-format document per user, written by
//! compare-and-swap on `version`, with a sliding expiry and a per-row refresh lease.

use super::document::{CacheDocument, DocumentError};
use super::seal::{SealError, Sealer};
use crate::activity::store::{self as activity_store, ActivityUpsert};
use crate::clock::{from_db, to_db};
use crate::db::schema::token_cache::dsl as tc;
use crate::db::{DbConnection, DbError};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

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
}

impl From<DieselError> for CacheStoreError {
    fn from(e: DieselError) -> Self {
        CacheStoreError::Db(DbError::from(e))
    }
}

impl CacheStoreError {
    /// A row that exists but cannot be used: callers treat the user as signed out and report it.
    pub fn is_unreadable(&self) -> bool {
        matches!(self, Self::Undecryptable { .. } | Self::Corrupt { .. })
    }
}

/// A document as loaded, with the version a later save must name.
#[derive(Debug, Clone)]
pub struct LoadedCache {
    pub document: CacheDocument,
    pub version: i64,
    pub expires_at: OffsetDateTime,
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
        let row: Option<(Vec<u8>, i64, PrimitiveDateTime)> = tc::token_cache
            .filter(tc::id.eq(id))
            .filter(tc::expires_at.gt(to_db(now)))
            .select((tc::value, tc::version, tc::expires_at))
            .first(conn)
            .optional()?;
        let Some((value, version, expires_at)) = row else {
            return Ok(None);
        };
        let plain =
            self.sealer
                .open(id, &value)
                .map_err(|source| CacheStoreError::Undecryptable {
                    id: id.to_owned(),
                    source,
                })?;
        let document = CacheDocument::parse(&plain).map_err(|source| CacheStoreError::Corrupt {
            id: id.to_owned(),
            source,
        })?;
        let mut expires_at = from_db(expires_at);
        let slid = now.saturating_add(self.sliding);
        if slid - expires_at > self.sliding / 100 {
            let new_expiry = self.expiry(now);
            diesel::update(tc::token_cache.filter(tc::id.eq(id)))
                .set(tc::expires_at.eq(new_expiry))
                .execute(conn)?;
            expires_at = from_db(new_expiry);
        }
        Ok(Some(LoadedCache {
            document,
            version,
            expires_at,
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
            .first(conn)
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
        let sealed = self
            .sealer
            .seal(id, &document.to_json())
            .map_err(|source| CacheStoreError::Seal {
                id: id.to_owned(),
                source,
            })?;
        let (now_db, expires) = (to_db(now), self.expiry(now));
        if let Some(version) = expected {
            let written = diesel::update(
                tc::token_cache
                    .filter(tc::id.eq(id))
                    .filter(tc::version.eq(version)),
            )
            .set((
                tc::value.eq(&sealed),
                tc::version.eq(version + 1),
                tc::expires_at.eq(expires),
                tc::updated_at.eq(now_db),
            ))
            .execute(conn)?;
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

    /// Saves a user's cache and records their activity in one transaction: both or neither.
    pub fn save_with_activity(
        &self,
        conn: &mut DbConnection,
        document: &CacheDocument,
        expected: Option<i64>,
        activity: &ActivityUpsert<'_>,
        now: OffsetDateTime,
    ) -> Result<i64, CacheStoreError> {
        conn.transaction(|c| {
            let version = self.save(c, activity.account_cache_key, document, expected, now)?;
            activity_store::upsert(c, activity, now)?;
            Ok(version)
        })
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

    /// Takes the row's refresh lease for `owner` until `until`, if it is free, expired or
    /// already `owner`'s. Returns whether `owner` now holds it.
    pub fn acquire_lease(
        &self,
        conn: &mut DbConnection,
        id: &str,
        owner: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, CacheStoreError> {
        let taken = diesel::update(
            tc::token_cache.filter(tc::id.eq(id)).filter(
                tc::lease_owner
                    .is_null()
                    .or(tc::lease_until.le(to_db(now)))
                    .or(tc::lease_owner.eq(owner)),
            ),
        )
        .set((tc::lease_owner.eq(owner), tc::lease_until.eq(to_db(until))))
        .execute(conn)?;
        Ok(taken == 1)
    }

    /// Gives the lease back, if `owner` still holds it.
    pub fn release_lease(
        &self,
        conn: &mut DbConnection,
        id: &str,
        owner: &str,
    ) -> Result<bool, CacheStoreError> {
        let released = diesel::update(
            tc::token_cache
                .filter(tc::id.eq(id))
                .filter(tc::lease_owner.eq(owner)),
        )
        .set((
            tc::lease_owner.eq(None::<String>),
            tc::lease_until.eq(None::<PrimitiveDateTime>),
        ))
        .execute(conn)?;
        Ok(released == 1)
    }

    /// Who holds the row's lease and until when, if anyone.
    pub fn lease(
        &self,
        conn: &mut DbConnection,
        id: &str,
    ) -> Result<Option<(String, OffsetDateTime)>, CacheStoreError> {
        let row: Option<(Option<String>, Option<PrimitiveDateTime>)> = tc::token_cache
            .filter(tc::id.eq(id))
            .select((tc::lease_owner, tc::lease_until))
            .first(conn)
            .optional()?;
        Ok(match row {
            Some((Some(owner), Some(until))) => Some((owner, from_db(until))),
            _ => None,
        })
    }
}
