//! Refresh-grant throughput of `tokenbridge dev-idp`, so the worker benchmarks can be sure they
//! measure tokenbridge and not the provider. Run: `cargo bench --bench dev_idp`.
//!
//! Signs in USERS users through the real code flow, then runs REFRESHES refresh grants over
//! loopback HTTP from CONCURRENCY client tasks, for each rotation mode, and prints requests per
//! second and latency percentiles. Each refresh signs an RS256 ID token and an access token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenbridge::devidp::DevIdp;
use tokenbridge::settings::{Rotation, Settings};

const USERS: usize = 200;
const REFRESHES: usize = 20_000;
const CONCURRENCY: usize = 32;
const VERIFIER: &str = "benchmark-pkce-verifier-0123456789-0123456789-0123456789";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Target {
    token_url: String,
    authorize_url: String,
    http: reqwest::Client,
}

impl Target {
    async fn sign_in(&self, user: &str) -> String {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
        let form = [
            ("client_id", "tokenbridge-dev"),
            ("redirect_uri", "http://127.0.0.1:8080/signin-oidc"),
            ("response_type", "code"),
            ("scope", "openid profile offline_access User.Read"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("username", user),
        ];
        let response = self
            .http
            .post(&self.authorize_url)
            .form(&form)
            .send()
            .await
            .expect("authorize");
        let location = response.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let query: HashMap<String, String> = url::Url::parse(&location)
            .expect("url")
            .query_pairs()
            .into_owned()
            .collect();
        let tokens: serde_json::Value = self
            .http
            .post(&self.token_url)
            .basic_auth("tokenbridge-dev", Some("tokenbridge-dev-secret"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", query["code"].as_str()),
                ("redirect_uri", "http://127.0.0.1:8080/signin-oidc"),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        tokens["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_owned()
    }

    async fn refresh(&self, token: &str) -> Option<String> {
        let response = self
            .http
            .post(&self.token_url)
            .basic_auth("tokenbridge-dev", Some("tokenbridge-dev-secret"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body: serde_json::Value = response.json().await.ok()?;
        body["refresh_token"].as_str().map(str::to_owned)
    }
}

async fn run(rotation: Rotation, users: usize, refreshes: usize, concurrency: usize) {
    let mut settings = Settings::from_sources("", "bench", &HashMap::new())
        .expect("settings")
        .dev_idp;
    settings.listen = "127.0.0.1:0".parse().expect("addr");
    settings.rotation = rotation;
    let idp = DevIdp::build(&settings).expect("dev-idp");
    let base = format!("{}/{}/oauth2/v2.0", idp.base_url(), settings.tenant_id);
    tokio::spawn(idp.run_until_stopped());
    let target = Arc::new(Target {
        token_url: format!("{base}/token"),
        authorize_url: format!("{base}/authorize"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(concurrency)
            .build()
            .expect("client"),
    });
    let mut tokens = Vec::with_capacity(users);
    for i in 0..users {
        tokens.push(target.sign_in(&format!("bench-user-{i}")).await);
    }
    // Each task owns a slice of users, so with rotation every user's chain stays sequential.
    let per_task = refreshes / concurrency;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let target = target.clone();
        let mut mine: Vec<String> = tokens
            .iter()
            .skip(t)
            .step_by(concurrency)
            .cloned()
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            let mut failures = 0usize;
            for n in 0..per_task {
                if mine.is_empty() {
                    break;
                }
                let slot = n % mine.len();
                let at = Instant::now();
                match target.refresh(&mine[slot]).await {
                    Some(next) => mine[slot] = next,
                    None => failures += 1,
                }
                latencies.push(at.elapsed());
            }
            (latencies, failures)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await.expect("task");
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "dev-idp refresh grants, rotation={rotation:?}: {} requests in {:.2}s = {:.0} req/s \
         (concurrency {concurrency}, {users} users, {failures} failed); p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing we use.
    let users = env_usize("DEVIDP_BENCH_USERS", USERS);
    let refreshes = env_usize("DEVIDP_BENCH_REFRESHES", REFRESHES);
    let concurrency = env_usize("DEVIDP_BENCH_CONCURRENCY", CONCURRENCY);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let keys = tokenbridge::devidp::keys::Keys::generate().expect("keys");
    let claims = serde_json::json!({"iss": "bench", "sub": "x", "aud": "y", "exp": 1, "iat": 1});
    let started = Instant::now();
    for _ in 0..500 {
        keys.sign_id_token(&claims).expect("sign");
    }
    println!(
        "RS256 ID-token signature: {:.3} ms each (one per code or refresh grant)",
        started.elapsed().as_secs_f64() * 1e3 / 500.0
    );
    runtime.block_on(async {
        for rotation in [Rotation::Off, Rotation::Rotate, Rotation::Strict] {
            run(rotation, users, refreshes, concurrency).await;
        }
    });
}
