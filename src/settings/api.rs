//! `[api]`: the downstream API the profile page and the worker call.

use super::{insecure_transport, invalid, parse_size, parse_url, positive, SettingsError};
use serde::Deserialize;
use std::time::Duration;
use url::Url;

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub base_url: Url,
    /// The resource the profile page and the worker call, relative to `base_url` (`/me`).
    pub path: String,
    pub timeout: Duration,
    /// The largest answer read from the API: a larger one is a transient error for that call,
    /// read no further.
    pub max_response_size: usize,
    /// Plain http to an API on another machine is refused unless this is set.
    pub allow_insecure_http: bool,
}

impl ApiSettings {
    /// `{base_url}{path}`: `https://graph.microsoft.com/v1.0/me` by default.
    pub fn me_url(&self) -> String {
        format!(
            "{}/{}",
            self.base_url.as_str().trim_end_matches('/'),
            self.path.trim_start_matches('/')
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawApi {
    base_url: String,
    path: String,
    timeout: String,
    max_response_size: String,
    allow_insecure_http: bool,
}

impl Default for RawApi {
    fn default() -> Self {
        Self {
            base_url: "https://graph.microsoft.com/v1.0".into(),
            path: "/me".into(),
            timeout: "10s".into(),
            max_response_size: "1MiB".into(),
            allow_insecure_http: false,
        }
    }
}

impl RawApi {
    pub(super) fn validate(self) -> Result<ApiSettings, SettingsError> {
        let path = self.path.trim();
        if !path.starts_with('/') || path.contains(char::is_whitespace) || path.contains("//") {
            return Err(invalid(
                "api.path",
                "expected a path on the API such as \"/me\"",
            ));
        }
        let base_url = parse_url("api.base_url", &self.base_url)?;
        if let Some(problem) = insecure_transport(&base_url, self.allow_insecure_http) {
            return Err(invalid("api.base_url", problem));
        }
        Ok(ApiSettings {
            base_url,
            path: path.to_owned(),
            timeout: positive("api.timeout", &self.timeout)?,
            max_response_size: parse_size("api.max_response_size", &self.max_response_size)?,
            allow_insecure_http: self.allow_insecure_http,
        })
    }
}
