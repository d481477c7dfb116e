//! Is this process's key under an id the key that id stands for? Each store keeps one check
//! value per key id (HMAC of a fixed label under the key, see [`super::seal::KeyCheck`]),
//! written by the first process that uses the key. Every process compares its own at start,
//! and its [`Sealer`] records the answer: a key that differs (a typo, a truncated copy, a
//! regenerated secret on one replica) is a configuration error, so a row that does not open
//! under it is never taken for a corrupt row, and nothing is sealed with it.
//!
//! The first process to use a key id in a store that already holds rows sealed under that id
//! (a deployment from before check values) proves its key on a few of them before it writes
//! the check value: a wrong key cannot make itself the reference.

use super::seal::{sealed_prefix, KeyCheck, KeyState, SealError, Sealer};
use super::store::{CacheStoreError, TokenCacheStore};
use crate::clock::to_db;
use crate::db::schema::cache_key_checks::dsl as ck;
use crate::db::schema::token_cache::dsl as tc;
use crate::db::DbConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Binary, Integer};
use time::OffsetDateTime;

diesel::define_sql_function!(fn substr(x: Binary, start: Integer, len: Integer) -> Binary);

/// Rows sealed under a key id that are tried when its check value is first written.
pub(crate) const SAMPLES: usize = 8;

/// Whether rows already sealed under `check.id` (a few, id and value) prove the key: none
/// found proves nothing against it; otherwise one must open.
pub(crate) fn samples_allow(sealer: &Sealer, samples: &[(String, Vec<u8>)]) -> bool {
    samples.is_empty() || samples.iter().any(|(id, v)| sealer.open(id, v).is_ok())
}

/// Records what the store's check value says of `check`'s key.
pub(crate) fn settle(sealer: &Sealer, check: &KeyCheck, stored: Option<&str>) {
    let state = match stored {
        Some(value) if value == check.value => KeyState::Matches,
        _ => KeyState::Differs,
    };
    sealer.record_check(&check.id, state);
}

/// After every key was settled: an error naming the first key that differs.
pub(crate) fn outcome(sealer: &Sealer) -> Result<(), CacheStoreError> {
    match sealer.key_problem() {
        Some(e @ SealError::KeyDiffers(_)) => Err(CacheStoreError::Keys(e)),
        _ => Ok(()),
    }
}

impl TokenCacheStore {
    /// Compares each configured key with the check value the database holds for its id (and
    /// writes it where there is none), recording the answer in the sealer. `Err` with
    /// [`CacheStoreError::is_key_problem`] when a key differs.
    pub fn verify_keys(
        &self,
        conn: &mut DbConnection,
        now: OffsetDateTime,
    ) -> Result<(), CacheStoreError> {
        let sealer = self.sealer();
        for check in sealer.key_checks() {
            let stored = match stored_check(conn, &check.id)? {
                Some(stored) => Some(stored),
                None if !samples_allow(sealer, &sealed_rows(conn, &check.id)?) => None,
                None => {
                    register(conn, &check, now)?;
                    stored_check(conn, &check.id)?
                }
            };
            settle(sealer, &check, stored.as_deref());
        }
        outcome(sealer)
    }

    /// Opens one stored row (any one) to check that this process has the keys the rows are
    /// sealed with: `Err` with [`CacheStoreError::is_key_problem`] when it has not.
    pub fn check_keys(&self, conn: &mut DbConnection) -> Result<(), CacheStoreError> {
        let row: Option<(String, Vec<u8>)> = tc::token_cache
            .select((tc::id, tc::value))
            // Any one row, once at start: the re-prepared LIMIT costs nothing here.
            .limit(1)
            .get_result(conn)
            .optional()?;
        match row {
            Some((id, value)) => match self.sealer().open(&id, &value) {
                Err(source) => Err(CacheStoreError::Undecryptable { id, source }),
                Ok(_) => Ok(()),
            },
            None => Ok(()),
        }
    }
}

fn stored_check(conn: &mut DbConnection, id: &str) -> Result<Option<String>, CacheStoreError> {
    Ok(ck::cache_key_checks
        .filter(ck::key_id.eq(id))
        .select(ck::check_value)
        .get_result(conn)
        .optional()?)
}

/// A few rows sealed under `key_id` (a scan, once per key id and store).
fn sealed_rows(
    conn: &mut DbConnection,
    key_id: &str,
) -> Result<Vec<(String, Vec<u8>)>, CacheStoreError> {
    let Some(prefix) = sealed_prefix(key_id) else {
        return Ok(Vec::new());
    };
    let len = i32::try_from(prefix.len()).unwrap_or(i32::MAX);
    Ok(tc::token_cache
        .filter(substr(tc::value, 1, len).eq(prefix))
        .select((tc::id, tc::value))
        .limit(SAMPLES as i64)
        .load(conn)?)
}

/// Writes `check` unless a value for its id is there already (another process was first).
fn register(
    conn: &mut DbConnection,
    check: &KeyCheck,
    now: OffsetDateTime,
) -> Result<(), CacheStoreError> {
    // In a savepoint: a duplicate key must not abort a surrounding PostgreSQL transaction.
    let inserted = conn.transaction(|c| {
        diesel::insert_into(ck::cache_key_checks)
            .values((
                ck::key_id.eq(&check.id),
                ck::check_value.eq(&check.value),
                ck::created_at.eq(to_db(now)),
            ))
            .execute(c)
    });
    match inserted {
        Ok(_) | Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
