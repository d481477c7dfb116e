//! One connection type over three backends, and the r2d2 manager that picks the backend from
//! the URL scheme (never by trying each: SQLite would accept almost any string as a file name).

use super::url::{Backend, DatabaseUrl};
use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::R2D2Connection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
    Mysql(MysqlConnection),
}

impl DbConnection {
    pub fn backend(&self) -> Backend {
        match self {
            DbConnection::Sqlite(_) => Backend::Sqlite,
            DbConnection::Postgres(_) => Backend::Postgres,
            DbConnection::Mysql(_) => Backend::Mysql,
        }
    }

    /// Opens one connection to `url`, with the per-connection set-up each backend needs.
    /// `busy_timeout` bounds how long a statement waits for a lock another connection holds
    /// (SQLite's busy timeout, PostgreSQL's `lock_timeout`, MySQL's lock wait timeouts), so a
    /// stuck lock becomes an error the caller can retry instead of a request that never ends.
    pub fn open(url: &DatabaseUrl, busy_timeout: Duration) -> Result<Self, ConnectError> {
        let target = url.connection_string();
        let conn = match url.backend() {
            Backend::Sqlite => {
                if let Some(path) = url.sqlite_path() {
                    create_owner_only(&path).map_err(ConnectError::Create)?;
                }
                let mut conn = SqliteConnection::establish(target)?;
                // WAL lets `serve` and `worker` read while the other writes; busy_timeout makes a
                // writer wait for the file lock instead of failing at once.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                    busy_timeout.as_millis()
                ))
                .map_err(ConnectError::Setup)?;
                DbConnection::Sqlite(conn)
            }
            Backend::Postgres => {
                let mut conn = PgConnection::establish(target)?;
                conn.batch_execute(&format!(
                    "SET TIME ZONE 'UTC'; SET lock_timeout = {}",
                    busy_timeout.as_millis().max(1)
                ))
                .map_err(ConnectError::Setup)?;
                DbConnection::Postgres(conn)
            }
            Backend::Mysql => {
                let mut conn = MysqlConnection::establish(target)?;
                // MySQL counts lock waits in whole seconds.
                let seconds = busy_timeout.as_millis().div_ceil(1000).max(1);
                conn.batch_execute(&format!(
                    "SET time_zone = '+00:00'; SET SESSION innodb_lock_wait_timeout = {seconds}; \
                     SET SESSION lock_wait_timeout = {seconds}"
                ))
                .map_err(ConnectError::Setup)?;
                DbConnection::Mysql(conn)
            }
        };
        Ok(conn)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Connection(#[from] diesel::ConnectionError),
    #[error("connection set-up failed: {0}")]
    Setup(diesel::result::Error),
    #[error("connection check failed: {0}")]
    Check(diesel::result::Error),
    #[error("cannot create the database file: {0}")]
    Create(std::io::Error),
}

/// r2d2 manager for [`DbConnection`].
#[derive(Debug)]
pub struct ConnectionManager {
    url: DatabaseUrl,
    busy_timeout: Duration,
    /// Connections being made now, on the pool's own threads (see `Database::settle`).
    connecting: Arc<AtomicUsize>,
}

impl ConnectionManager {
    pub fn new(url: DatabaseUrl, busy_timeout: Duration) -> Self {
        Self {
            url,
            busy_timeout,
            connecting: Arc::default(),
        }
    }

    /// How many connections are being made now.
    pub fn connecting(&self) -> Arc<AtomicUsize> {
        self.connecting.clone()
    }
}

/// Counts a connection being made while it lives.
struct Connecting<'a>(&'a AtomicUsize);

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = ConnectError;

    fn connect(&self) -> Result<DbConnection, ConnectError> {
        self.connecting.fetch_add(1, Ordering::SeqCst);
        let _counted = Connecting(&self.connecting);
        DbConnection::open(&self.url, self.busy_timeout)
    }

    /// Run on every checkout. A server connection is checked with a round trip, so one the
    /// server has dropped (a restart) is replaced instead of failing its caller; an SQLite
    /// connection is a file in this process and cannot be dropped that way, so it is not
    /// checked (the statement was a measurable part of each short query's cost).
    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), ConnectError> {
        match conn {
            DbConnection::Sqlite(_) => Ok(()),
            DbConnection::Postgres(_) | DbConnection::Mysql(_) => {
                conn.batch_execute("SELECT 1").map_err(ConnectError::Check)
            }
        }
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        match conn {
            DbConnection::Sqlite(c) => c.is_broken(),
            DbConnection::Postgres(c) => c.is_broken(),
            DbConnection::Mysql(c) => c.is_broken(),
        }
    }
}

/// Creates a new SQLite file readable by its owner only (0600), whatever the umask: it holds
/// account names and, without cache keys, tokens. SQLite gives the `-wal` and `-shm` files it
/// makes beside it the same mode. An existing file is left as it is (`serve` and `worker` warn
/// when it is readable by others); `:memory:` and URIs are not files.
fn create_owner_only(path: &std::path::Path) -> std::io::Result<()> {
    let name = path.as_os_str();
    if name.is_empty() || name == ":memory:" || path.to_string_lossy().starts_with("file:") {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A missing directory: SQLite says so in its own words.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
