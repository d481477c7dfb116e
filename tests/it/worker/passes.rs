//! What a pass does for users in each state, on every backend.

use super::{activity, outcomes, pass};
use crate::serve::{e2e_tests, spawn_app, TestApp};
use time::Duration;
use tokenbridge::clock::Clock;
use tokenbridge::db::Backend;
use tokenbridge::worker::PassError;

e2e_tests!(and_redis:
    one_pass_refreshes_each_idle_user_and_calls_the_api_once_each,
    a_revoked_user_is_marked_skipped_and_cleared_by_signing_in,
    a_signed_out_user_is_reported_once_then_skipped,
    a_sign_in_without_a_refresh_token_is_marked_and_reported_once,
    a_dry_run_lists_the_due_accounts_and_changes_nothing,
    one_user_can_be_processed_alone,
    the_web_app_and_a_worker_refreshing_one_user_never_trip_strict_rotation,
    the_readme_scenario_holds_as_written,
);

async fn app_with(test: &str, backend: Backend, users: &[&str]) -> Option<TestApp> {
    let app = spawn_app(test, backend, |_| {}).await?;
    for user in users {
        app.sign_in_elsewhere(user).await;
    }
    Some(app)
}

async fn one_pass_refreshes_each_idle_user_and_calls_the_api_once_each(backend: Backend) {
    let Some(app) = app_with("worker::one_pass", backend, &["ada", "grace", "alan"]).await else {
        return;
    };
    // Recently active users are not due yet.
    let early = pass(&app, |_| {}).await;
    assert_eq!(early.summary().accounts, 0, "{:?}", early.lines);
    app.clock.advance(Duration::hours(2));
    let counters = app.idp.counters().await;
    let run = pass(&app, |_| {}).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[("ada", "ok"), ("alan", "ok"), ("grace", "ok")])
    );
    assert_eq!(run.summary().ok, 3);
    let after = app.idp.counters().await;
    for user in ["ada", "grace", "alan"] {
        assert_eq!(after["users"][user]["refreshes"], 1, "{after}");
        assert_eq!(
            after["users"][user]["api_calls"].as_u64().unwrap(),
            counters["users"][user]["api_calls"].as_u64().unwrap_or(0) + 1,
            "{after}"
        );
        let row = activity(&app, user);
        assert!(row.last_success_at.is_some());
        assert!(
            row.last_activity() < app.clock.now() - Duration::hours(1),
            "the worker never touches last_activity"
        );
        assert_eq!(row.lease_owner, None, "claims are released");
        let line = run.line(user);
        assert!(line["token_expires_at"].is_string(), "{line}");
        assert!(line["elapsed_ms"].is_u64());
    }
    // The web app's pages now use the tokens the worker refreshed.
    assert_eq!(app.home_html().await.0, 200);
}

async fn a_revoked_user_is_marked_skipped_and_cleared_by_signing_in(backend: Backend) {
    let Some(app) = app_with("worker::revoked", backend, &["ada", "grace"]).await else {
        return;
    };
    app.idp
        .admin(reqwest::Method::POST, "users/grace/revoke", None)
        .await;
    app.clock.advance(Duration::hours(2));
    let run = pass(&app, |_| {}).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[("ada", "ok"), ("grace", "interaction_required")])
    );
    let reason = run.line("grace")["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("invalid_grant"), "{reason}");
    let row = activity(&app, "grace");
    assert!(row.failed_to_acquire_token);
    assert!(row.last_error.unwrap().contains("invalid_grant"));

    app.clock.advance(Duration::hours(1));
    let run = pass(&app, |_| {}).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[("ada", "ok")]),
        "grace is skipped"
    );

    app.sign_in_elsewhere("grace").await;
    assert!(
        !activity(&app, "grace").failed_to_acquire_token,
        "signing in clears the mark"
    );
    app.clock.advance(Duration::hours(2));
    let run = pass(&app, |_| {}).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok"), ("grace", "ok")]));
}

async fn a_signed_out_user_is_reported_once_then_skipped(backend: Backend) {
    let Some(app) = spawn_app("worker::signed_out", backend, |_| {}).await else {
        return;
    };
    app.sign_in("ada").await;
    app.sign_in_elsewhere("grace").await;
    let (_, html) = app.home_html().await;
    let signed_out = app.sign_out_from(&html).await;
    assert_eq!(signed_out.status(), 303);
    app.clock.advance(Duration::hours(2));
    let run = pass(&app, |_| {}).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[("ada", "signed_out"), ("grace", "ok")])
    );
    assert_eq!(run.summary().signed_out, 1);
    app.clock.advance(Duration::minutes(10));
    let run = pass(&app, |_| {}).await;
    assert_eq!(run.outcomes(), outcomes(&[("grace", "ok")]));
}

