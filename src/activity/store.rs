//! The `account_activities` table. The web app upserts a row whenever it writes a user's cache;
//! workers claim due rows under a lease and record what happened. Nothing here changes
//! `last_activity` except the web app's upsert: that is the user's activity, not ours.

use crate::clock::{from_db, to_db};
use crate::db::prepared::update;
use crate::db::schema::account_activities::{self as aa, dsl};
use crate::db::DbConnection;
use crate::text::{bounded, REASON};
use diesel::prelude::*;
use diesel::QueryResult;
use time::{OffsetDateTime, PrimitiveDateTime};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>);

/// What the web app knows about a user when it writes their cache.
#[derive(Debug, Clone, Copy)]
pub struct ActivityUpsert<'a> {
    pub account_cache_key: &'a str,
    pub account_identifier: &'a str,
    pub object_id: Option<&'a str>,
    pub tenant_id: Option<&'a str>,
    pub user_principal_name: Option<&'a str>,
    /// The ID token's `sub` (how a Back-Channel Logout token names the user).
    pub subject: Option<&'a str>,
    /// Why tokens cannot be acquired silently for this account although it just signed in
    /// (the provider issued no refresh token): the row is marked, and the next worker pass
    /// reports it once.
    pub problem: Option<&'a str>,
}

/// [`ActivityUpsert`] with its own strings, to carry across an `.await`.
#[derive(Debug, Clone, Default)]
pub struct ActivityRecord {
    pub account_cache_key: String,
    pub account_identifier: String,
    pub object_id: Option<String>,
    pub tenant_id: Option<String>,
    pub user_principal_name: Option<String>,
    pub subject: Option<String>,
    pub problem: Option<String>,
}

impl ActivityRecord {
    pub fn as_upsert(&self) -> ActivityUpsert<'_> {
        ActivityUpsert {
            account_cache_key: &self.account_cache_key,
            account_identifier: &self.account_identifier,
            object_id: self.object_id.as_deref(),
            tenant_id: self.tenant_id.as_deref(),
            user_principal_name: self.user_principal_name.as_deref(),
            subject: self.subject.as_deref(),
            problem: self.problem.as_deref(),
        }
    }
}

/// One row, as read.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Activity {
    pub account_cache_key: String,
    pub account_identifier: String,
    pub account_object_id: Option<String>,
    pub account_tenant_id: Option<String>,
    pub user_principal_name: Option<String>,
    pub last_activity: PrimitiveDateTime,
    pub failed_to_acquire_token: bool,
    pub last_error: Option<String>,
    pub consecutive_failures: i32,
    pub last_success_at: Option<PrimitiveDateTime>,
    pub next_attempt_at: Option<PrimitiveDateTime>,
    pub signed_out_at: Option<PrimitiveDateTime>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<PrimitiveDateTime>,
    pub last_attempt_at: Option<PrimitiveDateTime>,
    /// The ID token's `sub` of the last sign-in (None from before it was kept).
    pub subject: Option<String>,
    /// Who ended the sign-in `signed_out_at` records ([`SignedOutBy`]).
    pub signed_out_by: Option<String>,
}

/// Who ended a user's sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedOutBy {
    /// `POST /signout` in the web app.
    App,
    /// The provider: a Back- or Front-Channel Logout.
    Provider,
}

impl SignedOutBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SignedOutBy::App => "app",
            SignedOutBy::Provider => "provider",
        }
    }
}

impl Activity {
    /// Whether the provider ended the sign-in (rather than the web app's sign-out).
    pub fn signed_out_at_the_provider(&self) -> bool {
        self.signed_out_by.as_deref() == Some(SignedOutBy::Provider.as_str())
    }
}

impl Activity {
    pub fn last_activity(&self) -> OffsetDateTime {
        from_db(self.last_activity)
    }
}

/// What a worker learned when it acted for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Tokens were acquired and the API answered.
    Success,
    /// The user must sign in again; the worker stops trying until they do.
    InteractionRequired { reason: String },
    /// Try again at `next_attempt_at` (provider or network trouble; never the user's fault).
    Transient {
        error: String,
        next_attempt_at: OffsetDateTime,
    },
    /// The tokens are fine but the API refused the call: recorded, the account is not marked.
    ApiFailed { error: String },
    /// The job (an `--exec` command) failed: recorded, tried again at `next_attempt_at`.
    JobFailed {
        error: String,
        next_attempt_at: OffsetDateTime,
    },
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = aa)]
#[diesel(treat_none_as_null = true)]
struct UpsertRow<'a> {
    account_identifier: &'a str,
    last_activity: PrimitiveDateTime,
    failed_to_acquire_token: bool,
    last_error: Option<&'a str>,
    consecutive_failures: i32,
    next_attempt_at: Option<PrimitiveDateTime>,
    signed_out_at: Option<PrimitiveDateTime>,
    signed_out_by: Option<&'a str>,
    last_attempt_at: Option<PrimitiveDateTime>,
}

