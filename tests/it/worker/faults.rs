//! A provider in trouble: retries within the pass, backoff across passes, and one account's
//! trouble never harming another's. Provider behaviour does not depend on the database, so
//! these run on SQLite.

use super::{activity, outcomes, pass};
use crate::serve::{spawn_app_with, TestApp};
use std::time::Duration as StdDuration;
use time::Duration;
use tokenbridge::clock::Clock;
use tokenbridge::db::Backend;
use tokenbridge::settings::Rotation;
use tokenbridge::worker::PassError;

async fn app(test: &str, rotation: Rotation, users: &[&str]) -> TestApp {
    let app = spawn_app_with(
        test,
        Backend::Sqlite,
        |s| s.rotation = rotation,
        |s| s.identity.http_timeout = StdDuration::from_secs(1),
    )
    .await
    .unwrap();
    for user in users {
        app.sign_in_elsewhere(user).await;
    }
    app.clock.advance(Duration::hours(2));
    app
}

#[tokio::test]
async fn server_errors_are_retried_within_the_pass() {
    let app = app("worker::retried", Rotation::Rotate, &["ada"]).await;
    app.idp.inject("500", 2).await;
    let run = pass(&app, |_| {}).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok")]));
    assert_eq!(run.line("ada")["attempts"], 3);
    assert_eq!(activity(&app, "ada").consecutive_failures, 0);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let app = app("worker::retry_after", Rotation::Rotate, &["ada"]).await;
    let busy = serde_json::json!({ "kind": "429", "count": 1, "retry_after": 2 });
    app.idp
        .admin(reqwest::Method::POST, "faults", Some(busy))
        .await;
    let run = pass(&app, |_| {}).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok")]));
    let line = run.line("ada");
    assert_eq!(line["attempts"], 2);
    assert!(line["elapsed_ms"].as_u64().unwrap() >= 2000, "{line}");
}

#[tokio::test]
async fn a_provider_that_hangs_is_transient_and_backs_off_without_marking() {
    let app = app("worker::hang", Rotation::Rotate, &["ada"]).await;
    app.idp.inject("hang", 1).await;
    let run = pass(&app, |o| o.retries = 0).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "transient")]));
    let row = activity(&app, "ada");
    assert!(!row.failed_to_acquire_token, "not the user's fault");
    assert_eq!(row.consecutive_failures, 1);
    let retry_at = tokenbridge::clock::from_db(row.next_attempt_at.unwrap());
    assert!(retry_at > app.clock.now(), "backing off");
    // Not due again until the backoff has passed.
    assert_eq!(pass(&app, |_| {}).await.summary().accounts, 0);
    app.clock.advance(Duration::minutes(10));
    let run = pass(&app, |_| {}).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok")]));
}

/// The provider rotates a user's token and the answer is lost: under strict reuse detection
/// that user has to sign in again (no client can recover), and nobody else is harmed.
#[tokio::test]
async fn an_answer_lost_after_rotation_harms_only_that_user() {
    let app = app(
        "worker::lost_answer",
        Rotation::Strict,
        &["ada", "grace", "alan"],
    )
    .await;
    app.idp.inject("lose_answer", 1).await;
    let run = pass(&app, |o| o.concurrency = 1).await;
    let outcomes = run.outcomes();
    let harmed: Vec<_> = outcomes.iter().filter(|(_, o)| *o != "ok").collect();
    assert_eq!(harmed.len(), 1, "{outcomes:?}");
    assert_eq!(harmed[0].1, "interaction_required", "{outcomes:?}");
    let counters = app.idp.counters().await;
    assert_eq!(counters["reuse_detections"], 1, "{counters}");
}

#[tokio::test]
async fn a_configuration_error_stops_the_pass_at_once() {
    let app = app("worker::configuration", Rotation::Rotate, &["ada", "grace"]).await;
    let mut settings = app.settings.clone();
    settings.identity.client_secret = Some(tokenbridge::secret::Secret::new("wrong"));
    let worker = tokenbridge::worker::Worker::build(
        &settings,
        settings.worker.clone(),
        std::sync::Arc::new(app.clock.clone()),
    )
    .await
    .unwrap();
    let result = super::run_pass(&worker, std::future::ready(()))
        .await
        .result;
    assert!(
        matches!(&result, Err(PassError::Configuration(reason)) if reason.contains("invalid_client")),
        "{result:?}"
    );
    for user in ["ada", "grace"] {
        let row = activity(&app, user);
        assert_eq!(row.lease_owner, None, "{user}: claims are given back");
        assert!(
            !row.failed_to_acquire_token && row.last_error.is_none(),
            "{user}"
        );
    }
}

