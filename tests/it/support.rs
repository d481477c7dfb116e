//! Test databases: a fresh one per test on each backend, dropped afterwards.
//!
//! SQLite always runs. PostgreSQL and MySQL/MariaDB run when TOKENBRIDGE_TEST_POSTGRES_URL and
//! TOKENBRIDGE_TEST_MYSQL_URL name a server (any database on it; tests create their own). Without
//! them a test is skipped and says so on stderr; with CI=true a missing variable is a failure.
//! Every skip goes through [`skip`], which also records it for `tests/run`'s closing count.

use diesel::connection::SimpleConnection;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use time::macros::datetime;
use time::OffsetDateTime;
use tokenbridge::db::{migrate, Backend, Database, DatabaseUrl, DbConnection};
use tokenbridge::settings::DatabaseSettings;

pub const POSTGRES_VAR: &str = "TOKENBRIDGE_TEST_POSTGRES_URL";
pub const MYSQL_VAR: &str = "TOKENBRIDGE_TEST_MYSQL_URL";

/// A fixed "now" for store tests.
pub const T0: OffsetDateTime = datetime!(2026-11-25 12:00:00 UTC);

pub struct TestDb {
    // Field order matters: the pool closes before the database is dropped.
    pub db: Database,
    /// How to reach this database (for tests that start the binary or a server on it).
    pub settings: DatabaseSettings,
    _guard: Guard,
}

enum Guard {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Server { admin: DatabaseUrl, name: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Server { admin, name } = self {
            if let Ok(mut conn) = DbConnection::open(admin, Duration::from_secs(5)) {
                let sql = match admin.backend() {
                    Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    _ => format!("DROP DATABASE IF EXISTS {name}"),
                };
                let _ = conn.batch_execute(&sql);
            }
        }
    }
}

impl TestDb {
    /// Drops the server database under the app's feet ("the database went away").
    pub fn destroy(&self) {
        if let Guard::Server { admin, name } = &self._guard {
            let mut conn =
                DbConnection::open(admin, Duration::from_secs(5)).expect("admin connection");
            let sql = match admin.backend() {
                Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                _ => format!("DROP DATABASE IF EXISTS {name}"),
            };
            conn.batch_execute(&sql).expect("DROP DATABASE");
        }
    }

    pub fn conn(&self) -> tokenbridge::db::PooledConnection {
        self.db.get().expect("a pooled connection")
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }
}

fn server_url(var: &str) -> Option<DatabaseUrl> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(DatabaseUrl::parse(&url).expect("a valid test URL")),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{var} must be set in CI: server tests may not be skipped there"
            );
            None
        }
    }
}

fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "tb_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

pub fn settings_for(url: DatabaseUrl) -> DatabaseSettings {
    DatabaseSettings {
        url,
        pool_size: 12,
        connect_timeout: Duration::from_secs(20),
        busy_timeout: Duration::from_secs(20),
    }
}

/// A fresh, empty (unmigrated) database, or None when the backend's server is not configured.
pub fn fresh(backend: Backend) -> Option<TestDb> {
    let (url, guard) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let url = DatabaseUrl::parse(&format!(
                "sqlite://{}",
                dir.path().join("test.db").display()
            ))
            .expect("a sqlite URL");
            (url, Guard::Dir(dir))
        }
        Backend::Postgres | Backend::Mysql => {
            let var = if backend == Backend::Postgres {
                POSTGRES_VAR
            } else {
                MYSQL_VAR
            };
            let admin = server_url(var)?;
            assert_eq!(
                admin.backend(),
                backend,
                "{var} names the wrong kind of server"
            );
            let name = unique_name();
            let mut conn = DbConnection::open(&admin, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("cannot reach the {backend} test server ({var}): {e}"));
            conn.batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("CREATE DATABASE");
            let url = admin.with_database(&name).expect("a per-test URL");
            (url, Guard::Server { admin, name })
        }
    };
    let settings = settings_for(url);
    let db = Database::connect(&settings).expect("connect to the test database");
    Some(TestDb {
        db,
        settings,
        _guard: guard,
    })
}

/// Holds a write lock on `token_cache` from another connection for `hold` (released on a
/// thread): writers wait for it and give up after `database.busy_timeout`.
pub fn lock_token_cache(db: &TestDb, hold: Duration) -> std::thread::JoinHandle<()> {
    let mut conn = DbConnection::open(&db.settings.url, Duration::from_secs(5)).unwrap();
    let (lock, unlock) = match db.backend() {
        Backend::Sqlite => ("BEGIN IMMEDIATE", "COMMIT"),
        Backend::Postgres => ("BEGIN; LOCK TABLE token_cache IN EXCLUSIVE MODE", "COMMIT"),
        Backend::Mysql => ("LOCK TABLES token_cache WRITE", "UNLOCK TABLES"),
    };
    conn.batch_execute(lock).unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        conn.batch_execute(unlock).unwrap();
    })
}

/// A fresh database with every migration applied.
pub fn migrated(backend: Backend) -> Option<TestDb> {
    let test_db = fresh(backend)?;
    migrate::run_pending(&mut test_db.conn()).expect("migrations apply");
    Some(test_db)
}

