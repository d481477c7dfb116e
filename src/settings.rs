//! Typed, layered settings: `settings.toml`, then `TOKENBRIDGE_<SECTION>__<KEY>` environment
//! variables. Unknown keys are errors; every error names the key. Secrets are never read from
//! the settings file itself: they come from the environment or from a `*_file` path.

mod api;
mod cache;
mod dev_idp;
mod identity;
mod log;
mod raw;
mod sources;
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

pub(crate) use sources::env_var_for;
pub(crate) use values::{
    check_key_prefix, parse_duration, parse_size, parse_url, positive, secret_from,
};

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
        let mut raw = sources::read(file_text, file_name, env)?;
        raw.keep_only(sections);
        raw.resolve_paths(base_dir);
        raw.validate(sections)
            .map_err(|e| sources::naming_the_source(e, env, file_name))
    }
}

#[cfg(test)]
mod tests;
