//! The `tokenbridge worker` binary: exit statuses, SIGTERM mid-pass, and several worker
//! processes sharing one pass without doing any account twice.

use crate::dev_idp::{CLIENT_ID, CLIENT_SECRET};
use crate::serve::{e2e_tests, spawn_app, spawn_app_with, TestApp};
use base64::Engine;
use diesel::Connection;
use serde_json::Value;
use std::collections::HashSet;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenbridge::activity::store::{self as activities, ActivityUpsert};
use tokenbridge::cache::document::{CacheDocument, ClientContext, Grant, TokenResponse};
use tokenbridge::db::Backend;
use tokenbridge::secret::Secret;

e2e_tests!(and_redis:
    four_worker_processes_share_a_pass_and_do_each_account_once,
    four_workers_started_together_with_no_idle_time_do_each_account_once
);

/// `tokenbridge worker ARGS` against the app's database and provider, with an empty settings
/// file and the environment a deployment would set.
pub(super) fn worker(app: &TestApp, config: &std::path::Path, args: &[&str]) -> Command {
    tokenbridge(app, config, "worker", args)
}

/// `tokenbridge COMMAND ARGS` against the app's database (and Redis, when its caches are
/// there) and provider, with an empty settings file and the environment a deployment would
/// set: the app's second API too, when it has one.
pub fn tokenbridge(
    app: &TestApp,
    config: &std::path::Path,
    command: &str,
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenbridge"));
    cmd.args(["--config", &config.display().to_string(), command])
        .args(args)
        .env_clear()
        .envs(std::env::var("PATH").map(|p| ("PATH".to_owned(), p)))
        .envs([
            ("TOKENBRIDGE_DATABASE__URL", app.db.settings.url.full_url()),
            ("TOKENBRIDGE_IDENTITY__INSTANCE", app.idp.base.clone()),
            ("TOKENBRIDGE_IDENTITY__TENANT_ID", app.idp.tenant.clone()),
            ("TOKENBRIDGE_IDENTITY__CLIENT_ID", CLIENT_ID.into()),
            ("TOKENBRIDGE_IDENTITY__CLIENT_SECRET", CLIENT_SECRET.into()),
            (
                "TOKENBRIDGE_API__BASE_URL",
                format!("{}/v1.0", app.idp.base),
            ),
            (
                "TOKENBRIDGE_CACHE__KEYS",
                format!("k1={}", crate::fixtures::KEY),
            ),
            ("TOKENBRIDGE_LOG__LEVEL", "warn".into()),
        ]);
    if let Some(redis) = &app.redis {
        cmd.env("TOKENBRIDGE_CACHE__URL", redis.url.expose())
            .env("TOKENBRIDGE_CACHE__KEY_PREFIX", &redis.prefix);
    }
    if let Some(tasks) = app.settings.api_named("tasks") {
        cmd.env("TOKENBRIDGE_APIS__TASKS__BASE_URL", tasks.base_url.as_str())
            .env("TOKENBRIDGE_APIS__TASKS__PATH", &tasks.path)
            .env("TOKENBRIDGE_APIS__TASKS__SCOPES", tasks.scopes.join(","));
    }
    cmd
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `count` accounts with a valid access token and refresh token (ada's, from the provider,
/// under an account id of their own), idle for an hour by the real clock. Seeding through the
/// stores keeps thousands of accounts quick (in one transaction in SQL; with the caches in
/// Redis, each cache there and its activity row after it); the provider counts each API call.
pub(super) async fn seed(app: &TestApp, count: usize) -> Vec<String> {
    let tokens = app.idp.tokens_for("ada").await;
    let context = ClientContext {
        client_id: CLIENT_ID.into(),
        environment: "127.0.0.1".into(),
        realm: app.idp.tenant.clone(),
    };
    let now = time::OffsetDateTime::now_utc();
    let idle_since = now - time::Duration::hours(1);
    let accounts: Vec<(String, CacheDocument, String, String)> = (0..count)
        .map(|n| {
            let uid = format!("user-{n:05}");
            let client_info = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!(r#"{{"uid":"{uid}","utid":"{}"}}"#, app.idp.tenant));
            let response = TokenResponse {
                access_token: Secret::new(tokens["access_token"].as_str().unwrap()),
                token_type: Some("Bearer".into()),
                expires_in: Some(3600),
                ext_expires_in: None,
                refresh_in: None,
                refresh_token: Some(Secret::new(tokens["refresh_token"].as_str().unwrap())),
                id_token: None,
                scope: Some("User.Read openid profile offline_access".into()),
                client_info: Some(client_info),
                family_id: None,
                user_assertion_hash: None,
            };
            let mut document = CacheDocument::default();
            let id = document
                .add_token_response(
                    &context,
                    &response,
                    &["User.Read"],
                    Grant::AuthorizationCode,
                    None,
                    now.unix_timestamp(),
                )
                .unwrap();
            let upn = format!("{uid}@tokenbridge.dev");
            (id, document, uid, upn)
        })
        .collect();
    let activity = |(id, _, uid, upn): &(String, CacheDocument, String, String)| {
        let (id, uid, upn, tenant) = (id.clone(), uid.clone(), upn.clone(), app.idp.tenant.clone());
        move |conn: &mut tokenbridge::db::DbConnection| {
            let activity = ActivityUpsert {
                account_cache_key: &id,
                account_identifier: &id,
                object_id: Some(&uid),
                tenant_id: Some(&tenant),
                user_principal_name: Some(&upn),
                subject: None,
                problem: None,
            };
            activities::upsert(conn, &activity, idle_since)
        }
    };
    if app.redis.is_some() {
        let caches = crate::acquire::apis::acquirer(app).caches().clone();
        for account in &accounts {
            let upsert = activity(account);
            let companion: tokenbridge::cache::backend::Companion =
                Arc::new(move |conn| upsert(conn).map_err(tokenbridge::db::DbError::from));
            let (id, document) = (&account.0, account.1.clone());
            caches
                .save_with(id, document, None, None, companion, idle_since)
                .await
                .unwrap();
        }
    } else {
        let mut conn = app.db.conn();
        let store = crate::acquire::store(&app.settings, &mut conn);
        conn.transaction::<_, anyhow::Error, _>(|conn| {
            for account in &accounts {
                store.save(conn, &account.0, &account.1, None, idle_since)?;
                activity(account)(conn)?;
            }
            Ok(())
        })
        .unwrap();
    }
    accounts.into_iter().map(|(id, ..)| id).collect()
}

async fn four_worker_processes_share_a_pass_and_do_each_account_once(backend: Backend) {
    four_workers_do_each_account_once("worker::four_processes", backend, &[]).await;
}

/// With `--older-than 0s` an account one worker has just done is idle long enough for a pass
/// that starts a moment later: only the passes still running keep it from being done again.
async fn four_workers_started_together_with_no_idle_time_do_each_account_once(backend: Backend) {
    four_workers_do_each_account_once("worker::four_now", backend, &["--older-than", "0s"]).await;
}

/// Four worker processes started together over 2,000 due accounts: each account done once,
/// by one of them, with one API call.
async fn four_workers_do_each_account_once(test: &str, backend: Backend, args: &[&str]) {
    let Some(app) = spawn_app(test, backend, |_| {}).await else {
        return;
    };
    let accounts = seed(&app, 2000).await;
    let before = app.idp.counters().await["api_calls"].as_u64().unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    let mut args = args.to_vec();
    args.extend(["--format", "json", "--concurrency", "8"]);
    let children: Vec<_> = (0..4)
        .map(|_| {
            worker(&app, config.path(), &args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut seen = HashSet::new();
    let mut per_process = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = json_lines(&out);
        let (summary, reports) = lines.split_last().unwrap();
        assert_eq!(
            summary["summary"]["accounts"].as_u64().unwrap() as usize,
            reports.len()
        );
        for report in reports {
            assert_eq!(report["outcome"], "ok", "{report}");
            let account = report["account"].as_str().unwrap().to_owned();
            assert!(seen.insert(account.clone()), "{account} was done twice");
        }
        per_process.push(reports.len());
    }
    assert_eq!(
        seen.len(),
        accounts.len(),
        "every account, once: {per_process:?}"
    );
    let after = app.idp.counters().await["api_calls"].as_u64().unwrap();
    assert_eq!(after - before, 2000, "one API call per account");
    assert!(
        per_process.iter().filter(|n| **n > 0).count() >= 2,
        "the processes shared the work: {per_process:?}"
    );
}

#[tokio::test]
async fn exit_status_says_whether_the_pass_ran() {
    // Two-second tokens: by the time the worker runs, each account needs a refresh, so a
    // wrong client secret is found at once.
    let app = spawn_app("worker::exit_status", Backend::Sqlite, |s| {
        s.access_token_ttl = Duration::from_secs(2)
    })
    .await
    .unwrap();
    for user in ["ada", "grace", "alan"] {
        app.sign_in_elsewhere(user).await;
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let config = tempfile::NamedTempFile::new().unwrap();

    for (key, value) in [
        ("TOKENBRIDGE_IDENTITY__CLIENT_SECRET", ""),
        ("TOKENBRIDGE_WORKER__CONCURRENCY", "0"),
        ("TOKENBRIDGE_IDENTITY__CLIENT_SECRET", "wrong-secret"),
        // The right key id, another value: refused before anything is claimed.
        (
            "TOKENBRIDGE_CACHE__KEYS",
            "k1=ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
        ),
    ] {
        let misconfigured = worker(&app, config.path(), &["--older-than", "0s"])
            .env(key, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&misconfigured.stderr);
        assert_eq!(
            misconfigured.status.code(),
            Some(2),
            "{key}={value}: {stderr}"
        );
        assert!(!stderr.contains("wrong-secret"), "{stderr}");
        assert!(
            !stderr.contains("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA"),
            "{stderr}"
        );
    }

    let ran = worker(&app, config.path(), &["--older-than", "0s"])
        .output()
        .unwrap();
    assert_eq!(
        ran.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let report = String::from_utf8_lossy(&ran.stdout);
    assert!(report.contains("3 account(s): 3 ok"), "{report}");
    assert!(
        !String::from_utf8_lossy(&ran.stderr).contains("3 ok"),
        "the report is on stdout"
    );

    // A user revoked at the provider: one WARN line for that account, with the provider's
    // error code and description, so an operator can tell revocation from reuse detection.
    app.idp
        .admin(reqwest::Method::POST, "users/alan/revoke", None)
        .await;
    let revoked = worker(&app, config.path(), &["--older-than", "0s"])
        .output()
        .unwrap();
    assert_eq!(revoked.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&revoked.stderr);
    let warned: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("interaction required"))
        .collect();
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(
        warned[0].contains("alan@tokenbridge.dev") && warned[0].contains("invalid_grant"),
        "{}",
        warned[0]
    );

    let unreachable = worker(&app, config.path(), &[])
        .env(
            "TOKENBRIDGE_DATABASE__URL",
            "postgres://postgres@127.0.0.1:1/none",
        )
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("database"));
}

/// Database work waits for a connection as queued work, not as one parked thread per account
/// in flight: a worker's threads (and the memory each holds) do not grow with its concurrency.
#[tokio::test]
async fn a_worker_s_threads_do_not_grow_with_its_concurrency() {
    let app = spawn_app_with(
        "worker::threads",
        Backend::Sqlite,
        |s| s.api_latency = Duration::from_millis(20),
        |_| {},
    )
    .await
    .unwrap();
    seed(&app, 300).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    let mut child = worker(
        &app,
        config.path(),
        &["--format", "json", "--concurrency", "64"],
    )
    .env("TOKENBRIDGE_DATABASE__POOL_SIZE", "2")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let tasks = format!("/proc/{}/task", child.id());
    let mut most = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(threads) = std::fs::read_dir(&tasks) {
            most = most.max(threads.count());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let processed = app.idp.counters().await["api_calls"].as_u64().unwrap();
    assert_eq!(processed, 300);
    // The main thread, one runtime thread per core, at most pool + 4 blocking threads, r2d2's
    // three helper threads, and a little room.
    let cores = std::thread::available_parallelism().unwrap().get();
    let bound = 1 + cores + (2 + 4) + 3 + 2;
    assert!(most > 1, "threads were counted");
    assert!(
        most <= bound,
        "{most} threads for 64 accounts in flight (at most {bound})"
    );
}

#[tokio::test]
async fn sigterm_finishes_the_accounts_in_flight_and_gives_back_the_rest() {
    let (app, accounts) = slow_api_with_twenty_accounts("worker::sigterm").await;
    let config = tempfile::NamedTempFile::new().unwrap();
    let child = worker(
        &app,
        config.path(),
        &["--format", "json", "--concurrency", "2"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Two accounts take about half a second; stop it a little after the first ones started.
    until_the_first_api_call(&app).await;
    let out = terminated(child).await;
    let lines = json_lines(&out);
    let (summary, reports) = lines.split_last().unwrap();
    assert_eq!(summary["summary"]["stopped"], true, "{summary}");
    assert!(
        !reports.is_empty() && reports.len() < accounts.len(),
        "finished what was in flight, started nothing more: {}",
        reports.len()
    );
    let done: HashSet<&str> = reports
        .iter()
        .map(|r| r["account"].as_str().unwrap())
        .collect();
    let conn = &mut app.db.conn();
    for id in &accounts {
        let row = activities::get(conn, id).unwrap().unwrap();
        assert_eq!(row.lease_owner, None, "{id}: no claim left behind");
        assert_eq!(
            row.last_success_at.is_some(),
            done.contains(id.as_str()),
            "{id}"
        );
    }
}

/// On a terminal the text report has a progress bar, drawn from its own thread; the pass must
/// still end and print its lines and summary (`script` gives the worker a terminal).
#[tokio::test]
async fn on_a_terminal_the_report_has_a_progress_bar_and_still_ends() {
    // Slow API calls, so the bar is redrawn while lines are printed.
    let app = spawn_app("worker::terminal", Backend::Sqlite, |s| {
        s.api_latency = Duration::from_millis(200)
    })
    .await
    .unwrap();
    seed(&app, 5).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    // --older-than 0s: the second run finds the accounts due again.
    let command = worker(
        &app,
        config.path(),
        &["--concurrency", "1", "--older-than", "0s"],
    );
    let mut line = format!("{:?}", command.get_program());
    for arg in command.get_args() {
        line.push_str(&format!(" '{}'", arg.to_str().unwrap()));
    }
    // A terminal that can draw a bar (TERM set), and one that cannot: the lines show on both.
    for (term, bar) in [(Some("xterm"), true), (None, false)] {
        let mut script = Command::new("script");
        script
            .args(["-qec", &line, "/dev/null"])
            .env_clear()
            .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .envs(term.map(|t| ("TERM", t)))
            .stdin(Stdio::null());
        let mut child = script
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                child.kill().unwrap();
                panic!("{term:?}: the worker never ended (a deadlock drawing the bar?)");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = child.wait_with_output().unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{term:?}: {screen}");
        assert!(screen.contains("5 account(s): 5 ok"), "{term:?}: {screen}");
        assert_eq!(
            screen.matches("@tokenbridge.dev").count(),
            5,
            "{term:?}: a line per account: {screen}"
        );
        assert_eq!(screen.contains("accounts, "), bar, "{term:?}: {screen}");
    }
}

/// A worker that keeps running (`--every`) serves its metrics, as `serve` does; one pass does
/// not.
#[tokio::test]
async fn a_worker_running_every_interval_serves_metrics() {
    let app = spawn_app("worker::metrics", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    seed(&app, 2).await;
    let port = loop {
        let port = 40_000 + rand::random::<u16>() % 10_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            break port;
        }
    };
    let config = tempfile::NamedTempFile::new().unwrap();
    let mut child = worker(&app, config.path(), &["--every", "1s", "--format", "json"])
        .env(
            "TOKENBRIDGE_WORKER__METRICS_LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let text = loop {
        let scraped = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await;
        if let Ok(response) = scraped {
            let text = response.text().await.unwrap();
            if text.contains("tokenbridge_token_acquisitions_total") {
                break text;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no metrics from the worker"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains("tokenbridge_db_pool_connections_in_use"),
        "{text}"
    );
    assert!(
        text.contains("tokenbridge_provider_request_duration_seconds_count"),
        "{text}"
    );
}

/// A worker killed mid-pass (`kill -9`) gives nothing back: its claims hold those accounts
/// from other workers until they expire (`worker.claim_for`), and the next pass says so.
#[tokio::test]
async fn claims_of_a_killed_worker_are_counted_and_left_alone_until_they_expire() {
    let (app, accounts) = slow_api_with_twenty_accounts("worker::killed").await;
    let config = tempfile::NamedTempFile::new().unwrap();
    let mut killed = worker(
        &app,
        config.path(),
        &["--format", "json", "--concurrency", "2"],
    )
    .env("TOKENBRIDGE_WORKER__CLAIM_FOR", "2m")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    until_the_first_api_call(&app).await;
    killed.kill().unwrap();
    killed.wait().unwrap();
    let held: HashSet<String> = accounts
        .iter()
        .filter(|a| {
            let row = activities::get(&mut app.db.conn(), a).unwrap().unwrap();
            if let Some(until) = row.lease_until {
                // worker.claim_for = 2m: the claim ends within two minutes of now.
                let left = tokenbridge::clock::from_db(until) - time::OffsetDateTime::now_utc();
                assert!(left <= time::Duration::seconds(120), "{left}");
            }
            row.lease_owner.is_some()
        })
        .cloned()
        .collect();
    assert!(
        !held.is_empty(),
        "the killed worker's claims hold some accounts"
    );

    let next = worker(
        &app,
        config.path(),
        &["--format", "json", "--concurrency", "8"],
    )
    .env("TOKENBRIDGE_LOG__LEVEL", "info")
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&next.stderr);
    assert!(next.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} account(s) are held by other workers' claims",
            held.len()
        )),
        "{stderr}"
    );
    let lines = json_lines(&next);
    for line in &lines[..lines.len() - 1] {
        let account = line["account"].as_str().unwrap();
        assert!(
            !held.contains(account),
            "{account} was claimed by the killed worker"
        );
    }
}

/// A token's lifetime counts from when its request was sent, never from the answer's
/// arrival: with an answer that arrives 1.5 s after the provider issued the token, the expiry
/// kept is no later than the token's own `exp`. (Real time: a worker process.)
#[tokio::test]
async fn a_slow_answer_never_makes_a_token_look_valid_longer() {
    let app = spawn_app_with(
        "worker::token_expiry",
        Backend::Sqlite,
        |s| s.access_token_ttl = Duration::from_secs(4),
        |_| {},
    )
    .await
    .unwrap();
    app.sign_in_elsewhere("ada").await;
    // Expired by the real clock the worker reads: it must refresh.
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let late = serde_json::json!({ "kind": "late_answer", "delay_ms": 1500 });
    app.idp
        .admin(reqwest::Method::POST, "faults", Some(late))
        .await;
    let config = tempfile::NamedTempFile::new().unwrap();
    let out = worker(&app, config.path(), &["--older-than", "0s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        app.idp.counters().await["refreshes"],
        1,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let id = activities::find_by_upn(&mut app.db.conn(), "ada@tokenbridge.dev").unwrap()[0]
        .account_cache_key
        .clone();
    let document = {
        let mut conn = app.db.conn();
        crate::acquire::store(&app.settings, &mut conn)
            .load(&mut conn, &id, time::OffsetDateTime::now_utc())
            .unwrap()
            .unwrap()
            .document
    };
    let json: Value = serde_json::from_slice(&document.to_json()).unwrap();
    let entry = json["AccessToken"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let kept: i64 = entry["expires_on"].as_str().unwrap().parse().unwrap();
    let secret = entry["secret"].as_str().unwrap();
    let payload = secret.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let exp = claims["exp"].as_i64().unwrap();
    assert!(kept <= exp, "kept until {kept}, the token says {exp}");
}

/// Sends SIGTERM to a running worker and waits for it: it must exit 0.
pub async fn terminated(child: std::process::Child) -> Output {
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An app whose API takes half a second, and twenty due accounts.
async fn slow_api_with_twenty_accounts(test: &str) -> (TestApp, Vec<String>) {
    let app = spawn_app_with(
        test,
        Backend::Sqlite,
        |s| s.api_latency = Duration::from_millis(500),
        |_| {},
    )
    .await
    .unwrap();
    let accounts = seed(&app, 20).await;
    (app, accounts)
}

/// Until the provider's API has seen its first call (a pass has started).
async fn until_the_first_api_call(app: &TestApp) {
    let started = Instant::now();
    while app.idp.counters().await["api_calls"].as_u64().unwrap() < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the pass never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
