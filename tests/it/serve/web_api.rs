//! The web API mode end to end: a single-page app's token for tokenbridge's API (from the
//! development provider, a public client with PKCE) calls `GET /api/me`; the app checks it as a
//! resource server must, exchanges it on the user's behalf once however many calls arrive (in
//! one process and across two), keeps the user's tokens and activity, and the worker acts for
//! the user later. Refusals carry RFC 6750 challenges; browsers call from configured origins.

use super::{as_generic_provider, e2e_tests, spawn_app_with, TestApp};
use crate::dev_idp::web_api::{spa_token, spa_token_for, with_spa};
use crate::dev_idp::CLIENT_ID;
use crate::worker::{activity, outcomes, pass};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use tokenbridge::db::Backend;
use tokenbridge::settings::Settings;

e2e_tests!(
    and_redis: twenty_calls_at_once_are_one_exchange_and_the_worker_acts_later,
    two_replicas_share_one_exchange,
);

const SPA_ORIGIN: &str = "http://127.0.0.1:3000";

/// The app with its web API on, for the SPA's origin.
pub fn with_web_api(s: &mut Settings) {
    s.web_api.enabled = true;
    s.web_api.audiences = vec![CLIENT_ID.into(), format!("api://{CLIENT_ID}")];
    s.web_api.allowed_origins = vec![SPA_ORIGIN.into()];
}

async fn api_app(test: &str, backend: Backend) -> Option<TestApp> {
    spawn_app_with(test, backend, with_spa, with_web_api).await
}

/// `GET {base}/api/me` with `authorization` as it is (None: no header).
async fn call_at(base: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{base}/api/me"));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.unwrap()
}

async fn call(app: &TestApp, token: &str) -> reqwest::Response {
    call_at(&app.base, Some(&format!("Bearer {token}"))).await
}

async fn counter(app: &TestApp, name: &str) -> u64 {
    app.idp.counters().await[name].as_u64().unwrap()
}

