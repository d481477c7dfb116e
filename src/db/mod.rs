//! The database: URL parsing, the multi-backend connection, the pool, schema and migrations.
//! Stores run their queries on blocking threads through [`Database::run`], so no connection is
//! ever held across an `.await`.

mod connection;
pub mod health;
pub mod migrate;
pub mod prepared;
pub mod schema;
mod url;

pub use self::connection::{ConnectError, ConnectionManager, DbConnection};
pub use self::prepared::DbClock;
pub use self::url::{Backend, DatabaseUrl, UrlError};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub type Pool = r2d2::Pool<ConnectionManager>;
pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;

/// How to reach the database and how long to wait for it (`[database]` in the settings).
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub url: DatabaseUrl,
    /// Most connections open at once.
    pub pool_size: u32,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long a statement waits for another connection's lock.
    pub busy_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the database is not set up ({what}): run `tokenbridge migrate`")]
    NotMigrated { what: String },
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database query failed: {0}")]
    Query(diesel::result::Error),
    #[error("database task stopped unexpectedly: {0}")]
    Task(String),
}

impl From<diesel::result::Error> for DbError {
    fn from(e: diesel::result::Error) -> Self {
        if let diesel::result::Error::DatabaseError(_, info) = &e {
            if let Some(table) = missing_table(info.message()) {
                return DbError::NotMigrated {
                    what: format!("table {table} is missing"),
                };
            }
        }
        DbError::Query(e)
    }
}

/// Recognises each backend's "no such table" message.
fn missing_table(message: &str) -> Option<&'static str> {
    let missing = message.contains("no such table")
        || (message.contains("relation") && message.contains("does not exist"))
        || message.contains("doesn't exist");
    if !missing {
        return None;
    }
    ["token_cache", "account_activities"]
        .into_iter()
        .find(|table| message.contains(table))
}

/// A pool of connections to the configured database.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    backend: Backend,
    /// The outcomes of real writes, for `/readyz`.
    writes: health::WriteHealth,
    /// Connections the pool's threads are making now.
    connecting: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens the pool and checks that one connection can be made (so a wrong URL or a server
    /// that is down fails at start, with the reason).
    pub fn connect(settings: &DbOptions) -> Result<Self, DbError> {
        let url = &settings.url;
        if let Some(path) = url.sqlite_path() {
            check_sqlite_directory(&path, url)?;
        }
        // One connection up front tells the real reason (r2d2 would only say "timed out").
        DbConnection::open(url, settings.busy_timeout).map_err(|e| DbError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let manager = ConnectionManager::new(url.clone(), settings.busy_timeout);
        let connecting = manager.connecting();
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size)
            .min_idle(Some(1))
            .connection_timeout(settings.connect_timeout)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)
            .map_err(|e| DbError::Connect {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            pool,
            backend: url.backend(),
            writes: health::WriteHealth::default(),
            connecting,
        })
    }

    /// Waits, at most `within`, until no connection is being made on the pool's threads (the
    /// pool makes them in the background, to keep one idle). A command that exits calls it
    /// last: the C library's exit handlers include OpenSSL's cleanup, which frees what libpq
    /// is using while it negotiates TLS on such a thread (a crash at exit, with PostgreSQL).
    pub fn settle(&self, within: std::time::Duration) {
        // The pool's few threads take queued connections one after another, each the moment
        // the one before ends: quiet for 50 ms on end means none is queued either.
        const QUIET_FOR: std::time::Duration = std::time::Duration::from_millis(50);
        let deadline = std::time::Instant::now() + within;
        let mut quiet_since = std::time::Instant::now();
        while std::time::Instant::now() < deadline {
            if self.connecting.load(Ordering::SeqCst) > 0 {
                quiet_since = std::time::Instant::now();
            } else if quiet_since.elapsed() >= QUIET_FOR {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// [`Database::connect`], on a blocking thread, and checks that the tables are migrated:
    /// how `serve` and `worker` open their database.
    pub async fn open_migrated(settings: DbOptions) -> Result<Self, DbError> {
        // Opening an SQLite path creates the file: an absent one is reported, not made.
        if let Some(path) = settings.url.sqlite_path() {
            if !path.exists() {
                return Err(DbError::NotMigrated {
                    what: format!("no database file at {}", path.display()),
                });
            }
        }
        tokio::task::spawn_blocking(move || {
            let db = Self::connect(&settings)?;
            migrate::ensure_migrated(&mut *db.get()?)?;
            Ok(db)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The outcomes of this process's real writes (shared by clones).
    pub fn writes(&self) -> &health::WriteHealth {
        &self.writes
    }

    /// Records a real write's outcome: a failure that is the database's (not a conflict, not
    /// a connection pool that timed out) keeps `/readyz` failing for a while.
    pub fn note_write<T>(&self, result: &Result<T, DbError>) {
        match result {
            Ok(_) => self.writes.succeeded(),
            Err(DbError::Query(e)) => self.writes.failed(e.to_string()),
            Err(_) => {}
        }
    }

    /// The pool's connections now, for the metrics.
    pub fn pool_state(&self) -> crate::metrics::PoolState {
        let state = self.pool.state();
        crate::metrics::PoolState {
            open: state.connections,
            idle: state.idle_connections,
        }
    }

    /// A pooled connection, for blocking code (CLI commands, tests).
    pub fn get(&self) -> Result<PooledConnection, DbError> {
        self.pool
            .get()
            .map_err(|e| DbError::Unavailable(e.to_string()))
    }

    /// Runs `f` with a pooled connection on a blocking thread.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let waiting = std::time::Instant::now();
            let got = pool.get();
            crate::metrics::metrics().pool_wait(waiting.elapsed());
            let mut conn = got.map_err(|e| DbError::Unavailable(e.to_string()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| E::from(DbError::Task(e.to_string())))?
    }
}

fn check_sqlite_directory(path: &std::path::Path, url: &DatabaseUrl) -> Result<(), DbError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => return Ok(()),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(DbError::Connect {
            url: url.to_string(),
            reason: format!("directory {} does not exist", dir.display()),
        })
    }
}