/// Who the account is. A field the writer does not know (`None`) keeps what the row holds
/// (a refresh answer without an ID token does not forget the tenant).
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = aa)]
struct IdentityRow<'a> {
    account_object_id: Option<&'a str>,
    account_tenant_id: Option<&'a str>,
    user_principal_name: Option<&'a str>,
    subject: Option<&'a str>,
}

/// Inserts or refreshes the user's row in one statement (a true upsert on every backend):
/// `last_activity` becomes `now`, any sign-out mark and earlier worker outcome are cleared, and
/// the account is marked failed only when the writer names a `problem`.
pub fn upsert(
    conn: &mut DbConnection,
    a: &ActivityUpsert<'_>,
    now: OffsetDateTime,
) -> QueryResult<()> {
    let row = UpsertRow {
        account_identifier: a.account_identifier,
        last_activity: to_db(now),
        failed_to_acquire_token: a.problem.is_some(),
        last_error: a.problem,
        consecutive_failures: 0,
        next_attempt_at: None,
        signed_out_at: None,
        signed_out_by: None,
        last_attempt_at: None,
    };
    let identity = IdentityRow {
        account_object_id: a.object_id,
        account_tenant_id: a.tenant_id,
        user_principal_name: a.user_principal_name,
        subject: a.subject,
    };
    let insert = diesel::insert_into(aa::table).values((
        dsl::account_cache_key.eq(a.account_cache_key),
        &row,
        &identity,
    ));
    match conn {
        DbConnection::Sqlite(c) => insert
            .on_conflict(dsl::account_cache_key)
            .do_update()
            .set((&row, &identity))
            .execute(c),
        DbConnection::Postgres(c) => insert
            .on_conflict(dsl::account_cache_key)
            .do_update()
            .set((&row, &identity))
            .execute(c),
        DbConnection::Mysql(c) => insert
            .on_conflict(diesel::dsl::DuplicatedKeys)
            .do_update()
            .set((&row, &identity))
            .execute(c),
    }?;
    Ok(())
}

pub fn get(conn: &mut DbConnection, key: &str) -> QueryResult<Option<Activity>> {
    aa::table
        .filter(dsl::account_cache_key.eq(key))
        .select(aa::all_columns)
        .get_result(conn)
        .optional()
}

/// The rows whose last sign-in's ID token had this `sub`.
pub fn find_by_subject(conn: &mut DbConnection, subject: &str) -> QueryResult<Vec<Activity>> {
    aa::table
        .filter(dsl::subject.eq(subject))
        .select(aa::all_columns)
        .order(dsl::account_cache_key)
        .load(conn)
}

/// Rows for a user principal name, compared without case.
pub fn find_by_upn(conn: &mut DbConnection, upn: &str) -> QueryResult<Vec<Activity>> {
    aa::table
        .filter(lower(dsl::user_principal_name).eq(lower(Some(upn))))
        .select(aa::all_columns)
        .order(dsl::account_cache_key)
        .load(conn)
}

/// The accounts `user` names: the one whose home account id it is, else those whose user
/// principal name it is (without case); when none, up to five names that come close.
pub fn lookup(conn: &mut DbConnection, user: &str) -> QueryResult<(Vec<Activity>, Vec<String>)> {
    let found = match get(conn, user)? {
        Some(activity) => vec![activity],
        None => find_by_upn(conn, user)?,
    };
    let close = if found.is_empty() {
        similar(conn, user, 5)?
    } else {
        Vec::new()
    };
    Ok((found, close))
}

/// Up to `limit` user principal names (or, without one, account keys) that contain `text`,
/// compared without case: suggestions for a name that matched nothing.
pub fn similar(conn: &mut DbConnection, text: &str, limit: i64) -> QueryResult<Vec<String>> {
    let needle: String = text
        .chars()
        .filter(|c| !matches!(c, '%' | '_' | '\\'))
        .flat_map(char::to_lowercase)
        .collect();
    if needle.is_empty() {
        return Ok(Vec::new());
    }
    let pattern = format!("%{needle}%");
    let rows: Vec<(String, Option<String>)> = aa::table
        .filter(
            lower(dsl::user_principal_name)
                .like(Some(pattern.clone()))
                .or(dsl::account_cache_key.like(pattern)),
        )
        .select((dsl::account_cache_key, dsl::user_principal_name))
        .order(dsl::account_cache_key)
        .limit(limit)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(key, upn)| upn.unwrap_or(key))
        .collect())
}

