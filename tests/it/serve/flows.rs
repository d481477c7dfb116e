//! The flows a person goes through, on every backend.

use super::{e2e_tests, location, spawn_app, TestApp};
use time::Duration;
use tokenbridge::activity::store as activities;
use tokenbridge::db::Backend;
use tokenbridge::settings::Rotation;

e2e_tests!(and_redis:
    sign_in_shows_the_profile_and_stores_a_sealed_cache,
    an_expired_access_token_is_refreshed_silently,
    twenty_concurrent_page_loads_after_expiry_cause_one_refresh,
    a_revoked_user_is_sent_to_sign_in,
    sign_out_removes_the_cache_row,
);

fn raw_cache(app: &TestApp) -> Vec<(String, Vec<u8>, i64)> {
    app.cache_rows()
}

async fn sign_in_shows_the_profile_and_stores_a_sealed_cache(backend: Backend) {
    let Some(app) = spawn_app("serve::sign_in_shows_the_profile", backend, |_| {}).await else {
        return;
    };
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200);
    assert!(html.contains("Sign in"), "signed out first");

    app.sign_in("ada.lovelace").await;
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Hello, Ada Lovelace"), "{html}");
    assert!(html.contains("ada.lovelace@tokenbridge.dev") && html.contains("userPrincipalName"));
    assert!(html.contains("Sign out"));

    let rows = raw_cache(&app);
    assert_eq!(rows.len(), 1);
    let (id, value, version) = &rows[0];
    assert!(value.starts_with(b"TBs1"), "sealed at rest");
    assert!(!String::from_utf8_lossy(value).contains("AccessToken"));
    assert_eq!(*version, 1);
    assert!(
        id.ends_with(&format!(".{}", app.idp.tenant)),
        "home account id is uid.utid: {id}"
    );
    if let Some(redis) = &app.redis {
        // In Redis, under the app's prefix, and not in the database's table.
        use diesel::prelude::*;
        use tokenbridge::db::schema::token_cache::dsl as tc;
        assert_eq!(redis.user_keys(), [redis.cache_key(id)]);
        assert!(
            redis.keys().contains(&redis.check_key("k1")),
            "the key's check value"
        );
        let in_sql: i64 = tc::token_cache
            .count()
            .get_result(&mut *app.db.conn())
            .unwrap();
        assert_eq!(in_sql, 0);
    }
    let activity = activities::get(&mut app.db.conn(), id).unwrap().unwrap();
    assert_eq!(
        activity.user_principal_name.as_deref(),
        Some("ada.lovelace@tokenbridge.dev")
    );
    assert_eq!(
        activity.account_tenant_id.as_deref(),
        Some(app.idp.tenant.as_str())
    );
    assert!(!activity.failed_to_acquire_token);
    // The page was served from the cache: no refresh yet.
    assert_eq!(app.idp.counters().await["refreshes"], 0);
}

async fn an_expired_access_token_is_refreshed_silently(backend: Backend) {
    let Some(app) = spawn_app(
        "serve::an_expired_access_token_is_refreshed",
        backend,
        |_| {},
    )
    .await
    else {
        return;
    };
    app.sign_in("ada").await;
    app.clock.advance(Duration::minutes(58)); // less than 300 s left
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Hello, Ada"));
    let counters = app.idp.counters().await;
    assert_eq!(counters["refreshes"], 1);
    assert_eq!(
        raw_cache(&app)[0].2,
        2,
        "the refreshed cache was written back"
    );
    // And the refreshed token is used from then on.
    app.home_html().await;
    assert_eq!(app.idp.counters().await["refreshes"], 1);
}

