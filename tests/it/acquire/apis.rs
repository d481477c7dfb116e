//! Named APIs: one access token per API's scopes, side by side in one document, each got from
//! the shared refresh token once; an API whose scopes were never consented.

use crate::serve::{e2e_tests, spawn_app_with, TestApp};
use std::sync::Arc;
use tokenbridge::activity::store as activities;
use tokenbridge::api::{ApiClient, ApiError};
use tokenbridge::db::{Backend, Database};
use tokenbridge::identity::acquire::{AcquirerOptions, Caller, TokenAcquirer};
use tokenbridge::identity::AcquireError;
use tokenbridge::settings::{ApiSettings, Settings};

e2e_tests!(and_redis:
    tokens_for_two_apis_live_side_by_side,
    an_api_whose_scopes_were_never_consented_needs_the_user,
);

/// The development provider's second API's scope.
pub const TASKS_SCOPE: &str = "api://tokenbridge-tasks/Tasks.Read";

/// Adds `[apis.tasks]`: the development provider's second API, beside Graph.
pub fn with_tasks_api(s: &mut Settings) {
    let mut tasks: ApiSettings = s.api.clone();
    tasks.name = "tasks".into();
    tasks.base_url = s.api.base_url.join("/tasks/v1.0").unwrap();
    tasks.path = "/me/tasks".into();
    tasks.scopes = vec![TASKS_SCOPE.into()];
    s.named_apis.insert("tasks".into(), tasks);
}

/// An acquirer of its own (as a worker process has) on the app's database and caches.
pub fn acquirer(app: &TestApp) -> TokenAcquirer {
    let db = Database::connect(&app.settings.database).unwrap();
    let options = AcquirerOptions::from_settings(
        &app.settings.identity,
        &app.settings.cache,
        tokenbridge::process::owner_id(),
    );
    TokenAcquirer::from_settings(db, &app.settings, Arc::new(app.clock.clone()), options).unwrap()
}

fn account(app: &TestApp, upn: &str) -> String {
    activities::find_by_upn(&mut app.db.conn(), upn).unwrap()[0]
        .account_cache_key
        .clone()
}

async fn tokens_for_two_apis_live_side_by_side(backend: Backend) {
    let Some(app) = spawn_app_with("acquire::two_apis", backend, |_| {}, with_tasks_api).await
    else {
        return;
    };
    app.sign_in_elsewhere("ada").await;
    let id = account(&app, "ada@tokenbridge.dev");
    // The sign-in kept the ID token's sub: Entra ID's (and the provider's) pairwise value for
    // this client, not the object id.
    let row =
        activities::find_by_upn(&mut app.db.conn(), "ada@tokenbridge.dev").unwrap()[0].clone();
    let oid = row.account_object_id.clone().unwrap();
    let pairwise = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(
            format!("{oid}:{}", crate::dev_idp::CLIENT_ID).as_bytes(),
        ))
    };
    assert_eq!(row.subject.as_deref(), Some(pairwise.as_str()));
    let acquirer = acquirer(&app);
    let refreshes = || async { app.idp.counters().await["refreshes"].as_u64().unwrap() };
    let graph_api = ApiClient::new(&app.settings.api).unwrap();
    let tasks_api = ApiClient::new(app.settings.api_named("tasks").unwrap()).unwrap();
    let get = |api: &'static str| {
        let acquirer = &acquirer;
        let id = &id;
        async move {
            let scopes = if api == "tasks" {
                TASKS_SCOPE
            } else {
                "User.Read"
            };
            acquirer.acquire_silent(id, &[scopes], Caller::Worker).await
        }
    };

    // The sign-in's token is Graph's; the second API's comes from the refresh token, once.
    let graph = get("graph").await.unwrap();
    assert_eq!(refreshes().await, 0);
    let tasks = get("tasks").await.unwrap();
    assert_eq!(refreshes().await, 1);
    assert_ne!(graph.secret.expose(), tasks.secret.expose());
    assert!(graph_api.me(&graph).await.is_ok());
    let listed = tasks_api.me(&tasks).await.unwrap();
    assert_eq!(listed["owner"], "ada@tokenbridge.dev");
    // Each API refuses the other's token (its audience).
    for refused in [graph_api.me(&tasks).await, tasks_api.me(&graph).await] {
        assert!(
            matches!(&refused, Err(ApiError::InvalidToken(why)) if why.contains("another audience")),
            "{refused:?}"
        );
    }
    // Both are cached now, side by side: no refresh for either.
    assert_eq!(
        get("graph").await.unwrap().secret.expose(),
        graph.secret.expose()
    );
    assert_eq!(
        get("tasks").await.unwrap().secret.expose(),
        tasks.secret.expose()
    );
    assert_eq!(refreshes().await, 1);
    let now = tokenbridge::clock::Clock::now(&app.clock);
    let document = acquirer
        .caches()
        .load(&id, now)
        .await
        .unwrap()
        .unwrap()
        .document;
    let targets: Vec<String> = document
        .access_tokens()
        .map(|(_, at)| at.target.clone())
        .collect();
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert!(
        targets.iter().any(|t| t.contains("User.Read")),
        "{targets:?}"
    );
    assert!(targets.iter().any(|t| t == TASKS_SCOPE), "{targets:?}");

    // Both expired: one refresh per API, and neither overwrites the other.
    app.clock.advance(time::Duration::hours(2));
    let graph = get("graph").await.unwrap();
    let tasks = get("tasks").await.unwrap();
    assert_eq!(refreshes().await, 3);
    assert!(graph_api.me(&graph).await.is_ok());
    assert!(tasks_api.me(&tasks).await.is_ok());
    assert_eq!(
        get("graph").await.unwrap().secret.expose(),
        graph.secret.expose()
    );
    assert_eq!(refreshes().await, 3);
}

/// A sign-in that asked only for Graph (`identity.scopes`): the second API's token needs the
/// user, and the reason says which scope was never consented.
async fn an_api_whose_scopes_were_never_consented_needs_the_user(backend: Backend) {
    let only_graph = |s: &mut Settings| {
        with_tasks_api(s);
        s.identity.scopes = vec!["User.Read".into()];
    };
    let Some(app) = spawn_app_with("acquire::unconsented_api", backend, |_| {}, only_graph).await
    else {
        return;
    };
    app.sign_in_elsewhere("ada").await;
    let id = account(&app, "ada@tokenbridge.dev");
    let acquirer = acquirer(&app);
    assert!(acquirer
        .acquire_silent(&id, &["User.Read"], Caller::Worker)
        .await
        .is_ok());
    let refused = acquirer
        .acquire_silent(&id, &[TASKS_SCOPE], Caller::Worker)
        .await;
    match refused {
        Err(AcquireError::InteractionRequired { reason }) => {
            assert!(reason.contains("AADSTS65001"), "{reason}");
            assert!(reason.contains(TASKS_SCOPE), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
