//! Where settings come from: the settings file (TOML; secrets refused in it, syntax errors said
//! without quoting the line) and `TOKENBRIDGE_<SECTION>__<KEY>` variables (lists
//! comma-separated, names checked), merged into the raw shape; and errors that name the source
//! of the value they are about.

use super::raw::RawSettings;
use super::{SettingsError, ENV_PREFIX};
use crate::cache::redis::RedisUrl;
use std::collections::HashMap;

/// Keys that hold secrets: allowed from the environment, refused in the settings file.
const SECRET_KEYS: &[&str] = &["cache.keys", "identity.client_secret", "web.session_key"];

/// The settings file's text and the environment, merged (the environment wins) into the raw
/// shape, unvalidated.
pub(super) fn read(
    file_text: &str,
    file_name: &str,
    env: &HashMap<String, String>,
) -> Result<RawSettings, SettingsError> {
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
    merged
        .try_deserialize()
        .map_err(|e| SettingsError::Parse(with_choices(e.to_string())))
}

/// An error about a key says where the value came from: the environment variable that set it
/// (that is where to look), else the settings file.
pub(super) fn naming_the_source(
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

pub(crate) fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}_{}", key.replace('.', "__").to_uppercase())
}
