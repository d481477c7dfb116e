//! The binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn tokenbridge(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenbridge"));
    cmd.current_dir(dir).args(args).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_explains_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokenbridge(dir.path(), &["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("migrate") && help.contains("--config"),
        "{help}"
    );
    let out = tokenbridge(dir.path(), &["migrate", "--help"], &[]);
    assert!(text(&out.stdout).contains("--status"));
}

#[test]
fn migrate_applies_once_and_reports_status() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokenbridge(dir.path(), &["migrate", "--status"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("pending  2026-11-25-000001_create_token_cache"));
    assert!(
        !dir.path().join("tokenbridge.db").exists(),
        "--status creates nothing"
    );

    let out = tokenbridge(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("UNENCRYPTED"),
        "warned: {}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("applied 2026-11-25-000001_create_token_cache"),
        "{stdout}"
    );
    assert!(
        stdout.contains("applied 2026-11-25-000002_create_account_activities"),
        "{stdout}"
    );

    let out = tokenbridge(dir.path(), &["migrate"], &[]);
    assert!(
        text(&out.stdout).contains("up to date"),
        "{}",
        text(&out.stdout)
    );
    let out = tokenbridge(dir.path(), &["migrate", "--status"], &[]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("applied  2026-11-25-000002_create_account_activities")
            && stdout.contains("up to date"),
        "{stdout}"
    );
}

#[test]
fn config_file_and_environment_are_both_honoured() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("custom.toml"),
        "[database]\nurl = \"sqlite://from-file.db\"\n",
    )
    .unwrap();
    let out = tokenbridge(dir.path(), &["--config", "custom.toml", "migrate"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("from-file.db").exists());
    let out = tokenbridge(
        dir.path(),
        &["migrate"],
        &[
            ("TOKENBRIDGE_CONFIG", "custom.toml"),
            ("TOKENBRIDGE_DATABASE__URL", "sqlite://from-env.db"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("from-env.db").exists());
}

fn fails_with(dir: &Path, env: &[(&str, &str)], file: Option<&str>, expected: &[&str]) {
    if let Some(file) = file {
        std::fs::write(dir.join("settings.toml"), file).unwrap();
    }
    let out = tokenbridge(dir, &["migrate"], env);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for part in expected {
        assert!(stderr.contains(part), "expected {part:?} in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_settings_and_databases_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fails_with(
        d,
        &[("TOKENBRIDGE_DATABASE__URL", "redis://127.0.0.1/0")],
        None,
        &["database.url", "redis"],
    );
    fails_with(
        d,
        &[(
            "TOKENBRIDGE_DATABASE__URL",
            "postgres://u:topsecret@127.0.0.1:1/db",
        )],
        None,
        &["cannot connect", "postgres://u:***@127.0.0.1:1/db"],
    );
    fails_with(
        d,
        &[("TOKENBRIDGE_DATABASE__URL", "sqlite://no/such/dir/x.db")],
        None,
        &["cannot connect"],
    );
    fails_with(
        d,
        &[],
        Some("[database]\nurll = \"x\"\n"),
        &["unknown field `urll`"],
    );
    fails_with(
        d,
        &[],
        Some("[cache]\nkeys = \"k=abc\"\n"),
        &["cache.keys", "secret"],
    );
    let out = tokenbridge(
        d,
        &["migrate"],
        &[(
            "TOKENBRIDGE_DATABASE__URL",
            "postgres://u:topsecret@127.0.0.1:1/db",
        )],
    );
    assert!(!text(&out.stderr).contains("topsecret"));
    assert!(!d.join("x.db").exists());
}
