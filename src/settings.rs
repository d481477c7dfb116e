//! Typed, layered settings: `settings.toml`, then `TOKENBRIDGE_<SECTION>__<KEY>` environment
//! variables. Unknown keys are errors; every error names the key. Secrets are never read from
//! the settings file itself: they come from the environment or from a `*_file` path.

mod api;
mod dev_idp;
mod identity;
mod web;
mod worker;

pub use api::ApiSettings;
pub use dev_idp::{
    is_loopback, loopback_addr, DevClient, DevIdpSettings, Rotation, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
};
pub use identity::{ClientAuth, IdentitySettings, OfflineAccess, Prompt, ProviderKind};
pub use web::WebSettings;
pub use worker::{ReportFormat, WorkerSettings};

use crate::cache::redis::RedisUrl;
use crate::cache::seal::SealKeys;
use crate::db::DatabaseUrl;
use crate::secret::Secret;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const ENV_PREFIX: &str = "TOKENBRIDGE";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    // Not a `source`: the message says it once (an error chain would repeat it).
    #[error("cannot read settings file {path}: {error}")]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("settings: {0}")]
    Parse(String),
    #[error("settings key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key,
        message: message.into(),
    }
}

/// Everything the binary can be configured with, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub cache: CacheSettings,
    pub log: LogSettings,
    pub identity: IdentitySettings,
    pub api: ApiSettings,
    pub web: WebSettings,
    pub worker: WorkerSettings,
    pub dev_idp: DevIdpSettings,
    /// The files secrets were read from, by setting (`cache.keys_file`, ...): checked at start
    /// for modes that let other users read them.
    pub secret_files: Vec<(&'static str, PathBuf)>,
    /// The settings file looked for and not found (all defaults then), to say so when a
    /// required setting is missing.
    pub missing_file: Option<PathBuf>,
}

/// The `[database]` section is the database layer's own options, built here.
pub type DatabaseSettings = crate::db::DbOptions;

#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Where the token caches live when not in the SQL database (`cache.url`).
    pub redis: Option<RedisSettings>,
    pub sliding_expiration: Duration,
    pub keys: Option<SealKeys>,
    /// `cache.keys_file` when it does not exist yet, for `migrate` only: it creates the file
    /// with a new key when the database holds no token caches (the quick start's first run).
    pub create_keys_file: Option<PathBuf>,
    pub read_plaintext: bool,
    pub sweep_batch: u32,
    /// Documents each process keeps in memory (least recently used go first); 0 turns it off.
    pub memory_entries: u64,
}

/// Token caches in Redis; account activity stays in the SQL database.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: RedisUrl,
    /// Every key starts with this and a colon, so deployments can share a Redis database.
    pub key_prefix: String,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

// ---- the raw shape of the file and environment -------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    database: RawDatabase,
    cache: RawCache,
    log: RawLog,
    identity: identity::RawIdentity,
    api: api::RawApi,
    web: web::RawWeb,
    worker: worker::RawWorker,
    dev_idp: dev_idp::RawDevIdp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    url: String,
    pool_size: u32,
    connect_timeout: String,
    busy_timeout: String,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: "sqlite://tokenbridge.db".into(),
            pool_size: 8,
            connect_timeout: "5s".into(),
            busy_timeout: "5s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCache {
    url: Option<Secret>,
    url_file: Option<PathBuf>,
    key_prefix: String,
    sliding_expiration: String,
    keys: Option<Secret>,
    keys_file: Option<PathBuf>,
    read_plaintext: bool,
    sweep_batch: u32,
    memory_entries: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            key_prefix: "tokenbridge".into(),
            sliding_expiration: "90d".into(),
            keys: None,
            keys_file: None,
            read_plaintext: false,
            sweep_batch: 500,
            memory_entries: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: String,
    format: LogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// The sections a command uses. Only those are validated and have their secrets read; the
