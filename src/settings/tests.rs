use super::*;
use std::path::Path;
use std::time::Duration;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(file: &str, pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    Settings::from_sources(file, "settings.toml", &env(pairs))
}

fn error(file: &str, pairs: &[(&str, &str)]) -> String {
    load(file, pairs).unwrap_err().to_string()
}

#[test]
fn an_empty_file_means_defaults() {
    let s = load("", &[]).unwrap();
    assert_eq!(s.database.url.to_string(), "sqlite://tokenbridge.db");
    assert_eq!(s.database.pool_size, 8);
    assert_eq!(s.database.connect_timeout, Duration::from_secs(5));
    assert_eq!(
        s.cache.sliding_expiration,
        Duration::from_secs(90 * 24 * 3600)
    );
    assert!(s.cache.keys.is_none());
    assert!(!s.cache.read_plaintext);
    assert_eq!(s.log.format, LogFormat::Text);
}

#[test]
fn the_shipped_settings_file_is_valid_and_shows_the_defaults() {
    // In a directory of its own, with the key file `migrate` makes for the quick start.
    let dir = std::env::temp_dir().join(format!("tb-shipped-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("dev")).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("dev/dev-idp-client-secret");
    std::fs::copy(fixture, dir.join("dev/dev-idp-client-secret")).unwrap();
    let shipped = include_str!("../../settings.toml");
    let before_migrate =
        Settings::build(shipped, "settings.toml", &dir, &env(&[]), Sections::ALL).unwrap_err();
    assert!(
        before_migrate
            .to_string()
            .contains("`tokenbridge migrate` creates it"),
        "{before_migrate}"
    );
    let migrate =
        Settings::build(shipped, "settings.toml", &dir, &env(&[]), Sections::MIGRATE).unwrap();
    let key_file = dir.join("tokenbridge.cache-keys");
    assert_eq!(migrate.cache.create_keys_file.as_deref(), Some(&*key_file));
    std::fs::write(&key_file, crate::cache::seal::new_key_entry("k1").expose()).unwrap();
    let shipped = Settings::from_sources_in(shipped, "settings.toml", &dir, &env(&[])).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        shipped.cache.keys.is_some(),
        "tokens are sealed from the first sign-in"
    );
    let defaults = Settings::from_sources_in("", "settings.toml", &dir, &env(&[])).unwrap();
    let shipped_cache = CacheSettings {
        keys: None,
        ..shipped.cache.clone()
    };
    for (a, b) in [
        (
            format!("{:?}", shipped.database),
            format!("{:?}", defaults.database),
        ),
        (
            format!("{:?}", shipped_cache),
            format!("{:?}", defaults.cache),
        ),
        (format!("{:?}", shipped.log), format!("{:?}", defaults.log)),
        (format!("{:?}", shipped.web), format!("{:?}", defaults.web)),
        (
            format!("{:?}", shipped.worker),
            format!("{:?}", defaults.worker),
        ),
        (
            format!("{:?}", shipped.dev_idp),
            format!("{:?}", defaults.dev_idp),
        ),
    ] {
        assert_eq!(a, b);
    }
    // [identity] and [api] point at the development provider, which they match.
    let (issuer, secret) = shipped.identity.require_client().unwrap();
    let dev = &shipped.dev_idp;
    assert_eq!(
        issuer.as_str(),
        format!("http://{}/{}/v2.0", dev.listen, dev.tenant_id)
    );
    assert_eq!(shipped.identity.client_id, dev.clients[0].client_id);
    let crate::settings::ClientCredential::Secret(secret) = secret else {
        panic!("the shipped client authenticates with a secret");
    };
    assert_eq!(secret, &dev.clients[0].client_secret);

    assert!(dev.clients[0]
        .redirect_uris
        .contains(&shipped.web.redirect_uri()));
    assert!(dev.clients[0]
        .post_logout_redirect_uris
        .contains(&shipped.web.post_logout_redirect_uri()));
    assert_eq!(
        shipped.api.me_url(),
        format!("http://{}/v1.0/me", dev.listen)
    );
}

#[test]
fn identity_is_checked_by_the_commands_that_need_it() {
    let defaults = load("", &[]).unwrap();
    let msg = defaults.identity.require_client().unwrap_err().to_string();
    assert!(msg.contains("identity.client_id"), "{msg}");
    let s = load("[identity]\nclient_id = \"app\"\n", &[]).unwrap();
    let msg = s.identity.require_client().unwrap_err().to_string();
    assert!(msg.contains("TOKENBRIDGE_IDENTITY__CLIENT_SECRET"), "{msg}");
    // private_key_jwt needs a key file, and no secret.
    let s = load(
        "[identity]\nclient_id = \"app\"\nclient_auth = \"private_key_jwt\"\n",
        &[],
    )
    .unwrap();
    let msg = s.identity.require_client().unwrap_err().to_string();
    assert!(msg.contains("identity.client_key_file"), "{msg}");
    let s = load(
        "[identity]\nclient_id = \"app\"\nclient_auth = \"private_key_jwt\"\nclient_key_file = \"/keys/client.pem\"\ntenant_id = \"11111111-2222-3333-4444-555555555555\"\n",
        &[],
    )
    .unwrap();
    let (_, credential) = s.identity.require_client().unwrap();
    assert!(matches!(
        credential,
        crate::settings::ClientCredential::KeyFile { key, certificate: None }
            if key == std::path::Path::new("/keys/client.pem")
    ));
    let s = load(
        "[identity]\nclient_id = \"app\"\ntenant_id = \"11111111-2222-3333-4444-555555555555\"\n",
        &[("TOKENBRIDGE_IDENTITY__CLIENT_SECRET", "s3cret")],
    )
    .unwrap();
    let (issuer, _) = s.identity.require_client().unwrap();
    assert_eq!(
        issuer,
        "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0"
    );
    assert!(!format!("{s:?}").contains("s3cret"));
    let s = load(
        "[identity]\nprovider = \"oidc\"\nissuer = \"https://id.example.com/realms/main\"\nclient_id = \"app\"\n",
        &[("TOKENBRIDGE_IDENTITY__CLIENT_SECRET", "s3cret")],
    )
    .unwrap();
    assert_eq!(
        s.identity.require_client().unwrap().0,
        "https://id.example.com/realms/main"
    );
    // Issuers are kept exactly as written: a bare origin gains no trailing slash (OpenID
    // Discovery compares issuers as strings), and one with a slash keeps it.
    for issuer in [
        "https://accounts.google.com",
        "http://127.0.0.1:9400",
        "https://id.example.com/",
    ] {
        let s = load(
            &format!(
                "[identity]\nprovider = \"oidc\"\nissuer = \"{issuer}\"\nclient_id = \"app\"\n"
            ),
            &[("TOKENBRIDGE_IDENTITY__CLIENT_SECRET", "s3cret")],
        )
        .unwrap();
        assert_eq!(s.identity.require_client().unwrap().0, issuer);
        let provider =
            crate::identity::OidcProvider::new(&s.identity, "http://127.0.0.1:8080/signin-oidc")
                .unwrap();
        assert_eq!(provider.issuer(), issuer);
    }
    let msg = error(
        "[identity]\nprovider = \"oidc\"\nissuer = \"not a url\"\n",
        &[],
    );
    assert!(msg.contains("identity.issuer"), "{msg}");
    let msg = error("[identity]\ntenant_id = \"common\"\n", &[]);
    assert!(msg.contains("identity.tenant_id"), "{msg}");
    let msg = error("[identity]\nclient_secret = \"x\"\n", &[]);
    assert!(msg.contains("TOKENBRIDGE_IDENTITY__CLIENT_SECRET"), "{msg}");
    let msg = error("", &[("TOKENBRIDGE_WEB__SESSION_KEY", "short")]);
    assert!(
        msg.contains("web.session_key") && msg.contains("64"),
        "{msg}"
    );
    let msg = error("[web]\npublic_url = \"ftp://x\"\n", &[]);
    assert!(msg.contains("web.public_url"), "{msg}");
}

#[test]
fn environment_overrides_the_file() {
    let file = "[database]\nurl = \"sqlite://a.db\"\npool_size = 2\n";
    let s = load(
        file,
        &[
            ("TOKENBRIDGE_DATABASE__URL", "postgres://app@db/tokens"),
            ("TOKENBRIDGE_DATABASE__POOL_SIZE", "16"),
            ("TOKENBRIDGE_CONFIG", "ignored.toml"),
            ("TOKENBRIDGE_TEST_POSTGRES_URL", "ignored too"),
        ],
    )
    .unwrap();
    assert_eq!(s.database.url.to_string(), "postgres://app@db/tokens");
    assert_eq!(s.database.pool_size, 16);
}

#[test]
fn lists_come_from_the_environment_comma_separated() {
    let s = load(
        "",
        &[
            ("TOKENBRIDGE_IDENTITY__SCOPES", "api.read, api.write"),
            ("TOKENBRIDGE_DEV_IDP__USERS", "ada,grace"),
        ],
    )
    .unwrap();
    assert_eq!(s.identity.scopes, ["api.read", "api.write"]);
    assert_eq!(s.dev_idp.users, ["ada", "grace"]);
    let one = load("", &[("TOKENBRIDGE_IDENTITY__SCOPES", "api.read")]).unwrap();
    assert_eq!(one.identity.scopes, ["api.read"]);
}

#[test]
fn a_variable_with_one_underscore_too_few_is_an_error_naming_the_key() {
    let msg = error("", &[("TOKENBRIDGE_CACHE_KEYS", "k1=abc")]);
    assert!(msg.contains("TOKENBRIDGE_CACHE_KEYS"), "{msg}");
    assert!(
        msg.contains("did you mean TOKENBRIDGE_CACHE__KEYS?"),
        "{msg}"
    );
    assert!(!msg.contains("abc"), "the value is never shown: {msg}");
    let msg = error("", &[("TOKENBRIDGE_DEV_IDP_USERS", "ada")]);
    assert!(msg.contains("TOKENBRIDGE_DEV_IDP__USERS"), "{msg}");
    let msg = error("", &[("TOKENBRIDGE_NOPE", "x")]);
    assert!(msg.contains("sections are database"), "{msg}");
    // Not settings: the settings file's name and the test harness's variables.
    load(
        "",
        &[
            ("TOKENBRIDGE_CONFIG", "x.toml"),
            ("TOKENBRIDGE_TEST_POSTGRES_URL", "postgres://x"),
            ("TOKENBRIDGE_BENCH_DATABASE_URL", "postgres://x"),
        ],
    )
    .unwrap();
}

#[test]
fn a_named_settings_file_must_exist_the_default_one_may_not() {
    let dir = std::env::temp_dir().join(format!("tb-settings-{}", std::process::id()));
    let missing = dir.join("nope.toml");
    let env = HashMap::new();
    let err = Settings::load_from(&missing, true, Sections::ALL, &env).unwrap_err();
    assert!(err.to_string().contains("nope.toml"), "{err}");
    Settings::load_from(&missing, false, Sections::ALL, &env).unwrap();
}

#[test]
fn without_secrets_no_secret_file_is_read() {
    let file = "[identity]\nclient_secret_file = \"/nonexistent/secret\"\n";
    let dir = Path::new("");
    assert!(Settings::from_sources_in(file, "s.toml", dir, &HashMap::new()).is_err());
    let path = std::env::temp_dir().join(format!("tb-nosecret-{}.toml", std::process::id()));
    std::fs::write(&path, file).unwrap();
    let s = Settings::load_from(&path, true, Sections::MIGRATE, &HashMap::new()).unwrap();
    assert!(s.identity.client_secret.is_none());
    // Only what migrate uses is validated; a mistyped key anywhere is still an error.
    std::fs::write(&path, "[web]\nsession_idle = \"soon\"\n").unwrap();
    Settings::load_from(&path, true, Sections::MIGRATE, &HashMap::new()).unwrap();
    assert!(Settings::load_from(&path, true, Sections::ALL, &HashMap::new()).is_err());
    std::fs::write(&path, "[web]\nsession_idel = \"1h\"\n").unwrap();
    assert!(Settings::load_from(&path, true, Sections::MIGRATE, &HashMap::new()).is_err());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn each_command_validates_only_the_sections_it_uses() {
    let path = std::env::temp_dir().join(format!("tb-sections-{}.toml", std::process::id()));
    let load = |text: &str, sections| {
        std::fs::write(&path, text).unwrap();
        Settings::load_from(&path, true, sections, &HashMap::new())
    };
    // A worker reads no session key (a worker host need not hold it) ...
    let web = "[web]\nsession_key_file = \"/nonexistent/session-key\"\n";
    let s = load(web, Sections::WORKER).unwrap();
    assert!(s.web.session_key.is_none());
    assert!(load(web, Sections::SERVE).is_err());
    assert!(load(web, Sections::DEV_IDP).is_ok());
    // ... serve does not validate the worker's section ...
    let worker = "[worker]\nconcurrency = 0\n";
    assert!(load(worker, Sections::SERVE).is_ok());
    assert!(load(worker, Sections::WORKER).is_err());
    // ... both read the client secret and the cache keys, dev-idp neither.
    for section in ["[identity]\nclient_secret_file", "[cache]\nkeys_file"] {
        let text = format!("{section} = \"/nonexistent/secret\"\n");
        assert!(load(&text, Sections::SERVE).is_err(), "{text}");
        assert!(load(&text, Sections::WORKER).is_err(), "{text}");
        assert!(load(&text, Sections::DEV_IDP).is_ok(), "{text}");
    }
    let dev_idp = "[dev_idp]\nlisten = \"0.0.0.0:9000\"\n";
    assert!(load(dev_idp, Sections::DEV_IDP).is_err());
    assert!(load(dev_idp, Sections::SERVE).is_ok());
    // A mistyped key is an error whichever command reads the file.
    for sections in [
        Sections::MIGRATE,
        Sections::SERVE,
        Sections::WORKER,
        Sections::DEV_IDP,
    ] {
        assert!(load("[worker]\nconcurency = 4\n", sections).is_err());
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn unknown_keys_are_errors_that_name_the_key() {
    let msg = error("[database]\npool_sise = 3\n", &[]);
    assert!(msg.contains("pool_sise"), "{msg}");
    let msg = error("[databse]\nurl = \"sqlite://x.db\"\n", &[]);
    assert!(msg.contains("databse"), "{msg}");
    let msg = error("", &[("TOKENBRIDGE_CACHE__SLIDING", "1d")]);
    assert!(msg.contains("sliding"), "{msg}");
}

#[test]
fn invalid_values_name_the_key_and_what_is_expected() {
    let cases = [
        ("[database]\nurl = \"tokenbridge.db\"\n", "database.url"),
        ("[database]\npool_size = 0\n", "database.pool_size"),
        (
            "[database]\nconnect_timeout = \"soon\"\n",
            "database.connect_timeout",
        ),
        (
            "[cache]\nsliding_expiration = \"2h\"\n",
            "cache.sliding_expiration",
        ),
        ("[cache]\nsweep_batch = 0\n", "cache.sweep_batch"),
        (
            "[identity]\nclient_auth = \"private_key_jwt\"\nclient_secret = \"left-over\"\n",
            "identity.client_secret",
        ),
        (
            "[identity]\nclient_key_file = \"/keys/client.pem\"\n",
            "identity.client_key_file",
        ),
        ("[identity]\nclient_auth = \"mtls\"\n", "identity"),
        (
            "[web]\nbackchannel_logout_path = \"/signin\"\n",
            "web.backchannel_logout_path",
        ),
        (
            "[web]\nfrontchannel_logout_path = \"frontchannel\"\n",
            "web.frontchannel_logout_path",
        ),
        (
            "[web]\nfrontchannel_logout_path = \"/backchannel-logout\"\n",
            "web.frontchannel_logout_path",
        ),
        ("[worker]\nolder_than = \"later\"\n", "worker.older_than"),
        ("[worker]\nevery = \"10ms\"\n", "worker.every"),
        ("[worker]\nconcurrency = 0\n", "worker.concurrency"),
        ("[api]\npath = \"me\"\n", "api.path"),
        (
            "[identity]\nrefresh_margin = \"soon\"\n",
            "identity.refresh_margin",
        ),
        ("[log]\nlevel = \"loud=[\"\n", "log.level"),
    ];
    for (file, key) in cases {
        let msg = error(file, &[]);
        assert!(msg.contains(key), "{file}: {msg}");
    }
    let msg = error("[database]\npool_size = \"many\"\n", &[]);
    assert!(msg.contains("pool_size"), "{msg}");
    let msg = error("[log]\nformat = \"xml\"\n", &[]);
    assert!(msg.contains("format") || msg.contains("xml"), "{msg}");
}

#[test]
fn secrets_are_refused_in_the_file() {
    let msg = error(&format!("[cache]\nkeys = \"k1={KEY}\"\n"), &[]);
    assert!(msg.contains("TOKENBRIDGE_CACHE__KEYS"), "{msg}");
    assert!(!msg.contains(KEY), "{msg}");
}

#[test]
fn cache_keys_come_from_the_environment_or_a_file() {
    let s = load("", &[("TOKENBRIDGE_CACHE__KEYS", &format!("k1={KEY}"))]).unwrap();
    assert_eq!(s.cache.keys.unwrap().ids().collect::<Vec<_>>(), ["k1"]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, format!("new={KEY}\nold={KEY}\n")).unwrap();
    let file = format!("[cache]\nkeys_file = {:?}\n", path.display().to_string());
    let s = load(&file, &[]).unwrap();
    assert_eq!(
        s.cache.keys.unwrap().ids().collect::<Vec<_>>(),
        ["new", "old"]
    );

    let msg = error(&file, &[("TOKENBRIDGE_CACHE__KEYS", &format!("k1={KEY}"))]);
    assert!(msg.contains("not both"), "{msg}");
    let msg = error("[cache]\nkeys_file = \"/nonexistent/keys\"\n", &[]);
    assert!(
        msg.contains("cache.keys") && msg.contains("/nonexistent/keys"),
        "{msg}"
    );
}

#[test]
fn bad_keys_are_reported_without_the_key_material() {
    let short = "c2hvcnQ=";
    let msg = error("", &[("TOKENBRIDGE_CACHE__KEYS", &format!("k1={short}"))]);
    assert!(msg.contains("cache.keys") && msg.contains("32"), "{msg}");
    assert!(!msg.contains(short), "{msg}");
}

#[test]
fn debug_output_hides_secrets_and_passwords() {
    let s = load(
        "",
        &[
            ("TOKENBRIDGE_CACHE__KEYS", &format!("k1={KEY}")),
            (
                "TOKENBRIDGE_DATABASE__URL",
                "postgres://app:pa55word@db/tokens",
            ),
        ],
    )
    .unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains(KEY), "{debug}");
    assert!(!debug.contains("pa55word"), "{debug}");
}

#[test]
fn running_without_cache_keys_is_warned_about() {
    let plain = load("", &[]).unwrap();
    assert!(plain
        .warnings()
        .iter()
        .any(|w| w.contains("UNENCRYPTED") && w.contains("TOKENBRIDGE_CACHE__KEYS")));
    let sealed = load("", &[("TOKENBRIDGE_CACHE__KEYS", &format!("k1={KEY}"))]).unwrap();
    assert!(sealed.warnings().is_empty());
    let migrating = load(
        "[cache]\nread_plaintext = true\n",
        &[("TOKENBRIDGE_CACHE__KEYS", &format!("k1={KEY}"))],
    )
    .unwrap();
    assert!(migrating
        .warnings()
        .iter()
        .any(|w| w.contains("read_plaintext")));
}

#[test]
fn the_api_path_is_joined_to_the_base_url() {
    let s = load("", &[]).unwrap();
    assert_eq!(s.api.me_url(), "https://graph.microsoft.com/v1.0/me");
    let s = load(
        "[api]\nbase_url = \"https://api.example.com/v1/\"\npath = \"/users/current\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(s.api.me_url(), "https://api.example.com/v1/users/current");
}

#[test]
fn worker_settings_have_defaults_and_the_environment_overrides_them() {
    let s = load("", &[]).unwrap();
    assert_eq!(s.worker.older_than, Duration::from_secs(300));
    assert_eq!(s.worker.every, None);
    assert_eq!(s.worker.concurrency, 16);
    assert_eq!(s.worker.limit, None);
    let s = load(
        "[worker]\nevery = \"1m\"\nlimit = 10\n",
        &[("TOKENBRIDGE_WORKER__USER", "ada@contoso.com")],
    )
    .unwrap();
    assert_eq!(s.worker.every, Some(Duration::from_secs(60)));
    assert_eq!(s.worker.limit, Some(10));
    assert_eq!(s.worker.user.as_deref(), Some("ada@contoso.com"));
}

#[test]
fn how_a_sign_in_asks_for_offline_access_is_a_setting() {
    use super::OfflineAccess;
    assert_eq!(
        load("", &[]).unwrap().identity.offline_access,
        OfflineAccess::Scope
    );
    let s = load("[identity]\noffline_access = \"access_type\"\n", &[]).unwrap();
    assert_eq!(s.identity.offline_access, OfflineAccess::AccessType);
    let msg = error("[identity]\noffline_access = \"yes\"\n", &[]);
    assert!(
        msg.contains("offline_access") || msg.contains("yes"),
        "{msg}"
    );
}

#[test]
fn secure_cookies_follow_the_public_url_and_a_contradiction_is_told() {
    let http = load("", &[]).unwrap().web;
    assert!(!http.secure_cookies && http.cookie_warning().is_none());
    assert_eq!(http.session_cookie_name(), "tb_session");
    let https = load("[web]\npublic_url = \"https://app.example.com\"\n", &[])
        .unwrap()
        .web;
    assert!(https.secure_cookies && https.cookie_warning().is_none());
    assert_eq!(https.session_cookie_name(), "__Host-tb_session");
    let off = load(
        "[web]\npublic_url = \"https://app.example.com\"\nsecure_cookies = false\n",
        &[],
    )
    .unwrap()
    .web;
    assert!(!off.secure_cookies);
    assert!(off.cookie_warning().unwrap().contains("plain HTTP"));
    let on = load("[web]\nsecure_cookies = true\n", &[]).unwrap().web;
    assert!(on.cookie_warning().unwrap().contains("https public_url"));
}

#[test]
fn the_sign_in_prompt_is_a_setting() {
    use super::Prompt;
    assert_eq!(load("", &[]).unwrap().identity.prompt, Prompt::None);
    for (text, prompt) in [
        ("consent", Prompt::Consent),
        ("login", Prompt::Login),
        ("select_account", Prompt::SelectAccount),
    ] {
        let s = load(&format!("[identity]\nprompt = \"{text}\"\n"), &[]).unwrap();
        assert_eq!(s.identity.prompt, prompt);
    }
    let msg = error("[identity]\nprompt = \"always\"\n", &[]);
    assert!(msg.contains("prompt") || msg.contains("always"), "{msg}");
}

#[test]
fn a_syntax_error_says_where_without_quoting_the_line() {
    let msg = error(
        "[database]\nurl = \"postgres://app:Sup3rS3cretPw@db.internal/tokens\n",
        &[],
    );
    assert!(msg.contains("line 2"), "{msg}");
    assert!(!msg.contains("Sup3rS3cretPw"), "{msg}");
    assert!(!msg.contains("postgres://"), "{msg}");
}

#[test]
fn an_entra_tenant_is_a_guid_and_enum_errors_list_the_choices() {
    let msg = error("[identity]\ntenant_id = \"contoso.onmicrosoft.com\"\n", &[]);
    assert!(
        msg.contains("identity.tenant_id") && msg.contains("GUID"),
        "{msg}"
    );
    load(
        "[identity]\ntenant_id = \"5C8F6D1E-7A4B-4C1A-9F3E-2B6D8E0A4F11\"\n",
        &[],
    )
    .unwrap();
    // Another provider has no tenant to check.
    load(
        "[identity]\nprovider = \"oidc\"\nissuer = \"https://id.example.com\"\n",
        &[],
    )
    .unwrap();
    let msg = error("[identity]\nprovider = \"entraid\"\n", &[]);
    assert!(
        msg.contains("entraid") && msg.contains("entra") && msg.contains("oidc"),
        "{msg}"
    );
    let msg = error("[log]\nformat = \"xml\"\n", &[]);
    assert!(msg.contains("text") && msg.contains("json"), "{msg}");
}

#[test]
fn a_log_level_typo_is_refused_and_the_variable_is_named() {
    for good in [
        "info",
        "DEBUG",
        "warn,tokenbridge=debug",
        "tokenbridge::web=trace,info",
        "off",
    ] {
        load(&format!("[log]\nlevel = \"{good}\"\n"), &[]).unwrap();
    }
    let msg = error("", &[("TOKENBRIDGE_LOG__LEVEL", "verbose")]);
    assert!(msg.contains("\"verbose\" is not a level"), "{msg}");
    assert!(msg.contains("TOKENBRIDGE_LOG__LEVEL"), "{msg}");
    assert!(!msg.contains("settings.toml"), "{msg}");
    let msg = error("[log]\nlevel = \"tokenbrige=debug\"\n", &[]);
    assert!(msg.contains("\"tokenbrige\" is not a crate"), "{msg}");
    assert!(msg.contains("in settings.toml"), "{msg}");
}

#[test]
fn an_unreadable_settings_file_is_said_once() {
    let dir = std::env::temp_dir().join(format!("tb-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = Settings::load_from(&dir, true, Sections::MIGRATE, &HashMap::new()).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert_eq!(chain.matches("os error").count(), 1, "{chain}");
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn relative_paths_are_beside_the_settings_file() {
    let dir = std::env::temp_dir().join(format!("tb-rel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
    let file = dir.join("settings.toml");
    std::fs::write(
        &file,
        "[database]\nurl = \"sqlite://data/tb.db\"\n[identity]\nclient_secret_file = \"secret\"\n",
    )
    .unwrap();
    let s = Settings::load_from(&file, true, Sections::ALL, &HashMap::new()).unwrap();
    assert_eq!(
        s.database.url.sqlite_path().unwrap(),
        dir.join("data/tb.db")
    );
    assert_eq!(s.identity.client_secret.unwrap().expose(), "s3cret");
    // Absolute paths stay as they are; so does everything beside an implicit settings.toml.
    std::fs::write(&file, "[database]\nurl = \"sqlite:///var/lib/tb.db\"\n").unwrap();
    let s = Settings::load_from(&file, true, Sections::ALL, &HashMap::new()).unwrap();
    assert_eq!(
        s.database.url.sqlite_path().unwrap(),
        Path::new("/var/lib/tb.db")
    );
    let s = load("[database]\nurl = \"sqlite://tb.db\"\n", &[]).unwrap();
    assert_eq!(s.database.url.sqlite_path().unwrap(), Path::new("tb.db"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn metrics_listen_on_loopback_by_default_and_can_be_off() {
    let s = load("", &[]).unwrap();
    assert_eq!(
        s.web.metrics_listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    let off = load("", &[("TOKENBRIDGE_WEB__METRICS_LISTEN", "off")]).unwrap();
    assert_eq!(off.web.metrics_listen, None);
    let msg = error("[web]\nmetrics_listen = \"nowhere\"\n", &[]);
    assert!(msg.contains("web.metrics_listen"), "{msg}");
}

#[test]
fn caches_go_to_redis_with_a_url_whose_password_never_sits_in_the_file() {
    let sql = load("", &[]).unwrap();
    assert!(sql.cache.redis.is_none(), "the database by default");

    let file = "[cache]\nurl = \"redis://cache.internal:6380/2\"\nkey_prefix = \"app1\"\n";
    let redis = load(file, &[]).unwrap().cache.redis.unwrap();
    assert_eq!(redis.url.to_string(), "redis://cache.internal:6380/2");
    assert_eq!(redis.key_prefix, "app1");

    let msg = error("[cache]\nurl = \"redis://:hunter22@cache.internal\"\n", &[]);
    assert!(
        msg.contains("TOKENBRIDGE_CACHE__URL") && msg.contains("cache.url_file"),
        "{msg}"
    );
    assert!(!msg.contains("hunter22"), "{msg}");

    let env_url = [(
        "TOKENBRIDGE_CACHE__URL",
        "rediss://:hunter22@cache.internal/0",
    )];
    let s = load("", &env_url).unwrap();
    let redis = s.cache.redis.as_ref().unwrap();
    assert_eq!(redis.key_prefix, "tokenbridge");
    assert_eq!(redis.url.expose(), "rediss://:hunter22@cache.internal/0");
    assert!(!format!("{s:?}").contains("hunter22"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("redis-url");
    std::fs::write(&path, "redis://:hunter22@cache.internal:6379/1\n").unwrap();
    let file = format!("[cache]\nurl_file = {:?}\n", path.display().to_string());
    let redis = load(&file, &[]).unwrap().cache.redis.unwrap();
    assert_eq!(redis.url.to_string(), "redis://:***@cache.internal:6379/1");

    for (bad, key) in [
        ("http://cache.internal", "cache.url"),
        ("redis://cache.internal/name", "cache.url"),
    ] {
        let msg = error("", &[("TOKENBRIDGE_CACHE__URL", bad)]);
        assert!(msg.contains(key), "{bad}: {msg}");
    }
    let msg = error(
        "[cache]\nkey_prefix = \"has space\"\n",
        &[("TOKENBRIDGE_CACHE__URL", "redis://127.0.0.1")],
    );
    assert!(msg.contains("cache.key_prefix"), "{msg}");
}

#[test]
fn migrate_knows_where_the_caches_are_and_reads_the_cache_keys_when_given() {
    let build = |file: &str| {
        Settings::build(
            file,
            "settings.toml",
            Path::new(""),
            &env(&[]),
            Sections::MIGRATE,
        )
    };
    let s = build("[cache]\nurl = \"redis://127.0.0.1:6379/0\"\n").unwrap();
    assert_eq!(
        s.cache.redis.unwrap().url.to_string(),
        "redis://127.0.0.1:6379/0"
    );
    assert!(s.cache.keys.is_none(), "no keys: nothing to compare");
    // Keys given are read (migrate compares them with the store's check values); a key file
    // that does not exist is one for migrate to create.
    let s = build("[cache]\nkeys_file = \"/nonexistent/keys\"\n").unwrap();
    assert!(s.cache.keys.is_none());
    assert_eq!(
        s.cache.create_keys_file.as_deref(),
        Some(Path::new("/nonexistent/keys"))
    );
}

#[test]
fn response_size_limits_take_sizes_and_name_the_key() {
    let s = Settings::from_sources("", "t", &env(&[])).unwrap();
    assert_eq!(s.identity.max_response_size, 1 << 20);
    assert_eq!(s.api.max_response_size, 1 << 20);
    let s = Settings::from_sources(
        "[identity]\nmax_response_size = \"512KiB\"\n[api]\nmax_response_size = \"4MiB\"\n",
        "t",
        &env(&[]),
    )
    .unwrap();
    assert_eq!(s.identity.max_response_size, 512 << 10);
    assert_eq!(s.api.max_response_size, 4 << 20);
    for bad in ["0", "12", "1GB", "lots", "2048MiB"] {
        let msg = error(&format!("[api]\nmax_response_size = \"{bad}\"\n"), &[]);
        assert!(msg.contains("api.max_response_size"), "{bad}: {msg}");
    }
}

#[test]
fn plain_http_to_another_machine_is_refused_unless_allowed() {
    let entra =
        |instance: &str, more: &str| format!("[identity]\ninstance = \"{instance}\"\n{more}");
    let msg = error(&entra("http://login.example.com", ""), &[]);
    assert!(
        msg.contains("identity.instance") && msg.contains("in clear"),
        "{msg}"
    );
    for loopback in [
        "http://127.0.0.1:5556",
        "http://localhost:5556",
        "http://[::1]:5556",
    ] {
        Settings::from_sources(&entra(loopback, ""), "t", &env(&[])).unwrap();
    }
    let allowed = entra("http://idp.internal", "allow_insecure_http = true\n");
    assert!(
        Settings::from_sources(&allowed, "t", &env(&[]))
            .unwrap()
            .identity
            .allow_insecure_http
    );
    let oidc = "[identity]\nprovider = \"oidc\"\nissuer = \"http://id.example.com/realms/x\"\n";
    let msg = error(oidc, &[]);
    assert!(msg.contains("identity.issuer"), "{msg}");
    let msg = error("[api]\nbase_url = \"http://api.example.com/v1\"\n", &[]);
    assert!(
        msg.contains("api.base_url") && msg.contains("allow_insecure_http"),
        "{msg}"
    );
    Settings::from_sources(
        "[api]\nbase_url = \"http://api.internal/v1\"\nallow_insecure_http = true\n",
        "t",
        &env(&[]),
    )
    .unwrap();
}

#[test]
fn metrics_on_a_non_loopback_address_are_warned_about() {
    let s = Settings::from_sources("[web]\nmetrics_listen = \"0.0.0.0:9464\"\n", "t", &env(&[]))
        .unwrap();
    let warnings = s.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("web.metrics_listen = 0.0.0.0:9464")),
        "{warnings:?}"
    );
    let quiet = Settings::from_sources("", "t", &env(&[]))
        .unwrap()
        .warnings();
    assert!(
        !quiet.iter().any(|w| w.contains("metrics_listen")),
        "{quiet:?}"
    );
}

#[test]
fn worker_claims_last_as_configured() {
    let s = Settings::from_sources("", "t", &env(&[])).unwrap();
    assert_eq!(s.worker.claim_for, None, "the longest an account may take");
    let s = Settings::from_sources("[worker]\nclaim_for = \"3m\"\n", "t", &env(&[])).unwrap();
    assert_eq!(s.worker.claim_for, Some(Duration::from_secs(180)));
    let msg = error("[worker]\nclaim_for = \"10s\"\n", &[]);
    assert!(msg.contains("worker.claim_for"), "{msg}");
}

#[test]
fn moving_the_app_takes_public_url_and_the_development_provider_follows() {
    let moved = env(&[
        ("TOKENBRIDGE_WEB__LISTEN", "127.0.0.1:9090"),
        ("TOKENBRIDGE_WEB__PUBLIC_URL", "http://127.0.0.1:9090"),
    ]);
    let s = Settings::build("", "t", Path::new(""), &moved, Sections::DEV_IDP).unwrap();
    let client = &s.dev_idp.clients[0];
    assert!(client
        .redirect_uris
        .contains(&"http://127.0.0.1:9090/signin-oidc".to_owned()));
    assert!(client
        .post_logout_redirect_uris
        .contains(&"http://127.0.0.1:9090/signout-callback-oidc".to_owned()));
    let serve = Settings::build("", "t", Path::new(""), &moved, Sections::SERVE).unwrap();
    assert!(!serve.warnings().iter().any(|w| w.contains("public_url")));
    // Only the listener moved: the app says where sign-in will send browsers.
    let half = env(&[("TOKENBRIDGE_WEB__LISTEN", "127.0.0.1:9090")]);
    let serve = Settings::build("", "t", Path::new(""), &half, Sections::SERVE).unwrap();
    let warnings = serve.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("web.public_url = \"http://127.0.0.1:9090\"")),
        "{warnings:?}"
    );
}

#[test]
fn named_apis_have_their_own_scopes_and_a_sign_in_asks_for_all_of_them() {
    let s = load(
        "[api]\nscopes = [\"User.Read\"]\n\
         [apis.tasks]\nbase_url = \"https://tasks.contoso.com/v1\"\npath = \"/me/tasks\"\n\
         scopes = [\"api://contoso-tasks/Tasks.Read\"]\ntimeout = \"3s\"\n",
        &[],
    )
    .unwrap();
    let names: Vec<&str> = s.apis().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["default", "tasks"]);
    let tasks = s.api_named("tasks").unwrap();
    assert_eq!(tasks.me_url(), "https://tasks.contoso.com/v1/me/tasks");
    assert_eq!(tasks.timeout, std::time::Duration::from_secs(3));
    assert_eq!(s.scopes_of(tasks), ["api://contoso-tasks/Tasks.Read"]);
    assert_eq!(
        s.sign_in_scopes(),
        ["User.Read", "api://contoso-tasks/Tasks.Read"]
    );
    assert!(s.scopes_not_asked_for().is_empty());
    assert_eq!(s.profile_api().name, "default");

    // From the environment, a named API and its comma-separated scopes.
    let s = load(
        "",
        &[
            (
                "TOKENBRIDGE_APIS__MAIL__BASE_URL",
                "https://graph.microsoft.com/v1.0",
            ),
            ("TOKENBRIDGE_APIS__MAIL__SCOPES", "Mail.Read, Mail.Send"),
            ("TOKENBRIDGE_WEB__PROFILE_API", "mail"),
        ],
    )
    .unwrap();
    assert_eq!(
        s.scopes_of(s.api_named("mail").unwrap()),
        ["Mail.Read", "Mail.Send"]
    );
    assert_eq!(s.profile_api().name, "mail");
    assert_eq!(s.sign_in_scopes(), ["User.Read", "Mail.Read", "Mail.Send"]);
}

#[test]
fn settings_from_before_named_apis_keep_their_meaning() {
    // identity.scopes alone: the default API's scopes and the sign-in's.
    let s = load("[identity]\nscopes = [\"api.read\"]\n", &[]).unwrap();
    assert_eq!(s.scopes_of(&s.api), ["api.read"]);
    assert_eq!(s.sign_in_scopes(), ["api.read"]);
    // Nothing at all: Graph's profile.
    let s = load("", &[]).unwrap();
    assert_eq!(s.scopes_of(&s.api), ["User.Read"]);
    assert_eq!(s.sign_in_scopes(), ["User.Read"]);
    // identity.scopes narrower than the APIs need: said at start, by API and scope.
    let s = load(
        "[identity]\nscopes = [\"User.Read\"]\n[apis.tasks]\nscopes = [\"Tasks.Read\"]\n",
        &[],
    )
    .unwrap();
    assert_eq!(s.sign_in_scopes(), ["User.Read"]);
    assert_eq!(
        s.scopes_not_asked_for(),
        [("tasks", vec!["Tasks.Read".to_owned()])]
    );
    assert!(s
        .warnings()
        .iter()
        .any(|w| w.contains("API tasks needs Tasks.Read")));
}

#[test]
fn named_apis_are_checked() {
    for (text, expected) in [
        (
            "[apis.tasks]\nbase_url = \"https://t.example\"\n",
            "apis.tasks.scopes",
        ),
        ("[apis.default]\nscopes = [\"a\"]\n", "[api] section"),
        ("[apis.Tasks]\nscopes = [\"a\"]\n", "lowercase letter"),
        ("[apis.tasks]\nscopes = [\"a b\"]\n", "apis.tasks.scopes"),
        (
            "[apis.tasks]\nscopes = [\"a\"]\nbase_url = \"http://api.example\"\n",
            "apis.tasks.base_url",
        ),
        (
            "[apis.tasks]\nscopes = [\"a\"]\nmethod = \"GET\"\n",
            "method",
        ),
        ("[web]\nprofile_api = \"nope\"\n", "web.profile_api"),
    ] {
        let e = load(text, &[]).unwrap_err().to_string();
        assert!(e.contains(expected), "{text}: {e}");
    }
}

#[cfg(unix)]
#[test]
fn a_client_key_directory_s_files_others_can_read_are_reported() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("tb-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let open = dir.join("a.pem");
    let private = dir.join("b.pem");
    for (path, mode) in [(&open, 0o644), (&private, 0o600)] {
        std::fs::write(path, "key").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let file = format!(
        "[identity]\nclient_auth = \"private_key_jwt\"\nclient_key_file = \"{}\"\n",
        dir.display()
    );
    let warnings = load(&file, &[]).unwrap().warnings();
    let _ = std::fs::remove_dir_all(&dir);
    let about = |path: &std::path::Path| {
        warnings
            .iter()
            .any(|w| w.contains(&format!("{} (identity.client_key_file)", path.display())))
    };
    assert!(about(&open), "{warnings:?}");
    assert!(!about(&private), "{warnings:?}");
}
