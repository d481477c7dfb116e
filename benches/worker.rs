//! Worker throughput and memory: one pass of the `tokenbridge worker` binary over N due
//! accounts (claim, load and open the sealed cache, a cached access token, `GET /me`, record
//! the outcome), at 0 ms and 50 ms API latency, with the worker's peak resident memory read
//! from /proc while it runs. Memory must not grow with the number of accounts.
//!
//! Run: `cargo bench --bench worker`. WORKER_BENCH_ACCOUNTS (default 10000, comma-separated
//! for several sizes), WORKER_BENCH_CONCURRENCY (default 64), WORKER_BENCH_LATENCIES_MS
//! (default "0,50"). SQLite by default; TOKENBRIDGE_BENCH_DATABASE_URL picks another database
//! (its two tables are emptied first).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use diesel::connection::SimpleConnection;
use diesel::Connection;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokenbridge::activity::store::ActivityUpsert;
use tokenbridge::cache::document::{CacheDocument, ClientContext, Grant};
use tokenbridge::cache::seal::{SealKeys, Sealer};
use tokenbridge::cache::store::TokenCacheStore;
use tokenbridge::db::{migrate, Database, DatabaseUrl};
use tokenbridge::devidp::DevIdp;
use tokenbridge::identity::OidcProvider;
use tokenbridge::secret::Secret;
use tokenbridge::settings::Settings;

