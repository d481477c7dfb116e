//! `GET /metrics` on its own listener: requests by route and status, token acquisitions by
//! outcome, provider latency, the database pool.

use super::spawn_app_with;
use time::Duration;
use tokenbridge::db::Backend;

fn free_port() -> u16 {
    loop {
        let port = 30_000 + rand::random::<u16>() % 10_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener() {
    let port = free_port();
    let app = spawn_app_with(
        "serve::metrics",
        Backend::Sqlite,
        |_| {},
        |s| s.web.metrics_listen = Some(format!("127.0.0.1:{port}").parse().unwrap()),
    )
    .await
    .unwrap();
    app.sign_in("ada").await;
    assert_eq!(app.home_html().await.0, 200);
    app.clock.advance(Duration::hours(2));
    assert_eq!(app.home_html().await.0, 200);
    assert_eq!(app.get("/no/such/page").await.status(), 404);
    // Not on the app's own address.
    assert_eq!(app.get("/metrics").await.status(), 404);
    // Methods a client makes up (twenty, and one of 8,000 characters) add no label sets.
    let made_up = (0..20)
        .map(|n| format!("MADEUP{n}"))
        .chain(["M".repeat(8_000)]);
    for method in made_up {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.browser.request(method, app.url("/")).send().await;
        assert!(response.is_ok_and(|r| r.status().is_client_error()));
    }

    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "tokenbridge_http_requests_total{route=\"/\",method=\"GET\",status=\"200\"}",
        "tokenbridge_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}",
        "tokenbridge_http_request_duration_seconds_bucket{le=",
        "tokenbridge_token_acquisitions_total{outcome=\"cache_hit\"}",
        "tokenbridge_token_acquisitions_total{outcome=\"refreshed\"}",
        "tokenbridge_provider_request_duration_seconds_count",
        "tokenbridge_db_pool_wait_seconds_count",
        "tokenbridge_db_pool_connections_in_use",
        "tokenbridge_db_pool_connections_idle",
    ] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }
    assert!(!text.contains("no/such/page"), "routes, never raw paths");
    assert!(!text.contains("MADEUP") && !text.contains("MMMM"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    let methods: std::collections::BTreeSet<&str> = text
        .split("method=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    // The registry is the process's: other tests' requests are counted too.
    let standard = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
    ];
    assert!(
        methods.iter().all(|m| standard.contains(m)),
        "a fixed set of methods: {methods:?}"
    );
}
