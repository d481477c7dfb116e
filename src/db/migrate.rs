//! Embedded migrations, one directory per backend with the same migration names.

use super::Backend;
use super::{DbConnection, DbError};
use diesel::migration::{Migration, MigrationSource, MigrationVersion};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const MYSQL: EmbeddedMigrations = embed_migrations!("migrations/mysql");

/// What `migrate --status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub applied: Vec<String>,
    pub pending: Vec<String>,
}

fn embedded(backend: Backend) -> EmbeddedMigrations {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
        Backend::Mysql => MYSQL,
    }
}

/// The names of every embedded migration for a backend, oldest first
/// (`2026-11-25-000001_create_token_cache`).
pub fn embedded_names(backend: Backend) -> Vec<String> {
    let source = embedded(backend);
    let mut names: Vec<String> = MigrationSource::<diesel::sqlite::Sqlite>::migrations(&source)
        .map(|all| all.iter().map(|m| m.name().to_string()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The migration name for an applied version, so output names migrations one way.
fn name_of(backend: Backend, version: &MigrationVersion<'_>) -> String {
    let version = version.to_string();
    embedded_names(backend)
        .into_iter()
        .find(|name| name.replace('-', "").starts_with(&format!("{version}_")))
        .unwrap_or(version)
}

fn failed(e: Box<dyn std::error::Error + Send + Sync>) -> DbError {
    DbError::Migration(e.to_string())
}

// Each arm names a different connection type, so the body is repeated by a macro.
macro_rules! with_harness {
    ($conn:expr, |$c:ident, $m:ident| $body:expr) => {
        match $conn {
            DbConnection::Sqlite($c) => {
                let $m = SQLITE;
                $body
            }
            DbConnection::Postgres($c) => {
                let $m = POSTGRES;
                $body
            }
            DbConnection::Mysql($c) => {
                let $m = MYSQL;
                $body
            }
        }
    };
}

/// Applies every pending migration; returns the names applied, oldest first.
pub fn run_pending(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    let backend = conn.backend();
    with_harness!(conn, |c, m| c
        .run_pending_migrations(m)
        .map(|done| done.iter().map(|v| name_of(backend, v)).collect())
        .map_err(failed))
}

/// Lists applied and pending migrations without changing anything.
pub fn status(conn: &mut DbConnection) -> Result<MigrationStatus, DbError> {
    let backend = conn.backend();
    with_harness!(conn, |c, m| {
        let pending: Vec<String> = c
            .pending_migrations(m)
            .map_err(failed)?
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        let mut applied: Vec<String> = c
            .applied_migrations()
            .map_err(failed)?
            .iter()
            .map(|v| name_of(backend, v))
            .collect();
        applied.sort();
        Ok(MigrationStatus { applied, pending })
    })
}

/// Reverts every applied migration (tests, and a clean uninstall).
pub fn revert_all(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    let backend = conn.backend();
    with_harness!(conn, |c, m| c
        .revert_all_migrations(m)
        .map(|done| done.iter().map(|v| name_of(backend, v)).collect())
        .map_err(failed))
}

/// Fails with [`DbError::NotMigrated`] unless every embedded migration is applied.
pub fn ensure_migrated(conn: &mut DbConnection) -> Result<(), DbError> {
    let status = status(conn)?;
    if status.pending.is_empty() {
        Ok(())
    } else {
        Err(DbError::NotMigrated {
            what: format!("{} pending migration(s)", status.pending.len()),
        })
    }
}
