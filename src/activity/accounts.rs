//! The operator's queries on `account_activities` (`tokenbridge accounts`): every row, a page
//! at a time in key order, and erasure.

use crate::db::schema::account_activities::{self as aa, dsl};
use crate::db::schema::provider_sessions::dsl as ps;
use crate::db::DbConnection;
use diesel::prelude::*;
use diesel::QueryResult;

use super::store::Activity;

/// Up to `limit` rows after key `after` (from the first without one), in key order: a page
/// of a listing that holds no more than a page in memory, however many accounts there are.
pub fn page_after(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Activity>> {
    // Every key is longer than "": the first page is the one after it.
    aa::table
        .filter(dsl::account_cache_key.gt(after.unwrap_or_default()))
        .select(aa::all_columns)
        .order(dsl::account_cache_key)
        .limit(limit)
        .load(conn)
}

/// Erases what is kept about account `key` beside its cache: its activity row and the
/// provider sessions recorded for it. True when there was an activity row.
pub fn erase(conn: &mut DbConnection, key: &str) -> QueryResult<bool> {
    diesel::delete(ps::provider_sessions.filter(ps::account_cache_key.eq(key))).execute(conn)?;
    Ok(diesel::delete(aa::table.filter(dsl::account_cache_key.eq(key))).execute(conn)? > 0)
}