/// Names the file `tests/run` reads to count the skipped tests when the run ends.
pub const SKIP_LOG_VAR: &str = "TOKENBRIDGE_TEST_SKIP_LOG";

/// A test that cannot run on this machine for want of `needs` (what to install or set): says
/// so on stderr, past the harness's output capture, and records it for `tests/run`'s count.
/// In CI nothing may be skipped: this fails the test instead.
pub fn skip(test: &str, needs: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} may not be skipped in CI; it needs {needs}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: needs {needs}");
    if let Some(log) = std::env::var_os(SKIP_LOG_VAR) {
        record_skip(Path::new(&log), test, needs);
    }
}

/// Appends `needs<TAB>test` to `log` in one write (tests skip from many threads at once).
pub fn record_skip(log: &Path, test: &str, needs: &str) {
    let clean = |field: &str| field.replace(['\t', '\n', '\r'], " ");
    let line = format!("{}\t{}\n", clean(needs), clean(test));
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(e) = appended {
        let _ = writeln!(
            std::io::stderr(),
            "cannot record the skip in {}: {e}",
            log.display()
        );
    }
}

/// Skips a test for want of `backend`'s server.
pub fn skipped(test: &str, backend: Backend) {
    let needs = match backend {
        Backend::Postgres => format!("a PostgreSQL server named by {POSTGRES_VAR}"),
        _ => format!("a MariaDB/MySQL server named by {MYSQL_VAR}"),
    };
    skip(&format!("{test} on {backend}"), &needs);
}

/// Runs `body` against a migrated database of `backend`, or reports the skip.
pub fn with_migrated(test: &str, backend: Backend, body: fn(&TestDb)) {
    match migrated(backend) {
        Some(db) => body(&db),
        None => skipped(test, backend),
    }
}

/// Runs `body` against an unmigrated database of `backend`, or reports the skip.
pub fn with_fresh(test: &str, backend: Backend, body: fn(&TestDb)) {
    match fresh(backend) {
        Some(db) => body(&db),
        None => skipped(test, backend),
    }
}

/// Declares one `#[test]` per backend for each named body: `backend_tests!(with_migrated: a, b)`
/// makes `sqlite::a`, `postgres::a`, `mysql::a`, ...
#[macro_export]
macro_rules! backend_tests {
    ($runner:ident: $($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { $crate::support::$runner(concat!(module_path!(), "::", stringify!($name)), tokenbridge::db::Backend::Sqlite, super::$name) } )*
        }
        mod postgres {
            $( #[test] fn $name() { $crate::support::$runner(concat!(module_path!(), "::", stringify!($name)), tokenbridge::db::Backend::Postgres, super::$name) } )*
        }
        mod mysql {
            $( #[test] fn $name() { $crate::support::$runner(concat!(module_path!(), "::", stringify!($name)), tokenbridge::db::Backend::Mysql, super::$name) } )*
        }
    };
}

pub const REDIS_VAR: &str = "TOKENBRIDGE_TEST_REDIS_URL";

/// A key prefix of its own in the test Redis (so tests run in parallel on one database); its
/// keys are deleted when it is dropped.
pub struct RedisPrefix {
    pub url: tokenbridge::cache::redis::RedisUrl,
    pub prefix: String,
}

impl RedisPrefix {
    /// A new prefix on the Redis named by [`REDIS_VAR`], or the skip reported (a failure in CI).
    pub fn new(test: &str) -> Option<Self> {
        let url = match std::env::var(REDIS_VAR) {
            Ok(url) if !url.is_empty() => {
                tokenbridge::cache::redis::RedisUrl::parse(&url).expect("a valid test Redis URL")
            }
            _ => {
                skip(test, &format!("a Redis server named by {REDIS_VAR}"));
                return None;
            }
        };
        Some(Self {
            url,
            prefix: unique_name(),
        })
    }

    /// A plain connection, to look at or tamper with keys directly.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url.expose())
            .and_then(|client| client.get_connection())
            .unwrap_or_else(|e| panic!("cannot reach the test Redis ({REDIS_VAR}): {e}"))
    }

    /// The key a user's cache is stored under.
    pub fn cache_key(&self, id: &str) -> String {
        format!("{}:{{{id}}}:cache", self.prefix)
    }

    /// The check value Redis holds for cache key `key_id`.
    pub fn check_key(&self, key_id: &str) -> String {
        format!("{}:keycheck:{key_id}", self.prefix)
    }

    /// Every key under this prefix but the cache keys' check values: users' rows and leases.
    pub fn user_keys(&self) -> Vec<String> {
        let checks = format!("{}:keycheck:", self.prefix);
        let mut keys = self.keys();
        keys.retain(|k| !k.starts_with(&checks));
        keys
    }

    /// Every key under this prefix.
    pub fn keys(&self) -> Vec<String> {
        let mut conn = self.connection();
        let mut keys = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let (next, mut found): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
                .expect("SCAN");
            keys.append(&mut found);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let keys = self.keys();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut self.connection());
        }
    }
}
