//! `[log]`: the level (or filters naming crates this program uses) and the format.

use super::{invalid, SettingsError};
use serde::Deserialize;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
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

impl RawLog {
    pub(super) fn validate(self) -> Result<LogSettings, SettingsError> {
        check_log_level(&self.level)?;
        Ok(LogSettings {
            level: self.level,
            format: self.format,
        })
    }
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
