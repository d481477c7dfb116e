//! `tests/run`, the README's test command: cargo's own run, then a count of what was skipped.
//! Run here with a stand-in `cargo` on PATH that records skips as the real tests do.

use crate::support::{record_skip, SKIP_LOG_VAR};
use std::path::Path;
use std::process::{Command, Output};

const RUN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/run");

/// A `cargo` that prints its arguments, records `skips` in the log the way `support::skip`
/// does (by calling it: this test binary, with `--record`), and exits with `status`.
fn run_with_fake_cargo(skips: &[(&str, &str)], status: i32) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut script = String::from("#!/bin/sh\necho \"cargo $*\"\n");
    let me = std::env::current_exe().unwrap();
    for (test, needs) in skips {
        script.push_str(&format!(
            "TB_RECORD_TEST='{test}' TB_RECORD_NEEDS='{needs}' '{}' --exact \
             test_command::record_one_skip --include-ignored --quiet >/dev/null 2>&1 || exit 99\n",
            me.display()
        ));
    }
    script.push_str(&format!("exit {status}\n"));
    let cargo = dir.path().join("cargo");
    std::fs::write(&cargo, script).unwrap();
    let mut permissions = std::fs::metadata(&cargo).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&cargo, permissions).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .args([RUN, "--test", "it"])
        .env("PATH", path)
        .env_remove(SKIP_LOG_VAR)
        .output()
        .unwrap()
}

/// What the stand-in cargo calls once per skip: records one, as `support::skip` does.
#[test]
#[ignore = "called by the stand-in cargo of the tests below"]
fn record_one_skip() {
    // Run by hand (`--include-ignored`) it has nothing to record.
    let (Some(log), Ok(test), Ok(needs)) = (
        std::env::var_os(SKIP_LOG_VAR),
        std::env::var("TB_RECORD_TEST"),
        std::env::var("TB_RECORD_NEEDS"),
    ) else {
        return;
    };
    record_skip(Path::new(&log), &test, &needs);
}

#[test]
fn skips_recorded_from_many_threads_at_once_are_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("skips");
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let log = &log;
            scope.spawn(move || {
                for i in 0..50 {
                    record_skip(log, &format!("t{thread}\t{i}"), "a\nserver");
                }
            });
        }
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 400);
    assert!(text
        .lines()
        .all(|line| line.starts_with("a server\tt") && line.split('\t').count() == 2));
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_run_ends_with_a_count_of_the_skipped_tests_by_what_they_need() {
    let out = run_with_fake_cargo(
        &[
            ("a on postgres", "a PostgreSQL server"),
            ("b on postgres", "a PostgreSQL server"),
            ("c on mysql", "a MariaDB server"),
        ],
        0,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("cargo test --locked --test it\n"),
        "{stdout}"
    );
    let tail: Vec<&str> = stdout.lines().rev().take(3).collect();
    assert_eq!(
        tail,
        [
            "  1 needs a MariaDB server",
            "  2 need a PostgreSQL server",
            "tests/run: 3 test(s) SKIPPED on this machine (README, Tests, says how to run them):",
        ],
        "{stdout}"
    );
}

#[test]
fn a_run_with_nothing_skipped_says_so_and_a_failing_run_keeps_its_status() {
    let out = run_with_fake_cargo(&[], 0);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).ends_with("tests/run: no test was skipped\n"),
        "{}",
        text(&out.stdout)
    );
    let out = run_with_fake_cargo(&[("a", "a server")], 101);
    assert_eq!(out.status.code(), Some(101), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("1 needs a server"));
}