const KEY: &str = "k1=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// One real token response for one user, through tokenbridge's own sign-in code path.
async fn tokens(settings: &Settings) -> tokenbridge::cache::document::TokenResponse {
    let provider = OidcProvider::new(&settings.identity, &settings.web.redirect_uri()).unwrap();
    let (url, state) = provider.begin_sign_in(None).await.unwrap();
    let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    form.push(("username".into(), "bench".into()));
    let action = format!("{}://{}{}", url.scheme(), url.authority(), url.path());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = client.post(action).form(&form).send().await.unwrap();
    let location = url::Url::parse(back.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    provider.redeem_code(&code, &state).await.unwrap()
}

/// `count` due accounts, each with its own sealed cache holding a valid access token.
fn seed(settings: &Settings, response: &tokenbridge::cache::document::TokenResponse, count: u64) {
    let db = Database::connect(&settings.database).unwrap();
    let mut conn = db.get().unwrap();
    conn.batch_execute("DELETE FROM account_activities; DELETE FROM token_cache")
        .unwrap();
    let store = TokenCacheStore::new(
        Sealer::new(settings.cache.keys.clone(), false),
        settings.cache.sliding_expiration,
    );
    let context = ClientContext {
        client_id: settings.identity.client_id.clone(),
        environment: "127.0.0.1".into(),
        realm: settings.identity.tenant_id.clone(),
    };
    let now = time::OffsetDateTime::now_utc();
    let idle_since = now - time::Duration::hours(1);
    let mut response = response.clone();
    response.id_token = None;
    for batch in (0..count).collect::<Vec<_>>().chunks(1000) {
        conn.transaction::<_, anyhow::Error, _>(|conn| {
            for n in batch {
                let uid = format!("bench-{n:07}");
                response.client_info = Some(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(format!(r#"{{"uid":"{uid}","utid":"{}"}}"#, context.realm)),
                );
                let mut document = CacheDocument::default();
                let id = document.add_token_response(
                    &context,
                    &response,
                    &["User.Read"],
                    Grant::AuthorizationCode,
                    None,
                    now.unix_timestamp(),
                )?;
                let upn = format!("{uid}@tokenbridge.dev");
                let activity = ActivityUpsert {
                    account_cache_key: &id,
                    account_identifier: &id,
                    object_id: Some(&uid),
                    tenant_id: Some(&context.realm),
                    user_principal_name: Some(&upn),
                    problem: None,
                };
                store.save_with_activity(conn, &document, None, &activity, idle_since)?;
            }
            Ok(())
        })
        .unwrap();
    }
}

/// Peak resident memory (VmHWM) of a running process, in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let sizes = env_list("WORKER_BENCH_ACCOUNTS", "10000");
    let latencies = env_list("WORKER_BENCH_LATENCIES_MS", "0,50");
    let concurrency = env_list("WORKER_BENCH_CONCURRENCY", "64")[0];
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut settings = Settings::from_sources("", "bench", &HashMap::new()).unwrap();
        let mut idp_settings = settings.dev_idp.clone();
        idp_settings.listen = "127.0.0.1:0".parse().unwrap();
        let idp = DevIdp::build(&idp_settings).unwrap();
        let idp_base = idp.base_url().to_owned();
        tokio::spawn(idp.run_until_stopped());
        let url = std::env::var("TOKENBRIDGE_BENCH_DATABASE_URL").unwrap_or_else(|_| {
            format!("sqlite://{}", dir.path().join("bench.db").display())
        });
        settings.database.url = DatabaseUrl::parse(&url).unwrap();
        settings.identity.instance = url::Url::parse(&idp_base).unwrap();
        settings.identity.tenant_id = idp_settings.tenant_id.clone();
        settings.identity.client_id = "tokenbridge-dev".into();
        settings.identity.client_secret = Some(Secret::new("tokenbridge-dev-secret"));
        settings.api.base_url = url::Url::parse(&format!("{idp_base}/v1.0")).unwrap();
        settings.cache.keys = Some(SealKeys::parse(&Secret::new(KEY)).unwrap());
        let db_settings = settings.database.clone();
        tokio::task::spawn_blocking(move || {
            let db = Database::connect(&db_settings).unwrap();
            migrate::run_pending(&mut db.get().unwrap()).unwrap();
        })
        .await
        .unwrap();
        let response = tokens(&settings).await;
        let config = dir.path().join("empty.toml");
        std::fs::write(&config, "").unwrap();
        let backend = settings.database.url.backend();
        for &latency in &latencies {
            reqwest::Client::new()
                .patch(format!("{idp_base}/admin/behaviour"))
                .json(&serde_json::json!({ "api_latency_ms": latency }))
                .send()
                .await
                .unwrap();
            for &count in &sizes {
                let (seed_settings, seed_response) = (settings.clone(), response.clone());
                tokio::task::spawn_blocking(move || seed(&seed_settings, &seed_response, count))
                    .await
                    .unwrap();
                let started = Instant::now();
                let mut child = Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
                    .args(["--config", &config.display().to_string(), "worker"])
                    .args(["--format", "json", "--concurrency", &concurrency.to_string()])
                    .env_clear()
                    .env("TOKENBRIDGE_DATABASE__URL", settings.database.url.full_url())
                    .env("TOKENBRIDGE_IDENTITY__INSTANCE", &idp_base)
                    .env("TOKENBRIDGE_IDENTITY__TENANT_ID", &idp_settings.tenant_id)
                    .env("TOKENBRIDGE_IDENTITY__CLIENT_ID", "tokenbridge-dev")
                    .env("TOKENBRIDGE_IDENTITY__CLIENT_SECRET", "tokenbridge-dev-secret")
                    .env("TOKENBRIDGE_API__BASE_URL", format!("{idp_base}/v1.0"))
                    .env("TOKENBRIDGE_CACHE__KEYS", KEY)
                    .env("TOKENBRIDGE_LOG__LEVEL", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap();
                let pid = child.id();
                let stdout = child.stdout.take().unwrap();
                let reader = std::thread::spawn(move || {
                    std::io::read_to_string(stdout).unwrap()
                });
                let mut peak = 0;
                while child.try_wait().unwrap().is_none() {
                    peak = peak.max(peak_kib(pid).unwrap_or(0));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let elapsed = started.elapsed();
                let report = reader.join().unwrap();
                let summary: serde_json::Value =
                    serde_json::from_str(report.lines().last().unwrap()).unwrap();
                assert_eq!(summary["summary"]["ok"], count, "{summary}");
                println!(
                    "worker pass ({backend}, API latency {latency} ms, concurrency {concurrency}): \
                     {count} accounts in {:.2}s = {:.0} accounts/s (process {:.2}s); peak RSS {:.1} MiB",
                    summary["duration_ms"].as_f64().unwrap() / 1e3,
                    summary["accounts_per_second"].as_f64().unwrap(),
                    elapsed.as_secs_f64(),
                    peak as f64 / 1024.0,
                );
            }
        }
    });
}