/// The database goes away in the middle of a pass: the pass stops with a database error (the
/// binary exits 1) instead of carrying on or hanging.
#[tokio::test]
async fn the_database_going_away_mid_pass_stops_it() {
    let Some(app) = crate::serve::spawn_app("worker::database_down", Backend::Postgres, |s| {
        s.api_latency = StdDuration::from_millis(300)
    })
    .await
    else {
        return;
    };
    super::processes::seed(&app, 20).await;
    let mut settings = app.settings.clone();
    settings.database.connect_timeout = StdDuration::from_secs(2);
    let mut options = settings.worker.clone();
    options.concurrency = 2;
    let worker = tokenbridge::worker::Worker::build(
        &settings,
        options,
        std::sync::Arc::new(tokenbridge::clock::SystemClock),
    )
    .await
    .unwrap();
    let outage = async {
        while app.idp.counters().await["api_calls"].as_u64().unwrap() < 1 {
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
        app.db.destroy();
    };
    let pass = super::run_pass(&worker, outage);
    let result = tokio::time::timeout(StdDuration::from_secs(60), pass)
        .await
        .expect("the pass stopped")
        .result;
    assert!(matches!(result, Err(PassError::Storage(_))), "{result:?}");
}

/// A refresh answer without a scope asked for (the user withdrew consent at the provider) is
/// that user's problem: the page sends them to sign in, the worker marks them naming the
/// scope, and the provider is not taken for misconfigured: others are served, `/readyz` stays
/// ready.
#[tokio::test]
async fn a_declined_scope_affects_only_its_user() {
    let app = app("worker::declined_scope", Rotation::Rotate, &["grace"]).await;
    app.sign_in("ada").await;
    app.clock.advance(Duration::hours(2));
    app.idp
        .admin(
            reqwest::Method::PUT,
            "users/ada/declined-scopes",
            Some(serde_json::json!({ "scopes": ["User.Read"] })),
        )
        .await;
    let page = app.get("/").await;
    assert_eq!(
        page.status(),
        302,
        "ada is sent to sign in, not shown a 500"
    );
    assert!(crate::serve::location(&page).starts_with("/signin"));
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), 200, "{:?}", readyz.text().await);
    let run = pass(&app, |o| o.older_than = StdDuration::ZERO).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[("ada", "interaction_required"), ("grace", "ok")])
    );
    let reason = run.line("ada")["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("did not grant User.Read"), "{reason}");
    assert_eq!(app.get("/readyz").await.status(), 200);
}

/// A token the API refuses as `invalid_token` although it had time left (revoked, expired on
/// the way): one refresh past it and one call more, on the page and in the worker, before
/// anything is recorded; an API that keeps refusing costs one refresh and is recorded.
#[tokio::test]
async fn an_access_token_the_api_refuses_is_refreshed_once_and_the_call_made_again() {
    let app = spawn_app_with("worker::api_refuses", Backend::Sqlite, |_| {}, |_| {})
        .await
        .unwrap();
    app.sign_in("ada").await;
    let app = &app;
    let counter =
        |name: &'static str| async move { app.idp.counters().await[name].as_u64().unwrap() };
    let refuse = |count: u32| async move {
        app.idp
            .admin(
                reqwest::Method::POST,
                "api-refusals",
                Some(serde_json::json!({ "count": count })),
            )
            .await;
    };
    // The page: refused once, then served with a refreshed token.
    let refreshes = counter("refreshes").await;
    refuse(1).await;
    assert_eq!(app.home_html().await.0, 200);
    assert_eq!(counter("refreshes").await, refreshes + 1);

    // The worker: refused once, then ok.
    refuse(1).await;
    let (refreshes, calls) = (counter("refreshes").await, counter("api_calls").await);
    let run = pass(app, |o| o.older_than = StdDuration::ZERO).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok")]));
    assert_eq!(counter("refreshes").await, refreshes + 1, "one refresh");
    assert_eq!(counter("api_calls").await, calls + 2, "one call more");
    assert_eq!(activity(app, "ada").consecutive_failures, 0);

    // Always refused: one refresh only, then recorded.
    refuse(100).await;
    let (refreshes, calls) = (counter("refreshes").await, counter("api_calls").await);
    let run = pass(app, |o| o.older_than = StdDuration::ZERO).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "api_error")]));
    assert!(run.line("ada")["reason"]
        .as_str()
        .unwrap()
        .contains("invalid_token"));
    assert_eq!(
        counter("refreshes").await,
        refreshes + 1,
        "one refresh only"
    );
    assert_eq!(counter("api_calls").await, calls + 2);
    refuse(0).await;
}
