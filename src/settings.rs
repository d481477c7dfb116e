//! Typed, layered settings: `settings.toml`, then `TOKENBRIDGE_<SECTION>__<KEY>` environment
//! variables. Unknown keys are errors; every error names the key. Secrets are never read from
//! the settings file itself: they come from the environment or from a `*_file` path.

mod api;
mod cache;
mod dev_idp;
mod identity;
mod log;
mod values;
mod warnings;
mod web;
mod web_api;
mod worker;

pub use api::{valid_api_name, ApiSettings, DEFAULT_API};
pub use cache::{CacheSettings, RedisSettings};
pub use dev_idp::{
    is_loopback, loopback_addr, DevClient, DevIdpSettings, Rotation, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET, DEV_SPA_CLIENT_ID,
};
pub use identity::{
    AssertionAudience, ClientAuth, ClientCredential, IdentitySettings, OfflineAccess, Prompt,
    ProviderKind,
};
pub use log::{LogFormat, LogSettings};
pub use values::{insecure_transport, is_loopback_url};
pub use web::WebSettings;
pub use web_api::{Exchange, WebApiSettings};
pub use worker::{split_command, CallSpec, ReportFormat, WorkerSettings};

pub(crate) use values::{
    check_key_prefix, parse_duration, parse_size, parse_url, positive, secret_from,
};

use crate::cache::redis::RedisUrl;
use crate::db::DatabaseUrl;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
    Invalid {
        key: std::borrow::Cow<'static, str>,
        message: String,
    },
}

pub(crate) fn invalid(
    key: impl Into<std::borrow::Cow<'static, str>>,
    message: impl Into<String>,
) -> SettingsError {
    SettingsError::Invalid {
        key: key.into(),
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
    /// `[api]`: the API named `default`.
    pub api: ApiSettings,
    /// `[apis.NAME]`: the other APIs, by name (see [`Settings::apis`] for all of them).
    pub named_apis: std::collections::BTreeMap<String, ApiSettings>,
    pub web: WebSettings,
    /// `[web_api]`: the web API mode of `serve` (off unless enabled).
    pub web_api: WebApiSettings,
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

// ---- the raw shape of the file and environment -------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    database: RawDatabase,
    cache: cache::RawCache,
    log: log::RawLog,
    identity: identity::RawIdentity,
    api: api::RawApi,
    apis: std::collections::BTreeMap<String, api::RawApi>,
    web: web::RawWeb,
    web_api: web_api::RawWebApi,
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
        let list_vars = list_vars(env);
        let overrides: config::Map<String, String> = env
            .iter()
            .filter(|(name, _)| name.starts_with(&format!("{ENV_PREFIX}_")) && name.contains("__"))
            .filter(|(name, _)| !list_vars.iter().any(|(var, _)| var == *name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let mut builder = config::Config::builder().add_source(file).add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(overrides)),
        );
        // A list from the environment is comma-separated: TOKENBRIDGE_IDENTITY__SCOPES=a,b.
        for (var, key) in &list_vars {
            if let Some(value) = env.get(var) {
                let items: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect();
                builder = builder
                    .set_override(key.as_str(), items)
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
            let var = [env_var_for(&key), env_var_for(&format!("{key}_file"))]
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
const LIST_KEYS: &[&str] = &[
    "identity.scopes",
    "api.scopes",
    "worker.calls",
    "worker.exec_apis",
    "web_api.audiences",
    "web_api.scopes",
    "web_api.allowed_origins",
    "dev_idp.users",
];

/// The list keys in the environment: [`LIST_KEYS`], and each named API's scopes
/// (`TOKENBRIDGE_APIS__TASKS__SCOPES`), with their settings keys.
fn list_vars(env: &HashMap<String, String>) -> Vec<(String, String)> {
    let named = env.keys().filter_map(|var| {
        let rest = var.strip_prefix(&format!("{ENV_PREFIX}_APIS__"))?;
        let name = rest.strip_suffix("__SCOPES")?;
        Some((
            var.clone(),
            format!("apis.{}.scopes", name.to_ascii_lowercase()),
        ))
    });
    LIST_KEYS
        .iter()
        .map(|key| (env_var_for(key), (*key).to_owned()))
        .chain(named)
        .collect()
}

/// The settings file's sections, for telling a mistyped variable's intended key.
const SECTIONS: &[&str] = &[
    "database", "cache", "log", "identity", "api", "apis", "web", "web_api", "worker", "dev_idp",
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
            self.cache = cache::RawCache::default();
            self.cache.url = cache.url;
            self.cache.url_file = cache.url_file;
            self.cache.key_prefix = cache.key_prefix;
        }
        reset(sections.identity, &mut self.identity);
        reset(sections.api, &mut self.api);
        reset(sections.api, &mut self.apis);
        if !sections.web {
            // Where the app is reached still counts: `dev-idp` registers its redirect URIs.
            let public_url = std::mem::take(&mut self.web.public_url);
            self.web = web::RawWeb::default();
            self.web.public_url = public_url;
        }
        reset(sections.web, &mut self.web_api);
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
            &mut self.identity.client_key_file,
            &mut self.identity.client_certificate_file,
            &mut self.web.session_key_file,
        ]
        .into_iter()
        .chain(self.dev_idp.paths_mut())
        .flatten()
        {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
    }

    fn validate(self, sections: Sections) -> Result<Settings, SettingsError> {
        let secret_files = [
            ("cache.keys_file", &self.cache.keys_file),
            ("cache.url_file", &self.cache.url_file),
            (
                "identity.client_secret_file",
                &self.identity.client_secret_file,
            ),
            ("identity.client_key_file", &self.identity.client_key_file),
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

        let cache = self.cache.validate(sections)?;
        let named_apis = api::validate_named(self.apis)?;
        let web = self.web.validate()?;
        let identity = self.identity.validate()?;
        let web_api = self.web_api.validate(&identity.client_id)?;
        if sections.web {
            api_named("web.profile_api", &web.profile_api, &named_apis)?;
            if web_api.enabled {
                api_named("web_api.api", &web_api.api, &named_apis)?;
            }
        }
        Ok(Settings {
            database: DatabaseSettings {
                url,
                pool_size: self.database.pool_size,
                connect_timeout,
                busy_timeout,
            },
            cache,
            log: self.log.validate()?,
            identity,
            api: self.api.validate(DEFAULT_API)?,
            named_apis,
            web,
            web_api,
            worker: self.worker.validate()?,
            dev_idp: self.dev_idp.validate()?,
            secret_files,
            missing_file: None,
        }
        .with_app_registered())
    }
}

/// `name`, the value of `key`, must name an API: `default` or one of `named`.
fn api_named(
    key: &'static str,
    name: &str,
    named: &std::collections::BTreeMap<String, ApiSettings>,
) -> Result<(), SettingsError> {
    if name == DEFAULT_API || named.contains_key(name) {
        return Ok(());
    }
    Err(invalid(
        key,
        format!(
            "names no API: expected \"default\" ([api]) or one of the [apis.NAME] sections ({})",
            named.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests;