/// others are still parsed (a mistyped key anywhere is an error) but take their defaults, so a
/// deploy step that migrates needs no client secret and a worker needs no session key.
/// `[database]` and `[log]` are always used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    pub cache: bool,
    pub identity: bool,
    pub api: bool,
    pub web: bool,
    pub worker: bool,
    pub dev_idp: bool,
}

impl Sections {
    /// Every section (library users and tests).
    pub const ALL: Self = Self {
        cache: true,
        identity: true,
        api: true,
        web: true,
        worker: true,
        dev_idp: true,
    };
    /// `migrate`: the database, and the cache keys when given (it compares them with the
    /// store's check values, so a deploy step finds a key mistake first).
    pub const MIGRATE: Self = Self {
        cache: true,
        identity: false,
        api: false,
        web: false,
        worker: false,
        dev_idp: false,
    };
    /// `serve`: the web app signs users in and calls the API through the cache.
    pub const SERVE: Self = Self {
        web: true,
        worker: false,
        dev_idp: false,
        ..Self::ALL
    };
    /// `worker`: refreshes through the cache and calls the API; no web sessions.
    pub const WORKER: Self = Self {
        web: false,
        worker: true,
        dev_idp: false,
        ..Self::ALL
    };
    /// `dev-idp`: its own section only.
    pub const DEV_IDP: Self = Self {
        cache: false,
        identity: false,
        api: false,
        web: false,
        worker: false,
        dev_idp: true,
    };
}

/// Keys that hold secrets: allowed from the environment, refused in the settings file.
const SECRET_KEYS: &[&str] = &["cache.keys", "identity.client_secret", "web.session_key"];

