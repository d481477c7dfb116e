//! A key mistake is a configuration error: a worker whose key under the right id has another
//! value (a typo, a truncated copy, a regenerated secret) stops before it claims anything, and
//! one that meets a row sealed with a key it lacks stops its pass; neither marks a user or
//! writes a row. With the right keys, everyone then works.

use super::{outcomes, pass};
use crate::fixtures::{keys, KEY, OTHER_KEY};
use crate::serve::{e2e_tests, spawn_app, TestApp};
use std::sync::Arc;
use time::Duration;
use tokenbridge::activity::store::{self as activities, Activity};
use tokenbridge::cache::backend::Expected;
use tokenbridge::clock::Clock;
use tokenbridge::db::Backend;
use tokenbridge::identity::acquire::{AcquirerOptions, TokenAcquirer};
use tokenbridge::worker::{PassError, Worker};

e2e_tests!(and_redis:
    a_wrong_key_under_the_right_id_stops_the_worker_before_it_claims_anything,
    a_row_sealed_with_a_key_the_worker_lacks_stops_the_pass_and_marks_nobody,
);

/// `ada` and `grace` signed in, their access tokens expired: each needs its refresh token.
async fn two_users(test: &str, backend: Backend) -> Option<TestApp> {
    let app = spawn_app(test, backend, |_| {}).await?;
    for user in ["ada", "grace"] {
        app.sign_in_elsewhere(user).await;
    }
    app.clock.advance(Duration::hours(2));
    Some(app)
}

fn activity_rows(app: &TestApp) -> Vec<Activity> {
    ["ada", "grace"]
        .iter()
        .flat_map(|u| {
            activities::find_by_upn(&mut app.db.conn(), &format!("{u}@tokenbridge.dev")).unwrap()
        })
        .collect()
}

async fn a_wrong_key_under_the_right_id_stops_the_worker_before_it_claims_anything(
    backend: Backend,
) {
    let Some(app) = two_users("worker::wrong_key", backend).await else {
        return;
    };
    let (rows, activity) = (app.cache_rows(), activity_rows(&app));
    let mut wrong = app.settings.clone();
    wrong.cache.keys = Some(keys(&format!("k1={OTHER_KEY}")));
    let mut options = app.settings.worker.clone();
    options.older_than = std::time::Duration::ZERO;
    let built = Worker::build(&wrong, options, Arc::new(app.clock.clone())).await;
    let Err(PassError::Configuration(message)) = built else {
        panic!("a configuration error, before any claim: {built:?}");
    };
    assert!(message.contains("`k1`"), "{message}");
    assert!(!message.contains(OTHER_KEY) && !message.contains(KEY));
    assert_eq!(app.cache_rows(), rows, "no row written");
    assert_eq!(
        activity_rows(&app),
        activity,
        "nobody marked, nothing claimed"
    );

    let run = pass(&app, |o| o.older_than = std::time::Duration::ZERO).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok"), ("grace", "ok")]));
}

async fn a_row_sealed_with_a_key_the_worker_lacks_stops_the_pass_and_marks_nobody(
    backend: Backend,
) {
    let Some(app) = two_users("worker::unknown_key", backend).await else {
        return;
    };
    // Another process, with a new key `k0` first, rewrites grace's row under it.
    let mut rotated = app.settings.clone();
    rotated.cache.keys = Some(keys(&format!("k0={OTHER_KEY},k1={KEY}")));
    let elsewhere = TokenAcquirer::from_settings(
        app.db.db.clone(),
        &rotated,
        Arc::new(app.clock.clone()),
        AcquirerOptions::from_settings(&rotated.identity, &rotated.cache, "elsewhere".into()),
    )
    .unwrap();
    let grace = activity_rows(&app)[1].account_cache_key.clone();
    let caches = elsewhere.caches();
    let loaded = caches.load(&grace, app.clock.now()).await.unwrap().unwrap();
    let over = Expected {
        version: loaded.version,
        session_epoch: Some(loaded.session_epoch),
    };
    caches
        .save_refreshed(&grace, loaded.document, over, None, app.clock.now())
        .await
        .unwrap();
    let (rows, activity) = (app.cache_rows(), activity_rows(&app));

    let run = pass(&app, |o| {
        o.older_than = std::time::Duration::ZERO;
        o.user = Some("grace@tokenbridge.dev".into());
    })
    .await;
    let Err(PassError::Configuration(message)) = &run.result else {
        panic!("the pass stops: {:?} {:?}", run.result, run.lines);
    };
    assert!(message.contains("`k0`"), "{message}");
    assert_eq!(app.cache_rows(), rows, "no row written");
    let after = activity_rows(&app);
    assert!(!after[1].failed_to_acquire_token, "grace is not marked");
    assert_eq!(after[1].last_error, activity[1].last_error);
    assert_eq!(after[1].consecutive_failures, 0);
}
