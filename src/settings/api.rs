//! `[api]` and `[apis.NAME]`: the downstream APIs the profile page and the worker call, each
//! with the scopes its access token is asked for. `[api]` is the API named `default`.

use super::{
    insecure_transport, invalid, parse_size, parse_url, positive, Settings, SettingsError,
};
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// The API `[api]` describes.
pub const DEFAULT_API: &str = "default";

/// The scopes the default API is asked for when neither `api.scopes` nor `identity.scopes`
/// names any: Microsoft Graph's profile.
const GRAPH_PROFILE_SCOPE: &str = "User.Read";

#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `default` for `[api]`, NAME for `[apis.NAME]`.
    pub name: String,
    pub base_url: Url,
    /// The resource the profile page and the worker's default call read, relative to
    /// `base_url` (`/me`).
    pub path: String,
    /// The scopes this API's access token is asked for. Empty only for `[api]` written without
    /// them: then `identity.scopes` (see [`Settings::scopes_of`]).
    pub scopes: Vec<String>,
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
        self.url_of(&self.path)
    }

    /// `{base_url}{path}` for any path on this API.
    pub fn url_of(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.base_url.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

impl Settings {
    /// Every API: `default` first, then the `[apis.NAME]` sections by name.
    pub fn apis(&self) -> impl Iterator<Item = &ApiSettings> {
        std::iter::once(&self.api).chain(self.named_apis.values())
    }

    /// The API called NAME (`default` is `[api]`).
    pub fn api_named(&self, name: &str) -> Option<&ApiSettings> {
        self.apis().find(|api| api.name == name)
    }

    /// The API the profile page shows (`web.profile_api`); `default` if that names none
    /// (validation refuses such a name when the web section is used).
    pub fn profile_api(&self) -> &ApiSettings {
        self.api_named(&self.web.profile_api).unwrap_or(&self.api)
    }

    /// The API the web API mode's `/api/me` calls (`web_api.api`); `default` if that names
    /// none (validation refuses such a name when the mode is on).
    pub fn web_api_api(&self) -> &ApiSettings {
        self.api_named(&self.web_api.api).unwrap_or(&self.api)
    }

    /// The scopes `api`'s access token is asked for: its own; for `[api]` without any,
    /// `identity.scopes` (settings from before named APIs), else Graph's `User.Read`.
    pub fn scopes_of(&self, api: &ApiSettings) -> Vec<String> {
        if !api.scopes.is_empty() {
            api.scopes.clone()
        } else if !self.identity.scopes.is_empty() {
            self.identity.scopes.clone()
        } else {
            vec![GRAPH_PROFILE_SCOPE.to_owned()]
        }
    }

    /// The scopes a sign-in asks for (beyond openid, profile and offline_access):
    /// `identity.scopes` when set, else every API's, so that the worker can later get each
    /// API's token without the user.
    pub fn sign_in_scopes(&self) -> Vec<String> {
        if !self.identity.scopes.is_empty() {
            return self.identity.scopes.clone();
        }
        let mut scopes: Vec<String> = Vec::new();
        for api in self.apis() {
            for scope in self.scopes_of(api) {
                if !scopes.iter().any(|s| s.eq_ignore_ascii_case(&scope)) {
                    scopes.push(scope);
                }
            }
        }
        scopes
    }

    /// For each API, the scopes it needs that a sign-in does not ask for (`identity.scopes`
    /// leaves them out): users will not have consented to them.
    pub fn scopes_not_asked_for(&self) -> Vec<(&str, Vec<String>)> {
        let asked = self.sign_in_scopes();
        self.apis()
            .filter_map(|api| {
                let missing: Vec<String> = self
                    .scopes_of(api)
                    .into_iter()
                    .filter(|s| !asked.iter().any(|a| a.eq_ignore_ascii_case(s)))
                    .collect();
                (!missing.is_empty()).then_some((api.name.as_str(), missing))
            })
            .collect()
    }
}

/// An API's name: a lowercase letter, then lowercase letters, digits or `_`, at most 32 (it
/// becomes part of `TOKENBRIDGE_ACCESS_TOKEN_<NAME>` for `worker --exec`).
pub fn valid_api_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 32
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawApi {
    base_url: String,
    path: String,
    scopes: Vec<String>,
    timeout: String,
    max_response_size: String,
    allow_insecure_http: bool,
}

impl Default for RawApi {
    fn default() -> Self {
        Self {
            base_url: "https://graph.microsoft.com/v1.0".into(),
            path: "/me".into(),
            scopes: Vec::new(),
            timeout: "10s".into(),
            max_response_size: "1MiB".into(),
            allow_insecure_http: false,
        }
    }
}

/// `api.base_url` or `apis.NAME.base_url`: the settings key, for error messages.
fn key_of(name: &str, field: &str) -> String {
    if name == DEFAULT_API {
        format!("api.{field}")
    } else {
        format!("apis.{name}.{field}")
    }
}

impl RawApi {
    /// `[api]` (`name` = `default`) or `[apis.NAME]`.
    pub(super) fn validate(self, name: &str) -> Result<ApiSettings, SettingsError> {
        let key = |field| key_of(name, field);
        let path = self.path.trim();
        if !path.starts_with('/') || path.contains(char::is_whitespace) || path.contains("//") {
            return Err(invalid(
                key("path"),
                "expected a path on the API such as \"/me\"",
            ));
        }
        if self
            .scopes
            .iter()
            .any(|s| s.trim().is_empty() || s.contains(char::is_whitespace))
        {
            return Err(invalid(
                key("scopes"),
                "expected a list of scopes such as [\"User.Read\"]",
            ));
        }
        if name != DEFAULT_API && self.scopes.is_empty() {
            return Err(invalid(
                key("scopes"),
                "is required: the scopes this API's access token is asked for, such as \
                 [\"api://contoso-tasks/Tasks.Read\"]",
            ));
        }
        let base_url = parse_url(&key("base_url"), &self.base_url)?;
        if let Some(problem) = insecure_transport(&base_url, self.allow_insecure_http) {
            return Err(invalid(key("base_url"), problem));
        }
        Ok(ApiSettings {
            name: name.to_owned(),
            base_url,
            path: path.to_owned(),
            scopes: self.scopes,
            timeout: positive(&key("timeout"), &self.timeout)?,
            max_response_size: parse_size(&key("max_response_size"), &self.max_response_size)?,
            allow_insecure_http: self.allow_insecure_http,
        })
    }
}

/// `[apis.NAME]` sections, by name; `default` is `[api]`'s and cannot be one of them.
pub(super) fn validate_named(
    raw: std::collections::BTreeMap<String, RawApi>,
) -> Result<std::collections::BTreeMap<String, ApiSettings>, SettingsError> {
    raw.into_iter()
        .map(|(name, api)| {
            if name == DEFAULT_API {
                return Err(invalid(
                    "apis.default",
                    "the API named default is the [api] section: write its keys there",
                ));
            }
            if !valid_api_name(&name) {
                return Err(SettingsError::Parse(format!(
                    "[apis.{name}]: an API's name is a lowercase letter, then lowercase letters, \
                     digits or _ (at most 32), such as [apis.tasks]"
                )));
            }
            Ok((name.clone(), api.validate(&name)?))
        })
        .collect()
}
