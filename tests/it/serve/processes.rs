//! Two `tokenbridge serve` processes (the real binary) sharing one database and one session
//! key, as replicas behind a load balancer do: twenty page loads at once, half to each, after
//! the access token passed half its life, under strict rotation with provider latency. One
//! refresh, nobody revoked. Real time here (no test clock crosses a process boundary), so the
//! provider issues 8-second tokens: they are refreshed 4 seconds after they are issued.

use super::e2e_tests;
use crate::dev_idp::spawn_idp_with;
use crate::support;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tokenbridge::db::Backend;
use tokenbridge::settings::Rotation;
use url::Url;

e2e_tests!(two_serve_processes_refresh_a_user_once);

/// A child process, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port outside the ephemeral range, so no test binding port 0 meanwhile can take it
/// between this check and the child's bind.
fn free_port() -> u16 {
    loop {
        let port = 20_000 + rand::random::<u16>() % 10_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn two_serve_processes_refresh_a_user_once(backend: Backend) {
    let Some(db) = support::migrated(backend) else {
        support::skipped("serve::processes::two_serve_processes", backend);
        return;
    };
    let bases: Vec<String> = (0..2)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let idp = spawn_idp_with(|s| {
        s.rotation = Rotation::Strict;
        s.token_latency = Duration::from_millis(300);
        s.access_token_ttl = Duration::from_secs(8);
        for base in &bases {
            s.clients[0]
                .redirect_uris
                .push(format!("{base}/signin-oidc"));
        }
    })
    .await;
    let config = tempfile::NamedTempFile::new().unwrap();
    let mut servers: Vec<Serve> = bases
        .iter()
        .map(|base| {
            let child = replica(&db, &idp, base, config.path())
                .env("TOKENBRIDGE_LOG__LEVEL", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            Serve(child)
        })
        .collect();
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    until_healthy(&browser, &bases, &mut servers).await;

    // Sign in through the first replica.
    sign_in_through(&browser, &bases[0], "ada").await;
    let signed_in = Instant::now();
    for base in &bases {
        let page = browser.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(page.status(), 200, "{base} shares the session");
    }
    assert_eq!(idp.counters().await["refreshes"], 0);

    tokio::time::sleep(Duration::from_millis(5500).saturating_sub(signed_in.elapsed())).await;
    let loads = (0..20).map(|n| browser.get(format!("{}/", bases[n % 2])).send());
    for (n, page) in futures_util::future::join_all(loads)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(page.unwrap().status(), 200, "load {n}");
    }
    let counters = idp.counters().await;
    assert_eq!(counters["refreshes"], 1, "{counters}");
    assert_eq!(counters["reuse_detections"], 0, "{counters}");
}

/// Nothing the API sends grows the server: two replicas share a sign-in, one calls the real
/// API and one an API whose answers are 200 MB; after the same page loads, the second's peak
/// memory is within a few MiB of the first's (its pages say the API is unavailable).
#[tokio::test]
async fn a_huge_api_answer_does_not_grow_the_server() {
    let Some(db) = support::migrated(Backend::Sqlite) else {
        return;
    };
    let huge = crate::hostile::serve(crate::hostile::Answer {
        status: "200 OK",
        headers: Vec::new(),
        body_size: 200 << 20,
    });
    let bases: Vec<String> = (0..2)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let idp = spawn_idp_with(|s| {
        for base in &bases {
            s.clients[0]
                .redirect_uris
                .push(format!("{base}/signin-oidc"));
        }
    })
    .await;
    let config = tempfile::NamedTempFile::new().unwrap();
    let mut servers: Vec<Serve> = bases
        .iter()
        .enumerate()
        .map(|(n, base)| {
            let mut command = replica(&db, &idp, base, config.path());
            command.env("TOKENBRIDGE_LOG__LEVEL", "error");
            if n == 1 {
                command.env("TOKENBRIDGE_API__BASE_URL", &huge.base);
            }
            Serve(
                command
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    until_healthy(&browser, &bases, &mut servers).await;
    sign_in_through(&browser, &bases[0], "ada").await;
    for (base, expected) in bases.iter().zip([200, 503]) {
        for _ in 0..4 {
            let page = browser.get(format!("{base}/")).send().await.unwrap();
            assert_eq!(page.status(), expected, "{base}");
        }
    }
    let peaks: Vec<u64> = servers
        .iter()
        .map(|s| crate::hostile::peak_rss_kib(s.0.id()))
        .collect();
    assert!(
        peaks[1] < peaks[0] + 8 * 1024,
        "peak {} KiB against {} KiB for the same pages with a normal API",
        peaks[1],
        peaks[0]
    );
    assert!(huge.body_bytes_sent() < 200 << 20);
}

/// A `serve` replica on `base`: the shared session key and cache key, as replicas behind a load
/// balancer have.
fn replica(
    db: &support::TestDb,
    idp: &crate::dev_idp::TestIdp,
    base: &str,
    config: &std::path::Path,
) -> std::process::Command {
    let mut command = super::serve_process(db, idp, base, config);
    command.envs([
        (
            "TOKENBRIDGE_WEB__SESSION_KEY",
            "a-shared-session-key-for-both-replicas-0123456789abcdefghijklmnop".to_owned(),
        ),
        (
            "TOKENBRIDGE_CACHE__KEYS",
            format!("k1={}", crate::fixtures::KEY),
        ),
    ]);
    command
}

/// Until every replica answers `/healthz` (a replica that exits fails the test).
async fn until_healthy(browser: &reqwest::Client, bases: &[String], servers: &mut [Serve]) {
    let started = Instant::now();
    for (base, server) in bases.iter().zip(servers) {
        while browser
            .get(format!("{base}/healthz"))
            .send()
            .await
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{base} never started"
            );
            if let Some(status) = server.0.try_wait().unwrap() {
                panic!("serve on {base} exited with {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Signs `user` in through the replica at `base`, in `browser`.
async fn sign_in_through(browser: &reqwest::Client, base: &str, user: &str) {
    let start = browser.get(format!("{base}/signin")).send().await.unwrap();
    let provider_url = Url::parse(&super::location(&start)).unwrap();
    let mut form: Vec<(String, String)> = provider_url.query_pairs().into_owned().collect();
    form.push(("username".into(), user.into()));
    let action = format!(
        "{}://{}{}",
        provider_url.scheme(),
        provider_url.authority(),
        provider_url.path()
    );
    let back = browser.post(action).form(&form).send().await.unwrap();
    let callback = browser.get(super::location(&back)).send().await.unwrap();
    assert_eq!(callback.status(), 303);
}
