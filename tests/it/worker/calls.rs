//! The worker's job as calls (`--call NAME:METHOD:/path`): each on its named API with that
//! API's own token, the statuses in the report, one refresh per API at most.

use super::{outcomes, pass};
use crate::acquire::apis::{with_tasks_api, TASKS_SCOPE};
use crate::serve::{e2e_tests, spawn_app_with};
use std::time::Duration as StdDuration;
use tokenbridge::db::Backend;
use tokenbridge::settings::{CallSpec, Settings, WorkerSettings};
use tokenbridge::worker::PassError;

e2e_tests!(and_redis:
    a_pass_calls_each_api_with_its_own_token,
    an_api_never_consented_marks_the_account_naming_the_api,
);

fn job(options: &mut WorkerSettings, calls: &[&str]) {
    options.older_than = StdDuration::ZERO;
    options.calls = calls.iter().map(|c| c.parse().unwrap()).collect();
}

const BOTH: &[&str] = &[
    "default:GET:/me",
    "tasks:GET:/me/tasks",
    "tasks:POST:/me/tasks",
];

async fn a_pass_calls_each_api_with_its_own_token(backend: Backend) {
    let Some(app) = spawn_app_with("worker::calls", backend, |_| {}, with_tasks_api).await else {
        return;
    };
    app.sign_in_elsewhere("ada").await;
    app.sign_in_elsewhere("grace").await;
    let counter = |name: &'static str| {
        let app = &app;
        async move { app.idp.counters().await[name].as_u64().unwrap() }
    };
    let run = pass(&app, |o| job(o, BOTH)).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok"), ("grace", "ok")]));
    let calls = &run.line("ada")["calls"];
    assert_eq!(
        calls,
        &serde_json::json!([
            { "call": "default:GET:/me", "status": 200 },
            { "call": "tasks:GET:/me/tasks", "status": 200 },
            { "call": "tasks:POST:/me/tasks", "status": 201 },
        ])
    );
    // Graph's token came with the sign-in; the second API's from one refresh per user.
    assert_eq!(counter("refreshes").await, 2);
    assert_eq!(counter("api_calls").await, 2);
    assert_eq!(counter("tasks_api_calls").await, 4);
    assert_eq!(counter("tasks_added").await, 2);

    // Both tokens cached: no refresh.
    let run = pass(&app, |o| job(o, BOTH)).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok"), ("grace", "ok")]));
    assert_eq!(counter("refreshes").await, 2);
    // Both lapsed: one refresh per user and API, however many calls use it.
    app.clock.advance(time::Duration::hours(2));
    let run = pass(&app, |o| job(o, BOTH)).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok"), ("grace", "ok")]));
    assert_eq!(counter("refreshes").await, 6);
    assert_eq!(counter("reuse_detections").await, 0);

    // An API no section configures is a configuration error, before anything is claimed.
    let mut options = app.settings.worker.clone();
    job(&mut options, &["mail:GET:/me/messages"]);
    let clock = std::sync::Arc::new(app.clock.clone());
    let refused = tokenbridge::worker::Worker::build(&app.settings, options, clock).await;
    match refused {
        Err(PassError::Configuration(why)) => {
            assert!(
                why.contains("API mail") && why.contains("default, tasks"),
                "{why}"
            )
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// The sign-in asked only for Graph (`identity.scopes`): the default call works, the second
/// API's token needs the user, and the reason names the API, its scopes and the provider's
/// words.
async fn an_api_never_consented_marks_the_account_naming_the_api(backend: Backend) {
    let only_graph = |s: &mut Settings| {
        with_tasks_api(s);
        s.identity.scopes = vec!["User.Read".into()];
    };
    let Some(app) = spawn_app_with("worker::unconsented", backend, |_| {}, only_graph).await else {
        return;
    };
    app.sign_in_elsewhere("ada").await;
    let run = pass(&app, |o| job(o, BOTH)).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "interaction_required")]));
    let line = run.line("ada");
    let reason = line["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("API tasks ({TASKS_SCOPE}): "))
            && reason.contains("AADSTS65001"),
        "{reason}"
    );
    assert_eq!(line["calls"][0]["status"], 200);
    assert_eq!(line["calls"][1]["status"], serde_json::Value::Null);
    assert_eq!(
        super::activity(&app, "ada").last_error.as_deref(),
        Some(reason)
    );
}

/// A call that fails transiently is tried again within the pass, unless it is not idempotent
/// and may have reached the API (a POST that timed out): that one is recorded at once.
#[tokio::test]
async fn a_call_that_may_have_reached_the_api_is_not_sent_again() {
    let slow_tasks = |s: &mut Settings| {
        with_tasks_api(s);
        let tasks = s.named_apis.get_mut("tasks").unwrap();
        tasks.timeout = StdDuration::from_millis(300);
    };
    let app = spawn_app_with(
        "worker::not_sent_again",
        Backend::Sqlite,
        |s| s.api_latency = StdDuration::from_millis(1500),
        slow_tasks,
    )
    .await
    .unwrap();
    app.sign_in_elsewhere("ada").await;
    for (call, attempts) in [("tasks:POST:/me/tasks", 1), ("tasks:GET:/me/tasks", 3)] {
        let run = pass(&app, |o| {
            job(o, &[call]);
            o.retries = 2;
        })
        .await;
        let line = run.line("ada");
        assert_eq!(line["outcome"], "transient", "{line}");
        assert_eq!(line["attempts"], attempts, "{call}: {line}");
        // Its backoff, so the next pass finds it due: time passes.
        app.clock.advance(time::Duration::hours(2));
    }
    let spec: CallSpec = "tasks:post:/me/tasks".parse().unwrap();
    assert_eq!(spec.to_string(), "tasks:POST:/me/tasks");
    for wrong in [
        "tasks:GET:me",
        "tasks:FETCH:/x",
        "Tasks:GET:/x",
        "tasks:/x",
        "tasks:GET:/a b",
    ] {
        assert!(wrong.parse::<CallSpec>().is_err(), "{wrong}");
    }
}
