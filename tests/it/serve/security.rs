//! Tampered callbacks, forged requests and bad conditions: each gets a clear answer, and
//! nothing is stored or lost.

use super::{location, spawn_app, TestApp};
use reqwest::cookie::CookieStore;
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use tokenbridge::db::Backend;
use tokenbridge::web::{local_path, Application};
use url::Url;

const SQLITE: Backend = Backend::Sqlite;

async fn app(test: &str) -> TestApp {
    spawn_app(test, SQLITE, |_| {})
        .await
        .expect("SQLite always runs")
}

/// A query parameter of `url`.
fn param(url: &str, name: &str) -> String {
    let url = Url::parse(url).unwrap();
    let found = url.query_pairs().find(|(k, _)| k == name);
    found
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// `url` with one query parameter's value replaced.
pub(super) fn set_param(url: &mut Url, name: &str, value: &str) {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == name {
                (k, value.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
}

/// Runs the provider part of a sign-in started at `/signin` and returns the callback URL,
/// without calling it. `tamper` may change the provider URL first.
async fn callback_url(app: &TestApp, user: &str, tamper: impl FnOnce(&mut Url)) -> String {
    let start = app.get("/signin").await;
    let mut provider = Url::parse(&location(&start)).unwrap();
    tamper(&mut provider);
    let mut fields: Vec<(String, String)> = provider.query_pairs().into_owned().collect();
    fields.push(("username".into(), user.into()));
    let action = format!(
        "{}://{}{}",
        provider.scheme(),
        provider.authority(),
        provider.path()
    );
    let back = app.browser.post(action).form(&fields).send().await.unwrap();
    assert_eq!(back.status(), 302);
    location(&back)
}

async fn assert_refused(app: &TestApp, response: reqwest::Response, words: &str) {
    assert_eq!(response.status(), 400);
    let html = response.text().await.unwrap();
    assert!(html.contains(words), "{words:?} in {html}");
    assert!(html.contains("Request id"), "{html}");
    assert_eq!(app.count("token_cache"), 0, "nothing stored");
    assert_eq!(app.count("account_activities"), 0, "nothing stored");
}

#[tokio::test]
async fn a_callback_without_the_sign_in_cookie_is_refused() {
    let app = app("serve::security::missing_cookie").await;
    let url = callback_url(&app, "ada", |_| {}).await;
    let stranger = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = stranger.get(&url).send().await.unwrap();
    assert_refused(&app, response, "another browser").await;
}

#[tokio::test]
async fn a_callback_with_the_wrong_state_is_refused() {
    let app = app("serve::security::wrong_state").await;
    let genuine = Url::parse(&callback_url(&app, "ada", |_| {}).await).unwrap();
    // A state no pending sign-in of this browser has.
    let mut url = genuine.clone();
    set_param(&mut url, "state", "forged");
    let response = app.browser.get(url).send().await.unwrap();
    assert_refused(&app, response, "another browser").await;
    // One that shares the cookie's name but not the whole state.
    let state = param(genuine.as_str(), "state");
    let mut altered = state.clone();
    let last = if altered.pop() == Some('A') { 'B' } else { 'A' };
    altered.push(last);
    let mut url = genuine.clone();
    set_param(&mut url, "state", &altered);
    let response = app.browser.get(url).send().await.unwrap();
    assert_refused(&app, response, "does not belong to this browser").await;
}

#[tokio::test]
async fn a_provider_error_callback_is_shown_and_stores_nothing() {
    let app = app("serve::security::provider_error").await;
    let start = app.get("/signin").await;
    let state = param(&location(&start), "state");
    let response = app
        .browser
        .get(app.url(&format!(
            "/signin-oidc?error=access_denied&error_description=nope&state={state}"
        )))
        .send()
        .await
        .unwrap();
    assert_refused(&app, response, "access denied").await;
}

#[tokio::test]
async fn a_replayed_code_is_refused() {
    let app = app("serve::security::replayed_code").await;
    let first = callback_url(&app, "ada", |_| {}).await;
    assert_eq!(app.browser.get(&first).send().await.unwrap().status(), 303);
    let code = param(&first, "code");
    // The same URL again: its one-time cookie is gone.
    assert_eq!(app.browser.get(&first).send().await.unwrap().status(), 400);
    // The old code with a fresh sign-in's state: the provider refuses the replay.
    let start = app.get("/signin").await;
    let state = param(&location(&start), "state");
    let replay = app
        .browser
        .get(app.url(&format!("/signin-oidc?code={code}&state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    assert!(replay.text().await.unwrap().contains("could not be used"));
    assert_eq!(
        app.count("token_cache"),
        1,
        "only the first sign-in stored anything"
    );
}

#[tokio::test]
async fn an_id_token_with_the_wrong_nonce_is_refused() {
    let app = app("serve::security::wrong_nonce").await;
    let url = callback_url(&app, "ada", |u| set_param(u, "nonce", "attacker-nonce")).await;
    let response = app.browser.get(url).send().await.unwrap();
    assert_refused(&app, response, "could not be used").await;
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    let app = app("serve::security::wrong_audience").await;
    app.idp.inject("wrong_audience", 1).await;
    let url = callback_url(&app, "ada", |_| {}).await;
    let response = app.browser.get(url).send().await.unwrap();
    assert_refused(&app, response, "could not be used").await;
}

#[tokio::test]
async fn return_urls_off_the_site_are_ignored() {
    for evil in [
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "evil.example",
        "/%0d%0aSet-Cookie:x",
    ] {
        let kept = local_path(Some(evil));
        assert!(kept == "/" || !kept.contains("evil.example/"), "{evil}");
        // Whatever is kept is a path on this site: one leading slash, no backslash, no control
        // characters (a browser would otherwise read it as another host or split the header).
        assert!(
            kept.starts_with('/') && !kept.starts_with("//"),
            "{evil} -> {kept}"
        );
        assert!(
            !kept.contains('\\') && !kept.chars().any(char::is_control),
            "{evil} -> {kept}"
        );
    }
    assert_eq!(local_path(Some("//evil.example")), "/");
    assert_eq!(local_path(Some("https://evil.example/")), "/");
    assert_eq!(local_path(Some("/\\evil.example")), "/");
    assert_eq!(local_path(Some("/profile?tab=2")), "/profile?tab=2");
    let app = app("serve::security::return_url").await;
    for evil in ["%2F%2Fevil.example", "https%3A%2F%2Fevil.example%2F"] {
        let callback = app
            .sign_in_via(&format!("/signin?returnUrl={evil}"), "ada")
            .await;
        assert_eq!(callback.status(), 303);
        assert_eq!(location(&callback), "/", "{evil}");
    }
}

/// A `returnUrl` long enough to push the sign-in cookie past browsers' 4 KiB is dropped (the
/// sign-in lands on `/`); one of 1,000 characters is kept.
#[tokio::test]
async fn a_long_return_url_is_dropped_and_the_sign_in_still_works() {
    let app = app("serve::security::long_return_url").await;
    let long = format!("/{}", "a".repeat(3000));
    let start = app.get(&format!("/signin?returnUrl={long}")).await;
    for cookie in start.headers().get_all("set-cookie") {
        assert!(cookie.len() < 4096, "a cookie of {} bytes", cookie.len());
    }
    let response = app
        .sign_in_via(&format!("/signin?returnUrl={long}"), "ada")
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/");
    let kept = format!("/{}", "b".repeat(1000));
    let response = app
        .sign_in_via(&format!("/signin?returnUrl={kept}"), "ada")
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), kept);
}

/// A provider that refuses the client (`invalid_client`: a wrong secret) is the app's problem,
/// not the user's: a 500 page that says so instead of "sign in again", and `/readyz` fails
/// until the provider accepts the client again.
#[tokio::test]
async fn a_client_the_provider_refuses_is_a_configuration_problem_not_the_users() {
    let readyz = |app: &TestApp| {
        let url = app.url("/readyz");
        async move {
            let response = reqwest::get(url).await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let wrong_secret = super::spawn_app_with(
        "serve::security::wrong_secret",
        SQLITE,
        |_| {},
        |s| {
            s.identity.client_secret = Some(tokenbridge::secret::Secret::new("not-the-secret"));
        },
    )
    .await
    .unwrap();
    assert_eq!(readyz(&wrong_secret).await.0, 200);
    let callback = wrong_secret.sign_in_via("/signin", "ada").await;
    assert_eq!(callback.status(), 500);
    let page = callback.text().await.unwrap();
    assert!(page.contains("Configuration problem"), "{page}");
    assert!(!page.contains("sign in again"), "{page}");
    let (status, body) = readyz(&wrong_secret).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["provider"], "misconfigured");

    // Refused once, then accepted: ready again after the next sign-in.
    let app = app("serve::security::refused_once").await;
    app.idp.inject("invalid_client", 1).await;
    assert_eq!(app.sign_in_via("/signin", "ada").await.status(), 500);
    assert_eq!(readyz(&app).await.0, 503);
    app.sign_in("ada").await;
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn sign_out_needs_the_csrf_token() {
    let app = app("serve::security::csrf").await;
    app.sign_in("ada").await;
    for form in [vec![], vec![("csrf", "guessed")]] {
        let response = app
            .browser
            .post(app.url("/signout"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{form:?}");
    }
    assert_eq!(app.count("token_cache"), 1, "still signed in");
    assert_eq!(app.home_html().await.0, 200);
}

/// The CSRF token is unpredictable and differs per session: two sign-ins of one user in two
/// browsers get tokens that share nothing, each long enough not to be guessed, and one
/// session's token does not sign the other out.
#[tokio::test]
async fn csrf_tokens_are_random_and_per_session() {
    let app = app("serve::security::csrf_random").await;
    app.sign_in("ada").await;
    let first = TestApp::csrf(&app.home_html().await.1);
    let other = app.sign_in_elsewhere("ada").await;
    let html = other
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let second = TestApp::csrf(&html);
    assert_ne!(first, second);
    assert!(first.len() >= 22 && second.len() >= 22, "{first} {second}");
    let shared = first
        .as_bytes()
        .windows(8)
        .any(|w| second.as_bytes().windows(8).any(|v| v == w));
    assert!(!shared, "{first} {second}");
    let crossed = other
        .post(app.url("/signout"))
        .form(&[("csrf", first.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), 400, "another session's token");
}

/// A sign-in left pending longer than its lifetime (10 minutes) is refused at the callback,
/// its code never redeemed.
#[tokio::test]
async fn a_pending_sign_in_older_than_its_lifetime_is_refused() {
    let app = app("serve::security::pending_ttl").await;
    let callback = app.callback_url(&app.browser, "/signin", "ada").await;
    app.clock.advance(time::Duration::seconds(601));
    let codes = app.idp.counters().await["codes_redeemed"].as_u64().unwrap();
    let response = app.browser.get(callback).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("sign in again"));
    assert_eq!(app.count("token_cache"), 0);
    assert_eq!(
        app.idp.counters().await["codes_redeemed"].as_u64().unwrap(),
        codes,
        "the code was never redeemed"
    );
}

#[tokio::test]
async fn a_tampered_session_cookie_is_a_signed_out_visitor() {
    let app = app("serve::security::tampered_session").await;
    app.sign_in("ada").await;
    let url = Url::parse(&app.base).unwrap();
    let cookies = app.jar.cookies(&url).unwrap();
    let session = cookies
        .to_str()
        .unwrap()
        .split("; ")
        .find(|c| c.starts_with("tb_session="))
        .unwrap()
        .to_owned();
    let mut bytes = session.into_bytes();
    let last = bytes.len() - 3;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(bytes).unwrap();
    let stranger = reqwest::Client::new();
    let response = stranger
        .get(app.url("/"))
        .header("Cookie", forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("Sign in") && !html.contains("Hello"),
        "{html}"
    );
    assert_eq!(app.count("token_cache"), 1);
}

#[tokio::test]
async fn a_corrupt_cache_row_sends_the_user_to_sign_in_and_is_replaced() {
    use diesel::prelude::*;
    use tokenbridge::db::schema::token_cache::dsl as tc;
    let app = app("serve::security::corrupt_row").await;
    app.sign_in("ada").await;
    // Another writer stored garbage (with a new version, as every write has).
    diesel::update(tc::token_cache)
        .set((
            tc::value.eq(b"TBs1\x02k1garbage".to_vec()),
            tc::version.eq(tc::version + 1),
        ))
        .execute(&mut *app.db.conn())
        .unwrap();
    let response = app.get("/").await;
    assert_eq!(response.status(), 302, "not a 500");
    assert_eq!(location(&response), "/signin?returnUrl=%2F");
    let callback = app.sign_in_via("/signin", "ada").await;
    assert_eq!(callback.status(), 303);
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200);
    assert!(html.contains("Hello, Ada"));
    assert_eq!(app.count("token_cache"), 1);
}

#[tokio::test]
async fn the_provider_down_gives_a_page_that_says_so() {
    let db = crate::support::migrated(SQLITE).unwrap();
    let idp = crate::dev_idp::spawn_idp().await;
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_base = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = super::app_settings(&db, &idp, &base);
    settings.identity.instance = Url::parse(&dead_base).unwrap();
    let app = Application::build_on(
        &settings,
        listener,
        Arc::new(tokenbridge::clock::SystemClock),
    )
    .await
    .unwrap();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(format!("{base}/signin")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("identity provider is not answering"));
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: HashMap<String, String> = ready.json().await.unwrap();
    assert_eq!(
        (body["database"].as_str(), body["provider"].as_str()),
        ("ok", "unavailable")
    );
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn the_database_going_away_gives_503_and_readyz_fails() {
    // A short pool timeout: how long a request waits for the database before the 503.
    let Some(app) = super::spawn_app_with(
        "serve::security::database_down",
        Backend::Postgres,
        |_| {},
        |s| {
            s.database.connect_timeout = std::time::Duration::from_secs(2);
        },
    )
    .await
    else {
        return;
    };
    app.sign_in("ada").await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.db.destroy();
    let response = app.get("/").await;
    assert_eq!(response.status(), 503);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("token store is unavailable"));
    let started = std::time::Instant::now();
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "readyz answers within its probe timeout: {:?}",
        started.elapsed()
    );
}

/// `/readyz` probes with a write: a database that answers reads but refuses writes is not
/// ready. The database's answer is kept for a second, so probes cannot overload it.
#[tokio::test]
async fn readyz_fails_when_the_database_refuses_writes() {
    let app = super::spawn_app_with(
        "serve::security::not_writable",
        SQLITE,
        |_| {},
        |s| s.database.busy_timeout = std::time::Duration::from_millis(300),
    )
    .await
    .unwrap();
    let readyz = || async {
        let response = app.get("/readyz").await;
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(readyz().await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let locked = crate::support::lock_token_cache(&app.db, std::time::Duration::from_millis(1500));
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "not_writable");
    // Kept for a second: the next probe does not touch the database (and does not wait).
    let started = std::time::Instant::now();
    assert_eq!(readyz().await.0, 503);
    assert!(started.elapsed() < std::time::Duration::from_millis(200));
    locked.join().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(readyz().await.0, 200);
}

#[tokio::test]
async fn oversized_bodies_unknown_routes_and_request_ids() {
    let app = app("serve::security::limits").await;
    let big = "x".repeat(100 * 1024);
    let response = app
        .browser
        .post(app.url("/signout"))
        .form(&[("csrf", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let missing = app.get("/no/such/page").await;
    assert_eq!(missing.status(), 404);
    let id = missing
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        missing.text().await.unwrap().contains(&id),
        "the page shows the request id"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let page = app.get("/").await;
    let header = |name: &str| {
        page.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert!(header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"));
}

/// Sends the start of a POST whose body never finishes; returns the open connection.
fn trickle(base: &str, path: &str) -> std::net::TcpStream {
    use std::io::Write as _;
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncsrf=aaaa"
    )
    .unwrap();
    stream
}

/// Everything the server sends on `stream` until it closes it (or `wait` passes).
fn read_all(mut stream: std::net::TcpStream, wait: std::time::Duration) -> (String, bool) {
    use std::io::Read as _;
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&text).into_owned(), true),
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&text).into_owned(), false),
        }
    }
}

/// A body that trickles in is cut off: 408 after `web.body_timeout`, connection closed; and
/// one address cannot hold more than `web.max_requests_per_client` requests open at once.
#[tokio::test]
async fn slow_bodies_time_out_and_one_address_cannot_hold_many_requests() {
    let app = super::spawn_app_with(
        "serve::security::slow_bodies",
        SQLITE,
        |_| {},
        |s| {
            s.web.body_timeout = std::time::Duration::from_secs(1);
            s.web.max_requests_per_client = 4;
        },
    )
    .await
    .unwrap();
    let base = app.base.clone();
    let started = std::time::Instant::now();
    let (answer, closed) = tokio::task::spawn_blocking(move || {
        read_all(
            trickle(&base, "/signout"),
            std::time::Duration::from_secs(10),
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(closed, "the connection is closed");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // Four bodies trickling: a fifth request from the same address is refused at once.
    let base = app.base.clone();
    let held: Vec<_> = (0..4).map(|_| trickle(&base, "/signout")).collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let refused = app.get("/healthz").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    // Once they have timed out, the address is served again.
    let answers = tokio::task::spawn_blocking(move || {
        held.into_iter()
            .map(|s| read_all(s, std::time::Duration::from_secs(10)).0)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(
        answers.iter().all(|a| a.starts_with("HTTP/1.1 408")),
        "{answers:?}"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// HEAD works wherever GET does (a HEAD-based monitor sees the app up), with no body; OPTIONS
/// says what a path allows; another method is 405.
#[tokio::test]
async fn head_and_options_answer_on_every_path() {
    let app = app("serve::security::head_options").await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/", "/healthz", "/readyz", "/signout-callback-oidc"] {
        let head = client.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        let options = client
            .request(reqwest::Method::OPTIONS, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(options.status(), 204, "OPTIONS {path}");
        assert_eq!(options.headers()["allow"], "GET, HEAD", "{path}");
    }
    let options = client
        .request(reqwest::Method::OPTIONS, app.url("/signout"))
        .send()
        .await
        .unwrap();
    assert_eq!(options.headers()["allow"], "POST");
    let delete = client.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(delete.status(), 405);
    // On the wire: headers only.
    let base = app.base.clone();
    let (answer, _) = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let addr = base.trim_start_matches("http://").to_owned();
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(stream, "HEAD /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        read_all(stream, std::time::Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\n"),
        "no body after the headers: {answer:?}"
    );
}
