//! Sign-out that starts at the provider (Back-Channel Logout): the provider POSTs a logout
//! token, the user's cache goes in every process and the next worker pass says so; invalid
//! and replayed tokens (a replay to the other replica too) are refused and change nothing.

use super::{e2e_tests, spawn_app, TestApp};
use crate::worker::{outcomes, pass};
use serde_json::{json, Value};
use tokenbridge::activity::store as activities;
use tokenbridge::db::Backend;
use tokenbridge::identity::provider::BACKCHANNEL_EVENT;

e2e_tests!(and_redis:
    a_sign_out_at_the_provider_ends_the_user_everywhere,
    invalid_and_replayed_logout_tokens_are_refused_and_change_nothing,
);

fn activity(app: &TestApp, user: &str) -> activities::Activity {
    crate::worker::activity(app, user)
}

/// Whether the user's token cache row is still there (the caches may be in Redis).
pub async fn has_cache(app: &TestApp, user: &str) -> bool {
    let id = activity(app, user).account_cache_key;
    let now = time::OffsetDateTime::now_utc();
    crate::acquire::apis::acquirer(app)
        .caches()
        .version_and_epoch(&id, now)
        .await
        .unwrap()
        .is_some()
}

/// The worker pass `run` reported `user` signed out at the provider.
pub(super) fn reports_signed_out_at_provider(run: &crate::worker::Pass, user: &str) {
    assert_eq!(run.line(user)["outcome"], "signed_out");
    assert_eq!(
        run.line(user)["reason"],
        "the user signed out at the provider"
    );
}

async fn a_sign_out_at_the_provider_ends_the_user_everywhere(backend: Backend) {
    let Some(app) = spawn_app("serve::provider_logout", backend, |_| {}).await else {
        return;
    };
    app.sign_in("ada").await;
    let grace = app.sign_in_elsewhere("grace").await;
    assert_eq!(app.home_html().await.0, 200);
    let replica = app.replica().await;

    // ada signs out at the provider (an administrator, another app of the tenant): it tells
    // this app before it answers.
    app.idp
        .admin(reqwest::Method::POST, "users/ada/logout", None)
        .await;
    assert_eq!(app.idp.counters().await["backchannel_logouts_sent"], 1);
    assert!(!has_cache(&app, "ada").await, "ada's cache is gone");
    assert!(has_cache(&app, "grace").await);
    let row = activity(&app, "ada");
    assert!(row.signed_out_at.is_some() && row.signed_out_at_the_provider());
    // Her session has ended in every replica; grace's has not.
    let (_, html) = app.home_html().await;
    assert!(html.contains("Sign in"), "{html}");
    let on_replica = app.browser.get(format!("{replica}/")).send().await.unwrap();
    assert!(on_replica.text().await.unwrap().contains("Sign in"));
    let graces = grace.get(app.url("/")).send().await.unwrap();
    assert!(graces
        .text()
        .await
        .unwrap()
        .contains("grace@tokenbridge.dev"));

    let run = pass(&app, |o| o.older_than = std::time::Duration::ZERO).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[("ada", "signed_out"), ("grace", "ok")])
    );
    reports_signed_out_at_provider(&run, "ada");
}

async fn invalid_and_replayed_logout_tokens_are_refused_and_change_nothing(backend: Backend) {
    let Some(app) = spawn_app("serve::logout_tokens", backend, |_| {}).await else {
        return;
    };
    app.sign_in("ada").await;
    let sub = activity(&app, "ada").subject.unwrap();
    let replica = app.replica().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = |jti: &str| {
        json!({
            "iss": app.idp.issuer,
            "aud": crate::dev_idp::CLIENT_ID,
            "iat": now,
            "exp": now + 120,
            "jti": jti,
            "events": { BACKCHANNEL_EVENT: {} },
            "sub": sub,
        })
    };
    let sign = |claims: Value| {
        let app = &app;
        async move { app.idp.logout_token(&claims).await }
    };
    let post = |base: String, token: String| async move {
        let response = reqwest::Client::new()
            .post(format!("{base}/backchannel-logout"))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let no_store = response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(no_store.as_deref(), Some("no-store"));
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body)
    };

    let mut wrong_aud = claims("j-aud");
    wrong_aud["aud"] = json!("another-client");
    let mut nonce = claims("j-nonce");
    nonce["nonce"] = json!("n");
    let mut expired = claims("j-exp");
    expired["exp"] = json!(now - 600);
    let mut wrong_iss = claims("j-iss");
    wrong_iss["iss"] = json!("https://login.example.com/other/v2.0");
    let mut no_event = claims("j-event");
    no_event["events"] = json!({});
    let mut nobody = claims("j-nobody");
    nobody.as_object_mut().unwrap().remove("sub");
    // A valid token whose signature is not the provider's.
    let forged = {
        let token = sign(claims("j-forged")).await;
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        format!("{signed}.{flipped}{}", &signature[1..])
    };
    for invalid in [
        sign(wrong_aud).await,
        sign(nonce).await,
        sign(expired).await,
        sign(wrong_iss).await,
        sign(no_event).await,
        sign(nobody).await,
        forged,
        "garbage".into(),
    ] {
        let (status, body) = post(app.base.clone(), invalid).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_request");
        assert!(has_cache(&app, "ada").await, "nothing deleted");
    }
    let (status, _) = post(app.base.clone(), String::new()).await;
    assert_eq!(status, 400);

    // A valid token signs ada out; the same token sent again, to the other replica, is a
    // replay: refused, after ada has signed in again, which it must not undo.
    let token = sign(claims("j-1")).await;
    assert_eq!(post(app.base.clone(), token.clone()).await.0, 200);
    assert!(!has_cache(&app, "ada").await);
    app.sign_in("ada").await;
    let (status, body) = post(replica, token).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("used already"));
    assert!(has_cache(&app, "ada").await, "the new sign-in stands");
    // A user the app does not know: nothing to do, and fine.
    let mut stranger = claims("j-2");
    stranger["sub"] = json!("someone-else");
    assert_eq!(post(app.base.clone(), sign(stranger).await).await.0, 200);
}
