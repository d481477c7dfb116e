//! `worker --exec`: a command per account with the account and its tokens in the environment
//! only; exit statuses; the timeout and SIGTERM reach the job's whole process group; four
//! workers run each account's command once.

use super::processes::{seed, terminated, tokenbridge};
use super::{outcomes, pass};
use crate::acquire::apis::with_tasks_api;
use crate::serve::{e2e_tests, spawn_app_with};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokenbridge::db::Backend;
use tokenbridge::settings::WorkerSettings;
use tokenbridge::worker::PassError;

e2e_tests!(and_redis: a_job_gets_the_account_and_its_tokens_in_its_environment_only);
mod four {
    use super::four_workers_run_each_account_s_command_once;
    crate::serve::e2e_tests!(and_redis: four_workers_run_each_account_s_command_once);
}

/// The job of the first test: calls both APIs with the tokens it was given and writes what it
/// saw (names of its TOKENBRIDGE_ variables, statuses, whether a token is on its command line
/// or a worker secret in its environment) to DIR/ACCOUNT.
const PROBE: &str = r#"
import json, os, sys, urllib.request
out, graph_url, tasks_url = sys.argv[1:4]
env = dict(os.environ)
def status(url, token):
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request) as answer:
        return answer.status
tokens = [env["TOKENBRIDGE_ACCESS_TOKEN"], env["TOKENBRIDGE_ACCESS_TOKEN_TASKS"]]
cmdline = open("/proc/self/cmdline", "rb").read().decode(errors="replace")
parent = open("/proc/%d/cmdline" % os.getppid(), "rb").read().decode(errors="replace")
record = {
    "vars": sorted(k for k in env if k.startswith("TOKENBRIDGE_")),
    "user": env["TOKENBRIDGE_USER"],
    "graph": status(graph_url, tokens[0]),
    "tasks": status(tasks_url, tokens[1]),
    "default_is_first": env["TOKENBRIDGE_ACCESS_TOKEN_DEFAULT"] == tokens[0],
    "token_on_a_command_line": any(t in cmdline or t in parent for t in tokens),
    "environment": sorted(env.values()),
    "tokens": tokens,
}
with open(os.path.join(out, env["TOKENBRIDGE_ACCOUNT_ID"]), "w") as f:
    json.dump(record, f)
print("done, with " + tokens[0], file=sys.stderr)
"#;

async fn a_job_gets_the_account_and_its_tokens_in_its_environment_only(backend: Backend) {
    let Some(app) = spawn_app_with("worker::exec_env", backend, |_| {}, with_tasks_api).await
    else {
        return;
    };
    app.sign_in_elsewhere("ada").await;
    app.sign_in_elsewhere("grace").await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("probe.py");
    std::fs::write(&script, PROBE).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let command = format!(
        "python3 {} {} {}/v1.0/me {}/tasks/v1.0/me/tasks",
        script.display(),
        out.display(),
        app.idp.base,
        app.idp.base
    );
    let config = tempfile::NamedTempFile::new().unwrap();
    let ran = tokenbridge(
        &app,
        config.path(),
        "worker",
        &[
            "--older-than",
            "0s",
            "--format",
            "json",
            "--exec",
            &command,
            "--api",
            "default",
            "--api",
            "tasks",
        ],
    )
    .env("TOKENBRIDGE_LOG__LEVEL", "trace")
    .env("SOMETHING_OF_THE_OPERATOR", "kept")
    .env("PGPASSWORD", "a-database-password")
    .output()
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr),
    );
    assert_eq!(ran.status.code(), Some(0), "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in &lines[..2] {
        assert_eq!(line["outcome"], "ok", "{line}");
        assert_eq!(line["exit_code"], 0, "{line}");
    }
    let mut users = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let seen: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        users.push(seen["user"].as_str().unwrap().to_owned());
        assert_eq!(
            seen["vars"],
            serde_json::json!([
                "TOKENBRIDGE_ACCESS_TOKEN",
                "TOKENBRIDGE_ACCESS_TOKEN_DEFAULT",
                "TOKENBRIDGE_ACCESS_TOKEN_TASKS",
                "TOKENBRIDGE_ACCOUNT_ID",
                "TOKENBRIDGE_TENANT_ID",
                "TOKENBRIDGE_TOKEN_EXPIRES_ON",
                "TOKENBRIDGE_TOKEN_EXPIRES_ON_DEFAULT",
                "TOKENBRIDGE_TOKEN_EXPIRES_ON_TASKS",
                "TOKENBRIDGE_USER",
            ]),
            "only the documented variables"
        );
        assert_eq!(
            (seen["graph"].as_u64(), seen["tasks"].as_u64()),
            (Some(200), Some(200))
        );
        assert_eq!(seen["default_is_first"], true);
        assert_eq!(seen["token_on_a_command_line"], false);
        let environment = seen["environment"].to_string();
        assert!(
            environment.contains("kept"),
            "the operator's variables are inherited"
        );
        for secret in [
            crate::dev_idp::CLIENT_SECRET,
            crate::fixtures::KEY,
            &app.db.settings.url.full_url(),
            "a-database-password",
        ] {
            assert!(
                !environment.contains(secret),
                "a worker secret reached the job"
            );
        }
        for token in seen["tokens"].as_array().unwrap() {
            let token = token.as_str().unwrap();
            assert!(!stderr.contains(token), "a token in the worker's log");
            assert!(!stdout.contains(token), "a token in the report");
        }
    }
    users.sort();
    assert_eq!(users, ["ada@tokenbridge.dev", "grace@tokenbridge.dev"]);
    assert!(
        stderr.contains("done, with [redacted]"),
        "the job's stderr, at debug, redacted"
    );
}

