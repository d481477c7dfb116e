//! Logouts that name a provider session (`sid`): a Back-Channel Logout ends the app sessions
//! that began in it (and the user's cache once none is left); a Front-Channel Logout, loaded in
//! the user's browser by the provider's logout page without the app's cookies, signs the user
//! out everywhere. Two replicas, every backend and Redis.

use super::provider_logout::{has_cache, reports_signed_out_at_provider};
use super::{e2e_tests, spawn_app, TestApp};
use crate::worker::{activity, outcomes, pass};
use base64::Engine as _;
use serde_json::{json, Value};
use tokenbridge::db::Backend;
use tokenbridge::identity::provider::BACKCHANNEL_EVENT;

e2e_tests!(and_redis:
    a_logout_naming_a_provider_session_ends_only_the_sessions_begun_in_it,
    a_front_channel_logout_signs_the_user_out_everywhere,
    a_logout_while_another_replica_refreshes_leaves_no_row_behind,
);

/// The `sid` of `user`'s latest sign-in, from the ID token in their cache.
async fn latest_sid(app: &TestApp, user: &str) -> String {
    let id = activity(app, user).account_cache_key;
    let now = time::OffsetDateTime::now_utc();
    let loaded = crate::acquire::apis::acquirer(app)
        .caches()
        .load(&id, now)
        .await
        .unwrap()
        .unwrap();
    let (_, entry) = loaded.document.id_tokens().next().unwrap();
    let payload = entry.secret.expose().split('.').nth(1).unwrap().to_owned();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

/// A logout token with `claims` (`jti` and `sub` or `sid`) and the rest valid at the app's
/// time, signed by the provider and POSTed to `base`: the answer's status.
async fn send_logout_token(app: &TestApp, base: &str, claims: Value) -> u16 {
    let now = tokenbridge::clock::Clock::now(&app.clock).unix_timestamp();
    let mut token = json!({
        "iss": app.idp.issuer,
        "aud": crate::dev_idp::CLIENT_ID,
        "iat": now,
        "exp": now + 120,
        "events": { BACKCHANNEL_EVENT: {} },
    });
    for (name, value) in claims.as_object().unwrap() {
        token[name] = value.clone();
    }
    let token = app.idp.logout_token(&token).await;
    reqwest::Client::new()
        .post(format!("{base}/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Signs out at the provider's own logout page in `browser`; returns the page.
async fn sign_out_at_provider(app: &TestApp, browser: &reqwest::Client) -> String {
    let page = browser
        .get(app.idp.endpoint("logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    page.text().await.unwrap()
}

async fn profile_shown(browser: &reqwest::Client, url: String) -> bool {
    let html = browser.get(url).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("ada@tokenbridge.dev") || html.contains("Sign in"),
        "{html}"
    );
    html.contains("ada@tokenbridge.dev")
}

async fn a_logout_naming_a_provider_session_ends_only_the_sessions_begun_in_it(backend: Backend) {
    let Some(app) = spawn_app("serve::provider_sessions", backend, |_| {}).await else {
        return;
    };
    // ada signs in here, and in a browser of her own: two provider sessions.
    app.sign_in("ada").await;
    let phone = app.sign_in_elsewhere("ada").await;
    let phone_sid = latest_sid(&app, "ada").await;
    let replica = app.replica().await;
    assert!(profile_shown(&app.browser, app.url("/")).await);
    assert!(profile_shown(&phone, format!("{replica}/")).await);

    // She signs out at the provider in the first browser: the provider sends a logout token
    // naming her and that session.
    sign_out_at_provider(&app, &app.browser).await;
    assert_eq!(app.idp.counters().await["backchannel_logouts_sent"], 1);
    assert!(
        !profile_shown(&app.browser, app.url("/")).await,
        "that browser's session ended"
    );
    assert!(
        !profile_shown(&app.browser, format!("{replica}/")).await,
        "in every replica"
    );
    assert!(
        profile_shown(&phone, app.url("/")).await,
        "the other goes on"
    );
    assert!(profile_shown(&phone, format!("{replica}/")).await);
    assert!(
        has_cache(&app, "ada").await,
        "she is still signed in elsewhere"
    );
    assert!(activity(&app, "ada").signed_out_at.is_none());
    let run = pass(&app, |o| o.older_than = std::time::Duration::ZERO).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok")]));

    // A logout token naming only the other session, to the other replica: her last session
    // ends, and with it her cache; the worker stops.
    let sent = send_logout_token(
        &app,
        &replica,
        json!({ "jti": "sid-only", "sid": phone_sid }),
    );
    assert_eq!(sent.await, 200);
    assert!(!has_cache(&app, "ada").await);
    assert!(!profile_shown(&phone, app.url("/")).await);
    assert!(activity(&app, "ada").signed_out_at_the_provider());
    let run = pass(&app, |o| o.older_than = std::time::Duration::ZERO).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "signed_out")]));
    reports_signed_out_at_provider(&run, "ada");
}

async fn a_front_channel_logout_signs_the_user_out_everywhere(backend: Backend) {
    let Some(app) = spawn_app("serve::frontchannel", backend, |idp| {
        // Front-channel only, as Entra ID does it.
        let client = &mut idp.clients[0];
        client.frontchannel_logout_uri = client
            .backchannel_logout_uri
            .take()
            .map(|uri| uri.replace("/backchannel-logout", "/frontchannel-logout"));
    })
    .await
    else {
        return;
    };
    let frame_uri = app.url("/frontchannel-logout");
    app.sign_in("ada").await;
    let phone = app.sign_in_elsewhere("ada").await;
    let grace = app.sign_in_elsewhere("grace").await;
    let replica = app.replica().await;

    // The provider's logout page frames the app's front-channel URI with its iss and sid.
    let page = sign_out_at_provider(&app, &app.browser).await;
    let start = page.find(&frame_uri).expect("a front-channel frame");
    let src = page[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let sid = url::Url::parse(&src)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "sid")
        .unwrap()
        .1
        .into_owned();
    // A frame on the provider's page is cross-site: the browser sends no app cookie with it.
    let frame = reqwest::Client::new();
    let tampered = |name: &str, value: &str| {
        let mut url = url::Url::parse(&src).unwrap();
        super::security::set_param(&mut url, name, value);
        url.to_string()
    };
    for (bad, why) in [
        (tampered("iss", "https://evil.example/"), "another issuer"),
        (tampered("sid", ""), "no sid"),
    ] {
        let answer = frame.get(&bad).send().await.unwrap();
        assert_eq!(answer.status(), 400, "{why}");
        assert!(has_cache(&app, "ada").await, "{why}: nothing deleted");
    }
    // A session nobody began here; and Entra ID's way, a sid without iss.
    for unknown in [
        tampered("sid", "a-session-nobody-began-here"),
        app.url("/frontchannel-logout?sid=another"),
    ] {
        assert_eq!(frame.get(&unknown).send().await.unwrap().status(), 200);
        assert!(has_cache(&app, "ada").await);
    }

    let answer = frame.get(&src).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    let idp_origin = url::Url::parse(&app.idp.issuer)
        .unwrap()
        .origin()
        .ascii_serialization();
    let policy = header("content-security-policy").unwrap();
    assert!(
        policy.contains(&format!("frame-ancestors {idp_origin}")),
        "only the provider may frame it: {policy}"
    );
    assert_eq!(header("x-frame-options"), None, "{policy}");
    assert_ne!(sid, "");

    // ada is signed out everywhere: both her browsers, both replicas; grace is not.
    assert!(!has_cache(&app, "ada").await);
    assert!(!profile_shown(&app.browser, format!("{replica}/")).await);
    assert!(!profile_shown(&phone, app.url("/")).await);
    let graces = grace.get(app.url("/")).send().await.unwrap();
    assert!(graces
        .text()
        .await
        .unwrap()
        .contains("grace@tokenbridge.dev"));
    // Other pages still refuse every frame.
    let home = app.get("/").await;
    assert_eq!(home.headers()["x-frame-options"], "DENY");

    let run = pass(&app, |o| o.older_than = std::time::Duration::ZERO).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[("ada", "signed_out"), ("grace", "ok")])
    );
    reports_signed_out_at_provider(&run, "ada");

    // She signs in again here (a new provider session), signs out of the app (the provider
    // session lives on), and signs in on another device: that sign-in did not begin in the
    // first provider session, so its logout ends nothing of it.
    app.sign_in("ada").await;
    let earlier_sid = latest_sid(&app, "ada").await;
    let (_, html) = app.home_html().await;
    assert_eq!(app.sign_out_from(&html).await.status(), 303);
    let tablet = app.sign_in_elsewhere("ada").await;
    assert_ne!(latest_sid(&app, "ada").await, earlier_sid);
    let earlier = frame
        .get(tampered("sid", &earlier_sid))
        .send()
        .await
        .unwrap();
    assert_eq!(earlier.status(), 200);
    assert!(has_cache(&app, "ada").await);
    assert!(profile_shown(&tablet, app.url("/")).await);
}