/// A provider that follows OpenID Connect Core 11 drops `offline_access` from a sign-in
/// without `prompt=consent`: the activity row says at once that there is no refresh token, and
/// the next pass reports it (once) instead of acting until the access token lapses.
async fn a_sign_in_without_a_refresh_token_is_marked_and_reported_once(backend: Backend) {
    let Some(app) = spawn_app("worker::no_refresh_token", backend, |_| {}).await else {
        return;
    };
    app.idp
        .behave(serde_json::json!({ "offline_access": "consent" }))
        .await;
    app.sign_in_elsewhere("ada").await;
    app.idp
        .behave(serde_json::json!({ "offline_access": "scope" }))
        .await;
    app.sign_in_elsewhere("grace").await;

    let ada = activity(&app, "ada");
    assert!(ada.failed_to_acquire_token, "{ada:?}");
    let error = ada.last_error.clone().unwrap_or_default();
    assert!(error.starts_with("no refresh token"), "{error}");
    assert!(!activity(&app, "grace").failed_to_acquire_token);

    app.clock.advance(Duration::hours(2));
    let run = pass(&app, |_| {}).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[("ada", "interaction_required"), ("grace", "ok")])
    );
    let reason = run.line("ada")["reason"].as_str().unwrap().to_owned();
    assert!(reason.starts_with("no refresh token"), "{reason}");
    app.clock.advance(Duration::hours(2));
    let run = pass(&app, |_| {}).await;
    assert_eq!(run.outcomes(), outcomes(&[("grace", "ok")]));

    // Signing in with a refresh token clears the mark.
    app.sign_in_elsewhere("ada").await;
    assert!(!activity(&app, "ada").failed_to_acquire_token);
}

fn dump(app: &TestApp) -> String {
    use diesel::prelude::*;
    use tokenbridge::db::schema::account_activities::dsl as aa;
    let caches = app.cache_rows();
    let conn = &mut *app.db.conn();
    let activities: Vec<tokenbridge::activity::store::Activity> = aa::account_activities
        .select(tokenbridge::db::schema::account_activities::all_columns)
        .order(aa::account_cache_key)
        .load(conn)
        .unwrap();
    format!("{caches:?}\n{activities:?}")
}

async fn a_dry_run_lists_the_due_accounts_and_changes_nothing(backend: Backend) {
    let Some(app) = app_with("worker::dry_run", backend, &["ada", "grace", "alan"]).await else {
        return;
    };
    app.idp
        .admin(reqwest::Method::POST, "users/alan/revoke", None)
        .await;
    app.clock.advance(Duration::days(2));
    let before = dump(&app);
    let counters = app.idp.counters().await;
    let run = pass(&app, |o| o.dry_run = true).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[
            ("ada", "would_process"),
            ("alan", "would_process"),
            ("grace", "would_process")
        ])
    );
    let limited = pass(&app, |o| {
        o.dry_run = true;
        o.limit = Some(2);
    })
    .await;
    assert_eq!(limited.lines.len(), 2);
    assert_eq!(dump(&app), before, "nothing in the database changed");
    assert_eq!(
        app.idp.counters().await,
        counters,
        "nothing was asked of the provider"
    );
}

async fn one_user_can_be_processed_alone(backend: Backend) {
    let Some(app) = app_with("worker::one_user", backend, &["ada", "grace"]).await else {
        return;
    };
    // Active a minute ago: not due, but asked for by name.
    app.clock.advance(Duration::minutes(1));
    let ada_before = activity(&app, "ada");
    let by_upn = pass(&app, |o| o.user = Some("Grace@TokenBridge.dev".into())).await;
    assert_eq!(by_upn.outcomes(), outcomes(&[("grace", "ok")]));
    assert_eq!(activity(&app, "ada"), ada_before, "nobody else is touched");
    let id = activity(&app, "ada").account_cache_key;
    let by_id = pass(&app, |o| o.user = Some(id.clone())).await;
    assert_eq!(by_id.outcomes(), outcomes(&[("ada", "ok")]));
    assert!(activity(&app, "ada").last_success_at.is_some());
    // A name that matches nothing says so (exit 2 for the binary), suggesting close ones: the
    // name typed at sign-in finds its user principal name.
    let typed = pass(&app, |o| o.user = Some("ada".into())).await;
    let Err(PassError::Configuration(message)) = &typed.result else {
        panic!("{:?}", typed.result);
    };
    assert!(
        message.contains("--user ada matches no account; did you mean ada@tokenbridge.dev?"),
        "{message}"
    );
    let nobody = pass(&app, |o| o.user = Some("nobody@tokenbridge.dev".into())).await;
    assert!(
        matches!(&nobody.result, Err(PassError::Configuration(m)) if m.contains("matches no account")),
        "{:?}",
        nobody.result
    );
    let counters = app.idp.counters().await;
    assert_eq!(counters["users"]["grace"]["api_calls"], 1, "{counters}");
    assert_eq!(counters["users"]["ada"]["api_calls"], 1, "{counters}");
}