/// Two replicas of `serve` on one database, provider latency so the race is real, strict
/// rotation, 60-second access tokens: twenty page loads past the refresh margin, one refresh.
async fn twenty_concurrent_page_loads_after_expiry_cause_one_refresh(backend: Backend) {
    let Some(app) = spawn_app("serve::twenty_concurrent_page_loads", backend, |s| {
        s.rotation = Rotation::Strict;
        s.token_latency = std::time::Duration::from_millis(300);
        s.access_token_ttl = std::time::Duration::from_secs(60);
    })
    .await
    else {
        return;
    };
    app.sign_in("ada").await;
    let replica = app.replica().await;
    let (status, html) = {
        let r = app.browser.get(format!("{replica}/")).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert_eq!(status, 200, "the replica shares the session: {html}");
    assert!(html.contains("Hello, Ada"));
    app.clock.advance(Duration::seconds(45));
    let loads: Vec<_> = (0..20)
        .map(|n| {
            let base = if n % 2 == 0 { &app.base } else { &replica };
            app.browser.get(format!("{base}/")).send()
        })
        .collect();
    let responses = futures_util::future::join_all(loads).await;
    for response in responses {
        assert_eq!(response.unwrap().status(), 200);
    }
    let counters = app.idp.counters().await;
    assert_eq!(counters["refreshes"], 1, "{counters}");
    assert_eq!(counters["reuse_detections"], 0, "{counters}");
    assert_eq!(counters["api_calls"], 21);
}

async fn a_revoked_user_is_sent_to_sign_in(backend: Backend) {
    let Some(app) = spawn_app("serve::a_revoked_user_is_sent_to_sign_in", backend, |_| {}).await
    else {
        return;
    };
    app.sign_in("ada").await;
    app.idp
        .admin(reqwest::Method::POST, "users/ada/revoke", None)
        .await;
    app.clock.advance(Duration::hours(2));
    let response = app.get("/").await;
    assert_eq!(response.status(), 302);
    assert_eq!(location(&response), "/signin?returnUrl=%2F");
    // Signing in again (the provider still knows the browser) brings the profile back.
    let callback = app.sign_in_via("/signin?returnUrl=%2F", "ada").await;
    assert_eq!(callback.status(), 303);
    assert_eq!(app.home_html().await.0, 200);
}

async fn sign_out_removes_the_cache_row(backend: Backend) {
    let Some(app) = spawn_app("serve::sign_out_removes_the_cache_row", backend, |_| {}).await
    else {
        return;
    };
    app.sign_in("ada").await;
    let (_, html) = app.home_html().await;
    let id = raw_cache(&app)[0].0.clone();
    let response = app.sign_out_from(&html).await;
    assert_eq!(response.status(), 303);
    let end_session = location(&response);
    assert!(
        end_session.starts_with(&format!(
            "{}/{}/oauth2/v2.0/logout",
            app.idp.base, app.idp.tenant
        )),
        "{end_session}"
    );
    assert!(end_session.contains("post_logout_redirect_uri="));
    assert!(raw_cache(&app).is_empty());
    assert!(activities::get(&mut app.db.conn(), &id)
        .unwrap()
        .unwrap()
        .signed_out_at
        .is_some());
    // The provider sends the browser back to the app's signed-out page.
    let back = app.browser.get(&end_session).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let (status, html) = {
        let r = app.browser.get(location(&back)).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(html.contains("You have signed out"));
    let (_, home) = app.home_html().await;
    assert!(home.contains("Sign in"), "the session is gone");
}

/// The idle clock is kept at a minute's resolution: a page within the minute sends no cookie
/// back (nothing to re-seal); the first one after it records the visit in a new cookie.
#[tokio::test]
async fn a_page_load_re_seals_the_session_cookie_at_most_once_a_minute() {
    let app = super::spawn_app("serve::seen_every", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    app.sign_in("ada").await;
    app.clock.advance(Duration::seconds(30));
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers().get("set-cookie").is_none(),
        "{:?}",
        page.headers()
    );
    app.clock.advance(Duration::seconds(40));
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert!(page.headers().get("set-cookie").is_some());
    let (_, html) = app.home_html().await;
    assert!(html.contains("Hello, Ada"), "{html}");
}

#[tokio::test]
async fn sessions_end_after_the_idle_and_the_absolute_lifetime() {
    let lifetimes = |s: &mut tokenbridge::settings::Settings| {
        s.web.session_idle = std::time::Duration::from_secs(3600);
        s.web.session_absolute = std::time::Duration::from_secs(3 * 3600);
    };
    let app = super::spawn_app_with("serve::sessions_idle", Backend::Sqlite, |_| {}, lifetimes)
        .await
        .unwrap();
    app.sign_in("ada").await;
    app.clock.advance(Duration::minutes(61));
    let (_, html) = app.home_html().await;
    assert!(
        html.contains("Sign in") && !html.contains("Hello"),
        "idle for more than an hour"
    );

    let app = super::spawn_app_with(
        "serve::sessions_absolute",
        Backend::Sqlite,
        |_| {},
        lifetimes,
    )
    .await
    .unwrap();
    app.sign_in("ada").await;
    for step in 1..=5 {
        app.clock.advance(Duration::minutes(30)); // never idle for an hour
        let (_, html) = app.home_html().await;
        assert!(html.contains("Hello, Ada"), "step {step}: {html}");
    }
    app.clock.advance(Duration::minutes(40)); // 3 h 10 min after sign-in
    let (_, html) = app.home_html().await;
    assert!(
        html.contains("Sign in") && !html.contains("Hello"),
        "past the absolute lifetime"
    );
}

#[tokio::test]
async fn rotated_provider_keys_are_fetched_again() {
    let app = super::spawn_app("serve::rotated_keys", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    app.sign_in("ada").await;
    app.idp
        .admin(reqwest::Method::POST, "keys/rotate", None)
        .await;
    // A refresh brings an ID token signed with a key the app has not seen.
    app.clock.advance(Duration::hours(2));
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200, "{html}");
    // And so does a new sign-in.
    app.idp
        .admin(reqwest::Method::POST, "keys/rotate", None)
        .await;
    let callback = app.sign_in_via("/signin", "ada").await;
    assert_eq!(callback.status(), 303);
}

#[tokio::test]
async fn any_openid_provider_works_by_issuer_with_sub_as_the_account() {
    use tokenbridge::settings::{ClientAuth, ProviderKind};
    let mut issuer = None;
    let app = super::spawn_app_with(
        "serve::generic_oidc",
        Backend::Sqlite,
        |_| {},
        |s| {
            s.identity.provider = ProviderKind::Oidc;
            s.identity.client_auth = ClientAuth::ClientSecretPost;
            issuer = Some(format!(
                "{}/{}/v2.0",
                s.identity.instance.as_str().trim_end_matches('/'),
                s.identity.tenant_id
            ));
            s.identity.issuer = issuer.clone();
            s.identity.tenant_id = String::new();
        },
    )
    .await
    .unwrap();
    app.sign_in("grace").await;
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Hello, Grace"));
    let id = &raw_cache(&app)[0].0;
    assert!(
        !id.contains('.'),
        "the home account id is the ID token's sub, not uid.utid: {id}"
    );
    assert_eq!(id.len(), 43);
}

#[tokio::test]
async fn cookies_are_http_only_same_site_lax_and_secure_when_configured() {
    let app = super::spawn_app("serve::cookie_flags", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    let start = app.get("/signin").await;
    let sign_in_cookie = start
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        sign_in_cookie.starts_with("tb_signin.")
            && sign_in_cookie.contains("HttpOnly")
            && sign_in_cookie.contains("SameSite=Lax")
    );
    assert!(!sign_in_cookie.contains("Secure"));
    let callback = app.sign_in_via("/signin", "ada").await;
    let session = callback
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("tb_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(!session.contains("ada"), "the session content is encrypted");

    assert!(sign_in_cookie.contains("Path=/"), "{sign_in_cookie}");
    assert!(app
        .get("/healthz")
        .await
        .headers()
        .get("strict-transport-security")
        .is_none());
}

/// Sign-in cookies planted by the thousand get a bounded answer: `/signin` looks at a few and
/// clears those (the browser's next request sends fewer), never one removal per cookie.
#[tokio::test]
async fn planted_sign_in_cookies_get_a_bounded_answer() {
    let app = super::spawn_app("serve::planted_cookies", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    let planted: Vec<String> = (0..4_000).map(|n| format!("tb_signin.x{n}=junk")).collect();
    let start = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/signin"))
        .header("cookie", planted.join("; "))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let set = start.headers().get_all("set-cookie").iter().count();
    assert!(
        set <= 17,
        "{set} Set-Cookie headers for 4,000 planted cookies"
    );
    assert!(
        set >= 2,
        "some planted cookies are cleared, and the new one set"
    );
}

/// Cookie safety follows `public_url`: over https, cookies are Secure and `__Host-` prefixed
/// (Path=/, no Domain), responses carry HSTS; whatever the scheme, a response that sets or
/// clears a cookie is `Cache-Control: no-store`.
#[tokio::test]
async fn cookie_safety_follows_the_public_url() {
    use reqwest::cookie::CookieStore;
    let app = super::spawn_app_with(
        "serve::cookie_safety_https",
        Backend::Sqlite,
        |idp| {
            let https: Vec<String> = idp.clients[0]
                .redirect_uris
                .iter()
                .map(|u| u.replace("http:", "https:"))
                .collect();
            idp.clients[0].redirect_uris.extend(https);
        },
        |s| {
            // As settings resolve an https public_url (the settings tests check that).
            s.web.public_url =
                url::Url::parse(&s.web.public_url.as_str().replace("http:", "https:")).unwrap();
            s.web.secure_cookies = true;
        },
    )
    .await
    .unwrap();
    let hsts = app.get("/healthz").await;
    assert_eq!(
        hsts.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let start = app.get("/signin").await;
    assert_eq!(start.headers()["cache-control"], "no-store");
    let pending = start.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        pending.starts_with("__Host-tb_signin.")
            && pending.contains("Secure")
            && pending.contains("Path=/")
            && !pending.contains("Domain"),
        "{pending}"
    );
    // Over this test's plain HTTP the browser would not send Secure cookies back: hand them
    // over as an https page would.
    let callback = app.callback_url(&app.browser, "/signin", "ada").await;
    let https = url::Url::parse(&app.base.replace("http:", "https:")).unwrap();
    let cookies = app.jar.cookies(&https).unwrap();
    let signed_in = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(callback.replace("https:", "http:"))
        .header("Cookie", cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["cache-control"], "no-store");
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-tb_session="))
        .expect("a __Host- session cookie");
    assert!(
        session.contains("Secure") && session.contains("Path=/") && !session.contains("Domain"),
        "{session}"
    );
}

#[tokio::test]
async fn provider_trouble_during_a_refresh_says_so_and_loses_nothing() {
    let app = super::spawn_app("serve::provider_trouble", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    app.sign_in("ada").await;
    app.clock.advance(Duration::hours(2));
    app.idp.inject("503", 1).await;
    let response = app.get("/").await;
    assert_eq!(response.status(), 503);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("identity provider is not answering"));
    assert_eq!(raw_cache(&app)[0].2, 1, "the cache is untouched");
    // The next load works: the refresh token was kept.
    assert_eq!(app.home_html().await.0, 200);
    // When the provider says the user must sign in again, the page sends them there.
    app.clock.advance(Duration::hours(2));
    app.idp.inject("interaction_required", 1).await;
    let response = app.get("/").await;
    assert_eq!(response.status(), 302);
    assert_eq!(location(&response), "/signin?returnUrl=%2F");
}

/// Past the provider's `refresh_in` the app refreshes early; if the provider fails then, the
/// cached token (still valid) is used rather than an error page.
#[tokio::test]
async fn past_refresh_on_a_failing_provider_falls_back_to_the_cached_token() {
    let app = super::spawn_app("serve::refresh_on", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    app.idp
        .behave(serde_json::json!({ "refresh_in_secs": 600 }))
        .await;
    app.sign_in("ada").await;
    app.clock.advance(Duration::minutes(15)); // past refresh_on, 45 min left
    app.idp.inject("503", 1).await;
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Hello, Ada"));
    let counters = app.idp.counters().await;
    assert_eq!(
        counters["faults_injected"], 1,
        "a refresh was tried: {counters}"
    );
    assert_eq!(counters["refreshes"], 0, "and failed");
    // With the provider back, the early refresh happens.
    assert_eq!(app.home_html().await.0, 200);
    assert_eq!(app.idp.counters().await["refreshes"], 1);
}

/// `identity.prompt` goes with every sign-in: `login` makes the provider show its form even to
/// a browser it knows; `consent` is passed on; the default sends no prompt at all.
#[tokio::test]
async fn the_configured_prompt_is_sent_with_every_sign_in() {
    use tokenbridge::settings::Prompt;
    let provider_url = |app: &TestApp| {
        let app_browser = app.browser.clone();
        let start = app.url("/signin");
        async move {
            let response = app_browser.get(start).send().await.unwrap();
            url::Url::parse(&location(&response)).unwrap()
        }
    };
    let default = super::spawn_app("serve::prompt_default", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    let url = provider_url(&default).await;
    assert!(!url.query_pairs().any(|(k, _)| k == "prompt"), "{url}");

    for (prompt, value) in [(Prompt::Consent, "consent"), (Prompt::Login, "login")] {
        let app = super::spawn_app_with(
            "serve::prompt",
            Backend::Sqlite,
            |_| {},
            |s| s.identity.prompt = prompt,
        )
        .await
        .unwrap();
        let url = provider_url(&app).await;
        assert!(
            url.query_pairs().any(|(k, v)| k == "prompt" && v == value),
            "{url}"
        );
        app.sign_in("ada").await;
        // Signed in at the provider now: a second sign-in answers at once, unless the app
        // asked the provider to sign the user in again.
        let again = provider_url(&app).await;
        let at_provider = app.browser.get(again.as_str()).send().await.unwrap();
        let expected = if prompt == Prompt::Login { 200 } else { 302 };
        assert_eq!(at_provider.status(), expected, "{value}");
    }
}

/// The answer is asked for in the query: a `form_post` answer is a cross-site POST, which
/// browsers send without the SameSite=Lax sign-in cookie, so the callback takes no POST.
#[tokio::test]
async fn the_sign_in_answer_comes_in_the_query() {
    let app = super::spawn_app("serve::response_mode", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    let response = app.get("/signin").await;
    let url = url::Url::parse(&location(&response)).unwrap();
    assert!(
        url.query_pairs()
            .any(|(k, v)| k == "response_mode" && v == "query"),
        "{url}"
    );
    let posted = app
        .browser
        .post(app.url("/signin-oidc"))
        .form(&[("code", "x"), ("state", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 405);
    assert_eq!(app.count("token_cache"), 0);
}

/// `identity.offline_access = "access_type"` (Google): the sign-in carries
/// `access_type=offline` and not the `offline_access` scope, which Google refuses.
#[tokio::test]
async fn offline_access_can_be_asked_for_as_google_does() {
    use tokenbridge::settings::OfflineAccess;
    for (mode, scope, param) in [
        (OfflineAccess::Scope, true, false),
        (OfflineAccess::AccessType, false, true),
    ] {
        let app = super::spawn_app_with(
            "serve::offline_access_request",
            Backend::Sqlite,
            |_| {},
            |s| s.identity.offline_access = mode,
        )
        .await
        .unwrap();
        let response = app.get("/signin").await;
        let url = url::Url::parse(&location(&response)).unwrap();
        let scopes = url
            .query_pairs()
            .find(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        assert_eq!(
            scopes.split(' ').any(|s| s == "offline_access"),
            scope,
            "{url}"
        );
        assert_eq!(
            url.query_pairs()
                .any(|(k, v)| k == "access_type" && v == "offline"),
            param,
            "{url}"
        );
    }
}

/// A provider that issues refresh tokens without granting `offline_access` (it follows OpenID
/// Connect Core 11 and saw no `prompt=consent`): the app's refresh asks only for what the token
/// was granted, so pages keep working after the access token expires.
#[tokio::test]
async fn a_generic_provider_is_refreshed_with_the_scopes_it_granted() {
    use tokenbridge::settings::ClientAuth;
    let app = super::spawn_app_with(
        "serve::generic_refresh_scopes",
        Backend::Sqlite,
        |_| {},
        |s| {
            super::as_generic_provider(s);
            s.identity.client_auth = ClientAuth::ClientSecretPost;
        },
    )
    .await
    .unwrap();
    app.idp
        .behave(serde_json::json!({ "offline_access": "always" }))
        .await;
    app.sign_in("grace").await;
    app.clock.advance(Duration::hours(2));
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(app.idp.counters().await["refreshes"], 1);
}