/// Which accounts are due: idle since `cutoff` or longer, not acted for by a worker since
/// `cutoff` either, nor at or after `acted_before` (the earliest start of the passes running,
/// see `activity::passes`: workers sharing a pass never do an account twice), not marked
/// "interaction required" (unless `include_failed`), backoff elapsed at `now`. A signed-out
/// account, and one marked at sign-in (no refresh token), is due until a worker has reported
/// it once, so it shows in one report.
#[derive(Debug, Clone, Copy)]
pub struct DueFilter {
    pub cutoff: OffsetDateTime,
    pub now: OffsetDateTime,
    pub include_failed: bool,
    pub acted_before: OffsetDateTime,
}

impl DueFilter {
    /// Idle since `cutoff`, not acted for since `cutoff` (`acted_before` is `now`).
    pub fn idle_since(cutoff: OffsetDateTime, now: OffsetDateTime, include_failed: bool) -> Self {
        Self {
            cutoff,
            now,
            include_failed,
            acted_before: now,
        }
    }
}

// A macro, not a function: the query type depends on the backend it is loaded on, and the
// locking clause cannot be added to a boxed query.
macro_rules! due_keys {
    ($filter:expr, $after:expr, $limit:expr) => {{
        let now = to_db($filter.now);
        aa::table
            .select(dsl::account_cache_key)
            .filter(dsl::last_activity.le(to_db($filter.cutoff)))
            .filter(
                dsl::last_attempt_at.is_null().or(dsl::last_attempt_at
                    .le(to_db($filter.cutoff))
                    .and(dsl::last_attempt_at.lt(to_db($filter.acted_before)))),
            )
            .filter(
                dsl::failed_to_acquire_token
                    .eq(false)
                    .or(dsl::failed_to_acquire_token.eq($filter.include_failed))
                    .or(dsl::last_attempt_at.is_null()),
            )
            .filter(
                dsl::next_attempt_at
                    .is_null()
                    .or(dsl::next_attempt_at.le(now)),
            )
            // Keys are never empty, so "after the empty key" is the first page.
            .filter(dsl::account_cache_key.gt($after.unwrap_or("")))
            .order(dsl::account_cache_key.asc())
            .limit($limit)
    }};
    ($filter:expr, $after:expr, $limit:expr, unleased) => {{
        let now = to_db($filter.now);
        due_keys!($filter, $after, $limit)
            .filter(dsl::lease_until.is_null().or(dsl::lease_until.le(now)))
    }};
}

/// One page of due accounts after the key `after`, oldest key first (keyset paging: memory
/// and cost per page do not grow with the table). Reads only; see [`claim_due`] to work them.
pub fn due_page(
    conn: &mut DbConnection,
    filter: DueFilter,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Activity>> {
    let keys: Vec<String> = due_keys!(filter, after, limit).load(conn)?;
    load_keys(conn, &keys)
}

fn load_keys(conn: &mut DbConnection, keys: &[String]) -> QueryResult<Vec<Activity>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    aa::table
        .filter(dsl::account_cache_key.eq_any(keys))
        .select(aa::all_columns)
        .order(dsl::account_cache_key.asc())
        .load(conn)
}

/// Claims up to `limit` due accounts after `after` for `owner` until `lease_until`, and returns
/// them. Each row is claimed by one caller only, however many workers run at once: PostgreSQL
/// and MySQL lock the rows they pick and skip rows others hold (`FOR UPDATE SKIP LOCKED`);
/// SQLite takes the database's write lock for the whole claim.
pub fn claim_due(
    conn: &mut DbConnection,
    filter: DueFilter,
    after: Option<&str>,
    limit: i64,
    owner: &str,
    lease_until: OffsetDateTime,
) -> QueryResult<Vec<Activity>> {
    conn.transaction(|conn| {
        let keys: Vec<String> = match conn {
            DbConnection::Postgres(c) => due_keys!(filter, after, limit, unleased)
                .for_update()
                .skip_locked()
                .load(c)?,
            DbConnection::Mysql(c) => due_keys!(filter, after, limit, unleased)
                .for_update()
                .skip_locked()
                .load(c)?,
            DbConnection::Sqlite(c) => {
                // A write first, so this transaction holds SQLite's write lock before it reads:
                // another claimer waits (busy_timeout) instead of reading the same rows.
                diesel::sql_query(
                    "UPDATE account_activities SET lease_owner = lease_owner WHERE 1 = 0",
                )
                .execute(c)?;
                due_keys!(filter, after, limit, unleased).load(c)?
            }
        };
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(aa::table.filter(dsl::account_cache_key.eq_any(&keys)))
            .set((
                dsl::lease_owner.eq(owner),
                dsl::lease_until.eq(to_db(lease_until)),
            ))
            .execute(conn)?;
        load_keys(conn, &keys)
    })
}