impl Settings {
    /// Loads `path` and the process environment. A missing file means "all defaults" unless
    /// it was `named` (given with `--config` or `TOKENBRIDGE_CONFIG`): then it must exist.
    /// Only the `sections` the command uses are validated (see [`Sections`]).
    pub fn load(path: &Path, named: bool, sections: Sections) -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(path, named, sections, &env)
    }

    /// Like [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_from(
        path: &Path,
        named: bool,
        sections: Sections,
        env: &HashMap<String, String>,
    ) -> Result<Self, SettingsError> {
        let (text, missing) = match std::fs::read_to_string(path) {
            Ok(text) => (text, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => (String::new(), true),
            Err(error) => {
                return Err(SettingsError::File {
                    path: path.to_owned(),
                    error,
                })
            }
        };
        let base_dir = path.parent().unwrap_or(Path::new(""));
        let mut settings =
            Self::build(&text, &path.display().to_string(), base_dir, env, sections)?;
        if missing {
            let looked = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
            settings.missing_file = Some(looked);
        }
        Ok(settings)
    }

    /// For a missing required setting: where the settings file was looked for, when none was
    /// found (every setting then comes from the environment).
    pub fn file_hint(&self) -> String {
        match &self.missing_file {
            None => String::new(),
            Some(path) => format!(
                " (no settings file was found at {}: run from the directory that holds \
                 settings.toml, or name one with --config FILE or TOKENBRIDGE_CONFIG)",
                path.display()
            ),
        }
    }

    /// Builds settings from the file's text and an environment.
    pub fn from_sources(
        file_text: &str,
        file_name: &str,
        env: &HashMap<String, String>,
    ) -> Result<Self, SettingsError> {
        Self::from_sources_in(file_text, file_name, Path::new(""), env)
    }

    /// Like [`Settings::from_sources`]; relative `*_file` paths are taken from `base_dir`.
    pub fn from_sources_in(
        file_text: &str,
        file_name: &str,
        base_dir: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Self, SettingsError> {
        Self::build(file_text, file_name, base_dir, env, Sections::ALL)
    }

    fn build(
        file_text: &str,
        file_name: &str,
        base_dir: &Path,
        env: &HashMap<String, String>,
        sections: Sections,
    ) -> Result<Self, SettingsError> {
        check_environment_names(env)?;
        if let Err(e) = toml::from_str::<toml::Table>(file_text) {
            return Err(SettingsError::Parse(syntax_error(file_name, file_text, &e)));
        }
        let file = config::File::from_str(file_text, config::FileFormat::Toml);
        let file_only = config::Config::builder()
            .add_source(file.clone())
            .build()
            .map_err(|e| SettingsError::Parse(format!("{file_name}: {e}")))?;
        for key in SECRET_KEYS {
            if file_only.get::<config::Value>(key).is_ok() {
                return Err(SettingsError::Parse(format!(
                    "{file_name}: `{key}` is a secret and must not be written in the settings \
                     file; set {} or `{key}_file` instead",
                    env_var_for(key)
                )));
            }
        }
        // A Redis URL may be written in the file, but not with its password.
        if let Ok(url) = file_only.get::<String>("cache.url") {
            if RedisUrl::parse(&url).is_ok_and(|url| url.has_password()) {
                return Err(SettingsError::Parse(format!(
                    "{file_name}: `cache.url` holds a password, a secret that must not be written \
                     in the settings file; set {} or `cache.url_file` instead",
                    env_var_for("cache.url")
                )));
            }
        }
        let list_vars: Vec<String> = LIST_KEYS.iter().map(|k| env_var_for(k)).collect();
        let overrides: config::Map<String, String> = env
            .iter()
            .filter(|(name, _)| name.starts_with(&format!("{ENV_PREFIX}_")) && name.contains("__"))
            .filter(|(name, _)| !list_vars.contains(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let mut builder = config::Config::builder().add_source(file).add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(overrides)),
        );
        // A list from the environment is comma-separated: TOKENBRIDGE_IDENTITY__SCOPES=a,b.
        for key in LIST_KEYS {
            if let Some(value) = env.get(&env_var_for(key)) {
                let items: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect();
                builder = builder
                    .set_override(*key, items)
                    .map_err(|e| SettingsError::Parse(e.to_string()))?;
            }
        }
        let merged = builder
            .build()
            .map_err(|e| SettingsError::Parse(e.to_string()))?;
        let mut raw: RawSettings = merged
            .try_deserialize()
            .map_err(|e| SettingsError::Parse(with_choices(e.to_string())))?;
        raw.keep_only(sections);
        raw.resolve_paths(base_dir);
        raw.validate(sections)
            .map_err(|e| naming_the_source(e, env, file_name))
    }
}

/// An error about a key says where the value came from: the environment variable that set it
/// (that is where to look), else the settings file.
fn naming_the_source(
    error: SettingsError,
    env: &HashMap<String, String>,
    file_name: &str,
) -> SettingsError {
    match error {
        SettingsError::Invalid { key, message } => {
            // A secret comes from its own variable or from `<key>_file`'s.
            let var = [env_var_for(key), env_var_for(&format!("{key}_file"))]
                .into_iter()
                .find(|var| env.contains_key(var));
            let from = match var {
                Some(var) => format!("set by the environment variable {var}"),
                None => format!("in {file_name}"),
            };
            SettingsError::Invalid {
                key,
                message: format!("{message} ({from})"),
            }
        }
        other => other,
    }
}

impl Settings {
    /// Things that work but that an operator should hear about, logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.cache.keys.is_none() {
            warnings.push(format!(
                "token caches are stored UNENCRYPTED: set {} (or cache.keys_file) to seal them",
                env_var_for("cache.keys")
            ));
        } else if self.cache.read_plaintext {
            warnings.push(
                "cache.read_plaintext is on: unencrypted cache rows are accepted; turn it off once \
                 every row has been rewritten"
                    .to_owned(),
            );
        }
        for (key, address) in [
            ("web.metrics_listen", self.web.metrics_listen),
            ("worker.metrics_listen", self.worker.metrics_listen),
        ] {
            if let Some(address) = address.filter(|a| !is_loopback(a.ip())) {
                warnings.push(format!(
                    "{key} = {address} is not a loopback address: anyone who can reach it reads \
                     the metrics (request and acquisition counts, pool state); keep it on \
                     127.0.0.1 or behind a firewall"
                ));
            }
        }
        // On this machine, the URL people open must reach the port serve listens on.
        let public = &self.web.public_url;
        let listen = self.web.listen.port();
        if is_loopback_url(public) && listen != 0 && public.port_or_known_default() != Some(listen)
        {
            warnings.push(format!(
                "web.public_url {public} is not where serve listens (web.listen {}): sign-in \
                 sends browsers to the URL; set web.public_url = \"http://127.0.0.1:{listen}\"",
                self.web.listen
            ));
        }
        let database = self.database.url.sqlite_path().map(|p| ("database.url", p));
        for (key, path) in self.secret_files.iter().cloned().chain(database) {
            if let Some(mode) = readable_by_others(&path) {
                warnings.push(format!(
                    "{} ({key}) can be read by other users of this machine (mode {mode:04o}): \
                     `chmod 600 {}`",
                    path.display(),
                    path.display()
                ));
            }
        }
        warnings
    }
}

