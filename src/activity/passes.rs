//! The `worker_passes` table: the worker passes running now, each with its start.
//!
//! A pass does not do again an account that a worker acted for since the earliest pass that
//! was running when it began (its own start included): workers started together, or a moment
//! apart, share one pass and do each account once, whatever `--older-than` says (`0s`
//! included). Why this holds without a lock: a pass that the new one does not see had not
//! registered yet when the new one looked, and a pass acts for accounts only after it has
//! registered, so all it does is later than the new pass's start. Timestamps are the workers'
//! clocks, as `last_attempt_at` is.
//!
//! A pass renews its row while it claims (`alive_until`); the row of a worker that died is
//! ignored once that has passed, and deleted by the next pass that ends.

use crate::clock::{from_db, to_db};
use crate::db::schema::worker_passes::{self as wp, dsl};
use crate::db::DbConnection;
use diesel::prelude::*;
use diesel::QueryResult;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Registers pass `pass_id`, started at `now` and alive until `alive_until`, and returns the
/// earliest start of the passes running now, its own included: accounts acted for since then
/// are this pass's company's, not its own to do again.
pub fn begin(
    conn: &mut DbConnection,
    pass_id: &str,
    now: OffsetDateTime,
    alive_until: OffsetDateTime,
) -> QueryResult<OffsetDateTime> {
    // No transaction: the argument above needs only that the insert is committed before this
    // pass claims anything, and separate statements take no locks that could deadlock with
    // another pass beginning.
    diesel::insert_into(wp::table)
        .values((
            dsl::pass_id.eq(pass_id),
            dsl::started_at.eq(to_db(now)),
            dsl::alive_until.eq(to_db(alive_until)),
        ))
        .execute(conn)?;
    Ok(earliest_running(conn, now)?.map_or(now, |earliest| earliest.min(now)))
}

/// The earliest start of the passes alive at `now`, if any.
pub fn earliest_running(
    conn: &mut DbConnection,
    now: OffsetDateTime,
) -> QueryResult<Option<OffsetDateTime>> {
    let earliest: Option<PrimitiveDateTime> = wp::table
        .filter(dsl::alive_until.ge(to_db(now)))
        .select(diesel::dsl::min(dsl::started_at))
        .get_result(conn)?;
    Ok(earliest.map(from_db))
}

/// Keeps pass `pass_id` alive until `alive_until`. False when its row is gone.
pub fn renew(
    conn: &mut DbConnection,
    pass_id: &str,
    alive_until: OffsetDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(wp::table.filter(dsl::pass_id.eq(pass_id)))
        .set(dsl::alive_until.eq(to_db(alive_until)))
        .execute(conn)?;
    Ok(changed == 1)
}

/// Ends pass `pass_id`, and deletes the rows of passes whose workers died before `now`.
pub fn end(conn: &mut DbConnection, pass_id: &str, now: OffsetDateTime) -> QueryResult<()> {
    diesel::delete(wp::table.filter(dsl::pass_id.eq(pass_id).or(dsl::alive_until.lt(to_db(now)))))
        .execute(conn)?;
    Ok(())
}