/// At a provider other than Entra ID the request must name the issuer, as the specification
/// says: a `sid` alone is refused.
#[tokio::test]
async fn a_generic_provider_s_front_channel_logout_must_name_its_issuer() {
    let Some(app) = super::spawn_app_with(
        "serve::frontchannel_oidc",
        Backend::Sqlite,
        |_| {},
        super::as_generic_provider,
    )
    .await
    else {
        return;
    };
    app.sign_in("ada").await;
    let sid = latest_sid(&app, "ada").await;
    let frame = reqwest::Client::new();
    let without_iss = format!("{}?sid={sid}", app.url("/frontchannel-logout"));
    assert_eq!(frame.get(&without_iss).send().await.unwrap().status(), 400);
    assert!(has_cache(&app, "ada").await);
    let mut with_iss = url::Url::parse(&app.url("/frontchannel-logout")).unwrap();
    with_iss
        .query_pairs_mut()
        .append_pair("iss", app.settings.identity.issuer.as_deref().unwrap())
        .append_pair("sid", &sid);
    let answer = frame.get(with_iss).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(!has_cache(&app, "ada").await);
}

/// ada's tokens are being refreshed by one replica (the provider's answer held back) when a
/// logout token for her reaches the other: the refresh's write is refused (her row's session
/// epoch is gone), so no row comes back, then or later.
async fn a_logout_while_another_replica_refreshes_leaves_no_row_behind(backend: Backend) {
    let Some(app) = spawn_app("serve::logout_mid_refresh", backend, |_| {}).await else {
        return;
    };
    app.sign_in("ada").await;
    let sub = activity(&app, "ada").subject.unwrap();
    let replica = app.replica().await;
    app.clock.advance(time::Duration::hours(2));
    let late = json!({ "kind": "late_answer", "delay_ms": 800 });
    app.idp
        .admin(reqwest::Method::POST, "faults", Some(late))
        .await;
    let page = app.home_html();
    let logout = async {
        for _ in 0..500 {
            if app.idp.counters().await["refreshes"].as_u64().unwrap() >= 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(has_cache(&app, "ada").await, "the refresh is under way");
        let sent = send_logout_token(&app, &replica, json!({ "jti": "mid-refresh", "sub": sub }));
        assert_eq!(sent.await, 200);
        assert!(!has_cache(&app, "ada").await);
    };
    let ((status, html), ()) = futures_util::future::join(page, logout).await;
    // The page learns that its refresh was for a sign-in that has ended: off to sign in.
    assert!(status == 302 || html.contains("Sign in"), "{status} {html}");
    // The refresh has answered and tried its write: refused, and nothing is retried later.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!has_cache(&app, "ada").await, "no row came back");
    assert!(activity(&app, "ada").signed_out_at_the_provider());
    let run = pass(&app, |o| o.older_than = std::time::Duration::ZERO).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "signed_out")]));
}

/// What was recorded for a sign-in's provider session is swept once its app sessions have all
/// ended (web.session_absolute), by the worker's pass, which the metrics count.
#[tokio::test]
async fn provider_sessions_past_the_longest_session_are_swept_by_a_worker_pass() {
    let Some(app) = spawn_app("serve::provider_sessions_sweep", Backend::Sqlite, |_| {}).await
    else {
        return;
    };
    app.sign_in("ada").await;
    assert_eq!(app.count("provider_sessions"), 1);
    let run = pass(&app, |o| o.older_than = std::time::Duration::ZERO).await;
    assert!(run.result.is_ok());
    assert_eq!(
        app.count("provider_sessions"),
        1,
        "still within the session's life"
    );
    let passes = tokenbridge::metrics::metrics()
        .encode(tokenbridge::metrics::PoolState { open: 0, idle: 0 });
    assert!(
        passes
            .lines()
            .any(|l| l.starts_with("tokenbridge_worker_passes_total{result=\"ok\"}")),
        "{passes}"
    );
    app.clock.advance(time::Duration::days(8));
    // A new worker: the sweep runs on its first pass.
    pass(&app, |o| o.older_than = std::time::Duration::ZERO).await;
    assert_eq!(app.count("provider_sessions"), 0);
}