/// How many accounts other workers' live claims hold at `now`, and until when at the latest.
pub fn held_by_others(
    conn: &mut DbConnection,
    owner: &str,
    now: OffsetDateTime,
) -> QueryResult<(i64, Option<OffsetDateTime>)> {
    let (count, until): (i64, Option<PrimitiveDateTime>) = aa::table
        .filter(dsl::lease_until.gt(to_db(now)))
        .filter(dsl::lease_owner.ne(owner))
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::max(dsl::lease_until),
        ))
        .get_result(conn)?;
    Ok((count, until.map(from_db)))
}

/// Claims one account by key for `owner` until `lease_until`, whatever its due state, unless
/// another worker's claim on it is live at `now`. Returns it when claimed.
pub fn claim_key(
    conn: &mut DbConnection,
    key: &str,
    owner: &str,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
) -> QueryResult<Option<Activity>> {
    let claimed = diesel::update(
        aa::table.filter(dsl::account_cache_key.eq(key)).filter(
            dsl::lease_until
                .is_null()
                .or(dsl::lease_until.le(to_db(now)))
                .or(dsl::lease_owner.eq(owner)),
        ),
    )
    .set((
        dsl::lease_owner.eq(owner),
        dsl::lease_until.eq(to_db(lease_until)),
    ))
    .execute(conn)?;
    if claimed == 0 {
        return Ok(None);
    }
    get(conn, key)
}

/// Records what happened when `owner` worked an account, and releases its lease. Returns false
/// (and changes nothing) when the row is gone or `owner` no longer holds it.
pub fn record_outcome(
    conn: &mut DbConnection,
    key: &str,
    owner: &str,
    outcome: &Outcome,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    let target = dsl::account_cache_key
        .eq(key)
        .and(dsl::lease_owner.eq(owner));
    let release = (
        dsl::lease_owner.eq(None::<String>),
        dsl::lease_until.eq(None::<PrimitiveDateTime>),
        dsl::last_attempt_at.eq(to_db(now)),
    );
    let changed = match outcome {
        Outcome::Success => update(
            aa::table,
            target,
            (
                release,
                dsl::last_success_at.eq(to_db(now)),
                dsl::failed_to_acquire_token.eq(false),
                dsl::last_error.eq(None::<String>),
                dsl::consecutive_failures.eq(0),
                dsl::next_attempt_at.eq(None::<PrimitiveDateTime>),
            ),
        )
        .execute(conn)?,
        Outcome::InteractionRequired { reason } => update(
            aa::table,
            target,
            (
                release,
                dsl::failed_to_acquire_token.eq(true),
                dsl::last_error.eq(bounded(reason, REASON).as_ref()),
                dsl::consecutive_failures.eq(dsl::consecutive_failures + 1),
                dsl::next_attempt_at.eq(None::<PrimitiveDateTime>),
            ),
        )
        .execute(conn)?,
        Outcome::Transient {
            error,
            next_attempt_at,
        }
        | Outcome::JobFailed {
            error,
            next_attempt_at,
        } => update(
            aa::table,
            target,
            (
                release,
                dsl::last_error.eq(bounded(error, REASON).as_ref()),
                dsl::consecutive_failures.eq(dsl::consecutive_failures + 1),
                dsl::next_attempt_at.eq(to_db(*next_attempt_at)),
            ),
        )
        .execute(conn)?,
        Outcome::ApiFailed { error } => update(
            aa::table,
            target,
            (
                release,
                dsl::last_error.eq(bounded(error, REASON).as_ref()),
                dsl::consecutive_failures.eq(dsl::consecutive_failures + 1),
            ),
        )
        .execute(conn)?,
    };
    Ok(changed == 1)
}

/// Gives back a claim without recording anything (a worker shutting down mid-page).
pub fn release(conn: &mut DbConnection, key: &str, owner: &str) -> QueryResult<bool> {
    let changed = diesel::update(
        aa::table
            .filter(dsl::account_cache_key.eq(key))
            .filter(dsl::lease_owner.eq(owner)),
    )
    .set((
        dsl::lease_owner.eq(None::<String>),
        dsl::lease_until.eq(None::<PrimitiveDateTime>),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Marks the account signed out (by `by`) so workers skip it until the user signs in again.
pub fn mark_signed_out(
    conn: &mut DbConnection,
    key: &str,
    by: SignedOutBy,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(aa::table.filter(dsl::account_cache_key.eq(key)))
        .set((
            dsl::signed_out_at.eq(to_db(now)),
            dsl::signed_out_by.eq(by.as_str()),
            dsl::lease_owner.eq(None::<String>),
            dsl::lease_until.eq(None::<PrimitiveDateTime>),
        ))
        .execute(conn)?;
    Ok(changed == 1)
}
