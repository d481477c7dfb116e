//! The worker against a bare HTTP baseline. For each database, provider latency and number of
//! accounts: N due accounts are seeded straight into the database (sealed MSAL documents, as the
//! web app writes them, with an expired access token and a valid refresh token; activity rows
//! an hour old), one `tokenbridge worker` pass runs as a user runs it (the release binary,
//! against `tokenbridge dev-idp` in its own process), and then a baseline: a minimal client
//! making only the same two HTTP calls per account (refresh grant, `GET /me`) at the same
//! concurrency, with no database, sealing or cache logic; and a pass whose job is an `--exec`
//! command that does nothing (`/bin/true`), to show what a process per account costs. Printed:
//! accounts per second, p50/p99 time per account, the worker's peak resident memory, CPU per
//! account (with the jobs' own for --exec), the ratio worker / baseline and exec / worker.
//!
//! Run: `cargo bench --bench worker`. WORKER_BENCH_ACCOUNTS (default "10000,100000"),
//! WORKER_BENCH_LATENCIES_MS (default "0,50": each of the provider's two calls is delayed by
//! it), WORKER_BENCH_CONCURRENCY (default 64). TOKENBRIDGE_BENCH_DATABASE_URL: comma-separated
//! databases (default "sqlite", a temporary file); a server database's two tables are emptied.
//! Other `TOKENBRIDGE_*` variables are passed on to the worker (settings to compare).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/mod.rs"]
mod support;

use base64::Engine;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{
    cpu_seconds, cpu_seconds_with_children, env_list, peak_kib, DevIdpProcess, Latencies,
    CACHE_KEYS, CLIENT_ID,
};
use tokenbridge::cache::document::{CacheDocument, ClientContext, Grant, TokenResponse};
use tokenbridge::cache::seal::{SealKeys, Sealer};
use tokenbridge::clock::to_db;
use tokenbridge::db::schema::{account_activities as aa, token_cache as tc};
use tokenbridge::db::{migrate, Database, DatabaseUrl, DbConnection};
use tokenbridge::secret::Secret;
use tokenbridge::settings::Settings;

const SCOPE: &str = "User.Read offline_access openid profile";
/// Rows per INSERT: well under every backend's limit on bound parameters.
const BATCH: usize = 1000;

/// What one run measured.
struct Run {
    per_second: f64,
    latencies: Latencies,
    peak_mib: Option<f64>,
    /// CPU time per account (µs) of the client (the worker, or the bare client) and of the
    /// provider: on a machine where they share the cores, what limits the rate at 0 ms.
    cpu_us: (f64, f64),
}