/// Strict rotation, the web app loading pages for a user while `--every` passes refresh the
/// same user, tokens expiring again and again: the cache row's lease serializes every refresh,
/// so the provider never sees a token twice and nobody is revoked.
async fn the_web_app_and_a_worker_refreshing_one_user_never_trip_strict_rotation(backend: Backend) {
    use std::sync::Arc;
    use tokenbridge::settings::{ReportFormat, Rotation};
    use tokenbridge::worker::{Reporter, Worker};
    let Some(app) = spawn_app("worker::web_and_worker", backend, |s| {
        s.rotation = Rotation::Strict;
        s.token_latency = std::time::Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    app.sign_in("ada").await;
    let mut options = app.settings.worker.clone();
    options.older_than = std::time::Duration::ZERO;
    options.every = Some(std::time::Duration::from_millis(100));
    let worker = Worker::build(&app.settings, options, Arc::new(app.clock.clone()))
        .await
        .unwrap();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let passes = async {
        let mut reporter = Reporter::new(ReportFormat::Json, Vec::new(), false);
        worker.run(&mut reporter, &mut stopped).await.unwrap();
        String::from_utf8(reporter.into_inner()).unwrap()
    };
    let pages = async {
        for round in 0..10 {
            // Past the refresh margin again: the next page and the next pass both want a
            // refresh.
            app.clock.advance(Duration::minutes(31));
            let loads = (0..4).map(|_| app.browser.get(app.url("/")).send());
            for page in futures_util::future::join_all(loads).await {
                assert_eq!(page.unwrap().status(), 200, "round {round}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
        stop.send(true).unwrap();
    };
    let (report, ()) = futures_util::future::join(passes, pages).await;
    let counters = app.idp.counters().await;
    assert_eq!(counters["reuse_detections"], 0, "{counters}");
    assert!(counters["refreshes"].as_u64().unwrap() >= 5, "{counters}");
    let lines: Vec<serde_json::Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let accounts: Vec<_> = lines.iter().filter(|l| l["outcome"].is_string()).collect();
    assert!(
        accounts.len() >= 5,
        "the worker ran passes meanwhile: {report}"
    );
    assert!(accounts.iter().all(|l| l["outcome"] == "ok"), "{report}");
}

/// README's end-to-end scenario as written, with the shipped one-hour tokens and no time
/// passing: ada signs in and out, grace signs in; a pass shows ada signed out and grace ok;
/// after grace's tokens are revoked at the provider, the next pass shows her as
/// `interaction required` (the API refuses her revoked token, the refresh is refused), until
/// she signs in again.
async fn the_readme_scenario_holds_as_written(backend: Backend) {
    let Some(app) = spawn_app("worker::readme_scenario", backend, |_| {}).await else {
        return;
    };
    app.sign_in("ada").await;
    let (_, html) = app.home_html().await;
    assert_eq!(app.sign_out_from(&html).await.status(), 303);
    app.sign_in_elsewhere("grace").await;
    let now =
        |o: &mut tokenbridge::settings::WorkerSettings| o.older_than = std::time::Duration::ZERO;
    let run = pass(&app, now).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[("ada", "signed_out"), ("grace", "ok")])
    );
    app.idp
        .admin(reqwest::Method::POST, "users/grace/revoke", None)
        .await;
    let run = pass(&app, now).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[("grace", "interaction_required")])
    );
    app.sign_in_elsewhere("grace").await;
    let run = pass(&app, now).await;
    assert_eq!(run.outcomes(), outcomes(&[("grace", "ok")]));
}
