//! Refreshing as a person meets it in the web app: short-lived tokens, a provider that answers
//! after the app gave up (or never), a browser that goes away mid-refresh, a database that
//! fails once after the provider rotated the token, and a replica without the cache key.

use super::{e2e_tests, location, spawn_app, spawn_app_with, TestApp};
use std::time::Duration as StdDuration;
use time::Duration;
use tokenbridge::db::Backend;
use tokenbridge::settings::{DevIdpSettings, Rotation};

e2e_tests!(
    sixty_second_tokens_show_the_page_and_refresh_every_thirty_seconds,
    a_browser_that_goes_away_mid_refresh_costs_nothing,
    a_save_that_fails_once_after_redemption_keeps_the_user_signed_in,
);

fn strict(s: &mut DevIdpSettings) {
    s.rotation = Rotation::Strict;
}

async fn counter(app: &TestApp, name: &str) -> u64 {
    app.idp.counters().await[name].as_u64().unwrap()
}

async fn late_answer(app: &TestApp, delay_ms: Option<u64>) {
    let late = serde_json::json!({ "kind": "late_answer", "delay_ms": delay_ms });
    app.idp
        .admin(reqwest::Method::POST, "faults", Some(late))
        .await;
}

async fn until_refreshes(app: &TestApp, n: u64) {
    for _ in 0..500 {
        if counter(app, "refreshes").await >= n {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    panic!("the provider never saw refresh {n}");
}

/// The README's own example (`dev-idp --access-token-ttl 60s`): every page works, and the token
/// is refreshed once half its life is gone, not on every page.
async fn sixty_second_tokens_show_the_page_and_refresh_every_thirty_seconds(backend: Backend) {
    let Some(app) = spawn_app("serve::sixty_second_tokens", backend, |s| {
        strict(s);
        s.access_token_ttl = StdDuration::from_secs(60);
    })
    .await
    else {
        return;
    };
    app.sign_in("ada").await;
    for (n, (seconds, refreshes)) in [(0, 0), (20, 0), (15, 1), (5, 1), (30, 2)]
        .into_iter()
        .enumerate()
    {
        app.clock.advance(Duration::seconds(seconds));
        let (status, html) = app.home_html().await;
        assert_eq!(status, 200, "step {n}: {html}");
        assert!(html.contains("Hello, Ada"), "step {n}");
        assert_eq!(counter(&app, "refreshes").await, refreshes, "step {n}");
    }
    assert_eq!(counter(&app, "reuse_detections").await, 0);
}

/// The provider rotates the token, the browser gives up before the answer comes: the refresh
/// finishes and is saved anyway, and the next page uses it (no second redemption).
async fn a_browser_that_goes_away_mid_refresh_costs_nothing(backend: Backend) {
    let Some(app) = spawn_app("serve::browser_goes_away", backend, strict).await else {
        return;
    };
    app.sign_in("ada").await;
    app.clock.advance(Duration::hours(2));
    late_answer(&app, Some(800)).await;
    let gave_up = app
        .browser
        .get(app.url("/"))
        .timeout(StdDuration::from_millis(200))
        .send()
        .await;
    assert!(gave_up.is_err(), "the browser went away");
    until_refreshes(&app, 1).await;
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(counter(&app, "refreshes").await, 1);
    assert_eq!(counter(&app, "reuse_detections").await, 0);
}

/// The table is locked for longer than the app waits for a lock just as the provider's answer
/// arrives: the write is retried, the page works, and the user stays signed in.
async fn a_save_that_fails_once_after_redemption_keeps_the_user_signed_in(backend: Backend) {
    let Some(app) = spawn_app_with("serve::save_fails_once", backend, strict, |s| {
        s.database.busy_timeout = StdDuration::from_secs(1)
    })
    .await
    else {
        return;
    };
    app.sign_in("ada").await;
    app.clock.advance(Duration::hours(2));
    late_answer(&app, Some(800)).await;
    let page = app.home_html();
    let locker = async {
        until_refreshes(&app, 1).await;
        crate::support::lock_token_cache(&app.db, StdDuration::from_millis(2500))
    };
    let ((status, html), held) = futures_util::future::join(page, locker).await;
    held.join().unwrap();
    assert_eq!(status, 200, "{html}");
    // Later pages and later refreshes work without signing in again.
    app.clock.advance(Duration::hours(2));
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(counter(&app, "refreshes").await, 2);
    assert_eq!(counter(&app, "reuse_detections").await, 0);
}

/// The provider never answers (`hang`): nothing was redeemed, so after a 503 the next page
/// works, even under strict rotation.
#[tokio::test]
async fn a_provider_that_hangs_costs_one_error_page() {
    let app = spawn_app_with("serve::hang", Backend::Sqlite, strict, |s| {
        s.identity.http_timeout = StdDuration::from_secs(1)
    })
    .await
    .unwrap();
    app.sign_in("ada").await;
    app.clock.advance(Duration::hours(2));
    app.idp.inject("hang", 1).await;
    assert_eq!(app.get("/").await.status(), 503);
    assert_eq!(app.home_html().await.0, 200);
    assert_eq!(counter(&app, "refreshes").await, 1);
    assert_eq!(counter(&app, "reuse_detections").await, 0);
}

/// The provider redeems the token and the answer is lost (`lose_answer`), or comes after the
/// app gave up (`late_answer`). Where old tokens keep working (Entra ID's rotation), the next
/// page works. Under strict reuse detection no client can recover: the token it holds is
/// spent and the provider revokes the user, who must sign in again (README: set the
/// provider's reuse interval).
#[tokio::test]
async fn an_answer_lost_after_rotation_is_recovered_only_where_the_provider_allows() {
    for (fault, rotation, recovers) in [
        ("lose_answer", Rotation::Rotate, true),
        ("late_answer", Rotation::Rotate, true),
        ("lose_answer", Rotation::Strict, false),
    ] {
        let app = spawn_app_with(
            "serve::lost_answer",
            Backend::Sqlite,
            |s| s.rotation = rotation,
            |s| s.identity.http_timeout = StdDuration::from_secs(1),
        )
        .await
        .unwrap();
        app.sign_in("ada").await;
        app.clock.advance(Duration::hours(2));
        if fault == "late_answer" {
            late_answer(&app, None).await;
        } else {
            app.idp.inject(fault, 1).await;
        }
        assert_eq!(app.get("/").await.status(), 503, "{fault} {rotation:?}");
        let next = app.get("/").await;
        if recovers {
            assert_eq!(next.status(), 200, "{fault} {rotation:?}");
            assert_eq!(counter(&app, "reuse_detections").await, 0);
        } else {
            assert_eq!(next.status(), 302, "{fault} {rotation:?}");
            assert_eq!(location(&next), "/signin?returnUrl=%2F");
            assert_eq!(counter(&app, "reuse_detections").await, 1);
        }
    }
}

/// A replica deployed without the key the rows are sealed with, or with another value under
/// its id (a typo, a regenerated secret): a 500 page naming the cause, `/readyz` 503 naming the
/// key, and no row overwritten; the correctly keyed app goes on serving.
#[tokio::test]
async fn a_replica_without_the_cache_key_says_so_and_changes_nothing() {
    let app = spawn_app("serve::missing_key", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    app.sign_in("ada").await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    let before = app.cache_rows();
    let other = crate::fixtures::OTHER_KEY;
    for (spec, named) in [
        (format!("k2={other}"), "`k1`, which is not configured"),
        (format!("k1={other}"), "cache key `k1` is not the key"),
    ] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let replica = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let mut settings = app.settings.clone();
        settings.cache.keys = Some(crate::fixtures::keys(&spec));
        let server = tokenbridge::web::Application::build_on(
            &settings,
            listener,
            std::sync::Arc::new(app.clock.clone()),
        )
        .await
        .unwrap();
        tokio::spawn(server.run_until_stopped());

        let readyz = app
            .browser
            .get(format!("{replica}/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(readyz.status(), 503, "{spec}");
        let body: serde_json::Value = readyz.json().await.unwrap();
        assert_eq!(body["cache_keys"], "misconfigured", "{body}");
        let problem = body["cache_keys_problem"].as_str().unwrap();
        assert!(problem.contains(named), "{spec}: {problem}");
        assert!(
            !problem.contains(other) && !problem.contains(&before[0].0),
            "{problem}"
        );
        let page = app.browser.get(format!("{replica}/")).send().await.unwrap();
        assert_eq!(page.status(), 500);
        let html = page.text().await.unwrap();
        assert!(
            html.contains("encryption keys") && html.contains("cache.keys"),
            "{html}"
        );
        assert_eq!(app.cache_rows(), before, "nothing was overwritten");
    }
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.get("/").await.status(), 200);
}

/// An error page never traps a signed-in user: it offers sign-out (which works), and a 503
/// passes on the provider's `Retry-After`.
#[tokio::test]
async fn error_pages_offer_sign_out_and_pass_on_retry_after() {
    let app = spawn_app("serve::error_pages", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    app.sign_in("ada").await;
    app.clock.advance(Duration::hours(2));
    app.idp.inject("503", 1).await; // Retry-After: 7
    let unavailable = app.get("/").await;
    assert_eq!(unavailable.status(), 503);
    assert_eq!(unavailable.headers()["retry-after"].to_str().unwrap(), "7");
    let html = unavailable.text().await.unwrap();
    assert!(html.contains(r#"action="/signout""#), "{html}");

    // A configuration problem (an ID token for another audience) offers the same way out.
    app.idp.inject("wrong_audience", 1).await;
    let broken = app.get("/").await;
    assert_eq!(broken.status(), 500);
    let html = broken.text().await.unwrap();
    assert!(html.contains("Configuration problem"), "{html}");
    let signed_out = app.sign_out_from(&html).await;
    assert_eq!(
        signed_out.status(),
        303,
        "sign-out works from the error page"
    );
    assert!(app.home_html().await.1.contains("Sign in"));
}
