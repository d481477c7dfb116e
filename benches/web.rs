//! Requests per second and latency of the signed-in home page with a valid cached token, the
//! web app's hot path: session, in-process cache check (one small query), API call, page.
//! Run: `cargo bench --bench web`. SQLite by default; TOKENBRIDGE_BENCH_DATABASE_URL picks
//! another (an empty, migrated database).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenbridge::db::{migrate, Database, DatabaseUrl};
use tokenbridge::devidp::DevIdp;
use tokenbridge::secret::Secret;
use tokenbridge::settings::Settings;
use tokenbridge::web::Application;

const USERS: usize = 50;
const REQUESTS: usize = 10_000;
const CONCURRENCY: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn signed_in_browser(base: &str, user: &str) -> reqwest::Client {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = browser.get(format!("{base}/signin")).send().await.unwrap();
    let provider = url::Url::parse(&location(&start)).unwrap();
    let mut fields: Vec<(String, String)> = provider.query_pairs().into_owned().collect();
    fields.push(("username".into(), user.into()));
    let action = format!(
        "{}://{}{}",
        provider.scheme(),
        provider.authority(),
        provider.path()
    );
    let back = browser.post(action).form(&fields).send().await.unwrap();
    let done = browser.get(location(&back)).send().await.unwrap();
    assert_eq!(done.status(), 303);
    browser
}

fn main() {
    let users = env_usize("WEB_BENCH_USERS", USERS);
    let requests = env_usize("WEB_BENCH_REQUESTS", REQUESTS);
    let concurrency = env_usize("WEB_BENCH_CONCURRENCY", CONCURRENCY);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut settings = Settings::from_sources("", "bench", &HashMap::new()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut idp_settings = settings.dev_idp.clone();
        idp_settings.listen = "127.0.0.1:0".parse().unwrap();
        idp_settings.clients[0].redirect_uris.push(format!("{base}/signin-oidc"));
        let idp = DevIdp::build(&idp_settings).unwrap();
        let idp_base = idp.base_url().to_owned();
        tokio::spawn(idp.run_until_stopped());

        let url = std::env::var("TOKENBRIDGE_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
        settings.database.url = DatabaseUrl::parse(&url).unwrap();
        settings.database.pool_size = 16;
        let backend = settings.database.url.backend();
        let db_settings = settings.database.clone();
        tokio::task::spawn_blocking(move || {
            let db = Database::connect(&db_settings).unwrap();
            migrate::run_pending(&mut db.get().unwrap()).unwrap();
        })
        .await
        .unwrap();
        settings.identity.instance = url::Url::parse(&idp_base).unwrap();
        settings.identity.tenant_id = idp_settings.tenant_id.clone();
        settings.identity.client_id = "tokenbridge-dev".into();
        settings.identity.client_secret = Some(Secret::new("tokenbridge-dev-secret"));
        settings.api.base_url = url::Url::parse(&format!("{idp_base}/v1.0")).unwrap();
        settings.web.public_url = url::Url::parse(&base).unwrap();
        settings.web.metrics_listen = None;
        settings.web.session_key = Some(Secret::new("b".repeat(64)));
        settings.cache.keys = Some(
            tokenbridge::cache::seal::SealKeys::parse(&Secret::new(
                "k1=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ))
            .unwrap(),
        );
        let app = Application::build_on(&settings, listener, Arc::new(tokenbridge::clock::SystemClock))
            .await
            .unwrap();
        tokio::spawn(app.run_until_stopped());

        let mut browsers = Vec::with_capacity(users);
        for i in 0..users {
            browsers.push(signed_in_browser(&base, &format!("bench-user-{i}")).await);
        }
        let browsers = Arc::new(browsers);
        let per_task = requests / concurrency;
        let started = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let (browsers, base) = (browsers.clone(), base.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(per_task);
                    for n in 0..per_task {
                        let browser = &browsers[(t + n * concurrency) % browsers.len()];
                        let at = Instant::now();
                        let response = browser.get(format!("{base}/")).send().await.unwrap();
                        assert_eq!(response.status(), 200);
                        let _ = response.bytes().await.unwrap();
                        latencies.push(at.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies: Vec<Duration> = Vec::new();
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        println!(
            "signed-in home page ({backend}, sealed cache, cached token): {} requests in {:.2}s = {:.0} req/s \
             (concurrency {concurrency}, {users} users); p50 {:.2} ms, p99 {:.2} ms",
            latencies.len(),
            elapsed.as_secs_f64(),
            latencies.len() as f64 / elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
        );
    });
}
