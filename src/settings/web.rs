//! `[identity]`, `[api]` and `[web]`: what `serve` (and later `worker`) need. Shape is checked
//! when settings load; that the required keys are set is checked by the commands that use them.

use super::{invalid, parse_duration, secret_from, SettingsError};
use crate::secret::Secret;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Which kind of OpenID provider `identity` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Microsoft Entra ID (or the development provider, which looks like it): authority
    /// `{instance}/{tenant_id}/v2.0`, `client_info`, home account id `uid.utid`.
    Entra,
    /// Any other certified OpenID provider, by its issuer URL; home account id `sub`.
    Oidc,
}

/// The `prompt` sent with every sign-in (OpenID Connect Core 3.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Send no `prompt`: the provider decides (not `prompt=none`, which forbids any page).
    None,
    /// Ask the user to consent again. Providers that follow the spec grant `offline_access`
    /// (a refresh token) only with it.
    Consent,
    /// Ask the user to sign in again even with a session at the provider.
    Login,
    /// Let the user choose among their accounts.
    SelectAccount,
}

/// How a sign-in asks for a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineAccess {
    /// The `offline_access` scope (OpenID Connect Core 11): Entra ID, Keycloak, Auth0, Okta.
    Scope,
    /// Google's `access_type=offline` parameter instead (Google refuses the scope with
    /// `invalid_scope`).
    AccessType,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub provider: ProviderKind,
    pub instance: Url,
    pub tenant_id: String,
    /// `provider = "oidc"`: the issuer exactly as configured (OpenID Discovery compares it with
    /// the provider's by string: `https://accounts.google.com` must not become `…com/`).
    pub issuer: Option<String>,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_auth: ClientAuth,
    pub prompt: Prompt,
    pub offline_access: OfflineAccess,
    pub scopes: Vec<String>,
    pub metadata_refresh: Duration,
    pub http_timeout: Duration,
    /// An access token with less than this left is refreshed (at most half its lifetime).
    pub refresh_margin: Duration,
}

impl IdentitySettings {
    /// The issuer, exactly: `{instance}/{tenant_id}/v2.0` for Entra ID, `issuer` as written
    /// otherwise.
    pub fn issuer_url(&self) -> Result<String, SettingsError> {
        match self.provider {
            ProviderKind::Entra => {
                if self.tenant_id.is_empty() {
                    return Err(invalid(
                        "identity.tenant_id",
                        "is required for provider = \"entra\"",
                    ));
                }
                let base = self.instance.as_str().trim_end_matches('/');
                Ok(format!("{base}/{}/v2.0", self.tenant_id))
            }
            ProviderKind::Oidc => self
                .issuer
                .clone()
                .ok_or_else(|| invalid("identity.issuer", "is required for provider = \"oidc\"")),
        }
    }

