//! What a user of a generic OpenID provider meets, against oidc-provider.

use super::{browser, spawn, Refresh};
use crate::serve::location;
use serde_json::json;
use std::time::Duration as StdDuration;
use time::Duration;
use tokenbridge::api::{ApiClient, ApiError};
use tokenbridge::identity::acquire::Caller;
use tokenbridge::settings::Prompt;

fn consent(s: &mut tokenbridge::settings::Settings) {
    s.identity.prompt = Prompt::Consent;
}

/// The issuer exactly as published (a bare origin), PKCE, the profile from an API that checks
/// the provider's signature, two refreshes each with the token the last one rotated in, and no
/// tenant made up from a URL.
#[tokio::test]
async fn signs_in_shows_the_profile_and_refreshes_with_rotation() {
    let Some(app) = spawn("oidc_provider::happy_path", Refresh::Offline, consent).await else {
        return;
    };
    let callback = app.sign_in("ada").await;
    assert_eq!(callback.status(), 303, "{}", callback.text().await.unwrap());
    let (status, html) = app.home().await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("ada@example.test"), "{html}");

    let activity = app.activity();
    assert!(!activity.failed_to_acquire_token, "{activity:?}");
    assert_eq!(
        activity.account_tenant_id, None,
        "no tenant without a tid claim"
    );
    assert_eq!(
        activity.subject.as_deref(),
        Some("ada"),
        "the ID token's sub"
    );

    for refreshes in 1..=2 {
        app.clock.advance(Duration::hours(2));
        let (status, html) = app.home().await;
        assert_eq!(status, 200, "{html}");
        let counters = app.op.counters().await;
        assert_eq!(counters["refreshes"], refreshes, "{counters}");
        assert_eq!(counters["refresh_errors"], 0, "{counters}");
    }
    assert_eq!(app.activity().account_tenant_id, None);
}

/// Without `prompt=consent` the provider drops `offline_access` (OpenID Connect Core 11): the
/// sign-in works, the row says there is no refresh token, and when the access token lapses
/// the user is asked to sign in rather than shown an error.
#[tokio::test]
async fn without_consent_there_is_no_refresh_token_and_the_row_says_so() {
    let Some(app) = spawn("oidc_provider::no_consent", Refresh::Offline, |_| {}).await else {
        return;
    };
    assert_eq!(app.sign_in("ada").await.status(), 303);
    assert_eq!(app.home().await.0, 200);
    let activity = app.activity();
    assert!(activity.failed_to_acquire_token, "{activity:?}");
    assert!(
        activity
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("identity.prompt = \"consent\""),
        "{activity:?}"
    );
    app.clock.advance(Duration::hours(2));
    let response = app.browser.get(app.url("/")).send().await.unwrap();
    assert!(
        response.status() == 302 || response.status() == 303,
        "{}",
        response.status()
    );
    assert!(location(&response).starts_with("/signin"));
    assert_eq!(app.op.counters().await["refreshes"], 0);
}

/// A provider configured to issue refresh tokens without `offline_access`: the refresh asks
/// for the scopes granted (no `scope`), and pages keep working past the access token.
#[tokio::test]
async fn a_refresh_token_granted_without_offline_access_still_refreshes() {
    let Some(app) = spawn("oidc_provider::always_refresh", Refresh::Always, |_| {}).await else {
        return;
    };
    assert_eq!(app.sign_in("ada").await.status(), 303);
    assert!(!app.activity().failed_to_acquire_token);
    app.clock.advance(Duration::hours(2));
    let (status, html) = app.home().await;
    assert_eq!(status, 200, "{html}");
    let counters = app.op.counters().await;
    assert_eq!(counters["refreshes"], 1, "{counters}");
    assert_eq!(counters["refresh_errors"], 0, "{counters}");
}

/// RFC 9207: the provider advertises `iss`; a response naming another issuer, or none, is
/// refused before the code is redeemed; the genuine one signs in.
#[tokio::test]
async fn an_authorization_response_from_another_issuer_is_refused() {
    let Some(app) = spawn("oidc_provider::iss", Refresh::Offline, consent).await else {
        return;
    };
    let tamper = |url: &url::Url, iss: Option<&str>| {
        let mut tampered = url.clone();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| k != "iss")
            .collect();
        {
            let mut query = tampered.query_pairs_mut();
            query.clear();
            for (k, v) in &pairs {
                query.append_pair(k, v);
            }
            if let Some(iss) = iss {
                query.append_pair("iss", iss);
            }
        }
        tampered
    };
    for (iss, case) in [
        (Some("http://127.0.0.1:1"), "another issuer"),
        (Some(&*format!("{}/", app.op.issuer)), "a trailing slash"),
        (None, "no iss"),
    ] {
        let genuine = app.callback_url(&app.browser, "ada").await;
        assert!(
            genuine
                .query_pairs()
                .any(|(k, v)| k == "iss" && v == app.op.issuer.as_str()),
            "{genuine}"
        );
        let response = app.browser.get(tamper(&genuine, iss)).send().await.unwrap();
        assert_eq!(response.status(), 400, "{case}");
        let page = response.text().await.unwrap();
        assert!(
            page.contains("did not come from the identity provider"),
            "{case}: {page}"
        );
    }
    let counters = app.op.counters().await;
    assert_eq!(
        counters["token_requests"], 0,
        "no code was redeemed: {counters}"
    );
    assert_eq!(app.home().await.0, 200);
    assert!(!app.home().await.1.contains("Sign out"));

    let genuine = app.callback_url(&app.browser, "ada").await;
    let response = app.browser.get(genuine).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert!(app.home().await.1.contains("ada@example.test"));
}

