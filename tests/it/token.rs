//! `tokenbridge token`: a fresh access token for one account from the shared cache, as a
//! process a cron script runs; its exit statuses; one redemption among processes at once.

use crate::acquire::apis::{with_tasks_api, TASKS_SCOPE};
use crate::serve::{e2e_tests, spawn_app_with, TestApp};
use crate::worker::processes::tokenbridge;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokenbridge::db::Backend;

e2e_tests!(and_redis: prints_each_api_s_token_and_never_the_refresh_token);

fn token(app: &TestApp, args: &[&str]) -> Output {
    let config = tempfile::NamedTempFile::new().unwrap();
    tokenbridge(app, config.path(), "token", args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// GET `url` with `token`: the status.
async fn call(url: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn prints_each_api_s_token_and_never_the_refresh_token(backend: Backend) {
    let Some(app) = spawn_app_with("token::prints", backend, |_| {}, with_tasks_api).await else {
        return;
    };
    app.sign_in_elsewhere("ada").await;
    let graph = format!("{}/v1.0/me", app.idp.base);
    let tasks = format!("{}/tasks/v1.0/me/tasks", app.idp.base);

    // Text: the bare token and a newline, the sign-in's Graph token from the cache.
    let out = token(&app, &["--user", "ada@tokenbridge.dev"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed = stdout(&out);
    let bare = printed.strip_suffix('\n').unwrap();
    assert!(!bare.contains(char::is_whitespace), "{printed:?}");
    assert_eq!(call(&graph, bare).await, 200);
    assert_eq!(app.idp.counters().await["refreshes"], 0);

    // JSON, for the second API: its own token, from one refresh.
    let out = token(
        &app,
        &[
            "--user",
            "ADA@tokenbridge.dev",
            "--api",
            "tasks",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let second = json["access_token"].as_str().unwrap();
    assert_eq!(call(&tasks, second).await, 200);
    assert_eq!(call(&graph, second).await, 401, "the other API refuses it");
    assert_eq!(json["api"], "tasks");
    assert_eq!(json["scopes"], serde_json::json!([TASKS_SCOPE]));
    assert_eq!(json["user"], "ada@tokenbridge.dev");
    assert!(
        json["expires_on"].as_i64().unwrap() > time::OffsetDateTime::now_utc().unix_timestamp()
    );
    assert_eq!(app.idp.counters().await["refreshes"], 1);

    // Nothing of the refresh token on stdout, nothing of the token on stderr.
    let key = json["account"].as_str().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let document = crate::acquire::apis::acquirer(&app)
        .caches()
        .load(key, now)
        .await
        .unwrap()
        .unwrap()
        .document;
    let (_, rt) = document.refresh_tokens().next().unwrap();
    assert!(!stdout(&out).contains(rt.secret.expose()));
    assert!(!stderr(&out).contains(second), "the token is not logged");
    let out = token(&app, &["--user", key, "--api", "tasks"]);
    assert_eq!(
        stdout(&out).trim_end(),
        second,
        "by home account id, from the cache"
    );
}

/// The exit statuses a script tests: 2 for a user or API that is not there, 4 for a user who
/// must sign in again (the reason on stderr), 3 when the provider does not answer, 1 when the
/// database does not.
#[tokio::test]
async fn exit_statuses_say_what_to_do() {
    let app = spawn_app_with(
        "token::exit_statuses",
        Backend::Sqlite,
        |s| s.access_token_ttl = Duration::from_secs(2),
        with_tasks_api,
    )
    .await
    .unwrap();
    app.sign_in_elsewhere("ada").await;
    app.sign_in_elsewhere("grace").await;

    let unknown = token(&app, &["--user", "adx"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("matches no account"),
        "{}",
        stderr(&unknown)
    );
    let close = token(&app, &["--user", "ada"]);
    assert_eq!(close.status.code(), Some(2));
    assert!(
        stderr(&close).contains("did you mean ada@tokenbridge.dev"),
        "{}",
        stderr(&close)
    );
    let no_api = token(&app, &["--user", "ada@tokenbridge.dev", "--api", "mail"]);
    assert_eq!(no_api.status.code(), Some(2));
    assert!(
        stderr(&no_api).contains("default, tasks"),
        "{}",
        stderr(&no_api)
    );

    // Both tokens lapsed (two-second tokens, real time: the command reads the system clock).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    app.idp
        .admin(reqwest::Method::POST, "users/grace/revoke", None)
        .await;
    let revoked = token(&app, &["--user", "grace@tokenbridge.dev"]);
    assert_eq!(revoked.status.code(), Some(4), "{}", stderr(&revoked));
    assert!(
        stderr(&revoked).contains("invalid_grant"),
        "{}",
        stderr(&revoked)
    );
    assert!(stdout(&revoked).is_empty());

    app.idp.inject("503", 20).await;
    let unavailable = token(&app, &["--user", "ada@tokenbridge.dev"]);
    assert_eq!(
        unavailable.status.code(),
        Some(3),
        "{}",
        stderr(&unavailable)
    );
    assert!(stdout(&unavailable).is_empty());

    let config = tempfile::NamedTempFile::new().unwrap();
    let no_database = tokenbridge(&app, config.path(), "token", &["--user", "ada"])
        .env(
            "TOKENBRIDGE_DATABASE__URL",
            "postgres://postgres@127.0.0.1:1/none",
        )
        .output()
        .unwrap();
    assert_eq!(
        no_database.status.code(),
        Some(1),
        "{}",
        stderr(&no_database)
    );
}

/// Three `token` processes at once for a lapsed token (strict rotation, a slow provider): one
/// redeems under the row's lease, the others wait for its result; all print the same token.
#[tokio::test]
async fn processes_at_once_share_one_redemption() {
    let app = spawn_app_with(
        "token::at_once",
        Backend::Sqlite,
        |s| {
            s.access_token_ttl = Duration::from_secs(2);
            s.token_latency = Duration::from_millis(400);
            s.rotation = tokenbridge::settings::Rotation::Strict;
        },
        |_| {},
    )
    .await
    .unwrap();
    app.sign_in_elsewhere("ada").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            tokenbridge(
                &app,
                config.path(),
                "token",
                &["--user", "ada@tokenbridge.dev"],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let printed: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            stdout(&out)
        })
        .collect();
    assert!(
        printed.iter().all(|t| t == &printed[0]),
        "one token for all"
    );
    let counters = app.idp.counters().await;
    assert_eq!(counters["refreshes"], 1, "{counters}");
    assert_eq!(counters["reuse_detections"], 0, "{counters}");
}
