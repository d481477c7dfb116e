//! `[identity]`: the OpenID provider users sign in with, and this client's registration there.
//! Shape is checked when settings load; that the required keys are set is checked by the
//! commands that use them.

use super::{
    insecure_transport, invalid, parse_duration, parse_size, parse_url, positive, secret_from,
    SettingsError,
};
use crate::secret::Secret;
use serde::Deserialize;
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

/// How the client authenticates at the token and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with the client's own key (`identity.client_key_file`), no shared secret.
    PrivateKeyJwt,
}

/// The `aud` of a `private_key_jwt` assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssertionAudience {
    /// The token endpoint's URL: what Entra ID requires and RFC 7523 describes.
    TokenEndpoint,
    /// The issuer identifier, for providers that ask for it.
    Issuer,
}

/// What the client proves itself with.
#[derive(Debug, Clone, Copy)]
pub enum ClientCredential<'a> {
    Secret(&'a Secret),
    KeyFile {
        key: &'a std::path::Path,
        certificate: Option<&'a std::path::Path>,
    },
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
    /// `private_key_jwt`: the client's key (or a directory of keys), PEM.
    pub client_key_file: Option<PathBuf>,
    /// `private_key_jwt`: the key's certificate, PEM, when it is not in the key file.
    pub client_certificate_file: Option<PathBuf>,
    pub client_assertion_audience: AssertionAudience,
    pub prompt: Prompt,
    pub offline_access: OfflineAccess,
    pub scopes: Vec<String>,
    pub metadata_refresh: Duration,
    pub http_timeout: Duration,
    /// The largest answer read from the provider (discovery, keys, token, revocation): a
    /// larger one is a transient error for that request, read no further.
    pub max_response_size: usize,
    /// An access token with less than this left is refreshed (at most half its lifetime).
    pub refresh_margin: Duration,
    /// Plain http to a provider on another machine (and to the endpoints its metadata names)
    /// is refused unless this is set.
    pub allow_insecure_http: bool,
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

    /// Checks what signing users in needs: a client id, its credential (a client secret, or
    /// with `private_key_jwt` a key file), an issuer.
    pub fn require_client(&self) -> Result<(String, ClientCredential<'_>), SettingsError> {
        if self.client_id.is_empty() {
            return Err(invalid("identity.client_id", "is required"));
        }
        let credential = match self.client_auth {
            ClientAuth::PrivateKeyJwt => ClientCredential::KeyFile {
                key: self.client_key_file.as_deref().ok_or_else(|| {
                    invalid(
                        "identity.client_key_file",
                        "is required with client_auth = \"private_key_jwt\": the client's \
                         private key (PEM), or a directory of them",
                    )
                })?,
                certificate: self.client_certificate_file.as_deref(),
            },
            ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost => {
                ClientCredential::Secret(self.client_secret.as_ref().ok_or_else(|| {
                    invalid(
                        "identity.client_secret",
                        "is required: set TOKENBRIDGE_IDENTITY__CLIENT_SECRET or \
                         identity.client_secret_file (or use client_auth = \"private_key_jwt\")",
                    )
                })?)
            }
        };
        Ok((self.issuer_url()?, credential))
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
    pub(super) client_key_file: Option<PathBuf>,
    pub(super) client_certificate_file: Option<PathBuf>,
    client_assertion_audience: AssertionAudience,
    prompt: Prompt,
    offline_access: OfflineAccess,
    scopes: Vec<String>,
    metadata_refresh: String,
    http_timeout: String,
    max_response_size: String,
    refresh_margin: String,
    allow_insecure_http: bool,
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
            client_key_file: None,
            client_certificate_file: None,
            client_assertion_audience: AssertionAudience::TokenEndpoint,
            prompt: Prompt::None,
            offline_access: OfflineAccess::Scope,
            scopes: Vec::new(),
            metadata_refresh: "1h".into(),
            http_timeout: "10s".into(),
            max_response_size: "1MiB".into(),
            refresh_margin: "5m".into(),
            allow_insecure_http: false,
        }
    }
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
        let secure = |key: &'static str, url: &Url| match insecure_transport(
            url,
            self.allow_insecure_http,
        ) {
            Some(problem) => Err(invalid(key, problem)),
            None => Ok(()),
        };
        let private_key_jwt = self.client_auth == ClientAuth::PrivateKeyJwt;
        if private_key_jwt && (self.client_secret.is_some() || self.client_secret_file.is_some()) {
            return Err(invalid(
                "identity.client_secret",
                "is set, but client_auth = \"private_key_jwt\" signs with identity.client_key_file: \
                 remove the secret (and client_secret_file) so no secret is left to leak",
            ));
        }
        if !private_key_jwt && self.client_key_file.is_some() {
            return Err(invalid(
                "identity.client_key_file",
                "is used with client_auth = \"private_key_jwt\" only: set that, or remove the key file",
            ));
        }
        let instance = parse_url("identity.instance", &self.instance)?;
        if self.provider == ProviderKind::Entra {
            secure("identity.instance", &instance)?;
        }
        Ok(IdentitySettings {
            provider: self.provider,
            instance,
            tenant_id: self.tenant_id,
            issuer: match self.issuer.trim() {
                "" => None,
                issuer => {
                    let url = parse_url("identity.issuer", issuer)?;
                    if self.provider == ProviderKind::Oidc {
                        secure("identity.issuer", &url)?;
                    }
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
            client_key_file: self.client_key_file.filter(|p| !p.as_os_str().is_empty()),
            client_certificate_file: self
                .client_certificate_file
                .filter(|p| !p.as_os_str().is_empty()),
            client_assertion_audience: self.client_assertion_audience,
            prompt: self.prompt,
            offline_access: self.offline_access,
            scopes: self.scopes,
            metadata_refresh: positive("identity.metadata_refresh", &self.metadata_refresh)?,
            http_timeout: positive("identity.http_timeout", &self.http_timeout)?,
            max_response_size: parse_size("identity.max_response_size", &self.max_response_size)?,
            refresh_margin: parse_duration("identity.refresh_margin", &self.refresh_margin)?,
            allow_insecure_http: self.allow_insecure_http,
        })
    }
}