/// The file's permission bits when group or others may read or write it.
fn readable_by_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o066 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// A TOML syntax error by position and kind only: the offending line may hold a password (a
/// database URL), so it is never quoted.
fn syntax_error(file_name: &str, text: &str, error: &toml::de::Error) -> String {
    let position = error.span().map_or_else(String::new, |span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" at line {line}, column {column}")
    });
    format!(
        "{file_name}: TOML syntax error{position}: {}",
        error.message().trim()
    )
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
/// Crates whose log lines are worth filtering; a filter naming anything else is a typo.
const LOG_TARGETS: &[&str] = &[
    "tokenbridge",
    "actix_web",
    "actix_server",
    "actix_http",
    "actix_session",
    "diesel",
    "r2d2",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "openidconnect",
    "oauth2",
    "tokio",
    "mio",
];

/// A level, or `tracing` filter directives (`info,tokenbridge=debug`) whose targets are crates
/// this program uses: `verbose` must not quietly become a filter for a target named "verbose"
/// (which would switch logging off).
fn check_log_level(value: &str) -> Result<(), SettingsError> {
    let wrong = |what: String| {
        invalid(
            "log.level",
            format!(
                "{what}: expected a level ({}) or filters such as \"info,tokenbridge=debug\" \
                 naming crates this program uses ({})",
                LEVELS.join(", "),
                LOG_TARGETS.join(", ")
            ),
        )
    };
    tracing_subscriber::EnvFilter::try_new(value)
        .map_err(|e| wrong(format!("{:?} is not a filter ({e})", value)))?;
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        if let Some(target) = target {
            let krate = target.split([':', '[']).next().unwrap_or_default();
            if !LOG_TARGETS.contains(&krate) {
                return Err(wrong(format!("{krate:?} is not a crate this program uses")));
            }
        }
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(wrong(format!("{level:?} is not a level")));
        }
    }
    Ok(())
}

/// The values each settings enum takes, for error messages.
const CHOICES: &[(&str, &str)] = &[
    ("ProviderKind", "\"entra\" or \"oidc\""),
    (
        "Prompt",
        "\"none\", \"consent\", \"login\" or \"select_account\"",
    ),
    ("OfflineAccess", "\"scope\" or \"access_type\""),
    (
        "ClientAuth",
        "\"client_secret_basic\" or \"client_secret_post\"",
    ),
    ("LogFormat", "\"text\" or \"json\""),
    ("ReportFormat", "\"text\" or \"json\""),
    ("Rotation", "\"off\", \"rotate\" or \"strict\""),
];

/// A value that is none of an enum's: said with the values it could be (the settings library
/// names only the Rust type).
fn with_choices(message: String) -> String {
    let Some(rest) = message.strip_prefix("enum ") else {
        return message;
    };
    let Some((name, rest)) = rest.split_once(" does not have variant constructor ") else {
        return message;
    };
    let Some((value, key)) = rest.split_once(" for key ") else {
        return message;
    };
    match CHOICES.iter().find(|(enum_name, _)| *enum_name == name) {
        Some((_, choices)) => format!("{key}: {value:?} is not one of {choices}"),
        None => message,
    }
}

/// Keys holding lists, which the environment gives comma-separated.
const LIST_KEYS: &[&str] = &["identity.scopes", "dev_idp.users"];

