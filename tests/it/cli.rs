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

/// `serve`'s environment: a client at a provider that does not answer (loopback port 9), a free
/// port, and `more`.
pub(crate) fn serve_env<'a>(more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let client = [
        ("TOKENBRIDGE_IDENTITY__INSTANCE", "http://127.0.0.1:9"),
        (
            "TOKENBRIDGE_IDENTITY__TENANT_ID",
            "5c8f6d1e-7a4b-4c1a-9f3e-2b6d8e0a4f11",
        ),
        ("TOKENBRIDGE_IDENTITY__CLIENT_ID", "app"),
        ("TOKENBRIDGE_IDENTITY__CLIENT_SECRET", "s3cret"),
        ("TOKENBRIDGE_WEB__LISTEN", "127.0.0.1:0"),
    ];
    client.into_iter().chain(more.iter().copied()).collect()
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
    // Pending migrations: exit status 3, so a deploy script can test for them.
    let out = tokenbridge(dir.path(), &["migrate", "--status"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("pending  2026-11-25-000001_create_token_cache"));
    assert!(text(&out.stderr).contains("run `tokenbridge migrate`"));
    assert!(
        !dir.path().join("tokenbridge.db").exists(),
        "--status creates nothing"
    );
    // serve against a database not made yet says so and leaves no empty file behind.
    let out = tokenbridge(dir.path(), &["serve"], &serve_env(&[]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("tokenbridge migrate"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.path().join("tokenbridge.db").exists(),
        "serve creates no database file"
    );

    let out = tokenbridge(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("UNENCRYPTED"),
        "migrate writes no caches, so it does not warn about them: {}",
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
    assert!(out.status.success(), "{}", text(&out.stderr));
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

/// Starts `tokenbridge ARGS` in `dir` with only `env` (and PATH) and returns it with the
/// `127.0.0.1:port` address it prints first; its stderr is piped, its stdout drained.
fn start_printing_address(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
        .current_dir(dir)
        .args(args)
        .env_clear()
        .envs(std::env::var("PATH").map(|p| ("PATH".to_owned(), p)))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let address = loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "it printed no address"
        );
        if let Some(at) = line.find("127.0.0.1:") {
            let rest = &line[at..];
            let end = rest
                .find(|c: char| c != '.' && c != ':' && !c.is_ascii_digit())
                .unwrap_or(rest.len());
            break rest[..end].to_owned();
        }
    };
    // Keep reading what it prints: a closed pipe would fail its next line to stdout.
    std::thread::spawn(move || for _ in reader.lines() {});
    (child, address)
}

/// Starts `tokenbridge ARGS` in `dir`, waits until it answers, sends SIGTERM, and expects a
/// clean exit within a few seconds.
fn stops_cleanly_on_sigterm(dir: &Path, args: &[&str], env: &[(&str, &str)]) {
    // Wait until it answers HTTP: a bound socket alone does not mean the server (and its
    // signal handling) runs yet. The address is in what it prints first.
    let (mut child, address) = start_printing_address(dir, args, env);
    let answered = || -> std::io::Result<bool> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut head = [0u8; 7];
        stream.read_exact(&mut head)?;
        Ok(&head == b"HTTP/1.")
    };
    let started = std::time::Instant::now();
    while !answered().unwrap_or(false) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{address} never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            assert!(status.success(), "{args:?} exited with {status}: {err}");
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{args:?} did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn serve_and_dev_idp_shut_down_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokenbridge(dir.path(), &["migrate"], &[]);
    assert!(out.status.success());
    // Nothing listens at the provider: serve starts anyway and reports it on /readyz.
    let env = serve_env(&[("TOKENBRIDGE_WEB__METRICS_LISTEN", "127.0.0.1:0")]);
    stops_cleanly_on_sigterm(dir.path(), &["serve"], &env);
    stops_cleanly_on_sigterm(dir.path(), &["dev-idp", "--listen", "127.0.0.1:0"], &[]);
}

#[test]
fn serve_refuses_to_start_without_a_client_or_on_an_unmigrated_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokenbridge(
        dir.path(),
        &["serve"],
        &[("TOKENBRIDGE_WEB__LISTEN", "127.0.0.1:0")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("identity.client_id"),
        "{}",
        text(&out.stderr)
    );
    let out = tokenbridge(dir.path(), &["serve"], &serve_env(&[]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("run `tokenbridge migrate`"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("s3cret"));
}

/// Settings through the binary: a list from the environment (comma-separated), a named settings
/// file that does not exist, a variable with one underscore too few, and `migrate` without the
/// client secret.
#[test]
fn settings_from_the_environment_and_named_files_are_taken_strictly() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();

    // A list from the environment: the provider's sign-in form offers exactly these users.
    let (mut child, address) = start_printing_address(
        dir.path(),
        &["dev-idp", "--listen", "127.0.0.1:0"],
        &[("TOKENBRIDGE_DEV_IDP__USERS", "margaret,katherine")],
    );
    let page = (0..50)
        .find_map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).ok()?;
            write!(
                stream,
                "GET /5c8f6d1e-7a4b-4c1a-9f3e-2b6d8e0a4f11/oauth2/v2.0/authorize?client_id=tokenbridge-dev&response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fsignin-oidc&scope=openid&state=s&nonce=n&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256 HTTP/1.0\r\nHost: {address}\r\n\r\n"
            )
            .ok()?;
            let mut page = String::new();
            stream.read_to_string(&mut page).ok()?;
            Some(page)
        })
        .expect("dev-idp answers");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        page.contains("value=\"margaret\"") && page.contains("value=\"katherine\""),
        "{page}"
    );
    assert!(!page.contains("value=\"ada\""), "{page}");

    // A settings file named but absent is an error, and nothing is created.
    let out = tokenbridge(dir.path(), &["--config", "typo.toml", "migrate"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("typo.toml"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("tokenbridge.db").exists());
    let out = tokenbridge(
        dir.path(),
        &["migrate"],
        &[("TOKENBRIDGE_CONFIG", "typo.toml")],
    );
    assert!(!out.status.success());

    // One underscore where two belong: an error naming the key meant.
    let out = tokenbridge(
        dir.path(),
        &["migrate"],
        &[("TOKENBRIDGE_CACHE_KEYS", "k1=x")],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("did you mean TOKENBRIDGE_CACHE__KEYS?"),
        "{}",
        text(&out.stderr)
    );

    // A log level that is no level: refused, naming the variable that set it.
    let out = tokenbridge(
        dir.path(),
        &["migrate"],
        &[("TOKENBRIDGE_LOG__LEVEL", "verbose")],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("TOKENBRIDGE_LOG__LEVEL") && !stderr.contains("settings.toml"),
        "{stderr}"
    );

    // migrate needs the database only: an unreadable client secret file does not stop it.
    // Nor does a setting only serve uses.
    let out = tokenbridge(
        dir.path(),
        &["migrate"],
        &[
            (
                "TOKENBRIDGE_IDENTITY__CLIENT_SECRET_FILE",
                "/nonexistent/secret",
            ),
            ("TOKENBRIDGE_WEB__SESSION_IDLE", "soon"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A worker reads no session key and no web setting; serve does, and names the variable.
    let worker_env = [
        ("TOKENBRIDGE_IDENTITY__PROVIDER", "oidc"),
        ("TOKENBRIDGE_IDENTITY__ISSUER", "http://127.0.0.1:9"),
        ("TOKENBRIDGE_IDENTITY__CLIENT_ID", "app"),
        ("TOKENBRIDGE_IDENTITY__CLIENT_SECRET", "not-a-real-secret"),
        (
            "TOKENBRIDGE_WEB__SESSION_KEY_FILE",
            "/nonexistent/session-key",
        ),
        ("TOKENBRIDGE_WEB__SESSION_IDLE", "soon"),
    ];
    let out = tokenbridge(dir.path(), &["worker", "--older-than", "5m"], &worker_env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("0 account(s)"),
        "{}",
        text(&out.stdout)
    );
    let out = tokenbridge(dir.path(), &["serve"], &worker_env);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("TOKENBRIDGE_WEB__SESSION_KEY_FILE") && !stderr.contains("settings.toml"),
        "{stderr}"
    );
}

/// More settings through the binary: a relative SQLite path is beside the settings file, a
/// syntax error never quotes the line (it may hold a password), an Entra tenant must be a GUID.
#[test]
fn settings_files_are_read_as_a_deployment_expects() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(
        conf.join("settings.toml"),
        "[database]\nurl = \"sqlite://tb.db\"\n",
    )
    .unwrap();
    let out = tokenbridge(
        dir.path(),
        &["--config", "conf/settings.toml", "migrate"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(conf.join("tb.db").exists(), "beside the settings file");
    assert!(!dir.path().join("tb.db").exists());

    std::fs::write(
        conf.join("broken.toml"),
        "[database]\nurl = \"postgres://app:Sup3rS3cretPw@db.internal/tokens\n",
    )
    .unwrap();
    let out = tokenbridge(
        dir.path(),
        &["--config", "conf/broken.toml", "migrate"],
        &[],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(!stderr.contains("Sup3rS3cretPw"), "{stderr}");

    let out = tokenbridge(
        dir.path(),
        &["--config", "conf/settings.toml", "serve"],
        &[("TOKENBRIDGE_IDENTITY__TENANT_ID", "contoso.onmicrosoft.com")],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("GUID") && stderr.contains("TOKENBRIDGE_IDENTITY__TENANT_ID"),
        "{stderr}"
    );
}

#[test]
fn with_the_caches_in_redis_migrate_says_so_and_serve_names_a_redis_it_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 (discard) on loopback: nothing listens there.
    let redis = ("TOKENBRIDGE_CACHE__URL", "redis://:hunter22@127.0.0.1:9/0");
    let out = tokenbridge(dir.path(), &["migrate"], &[redis]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("token caches: Redis at redis://:***@127.0.0.1:9/0")
            && stdout.contains("nothing to migrate there"),
        "{stdout}"
    );
    assert!(
        stdout.contains("applied 2026-11-25-000002_create_account_activities"),
        "activities stay in the database: {stdout}"
    );
    let env = serve_env(&[redis, ("TOKENBRIDGE_WEB__METRICS_LISTEN", "off")]);
    let out = tokenbridge(dir.path(), &["serve"], &env);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Redis at redis://:***@127.0.0.1:9/0"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter22"), "{stderr}");
}
