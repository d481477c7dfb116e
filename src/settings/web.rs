//! `[web]`: where `serve` listens, its public URL, sessions and request limits.

use super::{invalid, parse_url, positive, secret_from, SettingsError};
use crate::secret::Secret;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

#[derive(Debug, Clone)]
pub struct WebSettings {
    pub listen: SocketAddr,
    /// Where `GET /metrics` is served (Prometheus text format); None: not at all.
    pub metrics_listen: Option<SocketAddr>,
    pub public_url: Url,
    pub session_key: Option<Secret>,
    /// Cookies marked Secure (and named `__Host-…`); by default, when `public_url` is https.
    pub secure_cookies: bool,
    pub session_idle: Duration,
    pub session_absolute: Duration,
    /// Requests one client address may have in flight at once (0: no limit). Behind a reverse
    /// proxy every request comes from the proxy's address: raise it or set 0 there.
    pub max_requests_per_client: usize,
    /// How long a request body may take to arrive once its headers have.
    pub body_timeout: Duration,
    /// The API whose `path` the profile page shows (`default`: `[api]`).
    pub profile_api: String,
    /// Where the provider POSTs Back-Channel Logout tokens (register
    /// `{public_url}{backchannel_logout_path}` at the provider).
    pub backchannel_logout_path: String,
    /// Where the provider's logout page loads Front-Channel Logout (register
    /// `{public_url}{frontchannel_logout_path}` at the provider).
    pub frontchannel_logout_path: String,
}

impl WebSettings {
    /// Whether the app is reached over https (then cookies are Secure and HSTS is sent).
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// What is wrong with `secure_cookies` set against what `public_url` says, if anything.
    pub fn cookie_warning(&self) -> Option<&'static str> {
        match (self.secure_cookies, self.is_https()) {
            (false, true) => Some(
                "web.secure_cookies = false although web.public_url is https: session cookies \
                 could be sent over plain HTTP; remove the setting",
            ),
            (true, false) => Some(
                "web.secure_cookies = true although web.public_url is http: browsers will not \
                 send the cookies back, so nobody can stay signed in; use an https public_url",
            ),
            _ => None,
        }
    }

    /// The session cookie's name: `__Host-tb_session` when Secure (browsers then refuse it
    /// from anything but this host over https, with Path=/), else `tb_session`.
    pub fn session_cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-tb_session"
        } else {
            "tb_session"
        }
    }

    /// `{public_url}/signin-oidc`: the redirect URI to register at the provider.
    pub fn redirect_uri(&self) -> String {
        format!(
            "{}/signin-oidc",
            self.public_url.as_str().trim_end_matches('/')
        )
    }

    /// The Back-Channel Logout URI to register at the provider.
    pub fn backchannel_logout_uri(&self) -> String {
        format!(
            "{}{}",
            self.public_url.as_str().trim_end_matches('/'),
            self.backchannel_logout_path
        )
    }

    /// The Front-Channel Logout URI to register at the provider.
    pub fn frontchannel_logout_uri(&self) -> String {
        format!(
            "{}{}",
            self.public_url.as_str().trim_end_matches('/'),
            self.frontchannel_logout_path
        )
    }

    /// `{public_url}/signout-callback-oidc`: the post-logout redirect URI to register.
    pub fn post_logout_redirect_uri(&self) -> String {
        format!(
            "{}/signout-callback-oidc",
            self.public_url.as_str().trim_end_matches('/')
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWeb {
    listen: String,
    metrics_listen: String,
    pub(super) public_url: String,
    session_key: Option<Secret>,
    pub(super) session_key_file: Option<PathBuf>,
    secure_cookies: Option<bool>,
    session_idle: String,
    session_absolute: String,
    max_requests_per_client: usize,
    body_timeout: String,
    profile_api: String,
    backchannel_logout_path: String,
    frontchannel_logout_path: String,
}

impl Default for RawWeb {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            metrics_listen: "127.0.0.1:9464".into(),
            public_url: "http://127.0.0.1:8080".into(),
            session_key: None,
            session_key_file: None,
            secure_cookies: None,
            session_idle: "8h".into(),
            session_absolute: "7d".into(),
            max_requests_per_client: 128,
            body_timeout: "15s".into(),
            profile_api: super::api::DEFAULT_API.into(),
            backchannel_logout_path: "/backchannel-logout".into(),
            frontchannel_logout_path: "/frontchannel-logout".into(),
        }
    }
}

impl RawWeb {
    pub(super) fn validate(self) -> Result<WebSettings, SettingsError> {
        let listen = self.listen.parse().map_err(|_| {
            invalid(
                "web.listen",
                format!(
                    "expected an address and port such as 127.0.0.1:8080, got {:?}",
                    self.listen
                ),
            )
        })?;
        let session_key = secret_from("web.session_key", self.session_key, self.session_key_file)?;
        if let Some(key) = &session_key {
            if key.expose().len() < 64 {
                return Err(invalid(
                    "web.session_key",
                    "must be at least 64 characters (e.g. `openssl rand -base64 64`)",
                ));
            }
        }
        let session_idle = positive("web.session_idle", &self.session_idle)?;
        let session_absolute = positive("web.session_absolute", &self.session_absolute)?;
        if session_idle > session_absolute {
            return Err(invalid(
                "web.session_idle",
                "must not be longer than web.session_absolute",
            ));
        }
        let public_url = parse_url("web.public_url", &self.public_url)?;
        Ok(WebSettings {
            listen,
            metrics_listen: match self.metrics_listen.trim() {
                "" | "off" => None,
                address => Some(address.parse().map_err(|_| {
                    invalid(
                        "web.metrics_listen",
                        format!(
                            "expected an address such as \"127.0.0.1:9464\", or \"off\", not {:?}",
                            self.metrics_listen
                        ),
                    )
                })?),
            },
            secure_cookies: self
                .secure_cookies
                .unwrap_or(public_url.scheme() == "https"),
            public_url,
            session_key,
            session_idle,
            session_absolute,
            max_requests_per_client: self.max_requests_per_client,
            body_timeout: positive("web.body_timeout", &self.body_timeout)?,
            profile_api: self.profile_api.trim().to_owned(),
            backchannel_logout_path: logout_path(
                "web.backchannel_logout_path",
                &self.backchannel_logout_path,
                "/backchannel-logout",
                None,
            )?,
            frontchannel_logout_path: logout_path(
                "web.frontchannel_logout_path",
                &self.frontchannel_logout_path,
                "/frontchannel-logout",
                Some(self.backchannel_logout_path.trim()),
            )?,
        })
    }
}

/// A logout path: a path of its own, neither one of the app's routes nor `other` (the other
/// logout path).
fn logout_path(
    key: &'static str,
    raw: &str,
    example: &str,
    other: Option<&str>,
) -> Result<String, SettingsError> {
    let path = raw.trim();
    let taken = [
        "/",
        "/signin",
        "/signin-oidc",
        "/signout",
        "/signout-callback-oidc",
        "/healthz",
        "/readyz",
        "/api/me",
    ];
    if !path.starts_with('/')
        || path.contains(char::is_whitespace)
        || taken.contains(&path)
        || other == Some(path)
    {
        return Err(invalid(
            key,
            format!("expected a path of its own such as \"{example}\""),
        ));
    }
    Ok(path.to_owned())
}
