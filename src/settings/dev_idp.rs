//! `[dev_idp]`: the development identity provider's settings. Its defaults match the shipped
//! `settings.toml`, so `tokenbridge dev-idp` and `tokenbridge serve` work together unedited.

use super::{invalid, parse_duration, SettingsError};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// What happens to a refresh token when it is redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    /// The same refresh token stays valid; none is returned on refresh.
    Off,
    /// A new refresh token each time; the old one keeps working (Entra ID).
    Rotate,
    /// A new refresh token each time; presenting an old one again is treated as theft and
    /// revokes every token of that user (Auth0, Okta, Keycloak).
    Strict,
}

#[derive(Debug, Clone)]
pub struct DevClient {
    pub client_id: String,
    /// Empty for a public client.
    pub client_secret: Secret,
    /// A public client (a single-page or mobile app): no secret, PKCE only.
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Where the provider POSTs a Back-Channel Logout token when a user's session ends.
    pub backchannel_logout_uri: Option<String>,
    /// What the provider's logout page loads in an iframe (Front-Channel Logout), with `iss`
    /// and `sid`.
    pub frontchannel_logout_uri: Option<String>,
    /// The client's certificates or public keys (PEM): it may authenticate with
    /// `private_key_jwt` signed by one of their keys.
    pub certificate_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct DevIdpSettings {
    pub listen: SocketAddr,
    pub tenant_id: String,
    pub users: Vec<String>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub rotation: Rotation,
    pub token_latency: Duration,
    pub api_latency: Duration,
    pub clients: Vec<DevClient>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDevIdp {
    listen: String,
    tenant_id: String,
    users: Vec<String>,
    access_token_ttl: String,
    refresh_token_ttl: String,
    rotation: Rotation,
    token_latency: String,
    api_latency: String,
    clients: Vec<RawDevClient>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevClient {
    client_id: String,
    #[serde(default)]
    client_secret: Option<Secret>,
    #[serde(default)]
    public: bool,
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    backchannel_logout_uri: Option<String>,
    #[serde(default)]
    frontchannel_logout_uri: Option<String>,
    #[serde(default)]
    certificate_file: Option<std::path::PathBuf>,
}

pub const DEFAULT_CLIENT_ID: &str = "tokenbridge-dev";
/// The sample single-page app's client id (a public client `dev-idp` registers by itself).
pub const DEV_SPA_CLIENT_ID: &str = "tokenbridge-spa";
pub const DEFAULT_CLIENT_SECRET: &str = "tokenbridge-dev-secret";
pub const DEFAULT_TENANT_ID: &str = "5c8f6d1e-7a4b-4c1a-9f3e-2b6d8e0a4f11";

impl Default for RawDevIdp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5556".into(),
            tenant_id: DEFAULT_TENANT_ID.into(),
            users: vec!["ada".into(), "grace".into()],
            access_token_ttl: "1h".into(),
            refresh_token_ttl: "90d".into(),
            rotation: Rotation::Rotate,
            token_latency: "0ms".into(),
            api_latency: "0ms".into(),
            clients: vec![RawDevClient {
                client_id: DEFAULT_CLIENT_ID.into(),
                client_secret: Some(Secret::new(DEFAULT_CLIENT_SECRET)),
                public: false,
                redirect_uris: vec![
                    "http://127.0.0.1:8080/signin-oidc".into(),
                    "http://localhost:8080/signin-oidc".into(),
                ],
                post_logout_redirect_uris: vec![
                    "http://127.0.0.1:8080/signout-callback-oidc".into(),
                    "http://localhost:8080/signout-callback-oidc".into(),
                ],
                backchannel_logout_uri: None,
                frontchannel_logout_uri: None,
                certificate_file: None,
            }],
        }
    }
}

/// Parses `host:port` and refuses anything that is not a loopback address: the development
/// provider accepts any user name, so it must never be reachable from another machine.
pub fn loopback_addr(key: &'static str, value: &str) -> Result<SocketAddr, SettingsError> {
    let addr = match value.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) if value.starts_with("localhost:") => value
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.find(|a| a.ip().is_loopback()))
            .ok_or_else(|| invalid(key, format!("cannot resolve {value}")))?,
        Err(_) => {
            return Err(invalid(
                key,
                format!(
                    "expected a loopback address and port such as 127.0.0.1:5556, got {value:?}"
                ),
            ))
        }
    };
    if is_loopback(addr.ip()) {
        Ok(addr)
    } else {
        Err(invalid(
            key,
            format!(
                "the development provider binds to loopback addresses only (127.0.0.0/8 or [::1]), \
                 not {}",
                addr.ip()
            ),
        ))
    }
}

pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

impl RawDevIdp {
    /// The clients' certificate files, for settings to resolve relative to the settings file.
    pub(super) fn paths_mut(&mut self) -> impl Iterator<Item = &mut Option<std::path::PathBuf>> {
        self.clients.iter_mut().map(|c| &mut c.certificate_file)
    }

    pub(super) fn validate(self) -> Result<DevIdpSettings, SettingsError> {
        let listen = loopback_addr("dev_idp.listen", &self.listen)?;
        let valid_tenant = !self.tenant_id.is_empty()
            && self
                .tenant_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid_tenant {
            return Err(invalid(
                "dev_idp.tenant_id",
                "expected a tenant id such as a GUID",
            ));
        }
        if self.clients.is_empty() {
            return Err(invalid("dev_idp.clients", "at least one client is needed"));
        }
        let mut clients = Vec::with_capacity(self.clients.len());
        for client in self.clients {
            let secret = client.client_secret.filter(|s| !s.is_empty());
            if client.client_id.is_empty() || secret.is_some() == client.public {
                return Err(invalid(
                    "dev_idp.clients",
                    "every client needs a client_id, and a client_secret unless it is public \
                     (public = true: a single-page or mobile app, which has none)",
                ));
            }
            for uri in client
                .redirect_uris
                .iter()
                .chain(&client.post_logout_redirect_uris)
                .chain(&client.backchannel_logout_uri)
                .chain(&client.frontchannel_logout_uri)
            {
                url::Url::parse(uri).map_err(|e| {
                    invalid(
                        "dev_idp.clients",
                        format!("{uri:?} is not an absolute URL ({e})"),
                    )
                })?;
            }
            if client.redirect_uris.is_empty() {
                return Err(invalid(
                    "dev_idp.clients",
                    format!("client {} has no redirect_uris", client.client_id),
                ));
            }
            clients.push(DevClient {
                client_id: client.client_id,
                client_secret: secret.unwrap_or_else(|| Secret::new("")),
                public: client.public,
                redirect_uris: client.redirect_uris,
                post_logout_redirect_uris: client.post_logout_redirect_uris,
                backchannel_logout_uri: client.backchannel_logout_uri,
                frontchannel_logout_uri: client.frontchannel_logout_uri,
                certificate_file: client.certificate_file,
            });
        }
        Ok(DevIdpSettings {
            listen,
            tenant_id: self.tenant_id,
            users: self.users,
            access_token_ttl: parse_duration("dev_idp.access_token_ttl", &self.access_token_ttl)?,
            refresh_token_ttl: parse_duration(
                "dev_idp.refresh_token_ttl",
                &self.refresh_token_ttl,
            )?,
            rotation: self.rotation,
            token_latency: parse_duration("dev_idp.token_latency", &self.token_latency)?,
            api_latency: parse_duration("dev_idp.api_latency", &self.api_latency)?,
            clients,
        })
    }
}
