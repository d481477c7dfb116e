//! The refresh lease on a `token_cache` row (`lease_owner`, `lease_until`): who may redeem a
//! user's refresh token now. All its times are the database's clock.

use super::store::{CacheStoreError, TokenCacheStore};
use crate::clock::{from_db, to_db};
use crate::db::prepared::update;
use crate::db::schema::token_cache::dsl as tc;
use crate::db::{DbClock, DbConnection};
use diesel::prelude::*;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Why [`TokenCacheStore::take_lease`] did not take the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAttempt {
    /// The caller holds the lease now, on the version it named.
    Taken,
    /// The row is at another version (or gone): read it again before deciding anything.
    Changed,
    /// Someone else holds a live lease on this version.
    Held,
}

/// The database's clock plus `offset`: lease times are compared with one clock (the
/// database's), never with each host's, so hosts whose clocks disagree still exclude each
/// other.
fn db_clock(conn: &DbConnection, offset: std::time::Duration) -> DbClock {
    DbClock::new(conn.backend(), offset)
}

impl TokenCacheStore {
    /// Takes the row's refresh lease for `owner`, for `lease_for` by the database's clock, if
    /// the row is still at `version` and nobody holds a live lease. The lease is not
    /// re-entrant: `owner` should name one attempt, not a process, so a second attempt in the
    /// same process waits like anyone else. Taking it only on the version read means the
    /// holder's document is current: nobody redeems a refresh token another process has
    /// already rotated.
    pub fn take_lease(
        &self,
        conn: &mut DbConnection,
        id: &str,
        version: i64,
        owner: &str,
        lease_for: std::time::Duration,
    ) -> Result<LeaseAttempt, CacheStoreError> {
        let (now, until) = (
            db_clock(conn, std::time::Duration::ZERO),
            db_clock(conn, lease_for),
        );
        let taken = update(
            tc::token_cache,
            tc::id
                .eq(id)
                .and(tc::version.eq(version))
                .and(tc::lease_owner.is_null().or(tc::lease_until.le(now))),
            (tc::lease_owner.eq(owner), tc::lease_until.eq(until)),
        )
        .execute(conn)?;
        if taken == 1 {
            return Ok(LeaseAttempt::Taken);
        }
        let current: Option<i64> = tc::token_cache
            .filter(tc::id.eq(id))
            .select(tc::version)
            .get_result(conn)
            .optional()?;
        Ok(if current == Some(version) {
            LeaseAttempt::Held
        } else {
            LeaseAttempt::Changed
        })
    }

    /// Renews `owner`'s lease for another `lease_for` if it still holds it and it has not
    /// expired: the check made right before a refresh token is redeemed. False means the lease
    /// was lost (someone else may be refreshing): redeem nothing.
    pub fn confirm_lease(
        &self,
        conn: &mut DbConnection,
        id: &str,
        owner: &str,
        lease_for: std::time::Duration,
    ) -> Result<bool, CacheStoreError> {
        let (now, until) = (
            db_clock(conn, std::time::Duration::ZERO),
            db_clock(conn, lease_for),
        );
        let renewed = update(
            tc::token_cache,
            tc::id
                .eq(id)
                .and(tc::lease_owner.eq(owner))
                .and(tc::lease_until.gt(now)),
            tc::lease_until.eq(until),
        )
        .execute(conn)?;
        Ok(renewed == 1)
    }

    /// The live row's version, and whether anyone holds a live lease on it (database clock):
    /// what a process waiting for another's refresh polls, in one query.
    pub fn version_and_lease(
        &self,
        conn: &mut DbConnection,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(i64, bool)>, CacheStoreError> {
        let db_now = db_clock(conn, std::time::Duration::ZERO);
        let row: Option<(i64, Option<bool>)> = tc::token_cache
            .filter(tc::id.eq(id))
            .filter(tc::expires_at.gt(to_db(now)))
            .select((tc::version, tc::lease_until.gt(db_now)))
            .get_result(conn)
            .optional()?;
        Ok(row.map(|(version, held)| (version, held.unwrap_or(false))))
    }

    /// Gives the lease back, if `owner` still holds it.
    pub fn release_lease(
        &self,
        conn: &mut DbConnection,
        id: &str,
        owner: &str,
    ) -> Result<bool, CacheStoreError> {
        let released = update(
            tc::token_cache,
            tc::id.eq(id).and(tc::lease_owner.eq(owner)),
            (
                tc::lease_owner.eq(None::<String>),
                tc::lease_until.eq(None::<PrimitiveDateTime>),
            ),
        )
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
            .get_result(conn)
            .optional()?;
        Ok(match row {
            Some((Some(owner), Some(until))) => Some((owner, from_db(until))),
            _ => None,
        })
    }
}
