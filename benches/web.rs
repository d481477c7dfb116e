//! The web app's cost over the API call it makes. Under the same load, in one run:
//! - `/healthz`: the server's ceiling;
//! - the signed-in home page with a valid cached token (session, the row's version, the API
//!   call, the page);
//! - the same page from a second `serve` process on the same database that keeps no document
//!   in memory (`cache.memory_entries = 0`): the row is read and opened on every request;
//! - `GET /v1.0/me` on the provider directly with a valid access token: the API call alone;
//! - `GET /api/me` (the web API mode) with each user's token from the sample SPA (a public
//!   client, code + PKCE), its exchange already cached: the bearer check (an RS256 signature),
//!   the row's version, the token stored for that caller token, the API call.
//!
//! Each is printed with requests/s and p50/p99, then the page's p99 minus the API call's p99
//! (the cost of the session, the cache path and rendering) and the throughput ratio.
//! Everything runs as a user runs it: `tokenbridge dev-idp` and two `tokenbridge serve`
//! processes (release builds); the load generator here keeps WEB_BENCH_CONCURRENCY (32)
//! keep-alive connections busy for WEB_BENCH_SECONDS (5) per measurement, on one thread (as
//! `wrk -t1 -c32 -d5s`), over WEB_BENCH_USERS (50) signed-in users, WEB_BENCH_ROUNDS (3)
//! rounds. SQLite by default; TOKENBRIDGE_BENCH_DATABASE_URL picks another (empty) database,
//! and TOKENBRIDGE_BENCH_CACHE_URL (redis://...) keeps the token caches in Redis (under a key
//! prefix of the run's own, deleted at the end) with the activities in that database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/mod.rs"]
mod support;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};
use support::{cpu_seconds, DevIdpProcess, Latencies, CLIENT_ID, CLIENT_SECRET};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `tokenbridge serve` process; killed when dropped.
struct Serve {
    child: Child,
    base: String,
    _settings: tempfile::NamedTempFile,
}

