//! `tokenbridge accounts list|show|forget`, run as an operator runs them (processes), on every
//! backend and with the caches in Redis: states and counts, the key sealing each row, a cache
//! summary that never holds a token, erasure that is idempotent and refuses to guess, and an
//! erasure racing a worker pass (the worker reports the account signed out; nothing is made
//! again).

use crate::serve::{e2e_tests, spawn_app, TestApp};
use crate::worker::processes::tokenbridge;
use crate::worker::{activity, outcomes, pass, run_pass};
use serde_json::Value;
use std::process::Output;
use tokenbridge::activity::store as activities;
use tokenbridge::db::Backend;

e2e_tests!(and_redis:
    list_show_and_forget_as_an_operator_does,
    an_erasure_racing_a_worker_pass_leaves_nothing_behind,
);

fn accounts(app: &TestApp, args: &[&str]) -> Output {
    let config = tempfile::NamedTempFile::new().unwrap();
    let out = tokenbridge(app, config.path(), "accounts", args)
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "{:?}: {}",
        out.status,
        text(&out)
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The refresh and access tokens in `user`'s cache, as text.
async fn tokens_of(app: &TestApp, user: &str) -> Vec<String> {
    let id = activity(app, user).account_cache_key;
    let now = time::OffsetDateTime::now_utc();
    let document = crate::acquire::apis::acquirer(app)
        .caches()
        .load(&id, now)
        .await
        .unwrap()
        .unwrap()
        .document;
    document
        .refresh_tokens()
        .map(|(_, t)| t.secret.expose().to_owned())
        .chain(
            document
                .access_tokens()
                .map(|(_, t)| t.secret.expose().to_owned()),
        )
        .collect()
}

async fn list_show_and_forget_as_an_operator_does(backend: Backend) {
    let Some(app) = spawn_app("accounts::operator", backend, |_| {}).await else {
        return;
    };
    // ada works; grace is revoked, and a pass marks her; carol signed out.
    app.sign_in_elsewhere("ada").await;
    app.sign_in_elsewhere("grace").await;
    app.sign_in("carol").await;
    let (_, html) = app.home_html().await;
    assert_eq!(app.sign_out_from(&html).await.status(), 303);
    app.idp
        .admin(reqwest::Method::POST, "users/grace/revoke", None)
        .await;
    app.clock.advance(time::Duration::hours(2));
    let run = pass(&app, |o| o.older_than = std::time::Duration::ZERO).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[
            ("ada", "ok"),
            ("grace", "interaction_required"),
            ("carol", "signed_out")
        ])
    );
    let secrets = tokens_of(&app, "ada").await;
    assert!(!secrets.is_empty());

    let out = accounts(&app, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listed = text(&out);
    assert!(
        listed.contains("3 account(s): 1 interaction-required, 1 ok, 1 signed-out"),
        "{listed}"
    );
    let row = |user: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(&format!("{user}@tokenbridge.dev")))
            .unwrap_or_else(|| panic!("{user}: {listed}"))
            .to_owned()
    };
    assert!(
        row("ada").contains(" ok ") && row("ada").contains(" k1 "),
        "{listed}"
    );
    assert!(row("grace").contains("interaction-required"), "{listed}");
    assert!(row("carol").contains("signed-out"), "{listed}");

    let out = accounts(
        &app,
        &[
            "list",
            "--state",
            "interaction-required",
            "--format",
            "json",
        ],
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["user"], "grace@tokenbridge.dev");
    assert_eq!(lines[0]["sealed_with"], "k1");
    assert!(lines[0]["reason"]
        .as_str()
        .unwrap()
        .contains("invalid_grant"));
    assert_eq!(lines[1]["summary"]["accounts"], 1);
    let out = accounts(&app, &["list", "--limit", "1", "--format", "json"]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["summary"]["accounts"], 3);
    assert_eq!(lines[1]["summary"]["shown"], 1);
    let out = accounts(
        &app,
        &[
            "list",
            "--user",
            "carol@tokenbridge.dev",
            "--format",
            "json",
        ],
    );
    let lines = json_lines(&out);
    assert_eq!(lines[0]["state"], "signed-out");
    assert_eq!(lines[0]["sealed_with"], "-", "no cache row");

    // show: the account and its cache summarised, no token in any form.
    for format in ["text", "json"] {
        let out = accounts(&app, &["show", "ada@tokenbridge.dev", "--format", format]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let shown = text(&out);
        assert!(
            shown.contains("User.Read") && shown.contains("k1"),
            "{shown}"
        );
        for secret in &secrets {
            assert!(!shown.contains(secret.as_str()), "a token in: {shown}");
        }
        let listed = text(&accounts(&app, &["list", "--format", format]));
        for secret in &secrets {
            assert!(!listed.contains(secret.as_str()), "a token in: {listed}");
        }
    }
    let out = accounts(&app, &["show", "ada", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{:?} {}",
        out.status,
        text(&out)
    );
    assert!(
        text(&out).contains("did you mean ada@tokenbridge.dev"),
        "{}",
        text(&out)
    );

    // Two accounts with one name: forget names them and guesses nothing.
    let ada = activity(&app, "ada");
    let twin = activities::ActivityRecord {
        account_cache_key: format!("{}-twin", ada.account_cache_key),
        account_identifier: format!("{}-twin", ada.account_cache_key),
        user_principal_name: ada.user_principal_name.clone(),
        ..Default::default()
    };
    activities::upsert(
        &mut app.db.conn(),
        &twin.as_upsert(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let out = accounts(&app, &["forget", "ada@tokenbridge.dev"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&twin.account_cache_key),
        "{}",
        text(&out)
    );
    assert!(crate::serve::provider_logout::has_cache(&app, "ada").await);

    // By its id: erased, cache and activity; again: nothing to forget.
    let out = accounts(&app, &["forget", &ada.account_cache_key]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("token cache deleted, activity deleted"),
        "{}",
        text(&out)
    );
    let left = activities::lookup(&mut app.db.conn(), &ada.account_cache_key).unwrap();
    assert!(left.0.is_empty(), "no activity row");
    let now = time::OffsetDateTime::now_utc();
    let caches = crate::acquire::apis::acquirer(&app);
    assert!(caches
        .caches()
        .version_and_epoch(&ada.account_cache_key, now)
        .await
        .unwrap()
        .is_none());
    let out = accounts(&app, &["forget", &ada.account_cache_key]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("nothing to forget"), "{}", text(&out));
    // --revoke at a provider without RFC 7009 (as Entra ID): said, and the erasure goes on.
    let out = accounts(&app, &["forget", "grace@tokenbridge.dev", "--revoke"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("offers no revocation"),
        "{}",
        text(&out)
    );
    assert!(
        activities::find_by_upn(&mut app.db.conn(), "grace@tokenbridge.dev")
            .unwrap()
            .is_empty()
    );
    // Her session here has ended too.
    let (_, html) = app.home_html().await;
    assert!(!html.contains("ada@tokenbridge.dev"));
}

async fn an_erasure_racing_a_worker_pass_leaves_nothing_behind(backend: Backend) {
    let Some(app) = spawn_app("accounts::forget_race", backend, |_| {}).await else {
        return;
    };
    app.sign_in_elsewhere("ada").await;
    let key = activity(&app, "ada").account_cache_key;
    // Her token needs a refresh, and the provider's answer is held back: the pass is busy
    // with her when another process erases her.
    app.clock.advance(time::Duration::hours(2));
    let late = serde_json::json!({ "kind": "late_answer", "delay_ms": 800 });
    app.idp
        .admin(reqwest::Method::POST, "faults", Some(late))
        .await;
    let worker = tokenbridge::worker::Worker::build(
        &app.settings,
        {
            let mut options = app.settings.worker.clone();
            options.older_than = std::time::Duration::ZERO;
            options
        },
        std::sync::Arc::new(app.clock.clone()),
    )
    .await
    .unwrap();
    app.clock.advance(time::Duration::milliseconds(1));
    let erase = async {
        for _ in 0..500 {
            if app.idp.counters().await["refreshes"].as_u64().unwrap() >= 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let out = tokio::task::spawn_blocking({
            let config = tempfile::NamedTempFile::new().unwrap();
            let mut command = tokenbridge(&app, config.path(), "accounts", &["forget", &key]);
            move || {
                let out = command.output().unwrap();
                drop(config);
                out
            }
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    };
    let run = run_pass(&worker, erase).await;
    assert_eq!(
        run.outcomes(),
        outcomes(&[("ada", "signed_out")]),
        "{:?}",
        run.lines
    );
    assert!(run.line("ada")["reason"]
        .as_str()
        .unwrap()
        .contains("erased"));
    // Nothing was made again: no activity row, no cache row, then or a moment later.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(activities::get(&mut app.db.conn(), &key).unwrap().is_none());
    let now = time::OffsetDateTime::now_utc();
    assert!(crate::acquire::apis::acquirer(&app)
        .caches()
        .version_and_epoch(&key, now)
        .await
        .unwrap()
        .is_none());
}
