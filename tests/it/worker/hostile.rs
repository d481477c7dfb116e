//! Nothing the API sends grows the worker: an answer larger than `api.max_response_size` is
//! refused after that many bytes (the account is `transient`, the pass goes on), and a huge
//! `WWW-Authenticate` is cut in the report and in the stored reason. The worker's peak memory
//! stays within a few MiB of a normal pass's, read from `/proc` while it waits for its next.

use super::processes::{seed, worker};
use crate::hostile::{self, peak_rss_kib, Answer};
use crate::serve::spawn_app;
use serde_json::Value;
use std::io::BufRead;
use std::process::{Command, Stdio};
use tokenbridge::db::Backend;

/// Runs `command` (a worker with `--every`) until its first pass's summary; its report lines
/// and peak memory then.
fn first_pass(mut command: Command) -> (Vec<Value>, u64) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for line in stdout.lines() {
        let line: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let done = line.get("summary").is_some();
        lines.push(line);
        if done {
            break;
        }
    }
    let peak = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (lines, peak)
}

#[tokio::test]
async fn nothing_the_api_sends_grows_the_worker() {
    let app = spawn_app("worker::hostile_api", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    let accounts = seed(&app, 8).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    // Two accounts in flight: at most two answers of up to 1 MiB are held at once.
    let args = [
        "--every",
        "1h",
        "--format",
        "json",
        "--older-than",
        "0s",
        "--concurrency",
        "2",
    ];
    let run = |api: Option<&str>| {
        let mut command = worker(&app, config.path(), &args);
        command
            .env("TOKENBRIDGE_WORKER__RETRIES", "0")
            .env("TOKENBRIDGE_WORKER__METRICS_LISTEN", "off");
        if let Some(api) = api {
            command.env("TOKENBRIDGE_API__BASE_URL", api);
        }
        first_pass(command)
    };
    let (normal, normal_peak) = run(None);
    assert_eq!(normal.len(), accounts.len() + 1, "{normal:?}");
    assert!(
        normal[..8].iter().all(|l| l["outcome"] == "ok"),
        "{normal:?}"
    );

    let challenge = format!(
        "www-authenticate: Bearer error=\"insufficient_scope\", error_description=\"{}\"",
        "z".repeat(60_000)
    );
    let refusing = hostile::serve(Answer {
        status: "403 Forbidden",
        headers: vec![challenge],
        body_size: 0,
    });
    let (lines, _) = run(Some(&refusing.base));
    for line in &lines[..8] {
        assert_eq!(line["outcome"], "api_error", "{line}");
        let reason = line["reason"].as_str().unwrap();
        assert!(
            reason.len() < 1_000 && reason.contains("[cut "),
            "{}",
            reason.len()
        );
    }
    let stored = tokenbridge::activity::store::get(&mut app.db.conn(), &accounts[0])
        .unwrap()
        .unwrap()
        .last_error
        .unwrap();
    assert!(
        stored.len() < 1_000 && stored.contains("insufficient_scope"),
        "{}",
        stored.len()
    );

    // After the API's refusals (no backoff), the same accounts once more against a huge answer.
    let huge = hostile::serve(Answer {
        status: "200 OK",
        headers: Vec::new(),
        body_size: 200 << 20,
    });
    let (lines, peak) = run(Some(&huge.base));
    for line in &lines[..8] {
        assert_eq!(line["outcome"], "transient", "{line}");
        let reason = line["reason"].as_str().unwrap();
        assert!(reason.contains("larger than 1048576 bytes"), "{reason}");
    }
    assert!(
        peak < normal_peak + 8 * 1024,
        "peak {peak} KiB against {normal_peak} KiB for a normal pass"
    );
    assert!(
        huge.body_bytes_sent() < 200 << 20,
        "8 answers of 200 MB were asked for, {} bytes were taken",
        huge.body_bytes_sent()
    );
}
