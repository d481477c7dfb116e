//! The token caches' Redis going away under a running app and worker: `/readyz` 503 naming
//! Redis, pages a clear 503, a worker pass that stops with a storage error, nothing lost; when
//! Redis is back, everything works again without a restart. The Redis here is a server of the
//! test's own (so it can be stopped), on a free loopback port.

use super::spawn_app_with;
use crate::support::skip;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokenbridge::cache::redis::RedisUrl;
use tokenbridge::db::Backend;
use tokenbridge::settings::RedisSettings;
use tokenbridge::worker::{PassError, Worker};

/// How long `/readyz` keeps its storage probes' answer (web::health::CACHE_FOR), and a margin.
const READINESS_KEPT: Duration = Duration::from_millis(1100);

/// A `redis-server` on `port`, keeping its snapshot in `dir`.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start(port: u16, dir: &Path) -> Self {
        Self::start_with(port, dir, &[])
    }

    fn start_with(port: u16, dir: &Path, options: &[&str]) -> Self {
        let redis = Self {
            child: Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(dir)
                .args(options)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server starts"),
            port,
        };
        let started = Instant::now();
        loop {
            let ping = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return redis;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Writes its data to disk and is killed: connections are refused from then on.
    fn crash_after_saving(mut self) {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}/0", self.port))
            .and_then(|c| c.get_connection())
            .unwrap();
        let _: String = redis::cmd("SAVE").query(&mut conn).unwrap();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_server_installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The app with its token caches in the Redis on `port` under `prefix`, Redis commands and
/// connections bounded by one second.
async fn app_on_redis(test: &str, port: u16, prefix: &str) -> Option<super::TestApp> {
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}/0")).unwrap();
    spawn_app_with(
        test,
        Backend::Sqlite,
        |_| {},
        |s| {
            s.cache.redis = Some(RedisSettings {
                url,
                key_prefix: prefix.into(),
            });
            s.database.connect_timeout = Duration::from_secs(1);
        },
    )
    .await
}

#[tokio::test]
async fn a_redis_outage_is_reported_loses_nothing_and_ends_without_a_restart() {
    let test = "serve::redis_outage";
    if !redis_server_installed() {
        skip(test, "redis-server (Debian package redis-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redis = OwnRedis::start(port, dir.path());
    let Some(app) = app_on_redis(test, port, "outage").await else {
        return;
    };
    app.sign_in("ada").await;
    assert_eq!(app.home_html().await.0, 200);
    assert_eq!(app.get("/readyz").await.status(), 200);

    // Redis hangs (stopped, connections open): probes and pages answer within their bounds.
    redis.signal("-STOP");
    tokio::time::sleep(READINESS_KEPT).await;
    let started = Instant::now();
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), 503);
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!(body["redis"], "unavailable", "{body}");
    assert_eq!(body["database"], "ok", "{body}");
    let (status, html) = app.home_html().await;
    assert_eq!(status, 503, "{html}");
    assert!(html.contains("token store is unavailable"), "{html}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let stopped = Worker::build(
        &app.settings,
        app.settings.worker.clone(),
        std::sync::Arc::new(app.clock.clone()),
    )
    .await;
    assert!(
        matches!(&stopped, Err(PassError::Storage(reason)) if reason.contains("Redis at redis://127.0.0.1")),
        "{:?}",
        stopped.err()
    );
    redis.signal("-CONT");
    let (status, html) = app.home_html().await;
    assert_eq!(
        status, 200,
        "back without a restart or a new sign-in: {html}"
    );

    // Redis goes away (connections refused), then comes back with its data.
    redis.crash_after_saving();
    let (status, _) = app.home_html().await;
    assert_eq!(status, 503);
    tokio::time::sleep(READINESS_KEPT).await;
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), 503);
    let _redis = OwnRedis::start(port, dir.path());
    let started = Instant::now();
    loop {
        let (status, html) = app.home_html().await;
        if status == 200 {
            assert!(html.contains("Hello, Ada"), "{html}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the app did not reconnect: {status} {html}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(READINESS_KEPT).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(
        app.idp.counters().await["refreshes"],
        0,
        "nothing was redeemed again"
    );
}

/// A Redis that may evict keys under memory pressure would lose tokens and leases: `serve`
/// says so when it starts, and what to set.
#[tokio::test]
async fn serve_warns_about_a_redis_that_evicts_keys() {
    let test = "serve::redis_that_evicts";
    if !redis_server_installed() {
        skip(test, "redis-server (Debian package redis-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let _redis = OwnRedis::start_with(
        redis_port,
        dir.path(),
        &["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],
    );
    let db = crate::support::migrated(Backend::Sqlite).unwrap();
    let idp = crate::dev_idp::spawn_idp().await;
    let base = format!("http://127.0.0.1:{}", free_port());
    let log = tempfile::NamedTempFile::new().unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    let mut child = super::serve_process(&db, &idp, &base, config.path())
        .env(
            "TOKENBRIDGE_CACHE__URL",
            format!("redis://127.0.0.1:{redis_port}/0"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    let started = Instant::now();
    let logged = loop {
        let logged = std::fs::read_to_string(log.path()).unwrap();
        if logged.contains("token caches: Redis at") || started.elapsed() > Duration::from_secs(20)
        {
            break logged;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        logged.contains("maxmemory-policy allkeys-lru")
            && logged.contains("set maxmemory-policy noeviction"),
        "{logged}"
    );
}

/// A Redis that answers `PING` but refuses writes (out of memory under `noeviction`) is
/// `not_writable` on `/readyz`, found by a committed heartbeat, and ready again when it takes
/// writes.
#[tokio::test]
async fn a_redis_that_refuses_writes_is_not_ready() {
    let test = "serve::redis_refuses_writes";
    if !redis_server_installed() {
        skip(test, "redis-server (Debian package redis-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _redis = OwnRedis::start_with(port, dir.path(), &["--maxmemory-policy", "noeviction"]);
    let Some(app) = app_on_redis(test, port, "full").await else {
        return;
    };
    assert_eq!(app.get("/readyz").await.status(), 200);
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
        .and_then(|c| c.get_connection())
        .unwrap();
    let _: String = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query(&mut conn)
        .unwrap();
    tokio::time::sleep(READINESS_KEPT).await;
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), 503);
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!(body["redis"], "not_writable", "{body}");
    let _: String = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query(&mut conn)
        .unwrap();
    tokio::time::sleep(READINESS_KEPT).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
}