fn exec(options: &mut WorkerSettings, script: &str, dir: &Path) {
    options.older_than = Duration::ZERO;
    options.exec = Some(vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        "sh".into(),
        dir.display().to_string(),
    ]);
}

/// Exit 0: ok. Exit 77: the API refused the token: one refresh past it, one run more (ok if
/// that one succeeds, an API error if not). Another status: the job failed, with the last line
/// of its stderr, and the account backs off. A command that cannot start stops the pass.
#[tokio::test]
async fn exit_statuses_are_outcomes() {
    let app = spawn_app_with("worker::exec_statuses", Backend::Sqlite, |_| {}, |_| {})
        .await
        .unwrap();
    app.sign_in_elsewhere("ada").await;
    let dir = tempfile::tempdir().unwrap();
    let refreshes = || async { app.idp.counters().await["refreshes"].as_u64().unwrap() };
    let runs = |name: &str| {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_default()
            .lines()
            .count()
    };

    // Refused once, then fine.
    let once =
        r#"echo run >> "$1/once"; [ -e "$1/refused" ] && exit 0; touch "$1/refused"; exit 77"#;
    let run = pass(&app, |o| exec(o, once, dir.path())).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok")]));
    assert_eq!((runs("once"), refreshes().await), (2, 1));
    assert_eq!(run.line("ada")["exit_code"], 0);

    // Refused always: one refresh, two runs, an API error.
    let always = r#"echo run >> "$1/always"; exit 77"#;
    let run = pass(&app, |o| exec(o, always, dir.path())).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "api_error")]));
    assert_eq!((runs("always"), refreshes().await), (2, 2));
    assert!(run.line("ada")["reason"]
        .as_str()
        .unwrap()
        .contains("exited 77"));

    // Failed: the last line of its stderr, recorded, backing off.
    let fails = r#"echo "first words" >&2; echo "last words" >&2; echo >&2; exit 3"#;
    let run = pass(&app, |o| exec(o, fails, dir.path())).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "job_failed")]));
    let line = run.line("ada");
    assert_eq!(line["reason"], "the job exited 3: last words", "{line}");
    assert_eq!(line["exit_code"], 3);
    assert_eq!(run.summary().job_failed, 1);
    let row = super::activity(&app, "ada");
    assert_eq!(
        row.last_error.as_deref(),
        Some("the job exited 3: last words")
    );
    assert!(
        row.next_attempt_at.is_some(),
        "it backs off like a transient failure"
    );

    app.clock.advance(time::Duration::hours(2));
    let run = pass(&app, |o| {
        o.older_than = Duration::ZERO;
        o.exec = Some(vec!["/nonexistent/job".into()]);
    })
    .await;
    match run.result {
        Err(PassError::Configuration(why)) => {
            assert!(why.contains("cannot run /nonexistent/job"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

/// A job past `worker.exec_timeout` is killed with everything it started (its process group).
#[tokio::test]
async fn a_job_past_its_timeout_is_killed_with_its_process_group() {
    let app = spawn_app_with("worker::exec_timeout", Backend::Sqlite, |_| {}, |_| {})
        .await
        .unwrap();
    app.sign_in_elsewhere("ada").await;
    let dir = tempfile::tempdir().unwrap();
    let script = r#"sleep 60 & echo $! > "$1/grandchild"; echo $$ > "$1/child"; wait"#;
    let started = Instant::now();
    let run = pass(&app, |o| {
        exec(o, script, dir.path());
        o.exec_timeout = Duration::from_secs(1);
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(run.outcomes(), outcomes(&[("ada", "job_failed")]));
    assert!(run.line("ada")["reason"]
        .as_str()
        .unwrap()
        .contains("longer than worker.exec_timeout (1s)"));
    for process in ["child", "grandchild"] {
        let pid = std::fs::read_to_string(dir.path().join(process)).unwrap();
        assert!(gone(pid.trim()), "the {process} is still running");
    }
}

/// Whether process `pid` has ended (or is only a zombie waiting for its parent).
fn gone(pid: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) if stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')) => return true,
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    false
}

/// SIGTERM to the worker: no new command starts, the running one gets SIGTERM (its handler
/// runs and it exits 0: ok) within the grace period, and the pass ends with a summary.
#[tokio::test]
async fn sigterm_reaches_the_running_job_and_starts_no_more() {
    let app = spawn_app_with("worker::exec_sigterm", Backend::Sqlite, |_| {}, |_| {})
        .await
        .unwrap();
    seed(&app, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("job.sh");
    std::fs::write(
        &script,
        r#"trap 'echo "$TOKENBRIDGE_ACCOUNT_ID" >> "$1/terminated"; exit 0' TERM
echo "$TOKENBRIDGE_ACCOUNT_ID" >> "$1/started"
sleep 60 &
wait
"#,
    )
    .unwrap();
    let command = format!("sh {} {}", script.display(), dir.path().display());
    let config = tempfile::NamedTempFile::new().unwrap();
    let child = tokenbridge(
        &app,
        config.path(),
        "worker",
        &["--format", "json", "--concurrency", "1", "--exec", &command],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let started = dir.path().join("started");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = terminated(child).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary, reports) = lines.split_last().unwrap();
    assert_eq!(summary["summary"]["stopped"], true, "{stdout}");
    assert_eq!(reports.len(), 1, "{stdout}");
    assert_eq!(
        reports[0]["outcome"], "ok",
        "its handler exited 0: {stdout}"
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(read("started").lines().count(), 1, "no second job started");
    assert_eq!(read("terminated"), read("started"), "the job had SIGTERM");
}

/// Four worker processes started together, `--older-than 0s`, over 2,000 due accounts: each
/// account's command runs once (a job with side effects runs once per account per pass).
async fn four_workers_run_each_account_s_command_once(backend: Backend) {
    let Some(app) = spawn_app_with("worker::exec_four", backend, |_| {}, |_| {}).await else {
        return;
    };
    let accounts = seed(&app, 2000).await;
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let command = format!(
        r#"sh -c 'echo "$TOKENBRIDGE_ACCOUNT_ID" >> {}'"#,
        ran.display()
    );
    let config = tempfile::NamedTempFile::new().unwrap();
    let args = [
        "--older-than",
        "0s",
        "--format",
        "json",
        "--concurrency",
        "8",
        "--exec",
        &command,
    ];
    let children: Vec<_> = (0..4)
        .map(|_| {
            tokenbridge(&app, config.path(), "worker", &args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut reported = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        reported += String::from_utf8_lossy(&out.stdout).lines().count() - 1;
    }
    let lines: Vec<String> = std::fs::read_to_string(&ran)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let once: HashSet<&String> = lines.iter().collect();
    assert_eq!(
        once.len(),
        lines.len(),
        "a command ran twice for one account"
    );
    assert_eq!(lines.len(), accounts.len(), "every account's command ran");
    assert_eq!(reported, accounts.len());
}