/// `users` as due accounts: each a sealed cache whose access token expired an hour ago and
/// whose refresh token the provider minted, and an activity row an hour old.
fn seed(db: &Database, idp: &DevIdpProcess, users: &[(String, String, String)]) {
    let mut conn = db.get().unwrap();
    conn.batch_execute("DELETE FROM account_activities; DELETE FROM token_cache")
        .unwrap();
    let sealer = Sealer::new(
        Some(SealKeys::parse(&Secret::new(CACHE_KEYS)).unwrap()),
        false,
    );
    let context = ClientContext {
        client_id: CLIENT_ID.into(),
        environment: "127.0.0.1".into(),
        realm: idp.tenant.clone(),
    };
    let issued = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let idle_since = to_db(issued + time::Duration::hours(1));
    let expires = to_db(issued + time::Duration::days(90));
    for batch in users.chunks(BATCH) {
        let mut caches = Vec::with_capacity(batch.len());
        let mut activities = Vec::with_capacity(batch.len());
        for (username, oid, refresh_token) in batch {
            let response = TokenResponse {
                access_token: Secret::new(format!("expired-{username}")),
                token_type: Some("Bearer".into()),
                expires_in: Some(3600),
                ext_expires_in: None,
                refresh_in: None,
                scope: Some(SCOPE.into()),
                refresh_token: Some(Secret::new(refresh_token.clone())),
                id_token: None,
                client_info: Some(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(format!(r#"{{"uid":"{oid}","utid":"{}"}}"#, context.realm)),
                ),
                family_id: None,
                user_assertion_hash: None,
            };
            let mut document = CacheDocument::default();
            let id = document
                .add_token_response(
                    &context,
                    &response,
                    &["User.Read"],
                    Grant::AuthorizationCode,
                    None,
                    issued.unix_timestamp(),
                )
                .unwrap();
            let sealed = sealer.seal(&id, &document.to_json()).unwrap();
            caches.push((
                tc::id.eq(id.clone()),
                tc::value.eq(sealed),
                tc::version.eq(1_i64),
                tc::expires_at.eq(expires),
                tc::updated_at.eq(idle_since),
                tc::session_epoch.eq(1_i64),
            ));
            activities.push((
                aa::account_cache_key.eq(id.clone()),
                aa::account_identifier.eq(id),
                aa::account_object_id.eq(Some(oid.clone())),
                aa::account_tenant_id.eq(Some(context.realm.clone())),
                aa::user_principal_name.eq(Some(format!("{username}@tokenbridge.dev"))),
                aa::last_activity.eq(idle_since),
                aa::failed_to_acquire_token.eq(false),
                aa::consecutive_failures.eq(0),
            ));
        }
        // Multi-row INSERTs need the backend's own connection (Diesel's multi-backend
        // connection does not batch).
        macro_rules! insert_both {
            ($c:expr) => {
                $c.transaction::<_, diesel::result::Error, _>(|c| {
                    diesel::insert_into(tc::table).values(&caches).execute(c)?;
                    diesel::insert_into(aa::table)
                        .values(&activities)
                        .execute(c)?;
                    Ok(())
                })
            };
        }
        match &mut *conn {
            DbConnection::Sqlite(c) => insert_both!(c),
            DbConnection::Postgres(c) => insert_both!(c),
            DbConnection::Mysql(c) => insert_both!(c),
        }
        .unwrap();
    }
}

/// One `tokenbridge worker` pass, as a user runs it (its job `exec`, when given), with its
/// peak memory read from /proc.
async fn worker_pass(
    url: &DatabaseUrl,
    idp: &DevIdpProcess,
    count: usize,
    concurrency: u64,
    exec: Option<&str>,
) -> Run {
    let config = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
        .arg("--config")
        .arg(config.path())
        .args(["worker", "--older-than", "5m", "--format", "json"])
        .args(["--concurrency", &concurrency.to_string()])
        .args(
            exec.map(|command| ["--exec", command])
                .into_iter()
                .flatten(),
        )
        .env_clear()
        .env("TOKENBRIDGE_DATABASE__URL", url.full_url())
        .envs(idp.client_env())
        .env("TOKENBRIDGE_LOG__LEVEL", "warn")
        // Settings to try (e.g. TOKENBRIDGE_DATABASE__POOL_SIZE) reach the worker as they are.
        .envs(std::env::vars().filter(|(name, _)| {
            name.starts_with("TOKENBRIDGE_") && !name.starts_with("TOKENBRIDGE_BENCH_")
        }))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let provider_cpu = idp.cpu_seconds();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let (mut peak, mut cpu) = (0, 0.0);
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(peak_kib(pid).unwrap_or(0));
        cpu = cpu_seconds_with_children(&pid.to_string()).unwrap_or(cpu);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let provider_cpu = idp.cpu_seconds() - provider_cpu;
    assert!(child.wait().unwrap().success(), "the worker failed");
    let report = reader.join().unwrap();
    let mut latencies = Vec::with_capacity(count);
    let mut summary = serde_json::Value::Null;
    for line in report.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(ms) = line["elapsed_ms"].as_u64() {
            assert_eq!(line["outcome"], "ok", "{line}");
            latencies.push(Duration::from_millis(ms));
        } else {
            summary = line;
        }
    }
    assert_eq!(summary["summary"]["ok"], count, "{summary}");
    Run {
        per_second: summary["accounts_per_second"].as_f64().unwrap(),
        latencies: Latencies::new(latencies),
        peak_mib: Some(peak as f64 / 1024.0),
        cpu_us: per_account_us(cpu, provider_cpu, count),
    }
}

/// The same two calls per account at the same concurrency, and nothing else.
async fn baseline(
    idp: &DevIdpProcess,
    users: Vec<(String, String, String)>,
    concurrency: u64,
) -> Run {
    let http = reqwest::Client::new();
    let token_url = idp.token_url();
    let me_url = format!("{}/v1.0/me", idp.base);
    let users = Arc::new(users);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = (cpu_seconds("self").unwrap(), idp.cpu_seconds());
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, users, next) = (http.clone(), users.clone(), next.clone());
            let (token_url, me_url) = (token_url.clone(), me_url.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((_, _, refresh_token)) = users.get(i) else {
                        return latencies;
                    };
                    let at = Instant::now();
                    let access_token =
                        support::refresh(&http, &token_url, refresh_token, SCOPE).await;
                    let me = http
                        .get(&me_url)
                        .bearer_auth(access_token)
                        .send()
                        .await
                        .unwrap()
                        .error_for_status()
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap();
                    assert!(!me.is_empty());
                    latencies.push(at.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(users.len());
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let per_second = users.len() as f64 / started.elapsed().as_secs_f64();
    Run {
        per_second,
        latencies: Latencies::new(latencies),
        peak_mib: None,
        cpu_us: per_account_us(
            cpu_seconds("self").unwrap() - cpu.0,
            idp.cpu_seconds() - cpu.1,
            users.len(),
        ),
    }
}

fn per_account_us(client: f64, provider: f64, count: usize) -> (f64, f64) {
    let per = |seconds: f64| seconds * 1e6 / count as f64;
    (per(client), per(provider))
}

fn print(what: &str, run: &Run) {
    let memory = run
        .peak_mib
        .map(|mib| format!("; peak RSS {mib:.1} MiB"))
        .unwrap_or_default();
    println!(
        "  {what:<9} {:>7.0} accounts/s; per account p50 {:.1} ms, p99 {:.1} ms{memory}; \
         CPU per account: {what} {:.0} µs, provider {:.0} µs",
        run.per_second,
        run.latencies.ms(0.50),
        run.latencies.ms(0.99),
        run.cpu_us.0,
        run.cpu_us.1,
    );
}

fn main() {
    let sizes = env_list("WORKER_BENCH_ACCOUNTS", "10000,100000");
    let latencies = env_list("WORKER_BENCH_LATENCIES_MS", "0,50");
    let concurrency = env_list("WORKER_BENCH_CONCURRENCY", "64")[0];
    let dir = tempfile::tempdir().unwrap();
    let databases: Vec<DatabaseUrl> = std::env::var("TOKENBRIDGE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "sqlite".into())
        .split(',')
        .map(|url| match url.trim() {
            "sqlite" => format!("sqlite://{}", dir.path().join("bench.db").display()),
            url => url.to_owned(),
        })
        .map(|url| DatabaseUrl::parse(&url).unwrap())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let idp = DevIdpProcess::start("");
    let mut run_id = 0;
    runtime.block_on(async {
        for url in &databases {
            let mut settings = Settings::from_sources("", "bench", &HashMap::new()).unwrap();
            settings.database.url = url.clone();
            let db = Database::connect(&settings.database).unwrap();
            migrate::run_pending(&mut db.get().unwrap()).unwrap();
            let backend = url.backend();
            for &latency in &latencies {
                idp.behave(serde_json::json!({
                    "token_latency_ms": latency, "api_latency_ms": latency
                }))
                .await;
                for &count in &sizes {
                    run_id += 1;
                    let users = idp.mint(&format!("w{run_id}-"), count).await;
                    let seeding = Instant::now();
                    let seed_db = db.clone();
                    let seeded = tokio::task::block_in_place(|| {
                        seed(&seed_db, &idp, &users);
                        seeding.elapsed()
                    });
                    let worker = worker_pass(url, &idp, users.len(), concurrency, None).await;
                    let users = idp.mint(&format!("x{run_id}-"), count).await;
                    let exec_db = db.clone();
                    tokio::task::block_in_place(|| seed(&exec_db, &idp, &users));
                    let exec =
                        worker_pass(url, &idp, users.len(), concurrency, Some("/bin/true")).await;
                    let users = idp.mint(&format!("b{run_id}-"), count).await;
                    let base = baseline(&idp, users, concurrency).await;
                    println!(
                        "worker pass ({backend}, {count} accounts, provider latency {latency} ms \
                         per call, concurrency {concurrency}; seeded in {:.1} s):",
                        seeded.as_secs_f64()
                    );
                    print("worker", &worker);
                    print("exec job", &exec);
                    print("baseline", &base);
                    println!(
                        "  worker / baseline: {:.2}; exec job / worker: {:.2}",
                        worker.per_second / base.per_second,
                        exec.per_second / worker.per_second
                    );
                }
            }
        }
    });
}