/// RFC 7009 at sign-out: the refresh token is revoked at the provider (the grant with it), after
/// the row is gone; a provider whose revocation fails does not make the sign-out fail.
#[tokio::test]
async fn sign_out_revokes_the_refresh_token_and_survives_a_failing_revocation() {
    let Some(app) = spawn("oidc_provider::revocation", Refresh::Offline, consent).await else {
        return;
    };
    assert_eq!(app.sign_in("ada").await.status(), 303);
    let signed_out = app.sign_out(&app.browser).await;
    assert_eq!(signed_out.status(), 303);
    let counters = wait_for(&app.op, "grants_revoked", 1).await;
    assert_eq!(counters["revocations"], 1, "{counters}");
    assert!(app.activity().signed_out_at.is_some());

    // Signed in again in another browser; this time the provider cannot revoke.
    let other = browser();
    let callback = app.callback_url(&other, "ada").await;
    assert_eq!(other.get(callback).send().await.unwrap().status(), 303);
    app.op.behave(json!({ "fail_revocation": true })).await;
    let signed_out = app.sign_out(&other).await;
    assert_eq!(
        signed_out.status(),
        303,
        "a failed revocation is not a failed sign-out"
    );
    let counters = wait_for(&app.op, "revocations", 2).await;
    assert_eq!(counters["grants_revoked"], 1, "{counters}");
    assert!(app.activity().signed_out_at.is_some());
    let rows: i64 = {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query("SELECT COUNT(*) AS n FROM token_cache")
            .load::<Count>(&mut *app.db.conn())
            .unwrap()[0]
            .n
    };
    assert_eq!(rows, 0, "the cache rows are gone either way");
}

/// RP-initiated logout: sign-out sends the browser to the provider's end-session endpoint,
/// which ends the provider's session and returns to the app; the next sign-in asks for a login.
#[tokio::test]
async fn sign_out_ends_the_provider_session_too() {
    let Some(app) = spawn("oidc_provider::logout", Refresh::Offline, consent).await else {
        return;
    };
    assert_eq!(app.sign_in("ada").await.status(), 303);
    let signed_out = app.sign_out(&app.browser).await;
    let end_session = url::Url::parse(&location(&signed_out)).unwrap();
    assert!(
        end_session
            .as_str()
            .starts_with(&format!("{}/session/end", app.op.issuer)),
        "{end_session}"
    );
    let confirmed = app.confirm_end_session(end_session.as_str()).await;
    assert_eq!(confirmed.status(), 303);
    let back = location(&confirmed);
    assert!(
        back.starts_with(&app.url("/signout-callback-oidc")),
        "{back}"
    );
    assert_eq!(app.browser.get(back).send().await.unwrap().status(), 200);

    // The provider no longer knows the browser: a new sign-in stops at its login prompt.
    let start = app.browser.get(app.url("/signin")).send().await.unwrap();
    let mut url = url::Url::parse(&location(&start)).unwrap();
    let prompt = loop {
        let response = app.browser.get(url.clone()).send().await.unwrap();
        if response.status() == 200 {
            break response.json::<serde_json::Value>().await.unwrap()["prompt"].clone();
        }
        url = url.join(&location(&response)).unwrap();
    };
    assert_eq!(prompt, "login");
}