    /// Checks what signing users in needs: a client id, a client secret, an issuer.
    pub fn require_client(&self) -> Result<(String, &Secret), SettingsError> {
        if self.client_id.is_empty() {
            return Err(invalid("identity.client_id", "is required"));
        }
        let secret = self.client_secret.as_ref().ok_or_else(|| {
            invalid(
                "identity.client_secret",
                "is required: set TOKENBRIDGE_IDENTITY__CLIENT_SECRET or identity.client_secret_file",
            )
        })?;
        Ok((self.issuer_url()?, secret))
    }
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub base_url: Url,
    /// The resource the profile page and the worker call, relative to `base_url` (`/me`).
    pub path: String,
    pub timeout: Duration,
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
pub(super) struct RawIdentity {
    provider: ProviderKind,
    instance: String,
    tenant_id: String,
    issuer: String,
    client_id: String,
    client_secret: Option<Secret>,
    pub(super) client_secret_file: Option<PathBuf>,
    client_auth: ClientAuth,
    prompt: Prompt,
    offline_access: OfflineAccess,
    scopes: Vec<String>,
    metadata_refresh: String,
    http_timeout: String,
    refresh_margin: String,
}

impl Default for RawIdentity {
    fn default() -> Self {
        Self {
            provider: ProviderKind::Entra,
            instance: "https://login.microsoftonline.com".into(),
            tenant_id: String::new(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            client_secret_file: None,
            client_auth: ClientAuth::ClientSecretBasic,
            prompt: Prompt::None,
            offline_access: OfflineAccess::Scope,
            scopes: vec!["User.Read".into()],
            metadata_refresh: "1h".into(),
            http_timeout: "10s".into(),
            refresh_margin: "5m".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawApi {
    base_url: String,
    path: String,
    timeout: String,
}

impl Default for RawApi {
    fn default() -> Self {
        Self {
            base_url: "https://graph.microsoft.com/v1.0".into(),
            path: "/me".into(),
            timeout: "10s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWeb {
    listen: String,
    metrics_listen: String,
    public_url: String,
    session_key: Option<Secret>,
    pub(super) session_key_file: Option<PathBuf>,
    secure_cookies: Option<bool>,
    session_idle: String,
    session_absolute: String,
    max_requests_per_client: usize,
    body_timeout: String,
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
        }
    }
}

fn parse_url(key: &'static str, value: &str) -> Result<Url, SettingsError> {
    let url =
        Url::parse(value).map_err(|e| invalid(key, format!("expected an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(key, "expected an http:// or https:// URL"));
    }
    Ok(url)
}

fn positive(key: &'static str, value: &str) -> Result<Duration, SettingsError> {
    let d = parse_duration(key, value)?;
    if d.is_zero() {
        return Err(invalid(key, "must be longer than 0s"));
    }
    Ok(d)
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl RawIdentity {
    pub(super) fn validate(self) -> Result<IdentitySettings, SettingsError> {
        if matches!(
            self.tenant_id.as_str(),
            "common" | "organizations" | "consumers"
        ) {
            return Err(invalid(
                "identity.tenant_id",
                "use your tenant's id: tokens are cached per tenant, and a multi-tenant authority \
                 has no single issuer to validate",
            ));
        }
        // Entra ID's discovery names the tenant GUID as the issuer, so a domain name could
        // never validate a token: refused here rather than at the first sign-in.
        if self.provider == ProviderKind::Entra
            && !self.tenant_id.is_empty()
            && !is_guid(&self.tenant_id)
        {
            return Err(invalid(
                "identity.tenant_id",
                format!(
                    "expected the tenant's id, a GUID such as \
                     00000000-0000-0000-0000-000000000000 (Entra admin center: Overview, \
                     \"Tenant ID\"), not {:?}: a domain name cannot match the issuer Entra ID names",
                    self.tenant_id.chars().take(80).collect::<String>()
                ),
            ));
        }
        if self
            .scopes
            .iter()
            .any(|s| s.trim().is_empty() || s.contains(char::is_whitespace))
        {
            return Err(invalid(
                "identity.scopes",
                "expected a list of scopes such as [\"User.Read\"]",
            ));
        }
        Ok(IdentitySettings {
            provider: self.provider,
            instance: parse_url("identity.instance", &self.instance)?,
            tenant_id: self.tenant_id,
            issuer: match self.issuer.trim() {
                "" => None,
                issuer => {
                    parse_url("identity.issuer", issuer)?;
                    Some(issuer.to_owned())
                }
            },
            client_id: self.client_id,
            client_secret: secret_from(
                "identity.client_secret",
                self.client_secret,
                self.client_secret_file,
            )?,
            client_auth: self.client_auth,
            prompt: self.prompt,
            offline_access: self.offline_access,
            scopes: self.scopes,
            metadata_refresh: positive("identity.metadata_refresh", &self.metadata_refresh)?,
            http_timeout: positive("identity.http_timeout", &self.http_timeout)?,
            refresh_margin: parse_duration("identity.refresh_margin", &self.refresh_margin)?,
        })
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
        Ok(ApiSettings {
            base_url: parse_url("api.base_url", &self.base_url)?,
            path: path.to_owned(),
            timeout: positive("api.timeout", &self.timeout)?,
        })
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
        })
    }
}