impl Serve {
    fn start(
        idp: &DevIdpProcess,
        database: &str,
        caches: &[(&str, String)],
        port: u16,
        memory_entries: u64,
    ) -> Self {
        let base = format!("http://127.0.0.1:{port}");
        let config = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
            .arg("--config")
            .arg(config.path())
            .arg("serve")
            .env_clear()
            .env("TOKENBRIDGE_DATABASE__URL", database)
            .env("TOKENBRIDGE_DATABASE__POOL_SIZE", "16")
            .envs(idp.client_env())
            .envs(caches.iter().cloned())
            .env(
                "TOKENBRIDGE_CACHE__MEMORY_ENTRIES",
                memory_entries.to_string(),
            )
            .env("TOKENBRIDGE_WEB__LISTEN", format!("127.0.0.1:{port}"))
            .env("TOKENBRIDGE_WEB__PUBLIC_URL", &base)
            .env("TOKENBRIDGE_WEB__METRICS_LISTEN", "off")
            .env("TOKENBRIDGE_WEB__SESSION_KEY", "b".repeat(64))
            .env("TOKENBRIDGE_WEB_API__ENABLED", "true")
            .env("TOKENBRIDGE_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tokenbridge serve starts");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self {
                    child,
                    base,
                    _settings: config,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("serve did not start");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// Signs `user` in through the app and the provider's form; returns the `Cookie` header the
/// browser then sends.
async fn sign_in(base: &str, user: &str) -> String {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
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
    let cookies = reqwest::cookie::CookieStore::cookies(&*jar, &url::Url::parse(base).unwrap());
    cookies.unwrap().to_str().unwrap().to_owned()
}

/// `user`'s access token for tokenbridge's API, as the sample SPA gets it from the provider:
/// the public client `tokenbridge-spa`, its code redeemed with PKCE.
async fn spa_token(idp: &DevIdpProcess, user: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let verifier = format!("bench-verifier-{user}-0123456789abcdefghijklmnopqrstuvwxyz");
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let redirect = format!("{}/spa/", idp.base);
    let authorize = format!("{}/{}/oauth2/v2.0/authorize", idp.base, idp.tenant);
    let signed_in = http
        .post(authorize)
        .form(&[
            ("client_id", "tokenbridge-spa"),
            ("response_type", "code"),
            ("redirect_uri", redirect.as_str()),
            ("scope", "openid api://tokenbridge-dev/access_as_user"),
            ("state", "s"),
            ("nonce", "n"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("username", user),
        ])
        .send()
        .await
        .unwrap();
    let code = url::Url::parse(&location(&signed_in))
        .unwrap()
        .query_pairs()
        .find(|(name, _)| name == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens: serde_json::Value = http
        .post(idp.token_url())
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "tokenbridge-spa"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// What one measurement found.
struct Measured {
    per_second: f64,
    latencies: Latencies,
    /// CPU time per request (µs) of the server under load and of the provider.
    cpu_us: (f64, f64),
}

/// [`load`], with the CPU time `server` and the provider (`idp`) spent on each request.
async fn measure(
    address: &str,
    path: &str,
    headers: Rc<Vec<(&'static str, String)>>,
    (connections, seconds): (u64, u64),
    (server, idp): (u32, u32),
) -> Measured {
    let cpu = |pid: u32| cpu_seconds(&pid.to_string()).unwrap_or(0.0);
    let before = (cpu(server), cpu(idp));
    let started = Instant::now();
    let (per_second, latencies) = load(address, path, headers, connections, seconds).await;
    let requests = per_second * started.elapsed().as_secs_f64();
    let per_request = |seconds: f64| seconds * 1e6 / requests.max(1.0);
    let server_cpu = if server == idp {
        0.0
    } else {
        per_request(cpu(server) - before.0)
    };
    Measured {
        per_second,
        latencies,
        cpu_us: (server_cpu, per_request(cpu(idp) - before.1)),
    }
}

/// One measurement: `connections` keep-alive connections, each sending GET `path` with the
/// next of `headers` (name, value) for `seconds`, on this thread.
async fn load(
    address: &str,
    path: &str,
    headers: Rc<Vec<(&'static str, String)>>,
    connections: u64,
    seconds: u64,
) -> (f64, Latencies) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (address, path, headers) = (address.to_owned(), path.to_owned(), headers.clone());
            tokio::task::spawn_local(async move {
                let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::task::spawn_local(connection);
                let mut latencies = Vec::new();
                let mut n = c as usize;
                while Instant::now() < deadline {
                    let mut request = hyper::Request::get(&path).header("host", &address);
                    if !headers.is_empty() {
                        let (name, value) = &headers[n % headers.len()];
                        request = request.header(*name, value);
                        n += connections as usize;
                    }
                    let at = Instant::now();
                    let response = sender
                        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
                        .await
                        .unwrap();
                    let status = response.status();
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
                    latencies.push(at.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let per_second = all.len() as f64 / started.elapsed().as_secs_f64();
    (per_second, Latencies::new(all))
}

/// The run's keys in the benchmark's Redis: deleted when dropped.
struct RedisKeys {
    url: String,
    prefix: String,
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

fn main() {
    let users = env_u64("WEB_BENCH_USERS", 50);
    let connections = env_u64("WEB_BENCH_CONCURRENCY", 32);
    let seconds = env_u64("WEB_BENCH_SECONDS", 5);
    let rounds = env_u64("WEB_BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir().unwrap();
    let database = std::env::var("TOKENBRIDGE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));

    let (warm_port, cold_port) = (free_port(), free_port());
    let redirects: Vec<String> = [warm_port, cold_port]
        .iter()
        .map(|port| format!("\"http://127.0.0.1:{port}/signin-oidc\""))
        .collect();
    let idp = DevIdpProcess::start(&format!(
        "[[dev_idp.clients]]\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
         redirect_uris = [{}]\n",
        redirects.join(", ")
    ));
    // An empty settings file, as serve gets: the checkout's settings.toml is not the bench's.
    let no_settings = tempfile::NamedTempFile::new().unwrap();
    let migrated = Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
        .arg("--config")
        .arg(no_settings.path())
        .arg("migrate")
        .env_clear()
        .env("TOKENBRIDGE_DATABASE__URL", &database)
        .env("TOKENBRIDGE_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(migrated.success());
    let redis = std::env::var("TOKENBRIDGE_BENCH_CACHE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .map(|url| RedisKeys {
            url,
            prefix: format!("tb_bench_{}", std::process::id()),
        });
    let caches: Vec<(&str, String)> = match &redis {
        Some(redis) => vec![
            ("TOKENBRIDGE_CACHE__URL", redis.url.clone()),
            ("TOKENBRIDGE_CACHE__KEY_PREFIX", redis.prefix.clone()),
        ],
        None => Vec::new(),
    };
    let warm = Serve::start(&idp, &database, &caches, warm_port, 10_000);
    let cold = Serve::start(&idp, &database, &caches, cold_port, 0);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut cookies = Vec::new();
        for i in 0..users {
            cookies.push(("cookie", sign_in(&warm.base, &format!("bench-user-{i:07}")).await));
        }
        let cookies = Rc::new(cookies);
        let (http, mut tokens) = (reqwest::Client::new(), Vec::new());
        for (_, _, refresh_token) in idp.mint("bench-user-", users).await {
            let token = support::refresh(&http, &idp.token_url(), &refresh_token, "User.Read").await;
            tokens.push(("authorization", format!("Bearer {token}")));
        }
        let tokens = Rc::new(tokens);
        let mut callers = Vec::new();
        for i in 0..users {
            let token = spa_token(&idp, &format!("bench-spa-{i:07}")).await;
            callers.push(("authorization", format!("Bearer {token}")));
        }
        let callers = Rc::new(callers);
        let none = Rc::new(Vec::new());
        let mut backend = database.split(':').next().unwrap_or_default().to_owned();
        if redis.is_some() {
            backend = format!("caches in redis, activities in {backend}");
        }
        let (warm_at, cold_at) = (&warm.base[7..], &cold.base[7..]);
        let idp_at = idp.base[7..].to_owned();
        println!(
            "web ({backend}; {connections} connections on one thread, {seconds} s each, {users} users)"
        );
        for round in 1..=rounds {
            // A short warm-up, so every process has its connections and caches.
            load(warm_at, "/", cookies.clone(), connections, 1).await;
            load(cold_at, "/", cookies.clone(), connections, 1).await;
            load(warm_at, "/api/me", callers.clone(), connections, 1).await;
            let run = (connections, seconds);
            let (warm_pid, cold_pid, idp_pid) = (warm.child.id(), cold.child.id(), idp.pid());
            let ceiling =
                measure(warm_at, "/healthz", none.clone(), run, (warm_pid, idp_pid)).await;
            let page = measure(warm_at, "/", cookies.clone(), run, (warm_pid, idp_pid)).await;
            let from_db = measure(cold_at, "/", cookies.clone(), run, (cold_pid, idp_pid)).await;
            let api = measure(&idp_at, "/v1.0/me", tokens.clone(), run, (idp_pid, idp_pid)).await;
            let web_api =
                measure(warm_at, "/api/me", callers.clone(), run, (warm_pid, idp_pid)).await;
            println!("round {round}:");
            for (what, measured) in [
                ("/healthz (ceiling)", &ceiling),
                ("home page, cached token", &page),
                ("home page, row not in memory", &from_db),
                ("GET /v1.0/me alone", &api),
                ("web API /api/me, exchanged", &web_api),
            ] {
                println!(
                    "  {what:<30} {:>8.0} req/s; p50 {:>6.2} ms, p99 {:>6.2} ms; \
                     CPU per request: serve {:>3.0} µs, provider {:>3.0} µs",
                    measured.per_second,
                    measured.latencies.ms(0.50),
                    measured.latencies.ms(0.99),
                    measured.cpu_us.0,
                    measured.cpu_us.1,
                );
            }
            println!(
                "  page / API throughput {:.2}; page p99 - API p99 = {:+.2} ms \
                 (row not in memory: {:+.2} ms)",
                page.per_second / api.per_second,
                page.latencies.ms(0.99) - api.latencies.ms(0.99),
                from_db.latencies.ms(0.99) - api.latencies.ms(0.99),
            );
            println!(
                "  web API / API throughput {:.2}; web API p99 - API p99 = {:+.2} ms",
                web_api.per_second / api.per_second,
                web_api.latencies.ms(0.99) - api.latencies.ms(0.99),
            );
        }
    });
}
