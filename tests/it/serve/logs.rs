//! The real binary's log lines cannot be forged from outside: control characters in logged
//! values are escaped, no colours go to a file, junk from unauthenticated requests is INFO at
//! most, and every line written for a request carries its request id.

use crate::dev_idp::spawn_idp;
use crate::support;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokenbridge::db::Backend;

#[tokio::test]
async fn log_lines_cannot_be_forged_from_a_request() {
    let db = support::migrated(Backend::Sqlite).unwrap();
    let idp = spawn_idp().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let log = tempfile::NamedTempFile::new().unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    let mut child = super::serve_process(&db, &idp, &base, config.path())
        .env("TOKENBRIDGE_LOG__LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let started = Instant::now();
    while client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let forged = "2026-11-27T00:00:00.000000Z ERROR forged";
    for query in [
        format!(
            "error=access_denied%0A{}&error_description=%1B%5B31mred%0D",
            forged.replace(' ', "%20")
        ),
        format!("iss=http%3A%2F%2Fevil%0A{}", forged.replace(' ', "%20")),
        "code=junk&state=nope%0Aforged".to_owned(),
    ] {
        let response = client
            .get(format!("{base}/signin-oidc?{query}"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{query}");
    }
    // Nothing from outside makes a line long: a 30,000-character error, a long path, a
    // made-up method.
    let huge = "x".repeat(30_000);
    for (method, url) in [
        (
            "GET",
            format!("{base}/signin-oidc?error={huge}&error_description={huge}"),
        ),
        ("GET", format!("{base}/{}", "y".repeat(6_000))),
        (&*"Z".repeat(6_000), format!("{base}/")),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client.request(method, url).send().await.unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "no escape sequence reaches the log: {text:?}"
    );
    assert!(!text.contains('\r'), "{text:?}");
    for line in text.lines() {
        assert!(!line.starts_with(forged), "a forged line: {text}");
        assert!(
            line.len() < 2_000,
            "a line of {} bytes: {line:.300}",
            line.len()
        );
        assert!(
            !line.contains("ZZZZ"),
            "a made-up method logged: {line:.300}"
        );
        if line.contains("path=/signin-oidc") || line.contains("sign-in response") {
            assert!(
                line.contains("request_id="),
                "a request's line without its id: {line}"
            );
            let level = line.split_whitespace().nth(1).unwrap_or_default();
            assert!(
                level == "INFO" || level == "DEBUG",
                "junk from outside logged above INFO: {line}"
            );
        }
    }
    assert!(
        text.contains("\\n2026-11-27T00:00:00.000000Z ERROR forged"),
        "{text}"
    );
    assert!(
        text.contains("[cut 29744 bytes]"),
        "long values are cut, with a marker"
    );
}
