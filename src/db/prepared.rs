//! Statements kept prepared.
//!
//! Diesel keeps no `UPDATE` and no statement containing an SQL fragment (`dsl::sql`) in a
//! connection's prepared-statement cache, because in general their text can vary without bound
//! (optional `SET` columns, SQL built at run time). SQLite then parses and plans such a
//! statement again on every execution, and PostgreSQL and MySQL do the same on the server. The
//! hot statements of a refresh (the lease, the compare-and-swap save) and of the worker (the
//! claim, the outcome) are all updates whose text our code fixes, so they are built here:
//! [`update`] is Diesel's `UPDATE` without the "do not cache" mark, and [`DbClock`] the
//! database's clock as an expression that needs no SQL fragment. The connection caches them by
//! their SQL text, like any other statement.

use diesel::backend::Backend;
use diesel::expression::{
    is_aggregate, AppearsOnTable, Expression, SelectableExpression, ValidGrouping,
};
use diesel::query_builder::{AsChangeset, AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BoolOrNullableBool, Nullable, Timestamp};
use diesel::{QueryResult, RunQueryDsl, Table};

/// `UPDATE table SET changes WHERE filter`, which the connection keeps prepared. Only for
/// statements whose text takes a bounded number of forms: `changes` fixed by the code (no
/// `Option` deciding which columns are set), no `IN` list in `filter`.
pub fn update<T, W, V>(table: T, filter: W, changes: V) -> Update<T::FromClause, W, V::Changeset>
where
    T: Table,
    W: Expression + AppearsOnTable<T>,
    W::SqlType: BoolOrNullableBool,
    V: AsChangeset<Target = T>,
{
    Update {
        table: table.from_clause(),
        filter,
        changes: changes.as_changeset(),
    }
}

/// See [`update`].
#[derive(Debug, Clone)]
pub struct Update<F, W, C> {
    table: F,
    filter: W,
    changes: C,
}

impl<F, W, C, DB> QueryFragment<DB> for Update<F, W, C>
where
    DB: Backend,
    F: QueryFragment<DB>,
    W: QueryFragment<DB>,
    C: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE ");
        self.table.walk_ast(out.reborrow())?;
        out.push_sql(" SET ");
        self.changes.walk_ast(out.reborrow())?;
        out.push_sql(" WHERE ");
        self.filter.walk_ast(out.reborrow())
    }
}

/// No static id: the cache key is the SQL text (and the bind types), as for any statement
/// whose shape is not known from its type alone.
impl<F, W, C> QueryId for Update<F, W, C> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<F, W, C, Conn> RunQueryDsl<Conn> for Update<F, W, C> {}

/// The database's clock now plus a fixed offset, as a `TIMESTAMP` expression: each backend's
/// spelling of "now, in UTC", chosen when the statement is built. Its text depends only on the
/// backend and the offset, so statements using it stay prepared.
#[derive(Debug, Clone)]
pub struct DbClock {
    sql: String,
}

impl DbClock {
    pub fn new(backend: super::Backend, offset: std::time::Duration) -> Self {
        let micros = offset.as_micros();
        let sql = match backend {
            super::Backend::Sqlite => format!(
                "strftime('%Y-%m-%d %H:%M:%f', 'now', '+{}.{:06} seconds')",
                micros / 1_000_000,
                micros % 1_000_000
            ),
            super::Backend::Postgres => format!(
                "(CAST(clock_timestamp() AT TIME ZONE 'UTC' AS TIMESTAMP) + INTERVAL '{micros} microseconds')"
            ),
            super::Backend::Mysql => {
                format!("TIMESTAMPADD(MICROSECOND, {micros}, UTC_TIMESTAMP(6))")
            }
        };
        Self { sql }
    }
}

impl Expression for DbClock {
    type SqlType = Nullable<Timestamp>;
}

impl<DB: Backend> QueryFragment<DB> for DbClock {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(&self.sql);
        Ok(())
    }
}

impl QueryId for DbClock {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<GB> ValidGrouping<GB> for DbClock {
    type IsAggregate = is_aggregate::Never;
}

impl<QS> AppearsOnTable<QS> for DbClock {}

impl<QS> SelectableExpression<QS> for DbClock {}
