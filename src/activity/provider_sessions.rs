//! The `provider_sessions` table: which accounts signed in through which provider session.
//!
//! A Back- or Front-Channel Logout may name the provider session that ended (its `sid`) rather
//! than the user; this is how it finds the accounts whose sign-ins began in it. A session is
//! recorded by a key the caller derives from the issuer and the `sid` (a hash: the table holds
//! no value the provider gave), with the sign-in, in the same transaction as its activity, and
//! kept until the app's sessions that began then have ended; the worker sweeps what expired.

use crate::clock::to_db;
use crate::db::schema::provider_sessions::{self as ps, dsl};
use crate::db::DbConnection;
use diesel::prelude::*;
use diesel::QueryResult;
use time::OffsetDateTime;

/// Records that account `account` signed in through provider session `sid_key`, until
/// `expires_at` (a later sign-in through the same session extends it).
pub fn record(
    conn: &mut DbConnection,
    sid_key: &str,
    account: &str,
    expires_at: OffsetDateTime,
) -> QueryResult<()> {
    let until = to_db(expires_at);
    let insert = diesel::insert_into(ps::table).values((
        dsl::sid_key.eq(sid_key),
        dsl::account_cache_key.eq(account),
        dsl::expires_at.eq(until),
    ));
    match conn {
        DbConnection::Sqlite(c) => insert
            .on_conflict((dsl::sid_key, dsl::account_cache_key))
            .do_update()
            .set(dsl::expires_at.eq(until))
            .execute(c),
        DbConnection::Postgres(c) => insert
            .on_conflict((dsl::sid_key, dsl::account_cache_key))
            .do_update()
            .set(dsl::expires_at.eq(until))
            .execute(c),
        DbConnection::Mysql(c) => insert
            .on_conflict(diesel::dsl::DuplicatedKeys)
            .do_update()
            .set(dsl::expires_at.eq(until))
            .execute(c),
    }?;
    Ok(())
}

/// The accounts that signed in through provider session `sid_key` and may still have app
/// sessions from it at `now`.
pub fn accounts(
    conn: &mut DbConnection,
    sid_key: &str,
    now: OffsetDateTime,
) -> QueryResult<Vec<String>> {
    ps::table
        .filter(dsl::sid_key.eq(sid_key))
        .filter(dsl::expires_at.gt(to_db(now)))
        .select(dsl::account_cache_key)
        .order(dsl::account_cache_key)
        .load(conn)
}

/// Forgets provider session `sid_key` for `account`: its sign-ins have been ended.
pub fn forget(conn: &mut DbConnection, sid_key: &str, account: &str) -> QueryResult<()> {
    diesel::delete(
        ps::table
            .filter(dsl::sid_key.eq(sid_key))
            .filter(dsl::account_cache_key.eq(account)),
    )
    .execute(conn)?;
    Ok(())
}

/// Deletes what expired by `now`, `batch` rows at a time so no statement locks much; returns
/// how many.
pub fn sweep(conn: &mut DbConnection, now: OffsetDateTime, batch: u32) -> QueryResult<usize> {
    let now = to_db(now);
    let mut total = 0;
    loop {
        let keys: Vec<String> = ps::table
            .filter(dsl::expires_at.le(now))
            .select(dsl::sid_key)
            .order(dsl::sid_key)
            .limit(i64::from(batch))
            .load(conn)?;
        if keys.is_empty() {
            return Ok(total);
        }
        total += diesel::delete(
            ps::table
                .filter(dsl::sid_key.eq_any(&keys))
                .filter(dsl::expires_at.le(now)),
        )
        .execute(conn)?;
        if keys.len() < batch as usize {
            return Ok(total);
        }
    }
}