/// The settings file's sections, for telling a mistyped variable's intended key.
const SECTIONS: &[&str] = &[
    "database", "cache", "log", "identity", "api", "web", "worker", "dev_idp",
];

/// `TOKENBRIDGE_` variables that are not settings: the settings file's name, and the test
/// harness's and benchmarks' own (`TOKENBRIDGE_TEST_...`, `TOKENBRIDGE_BENCH_...`).
fn not_a_setting(name: &str) -> bool {
    name == "TOKENBRIDGE_CONFIG"
        || name.starts_with("TOKENBRIDGE_TEST_")
        || name.starts_with("TOKENBRIDGE_BENCH_")
}

/// Every `TOKENBRIDGE_` variable must name a key as `TOKENBRIDGE_<SECTION>__<KEY>`: one with a
/// single underscore where two belong would otherwise be ignored without a word.
fn check_environment_names(env: &HashMap<String, String>) -> Result<(), SettingsError> {
    let prefix = format!("{ENV_PREFIX}_");
    let mut names: Vec<&String> = env.keys().collect();
    names.sort();
    for name in names {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        if not_a_setting(name) {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        if let Some((section, _)) = lower.split_once("__") {
            if SECTIONS.contains(&section) {
                continue;
            }
        }
        let hint = SECTIONS
            .iter()
            .find_map(|section| {
                let key = lower
                    .strip_prefix(section)?
                    .trim_start_matches('_')
                    .to_owned();
                (!key.is_empty()).then(|| env_var_for(&format!("{section}.{key}")))
            })
            .map_or_else(
                || format!("sections are {}", SECTIONS.join(", ")),
                |closest| format!("did you mean {closest}?"),
            );
        return Err(SettingsError::Parse(format!(
            "environment variable {name} is not a setting: settings are \
             {ENV_PREFIX}_<SECTION>__<KEY>, two underscores between section and key ({hint})"
        )));
    }
    Ok(())
}

fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}_{}", key.replace('.', "__").to_uppercase())
}

pub(crate) fn parse_duration(key: &'static str, value: &str) -> Result<Duration, SettingsError> {
    humantime::parse_duration(value).map_err(|e| {
        invalid(
            key,
            format!("expected a duration such as \"5s\" or \"90d\" ({e})"),
        )
    })
}

/// `cache.key_prefix`: printable, no spaces, no braces (the store puts the user id between
/// braces after it).
fn check_key_prefix(prefix: String) -> Result<String, SettingsError> {
    let prefix = prefix.trim().to_owned();
    let fine = (1..=64).contains(&prefix.len())
        && prefix
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '{' | '}'));
    if fine {
        Ok(prefix)
    } else {
        Err(invalid(
            "cache.key_prefix",
            "expected 1 to 64 printable characters without spaces or braces, such as \"tokenbridge\"",
        ))
    }
}

/// An absolute http(s) URL.
pub(crate) fn parse_url(key: &'static str, value: &str) -> Result<url::Url, SettingsError> {
    let url = url::Url::parse(value)
        .map_err(|e| invalid(key, format!("expected an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(key, "expected an http:// or https:// URL"));
    }
    Ok(url)
}

/// A size in bytes: a number, or one with `KiB` or `MiB` ("1MiB"), from 1 KiB to 1 GiB.
pub(crate) fn parse_size(key: &'static str, value: &str) -> Result<usize, SettingsError> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, ""),
    };
    let unit = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        _ => 0,
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| (1 << 10..=1 << 30).contains(n))
        .ok_or_else(|| {
            invalid(
                key,
                "expected a size from 1KiB to 1024MiB, such as \"1MiB\" or \"512KiB\"",
            )
        })
}