async fn profile(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

/// Twenty calls at once with one token: one exchange, every call answered with the user's
/// profile; the same token later is served from the cache; the user has an activity row, and
/// a worker pass with the SPA long closed refreshes and calls the API for them.
async fn twenty_calls_at_once_are_one_exchange_and_the_worker_acts_later(backend: Backend) {
    let Some(app) = api_app("serve::web_api::twenty_calls", backend).await else {
        return;
    };
    let token = spa_token(&app.idp).await;
    // Slow answers, so that the calls really overlap the exchange.
    app.idp.behave(json!({ "token_latency_ms": 300 })).await;
    let calls = (0..20).map(|_| call(&app, &token));
    for answer in futures_util::future::join_all(calls).await {
        assert_eq!(
            profile(answer).await["userPrincipalName"],
            "ada@tokenbridge.dev"
        );
    }
    assert_eq!(counter(&app, "on_behalf_of").await, 1);
    app.idp.behave(json!({ "token_latency_ms": 0 })).await;

    // The same token: the access token stored for it (named by its hash, as MSAL.NET names
    // it), no exchange.
    for _ in 0..3 {
        profile(call(&app, &token).await).await;
    }
    assert_eq!(counter(&app, "on_behalf_of").await, 1);
    assert_eq!(counter(&app, "api_calls").await, 23);
    let ada = activity(&app, "ada");
    assert!(!ada.failed_to_acquire_token);
    assert_eq!(
        ada.account_tenant_id.as_deref(),
        Some(app.idp.tenant.as_str())
    );
    assert!(
        ada.subject.is_some(),
        "the exchanged ID token's sub, for a logout"
    );
    assert_eq!(app.cache_rows().len(), 1, "one row for ada");

    // A new token of the SPA's is exchanged again, into the same row.
    let again = spa_token_for(&app.idp, "ada").await;
    profile(call(&app, &again).await).await;
    assert_eq!(counter(&app, "on_behalf_of").await, 2);
    assert_eq!(app.cache_rows().len(), 1);

    // The SPA is closed; later the worker acts for ada with the tokens the API keeps.
    app.clock.advance(time::Duration::hours(2));
    let refreshes = counter(&app, "refreshes").await;
    let done = pass(&app, |_| {}).await;
    assert_eq!(done.outcomes(), outcomes(&[("ada", "ok")]));
    assert_eq!(counter(&app, "refreshes").await, refreshes + 1);
}

/// Calls spread over two replicas on one database, the provider slow to answer: the row's
/// lease makes it one exchange between them (each replica's flight alone would make two).
async fn two_replicas_share_one_exchange(backend: Backend) {
    let Some(app) = api_app("serve::web_api::two_replicas", backend).await else {
        return;
    };
    let replica = app.replica().await;
    let token = spa_token(&app.idp).await;
    app.idp.behave(json!({ "token_latency_ms": 500 })).await;
    let bearer = format!("Bearer {token}");
    let calls = (0..10).flat_map(|_| {
        [
            call_at(&app.base, Some(&bearer)),
            call_at(&replica, Some(&bearer)),
        ]
    });
    for answer in futures_util::future::join_all(calls).await {
        profile(answer).await;
    }
    assert_eq!(counter(&app, "on_behalf_of").await, 1);
}

/// One change to a token's claims.
type Change = Box<dyn FnOnce(&mut Value)>;

/// `token`'s claims changed by `change`, signed with the provider's published key (through its
/// admin API), whatever they say.
async fn re_signed(app: &TestApp, token: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut claims = claims_of(token);
    change(&mut claims);
    app.idp.logout_token(&claims).await
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// What a refusal says: status, the challenge, the JSON error.
async fn refusal(response: reqwest::Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let error = response
        .json::<Value>()
        .await
        .ok()
        .and_then(|body| body["error"].as_str().map(str::to_owned));
    (status, challenge, error)
}

/// Every token a resource server must refuse is refused with the right status and challenge,
/// and none reaches the provider: unsigned, HS256 with the public key as secret, expired, not
/// yet valid, another audience, issuer, tenant, no user, no scope, a key nobody published; a
/// key the provider rotated to is fetched once and accepted, the old one's tokens no more.
#[tokio::test]
async fn bearer_tokens_are_checked_as_a_resource_server_must() {
    let Some(app) = api_app("serve::web_api::bearer_checks", Backend::Sqlite).await else {
        return;
    };
    let token = spa_token(&app.idp).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    // No credentials: a bare challenge (RFC 6750 section 3.1); another scheme the same.
    for authorization in [None, Some("Basic YWRhOnB3")] {
        let (status, challenge, _) = refusal(call_at(&app.base, authorization).await).await;
        assert_eq!(
            (status, challenge.as_str()),
            (401, r#"Bearer realm="tokenbridge""#)
        );
    }
    for malformed in ["Bearer", "Bearer a b", "Bearer tok\u{e9}n"] {
        let (status, challenge, error) = refusal(call_at(&app.base, Some(malformed)).await).await;
        assert_eq!(status, 400, "{malformed}");
        assert!(
            challenge.contains(r#"error="invalid_request""#),
            "{challenge}"
        );
        assert_eq!(error.as_deref(), Some("invalid_request"));
    }

    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    let claims = claims_of(&token);
    let unsigned = format!(
        "{}.{}.",
        segment(&json!({ "alg": "none", "typ": "JWT", "kid": kid })),
        segment(&claims)
    );
    // The classic confusion: HMAC keyed with the RSA public key, under the published kid.
    let jwks: Value = reqwest::get(format!(
        "{}/{}/discovery/v2.0/keys",
        app.idp.base, app.idp.tenant
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let public = jwks["keys"][0]["n"].as_str().unwrap();
    let mut hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs256.kid = Some(kid.clone());
    let hmac = jsonwebtoken::encode(
        &hs256,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    // A key nobody published.
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut rs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    rs256.kid = Some("not-published".into());
    let unknown_key = jsonwebtoken::encode(
        &rs256,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(stranger.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();

    // Anyone can send tokens naming a key nobody published, one after another: the keys are
    // fetched again for them at most once a second, however many come.
    let fetched = counter(&app, "key_set_requests").await;
    let began = std::time::Instant::now();
    let mut sent = 0;
    while began.elapsed() < std::time::Duration::from_millis(2500) {
        assert_eq!(call(&app, &unknown_key).await.status(), 401);
        sent += 1;
    }
    let refetched = counter(&app, "key_set_requests").await - fetched;
    assert!(
        (1..=3).contains(&refetched),
        "{refetched} fetches of the keys for {sent} tokens"
    );

    let mut invalid = vec![
        ("not a JWT", "not-a-jwt".to_owned()),
        ("alg none", unsigned),
        ("HS256 with the public key", hmac),
        ("an unpublished key", unknown_key),
    ];
    let changes: [(&str, Change); 7] = [
        (
            "expired",
            Box::new(move |c| {
                c["exp"] = (now - 3600).into();
                c["nbf"] = (now - 7200).into();
            }),
        ),
        (
            "not yet valid",
            Box::new(move |c| c["nbf"] = (now + 3600).into()),
        ),
        (
            "another audience",
            Box::new(|c| c["aud"] = "api://someone-else".into()),
        ),
        (
            "another issuer",
            Box::new(|c| c["iss"] = "https://login.example.com/v2.0".into()),
        ),
        (
            "another tenant",
            Box::new(|c| c["tid"] = "f00dcafe-0000-0000-0000-000000000000".into()),
        ),
        (
            "no user",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
        ),
        (
            "no expiry",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
    ];
    for (what, change) in changes {
        invalid.push((what, re_signed(&app, &token, change).await));
    }
    for (what, bad) in &invalid {
        let (status, challenge, error) = refusal(call(&app, bad).await).await;
        assert_eq!(status, 401, "{what}");
        assert!(
            challenge.starts_with(
                r#"Bearer realm="tokenbridge", error="invalid_token", error_description=""#
            ),
            "{what}: {challenge}"
        );
        assert_eq!(error.as_deref(), Some("invalid_token"), "{what}");
    }
    // Valid, but without this API's scope: 403 naming the scope needed.
    let no_scope = re_signed(&app, &token, |c| c["scp"] = "User.Read".into()).await;
    let (status, challenge, error) = refusal(call(&app, &no_scope).await).await;
    assert_eq!(status, 403);
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(
        challenge.ends_with(r#"scope="access_as_user""#),
        "{challenge}"
    );
    assert_eq!(error.as_deref(), Some("insufficient_scope"));
    assert_eq!(
        counter(&app, "on_behalf_of").await,
        0,
        "nothing refused was exchanged"
    );

    // The same claims re-signed unchanged pass: each refusal above was for its one change.
    let control = re_signed(&app, &token, |_| {}).await;
    profile(call(&app, &control).await).await;

    // The provider rotates its key: a token under the new one is accepted (the keys are
    // fetched again once), one under the old key no more.
    app.idp
        .admin(reqwest::Method::POST, "keys/rotate", None)
        .await;
    let rotated = spa_token(&app.idp).await;
    profile(call(&app, &rotated).await).await;
    let (status, _, error) = refusal(call(&app, &token).await).await;
    assert_eq!((status, error.as_deref()), (401, Some("invalid_token")));
}

/// Browsers may call from the configured origins only: a preflight from the SPA's origin is
/// answered with what it may send (Authorization) and read (the challenge); another origin's
/// is refused, and its calls carry no CORS headers a browser would let through.
#[tokio::test]
async fn browsers_call_from_the_configured_origins_only() {
    let Some(app) = api_app("serve::web_api::cors", Backend::Sqlite).await else {
        return;
    };
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, app.url("/api/me"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    let allowed = preflight(SPA_ORIGIN).await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], SPA_ORIGIN);
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
    assert!(headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("authorization"));
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let token = spa_token(&app.idp).await;
    let from = |origin: &'static str| {
        http.get(app.url("/api/me"))
            .header("Origin", origin)
            .bearer_auth(&token)
            .send()
    };
    let answer = from(SPA_ORIGIN).await.unwrap();
    assert_eq!(answer.headers()["access-control-allow-origin"], SPA_ORIGIN);
    assert!(answer.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("www-authenticate"));
    profile(answer).await;
    let stranger = from("https://evil.example").await.unwrap();
    assert!(stranger
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

/// When the user's grant needs them (consent, a policy) the app is told to sign them in again
/// (403 `interaction_required`); a provider that fails is "try again" (503 with Retry-After);
/// neither leaves anything the next call would trip on. A token the downstream API refuses is
/// refreshed past once. With the mode off there is no /api.
#[tokio::test]
async fn a_failed_exchange_says_whose_it_is_and_keeps_nothing() {
    let Some(app) = api_app("serve::web_api::failures", Backend::Sqlite).await else {
        return;
    };
    let token = spa_token(&app.idp).await;
    app.idp.inject("interaction_required", 1).await;
    let answer = call(&app, &token).await;
    assert_eq!(answer.status(), 403);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "interaction_required");
    assert!(body["request_id"].is_string());
    app.idp.inject("503", 1).await;
    let answer = call(&app, &token).await;
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    assert_eq!(counter(&app, "on_behalf_of").await, 0);
    profile(call(&app, &token).await).await;
    assert_eq!(counter(&app, "on_behalf_of").await, 1);

    // The downstream API refuses the stored token as invalid (revoked, expired on the way):
    // one refresh past it and one more call, as the profile page does; the caller sees none
    // of it.
    app.idp
        .admin(
            reqwest::Method::POST,
            "api-refusals",
            Some(json!({ "count": 1 })),
        )
        .await;
    let refreshes = counter(&app, "refreshes").await;
    profile(call(&app, &token).await).await;
    assert_eq!(counter(&app, "refreshes").await, refreshes + 1);
    assert_eq!(counter(&app, "on_behalf_of").await, 1);

    let Some(plain) =
        spawn_app_with("serve::web_api::off", Backend::Sqlite, with_spa, |_| {}).await
    else {
        return;
    };
    assert_eq!(call(&plain, &token).await.status(), 404);
}

/// A generic provider exchanges by RFC 8693 token exchange; its account is keyed by `sub`,
/// which the caller's token and the exchanged ID token agree on, and the worker acts for it.
#[tokio::test]
async fn a_generic_provider_exchanges_by_rfc_8693() {
    let Some(app) = spawn_app_with("serve::web_api::rfc_8693", Backend::Sqlite, with_spa, |s| {
        as_generic_provider(s);
        with_web_api(s);
    })
    .await
    else {
        return;
    };
    let token = spa_token(&app.idp).await;
    let me = profile(call(&app, &token).await).await;
    assert_eq!(me["userPrincipalName"], "ada@tokenbridge.dev");
    assert_eq!(counter(&app, "token_exchanges").await, 1);
    let ada = activity(&app, "ada");
    assert_eq!(
        ada.account_cache_key,
        claims_of(&token)["sub"].as_str().unwrap()
    );
    app.clock.advance(time::Duration::hours(2));
    let done = pass(&app, |_| {}).await;
    assert_eq!(done.outcomes(), outcomes(&[("ada", "ok")]));
}

/// Each configured API has its route, `/api/{name}/me`, called with a token exchanged for that
/// API's own scopes (one exchange per API, each reused); `/api/me` is `web_api.api`'s; a name
/// no API has is 404 whatever the token.
#[tokio::test]
async fn each_configured_api_is_called_with_its_own_exchanged_token() {
    let Some(app) = spawn_app_with(
        "serve::web_api::named_apis",
        Backend::Sqlite,
        with_spa,
        |s| {
            with_web_api(s);
            crate::acquire::apis::with_tasks_api(s);
        },
    )
    .await
    else {
        return;
    };
    let token = spa_token(&app.idp).await;
    let get = |path: String| {
        reqwest::Client::new()
            .get(app.url(&path))
            .bearer_auth(&token)
            .send()
    };
    let tasks = profile(get("/api/tasks/me".into()).await.unwrap()).await;
    assert_eq!(tasks["owner"], "ada@tokenbridge.dev");
    let me = profile(get("/api/default/me".into()).await.unwrap()).await;
    assert_eq!(me["userPrincipalName"], "ada@tokenbridge.dev");
    assert_eq!(profile(get("/api/me".into()).await.unwrap()).await, me);
    assert_eq!(
        profile(get("/api/tasks/me".into()).await.unwrap()).await,
        tasks
    );
    let counters = app.idp.counters().await;
    assert_eq!(counters["on_behalf_of"], 2, "one exchange per API");
    assert_eq!(counters["tasks_api_calls"], 2);
    let unknown = get("/api/nope/me".into()).await.unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert_eq!(
        app.cache_rows().len(),
        1,
        "both APIs' tokens in ada's one row"
    );
}
