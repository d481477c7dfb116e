//! Files tokenbridge writes are its owner's alone, whatever the umask; files it reads secrets
//! from, and its database, are reported at start when others can read them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `tokenbridge ARGS` in `dir` under `umask 000`, with only `env` for settings.
fn permissive(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new("sh");
    command
        .current_dir(dir)
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_tokenbridge"))
        .args(args)
        .env_clear()
        .envs(std::env::var("PATH").map(|p| ("PATH".to_owned(), p)))
        .envs(env.iter().copied());
    command
}

#[test]
fn the_database_and_its_journal_files_are_owner_only_under_a_permissive_umask() {
    let dir = tempfile::tempdir().unwrap();
    let migrated = permissive(dir.path(), &["migrate"], &[]).output().unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let db = dir.path().join("tokenbridge.db");
    assert_eq!(mode(&db), 0o600, "the database file");

    // A running serve writes (the cache key's check value): SQLite's -wal and -shm files
    // appear beside the database, with its mode.
    let key = format!("k1={}", crate::fixtures::KEY);
    let env = crate::cli::serve_env(&[
        ("TOKENBRIDGE_WEB__METRICS_LISTEN", "off"),
        ("TOKENBRIDGE_CACHE__KEYS", &key),
    ]);
    let mut serve = permissive(dir.path(), &["serve"], &env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (wal, shm) = (
        dir.path().join("tokenbridge.db-wal"),
        dir.path().join("tokenbridge.db-shm"),
    );
    let started = Instant::now();
    while !(wal.exists() && shm.exists()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no -wal and -shm files"
        );
        assert!(serve.try_wait().unwrap().is_none(), "serve exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let modes = (mode(&wal), mode(&shm));
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(modes, (0o600, 0o600), "the -wal and -shm files");
}

#[test]
fn files_others_can_read_are_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("k1={}", crate::fixtures::KEY)).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let migrated = permissive(dir.path(), &["migrate"], &[]).output().unwrap();
    assert!(migrated.status.success());
    let db = dir.path().join("tokenbridge.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let keys_file = keys.display().to_string();
    let worker = || {
        let env = crate::cli::serve_env(&[("TOKENBRIDGE_CACHE__KEYS_FILE", &keys_file)]);
        permissive(dir.path(), &["worker", "--dry-run"], &env)
            .output()
            .unwrap()
    };
    let out = worker();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for (file, key) in [
        (&keys_file, "cache.keys_file"),
        (&"tokenbridge.db".to_owned(), "database.url"),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains("WARN")
                && l.contains(&format!("{file} ({key}) can be read by other users"))
                && l.contains("0644")),
            "{file}: {stderr}"
        );
    }
    assert!(!stderr.contains(crate::fixtures::KEY));
    // Owner-only files are not reported.
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = worker();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("can be read by other users"));
}

/// The quick start's settings name a key file beside them: the first `migrate` of a new
/// database creates it (one new key, owner-only) so tokens are sealed from the first sign-in;
/// later runs use it; where token caches exist already it is never made up.
#[test]
fn migrate_creates_the_named_key_file_for_a_new_database_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("settings.toml"),
        "[cache]\nkeys_file = \"tokenbridge.cache-keys\"\n",
    )
    .unwrap();
    let keys = dir.path().join("tokenbridge.cache-keys");
    let before = permissive(dir.path(), &["serve"], &[]).output().unwrap();
    assert!(!before.status.success());
    let stderr = String::from_utf8_lossy(&before.stderr);
    assert!(
        stderr.contains("`tokenbridge migrate` creates it"),
        "{stderr}"
    );

    let first = permissive(dir.path(), &["migrate"], &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("created") && stdout.contains("`k1`"),
        "{stdout}"
    );
    assert!(stdout.contains("cache keys k1: match"), "{stdout}");
    assert_eq!(mode(&keys), 0o600, "the key file");
    let key = std::fs::read_to_string(&keys).unwrap();
    assert!(!stdout.contains(key.trim()), "the key is never printed");
    tokenbridge::cache::seal::SealKeys::parse(&tokenbridge::secret::Secret::new(key.trim()))
        .unwrap();

    let again = permissive(dir.path(), &["migrate"], &[]).output().unwrap();
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stdout).contains("created"));
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), key, "kept");

    // A database with token caches and no key file: nothing is made up.
    {
        use diesel::prelude::*;
        use tokenbridge::db::schema::token_cache::dsl as tc;
        let url = tokenbridge::db::DatabaseUrl::parse(&format!(
            "sqlite://{}",
            dir.path().join("tokenbridge.db").display()
        ))
        .unwrap();
        let mut conn = tokenbridge::db::DbConnection::open(&url, Duration::from_secs(5)).unwrap();
        let now = tokenbridge::clock::to_db(time::OffsetDateTime::now_utc());
        diesel::insert_into(tc::token_cache)
            .values((
                tc::id.eq("someone"),
                tc::value.eq(b"{}".to_vec()),
                tc::version.eq(1_i64),
                tc::expires_at.eq(now),
                tc::updated_at.eq(now),
                tc::session_epoch.eq(1_i64),
            ))
            .execute(&mut conn)
            .unwrap();
    }
    std::fs::remove_file(&keys).unwrap();
    let refused = permissive(dir.path(), &["migrate"], &[]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("already holds token caches"), "{stderr}");
    assert!(!keys.exists());
}

/// The quick start's key file is made for its own SQLite database only: `migrate` run against a
/// database server with the same settings makes up no key (one would become the reference for
/// `k1` and refuse the operator's real key); it says so and goes on.
#[test]
fn migrate_makes_no_key_for_a_database_server() {
    let test = "files::no_key_for_a_server";
    let Some(db) = crate::support::fresh(tokenbridge::db::Backend::Postgres) else {
        crate::support::skipped(test, tokenbridge::db::Backend::Postgres);
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("settings.toml"),
        "[cache]\nkeys_file = \"tokenbridge.cache-keys\"\n",
    )
    .unwrap();
    let url = db.settings.url.full_url();
    let out = permissive(
        dir.path(),
        &["migrate"],
        &[("TOKENBRIDGE_DATABASE__URL", url.as_str())],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("not created for a database server"),
        "{stdout}"
    );
    assert!(!dir.path().join("tokenbridge.cache-keys").exists());
}