/// Why `url` may not carry secrets (client secrets, codes, tokens), if it may not: plain http
/// to another machine, unless the operator allowed it with `allowed`. https, and http to this
/// machine's loopback (the development provider), are fine.
pub fn insecure_transport(url: &url::Url, allowed: bool) -> Option<String> {
    let fine = match url.scheme() {
        "https" => true,
        "http" => allowed || is_loopback_url(url),
        _ => false,
    };
    if fine {
        return None;
    }
    Some(if url.scheme() == "http" {
        format!(
            "{} is plain http to another machine: client secrets, codes and tokens would cross \
             the network in clear; use https (or set allow_insecure_http = true where the \
             network itself is trusted)",
            url_without_credentials(url)
        )
    } else {
        format!("{} is not an https URL", url_without_credentials(url))
    })
}

/// A URL whose host is 127.0.0.0/8, ::1 or `localhost`.
pub fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => is_loopback(ip.into()),
        Some(url::Host::Ipv6(ip)) => is_loopback(ip.into()),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn url_without_credentials(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.to_string()
}

/// A duration longer than zero.
pub(crate) fn positive(key: &'static str, value: &str) -> Result<Duration, SettingsError> {
    let d = parse_duration(key, value)?;
    if d.is_zero() {
        return Err(invalid(key, "must be longer than 0s"));
    }
    Ok(d)
}

/// Reads a secret from the environment-provided value or from a file, never both.
pub(crate) fn secret_from(
    key: &'static str,
    value: Option<Secret>,
    file: Option<PathBuf>,
) -> Result<Option<Secret>, SettingsError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            format!("set either {} or `{key}_file`, not both", env_var_for(key)),
        )),
        (Some(value), None) if value.expose().trim().is_empty() => Ok(None),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid(
                    key,
                    format!("cannot read `{key}_file` {}: {e}", path.display()),
                )
            })?;
            Ok(Some(Secret::new(text.trim().to_owned())))
        }
        (None, None) => Ok(None),
    }
}

impl RawSettings {
    /// Every section the command does not use back to its defaults: parsed (a mistyped key
    /// was already an error), not validated, no secret read.
    fn keep_only(&mut self, sections: Sections) {
        fn reset<T: Default>(used: bool, section: &mut T) {
            if !used {
                *section = T::default();
            }
        }
        if !sections.cache {
            // Where the caches live still counts: `migrate` says it has nothing to do in Redis.
            let cache = std::mem::take(&mut self.cache);
            self.cache = RawCache {
                url: cache.url,
                url_file: cache.url_file,
                key_prefix: cache.key_prefix,
                ..RawCache::default()
            };
        }
        reset(sections.identity, &mut self.identity);
        reset(sections.api, &mut self.api);
        if !sections.web {
            // Where the app is reached still counts: `dev-idp` registers its redirect URIs.
            let public_url = std::mem::take(&mut self.web.public_url);
            self.web = web::RawWeb::default();
            self.web.public_url = public_url;
        }
        reset(sections.worker, &mut self.worker);
        reset(sections.dev_idp, &mut self.dev_idp);
    }

    /// One rule for relative paths: a relative SQLite path and relative `*_file` paths name
    /// files beside the settings file, wherever the command is run from.
    fn resolve_paths(&mut self, base_dir: &Path) {
        let url = self.database.url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            let relative =
                !path.is_empty() && !path.starts_with(':') && Path::new(path).is_relative();
            if relative && !base_dir.as_os_str().is_empty() {
                self.database.url = format!("sqlite://{}", base_dir.join(path).display());
            }
        }
        for path in [
            &mut self.cache.keys_file,
            &mut self.cache.url_file,
            &mut self.identity.client_secret_file,
            &mut self.web.session_key_file,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
    }