/// Polls the provider's counters until `name` reaches `at_least` (background work), or fails.
async fn wait_for(op: &super::Op, name: &str, at_least: u64) -> serde_json::Value {
    for _ in 0..100 {
        let counters = op.counters().await;
        if counters[name].as_u64().unwrap_or_default() >= at_least {
            return counters;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("{name} never reached {at_least}: {}", op.counters().await);
}

/// The worker against a certified provider: a user signed in with consent is refreshed and the
/// API called for them; one signed in without it is reported as having no refresh token.
#[tokio::test]
async fn the_worker_acts_for_users_who_granted_offline_access() {
    for (prompt, outcome) in [
        (Prompt::Consent, "ok"),
        (Prompt::None, "interaction_required"),
    ] {
        let Some(app) = spawn("oidc_provider::worker", Refresh::Offline, |s| {
            s.identity.prompt = prompt;
        })
        .await
        else {
            return;
        };
        assert_eq!(app.sign_in("ada").await.status(), 303);
        app.clock.advance(Duration::hours(2));
        let worker = tokenbridge::worker::Worker::build(
            &app.settings,
            app.settings.worker.clone(),
            std::sync::Arc::new(app.clock.clone()),
        )
        .await
        .unwrap();
        let run = crate::worker::run_pass(&worker, std::future::ready(())).await;
        assert_eq!(run.lines.len(), 1, "{:?}", run.lines);
        let line = &run.lines[0];
        assert_eq!(line["user"], "ada@example.test", "{line}");
        assert_eq!(line["outcome"], outcome, "{line}");
        let refreshes = app.op.counters().await["refreshes"].as_u64().unwrap();
        if outcome == "ok" {
            assert_eq!(refreshes, 1);
        } else {
            assert_eq!(refreshes, 0);
            assert!(line["reason"]
                .as_str()
                .unwrap()
                .starts_with("no refresh token"));
        }
    }
}

/// Two APIs with disjoint scopes at a generic provider: the sign-in asks for both and its token
/// serves both; once it has lapsed, each API gets a refresh narrowed to its own scope (RFC 6749
/// section 6), the tokens live side by side, and each API refuses the other's.
#[tokio::test]
async fn two_apis_get_tokens_narrowed_to_their_own_scopes() {
    let Some(app) = spawn("oidc_provider::two_apis", Refresh::Offline, |s| {
        consent(s);
        s.identity.scopes = Vec::new();
        s.api.scopes = vec!["api.read".into()];
        let mut tasks = s.api.clone();
        tasks.name = "tasks".into();
        tasks.base_url = s.api.base_url.join("/tasks/v1.0").unwrap();
        tasks.path = "/me/tasks".into();
        tasks.scopes = vec!["tasks.read".into()];
        s.named_apis.insert("tasks".into(), tasks);
    })
    .await
    else {
        return;
    };
    assert_eq!(app.sign_in("ada").await.status(), 303);
    let db = tokenbridge::db::Database::connect(&app.settings.database).unwrap();
    let options = tokenbridge::identity::acquire::AcquirerOptions::from_settings(
        &app.settings.identity,
        &app.settings.cache,
        "two-apis".into(),
    );
    let acquirer = tokenbridge::identity::acquire::TokenAcquirer::from_settings(
        db,
        &app.settings,
        std::sync::Arc::new(app.clock.clone()),
        options,
    )
    .unwrap();
    let id = app.activity().account_cache_key;
    let main_api = ApiClient::new(&app.settings.api).unwrap();
    let tasks_api = ApiClient::new(app.settings.api_named("tasks").unwrap()).unwrap();
    let get = |scope: &'static str| {
        let (acquirer, id) = (&acquirer, &id);
        async move {
            acquirer
                .acquire_silent(id, &[scope], Caller::Worker)
                .await
                .unwrap()
        }
    };
    // The sign-in's token has both scopes: both APIs take it, no refresh.
    let both = get("api.read").await;
    assert_eq!(
        get("tasks.read").await.secret.expose(),
        both.secret.expose()
    );
    assert!(main_api.me(&both).await.is_ok());
    assert!(tasks_api.me(&both).await.is_ok());
    assert_eq!(app.op.counters().await["refreshes"], 0);

    app.clock.advance(Duration::hours(2));
    let main = get("api.read").await;
    let tasks = get("tasks.read").await;
    assert_eq!(app.op.counters().await["refreshes"], 2);
    assert_eq!(app.op.counters().await["refresh_errors"], 0);
    assert!(main_api.me(&main).await.is_ok());
    assert_eq!(
        tasks_api.me(&tasks).await.unwrap()["owner"],
        "ada@example.test"
    );
    for refused in [main_api.me(&tasks).await, tasks_api.me(&main).await] {
        assert!(
            matches!(&refused, Err(ApiError::Refused(why)) if why.contains("insufficient_scope")),
            "{refused:?}"
        );
    }
    // Cached side by side: no more refreshes.
    assert_eq!(get("api.read").await.secret.expose(), main.secret.expose());
    assert_eq!(
        get("tasks.read").await.secret.expose(),
        tasks.secret.expose()
    );
    assert_eq!(app.op.counters().await["refreshes"], 2);
}

/// A sign-out at the provider itself (its end-session page, not through the app): the
/// certified provider sends a Back-Channel Logout token, which the app checks and acts on:
/// the user's cache is gone and the activity says the provider ended the sign-in.
#[tokio::test]
async fn a_sign_out_at_the_provider_reaches_the_app_by_back_channel() {
    let Some(app) = spawn("oidc_provider::backchannel", Refresh::Offline, consent).await else {
        return;
    };
    assert_eq!(app.sign_in("ada").await.status(), 303);
    assert_eq!(app.home().await.0, 200);
    let confirmed = app
        .confirm_end_session(&format!("{}/session/end", app.op.issuer))
        .await;
    assert!(confirmed.status().is_redirection() || confirmed.status().is_success());
    // The provider sends it as the session ends; give it a moment.
    let mut activity = app.activity();
    for _ in 0..100 {
        if activity.signed_out_at.is_some() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        activity = app.activity();
    }
    assert!(activity.signed_out_at_the_provider(), "{activity:?}");
    let counters = app.op.counters().await;
    assert_eq!(counters["backchannel_logouts"], 1, "{counters}");
    assert_eq!(counters["backchannel_errors"], 0, "{counters}");
    let (_, html) = app.home().await;
    assert!(html.contains("Sign in"), "{html}");
}
