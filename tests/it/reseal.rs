//! `tokenbridge cache reseal`, key rotation end to end on every backend and with the caches in
//! Redis: rows sealed with the old key are rewritten with the new one while a web refresh of
//! the same row is under way (strict rotation: a lost refresh token would show as reuse), a
//! second run finds nothing to do, and the old key can then go.

use crate::serve::{e2e_tests, spawn_app, TestApp};
use crate::worker::processes::tokenbridge;
use serde_json::Value;
use std::process::Output;
use tokenbridge::cache::seal::SealKeys;
use tokenbridge::db::Backend;
use tokenbridge::secret::Secret;
use tokenbridge::settings::Rotation;

e2e_tests!(and_redis: reseal_moves_every_row_to_the_new_key_and_a_racing_refresh_loses_nothing);

const NEW_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

/// `tokenbridge ARGS` with `keys` as cache.keys.
fn run(app: &TestApp, keys: &str, command: &str, args: &[&str]) -> Output {
    let config = tempfile::NamedTempFile::new().unwrap();
    let out = tokenbridge(app, config.path(), command, args)
        .env("TOKENBRIDGE_CACHE__KEYS", keys)
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Each account's sealing key, as `accounts list` says.
fn sealed(app: &TestApp, keys: &str) -> Vec<(String, String)> {
    let out = run(app, keys, "accounts", &["list", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("user").is_some())
        .map(|v| {
            (
                v["user"].as_str().unwrap().to_owned(),
                v["sealed_with"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn reseal_moves_every_row_to_the_new_key_and_a_racing_refresh_loses_nothing(
    backend: Backend,
) {
    let Some(app) = spawn_app("reseal::rotation", backend, |s| {
        s.rotation = Rotation::Strict
    })
    .await
    else {
        return;
    };
    let old = format!("k1={}", crate::fixtures::KEY);
    let both = format!("k2={NEW_KEY},k1={}", crate::fixtures::KEY);
    app.sign_in("ada").await;
    app.sign_in_elsewhere("grace").await;
    assert!(sealed(&app, &old).iter().all(|(_, key)| key == "k1"));

    // The new key goes first everywhere (here: a replica), the old one stays.
    let mut rotated = app.settings.clone();
    rotated.cache.keys = Some(SealKeys::parse(&Secret::new(both.clone())).unwrap());
    let replica = app.replica_with(&rotated).await;

    // ada's page on that replica refreshes her tokens, the provider's answer held back, while
    // the reseal runs.
    app.clock.advance(time::Duration::hours(2));
    let late = serde_json::json!({ "kind": "late_answer", "delay_ms": 800 });
    app.idp
        .admin(reqwest::Method::POST, "faults", Some(late))
        .await;
    let page = app.browser.get(format!("{replica}/")).send();
    let reseal = async {
        for _ in 0..500 {
            if app.idp.counters().await["refreshes"].as_u64().unwrap() >= 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let config = tempfile::NamedTempFile::new().unwrap();
        let mut command = tokenbridge(&app, config.path(), "cache", &["reseal", "--batch", "1"]);
        command.env("TOKENBRIDGE_CACHE__KEYS", &both);
        tokio::task::spawn_blocking(move || {
            let out = command.output().unwrap();
            drop(config);
            out
        })
        .await
        .unwrap()
    };
    let (page, resealed) = futures_util::future::join(page, reseal).await;
    let page = page.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("ada@tokenbridge.dev"));
    assert_eq!(resealed.status.code(), Some(0), "{}", stdout(&resealed));
    assert!(
        stdout(&resealed).starts_with("2 row(s): "),
        "{}",
        stdout(&resealed)
    );

    // Every row is on the new key; nothing was lost: the next refresh presents the token the
    // provider rotated last (strict rotation would take any other for theft).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        sealed(&app, &both).iter().all(|(_, key)| key == "k2"),
        "{:?}",
        sealed(&app, &both)
    );
    app.clock.advance(time::Duration::hours(2));
    let again = app.browser.get(format!("{replica}/")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let counters = app.idp.counters().await;
    assert_eq!(counters["reuse_detections"], 0, "{counters}");
    assert_eq!(counters["refreshes"], 2, "{counters}");

    // Run again: nothing to do. Then the old key can go.
    let out = run(&app, &both, "cache", &["reseal"]);
    assert!(
        stdout(&out).contains("0 resealed with key k2, 2 already on it"),
        "{}",
        stdout(&out)
    );
    let new_only = format!("k2={NEW_KEY}");
    let out = run(
        &app,
        &new_only,
        "accounts",
        &["show", "grace@tokenbridge.dev"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("refresh_tokens   1"),
        "{}",
        stdout(&out)
    );
}

/// Rows written before keys were configured are plain; with `cache.read_plaintext` the reseal
/// seals them, and then the flag can go.
#[tokio::test]
async fn reseal_seals_plain_rows() {
    let Some(app) = crate::serve::spawn_app_with(
        "reseal::plain",
        Backend::Sqlite,
        |_| {},
        |s| {
            s.cache.keys = None;
            s.cache.read_plaintext = true;
        },
    )
    .await
    else {
        return;
    };
    app.sign_in("ada").await;
    let key = format!("k1={}", crate::fixtures::KEY);
    let config = tempfile::NamedTempFile::new().unwrap();
    let plain_ok = |command: &str, args: &[&str]| {
        let out = tokenbridge(&app, config.path(), command, args)
            .env("TOKENBRIDGE_CACHE__KEYS", &key)
            .env("TOKENBRIDGE_CACHE__READ_PLAINTEXT", "true")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    assert!(plain_ok("accounts", &["list"]).contains(" plain "));
    let resealed = plain_ok("cache", &["reseal"]);
    assert!(resealed.contains("1 resealed with key k1"), "{resealed}");
    // Without read_plaintext the row opens: it is sealed now.
    assert_eq!(
        sealed(&app, &key),
        vec![("ada@tokenbridge.dev".to_owned(), "k1".to_owned())]
    );
    let out = run(&app, &key, "accounts", &["show", "ada@tokenbridge.dev"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