    fn validate(mut self, sections: Sections) -> Result<Settings, SettingsError> {
        // `migrate` makes the key file the settings name when it is absent (a new database).
        let keys_file_absent = self.cache.keys.is_none()
            && self.cache.keys_file.as_deref().is_some_and(|p| !p.exists());
        let create_keys_file = if keys_file_absent && sections == Sections::MIGRATE {
            self.cache.keys_file.take()
        } else {
            None
        };
        let secret_files = [
            ("cache.keys_file", &self.cache.keys_file),
            ("cache.url_file", &self.cache.url_file),
            (
                "identity.client_secret_file",
                &self.identity.client_secret_file,
            ),
            ("web.session_key_file", &self.web.session_key_file),
        ]
        .into_iter()
        .filter_map(|(key, path)| Some((key, path.clone()?)))
        .collect();
        let url = DatabaseUrl::parse(&self.database.url)
            .map_err(|e| invalid("database.url", e.to_string()))?;
        if !(1..=1024).contains(&self.database.pool_size) {
            return Err(invalid(
                "database.pool_size",
                "expected a number of connections from 1 to 1024",
            ));
        }
        let connect_timeout =
            parse_duration("database.connect_timeout", &self.database.connect_timeout)?;
        if connect_timeout.is_zero() {
            return Err(invalid(
                "database.connect_timeout",
                "must be longer than 0s",
            ));
        }
        let busy_timeout = parse_duration("database.busy_timeout", &self.database.busy_timeout)?;

        let sliding_expiration =
            parse_duration("cache.sliding_expiration", &self.cache.sliding_expiration)?;
        if sliding_expiration < Duration::from_secs(24 * 3600) {
            return Err(invalid(
                "cache.sliding_expiration",
                "must be at least 1d: a shorter expiry drops users' refresh tokens \
                 (they live for 90 days)",
            ));
        }
        let keys = secret_from("cache.keys", self.cache.keys, self.cache.keys_file)
            .map_err(|e| match e {
                SettingsError::Invalid { key, message } if keys_file_absent => {
                    SettingsError::Invalid {
                        key,
                        message: format!(
                            "{message}; `tokenbridge migrate` creates it with a new key for a new \
                         database"
                        ),
                    }
                }
                e => e,
            })?
            .map(|secret| SealKeys::parse(&secret))
            .transpose()
            .map_err(|e| invalid("cache.keys", e.to_string()))?;
        let redis = match secret_from("cache.url", self.cache.url, self.cache.url_file)? {
            None => None,
            Some(url) => Some(RedisSettings {
                url: RedisUrl::parse(url.expose())
                    .map_err(|e| invalid("cache.url", e.to_string()))?,
                key_prefix: check_key_prefix(self.cache.key_prefix)?,
            }),
        };
        if self.cache.memory_entries > 10_000_000 {
            return Err(invalid(
                "cache.memory_entries",
                "expected a number of documents from 0 (off) to 10000000",
            ));
        }
        if !(1..=10_000).contains(&self.cache.sweep_batch) {
            return Err(invalid(
                "cache.sweep_batch",
                "expected a number from 1 to 10000",
            ));
        }
        check_log_level(&self.log.level)?;
        Ok(Settings {
            database: DatabaseSettings {
                url,
                pool_size: self.database.pool_size,
                connect_timeout,
                busy_timeout,
            },
            cache: CacheSettings {
                redis,
                sliding_expiration,
                keys,
                create_keys_file,
                read_plaintext: self.cache.read_plaintext,
                sweep_batch: self.cache.sweep_batch,
                memory_entries: self.cache.memory_entries,
            },
            log: LogSettings {
                level: self.log.level,
                format: self.log.format,
            },
            identity: self.identity.validate()?,
            api: self.api.validate()?,
            web: self.web.validate()?,
            worker: self.worker.validate()?,
            dev_idp: self.dev_idp.validate()?,
            secret_files,
            missing_file: None,
        }
        .with_app_registered())
    }
}

impl Settings {
    /// The development provider's first client (the app as `serve` runs it) accepts the
    /// redirect URIs of `web.public_url`, so moving the app to another port takes one setting.
    fn with_app_registered(mut self) -> Self {
        let (signed_in, signed_out) =
            (self.web.redirect_uri(), self.web.post_logout_redirect_uri());
        if let Some(client) = self.dev_idp.clients.first_mut() {
            if !client.redirect_uris.contains(&signed_in) {
                client.redirect_uris.push(signed_in);
            }
            if !client.post_logout_redirect_uris.contains(&signed_out) {
                client.post_logout_redirect_uris.push(signed_out);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests;
