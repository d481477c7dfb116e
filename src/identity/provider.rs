//! The OpenID provider as a client sees it, built on the `openidconnect` crate. Here: the
//! client's registration and the provider's metadata (discovery, cached, refreshed, and
//! refetched when an ID token names an unknown key). Each concern beside it in a file:
//! - `grants`: the authorization request, code and refresh-token redemption (new grants and
//!   client authentication land there);
//! - `id_token`: ID token validation and RFC 9207's `iss` check;
//! - `revocation`: RFC 7009 revocation and the end-session URL.

mod access_token;
mod grants;
mod id_token;
mod logout_token;
mod on_behalf_of;
mod revocation;

pub use access_token::{BearerError, BearerRules, CallerToken};
pub use logout_token::{LogoutToken, LogoutTokenError, BACKCHANNEL_EVENT};

pub use grants::Redeemed;
pub use id_token::ResponseIssuer;

use super::client_key::{Assertion, ClientKeys};
use super::error::{classify, AcquireError};
use super::http::ProviderHttp;
use super::oidc_types::{ClientWith, IdTokenClaimsOf, Metadata, OidcClient, ProviderTokenResponse};
use crate::cache::document::{self, ClientContext, IdToken, IdTokenClaims};
use crate::secret::Secret;
use crate::settings::{
    AssertionAudience, ClientAuth, ClientCredential, IdentitySettings, OfflineAccess, Prompt,
    ProviderKind, Settings,
};
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow};
use openidconnect::{
    AccessTokenHash, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndpointNotSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, SignatureVerificationError,
    TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The least time between two fetches of the provider's keys made for a token naming a key
/// not held (see `OidcProvider::reload`).
const MIN_KEY_REFETCH: Duration = Duration::from_secs(1);
use url::Url;

/// What the browser must carry from the sign-in redirect to the callback. Stored in an
/// encrypted cookie; `Debug` is redacted.
#[derive(Clone, Serialize, Deserialize)]
pub struct SignInState {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

impl std::fmt::Debug for SignInState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignInState([redacted])")
    }
}

/// Discovery results in use.
pub struct Loaded {
    client: OidcClient,
    end_session: Option<Url>,
    revocation: Option<Url>,
    /// RFC 9207: the provider puts `iss` in every authorization response.
    iss_parameter: bool,
    /// The signing keys, as `jsonwebtoken` takes them (Back-Channel Logout tokens).
    jwks: jsonwebtoken::jwk::JwkSet,
    pub context: ClientContext,
    fetched_at: Instant,
    /// Where `private_key_jwt` assertions are addressed by default.
    token_url: Url,
    /// The provider's `token_endpoint_auth_signing_alg_values_supported`, if it says.
    assertion_algorithms: Option<Vec<String>>,
}

pub struct OidcProvider {
    kind: ProviderKind,
    tenant_id: String,
    issuer: IssuerUrl,
    client_id: ClientId,
    credentials: Credentials,
    prompt: Prompt,
    offline_access: OfflineAccess,
    redirect: RedirectUrl,
    /// The scopes a sign-in asks for, beyond openid, profile and offline_access.
    sign_in_scopes: Vec<String>,
    /// The scopes of the sign-in's own access token: the profile page's API's.
    first_token_scopes: Vec<String>,
    refresh_every: Duration,
    allow_insecure_http: bool,
    http: ProviderHttp,
    loaded: tokio::sync::RwLock<Option<Arc<Loaded>>>,
    reload: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id.as_str())
            .finish_non_exhaustive()
    }
}

/// What the client proves itself with at the token and revocation endpoints.
enum Credentials {
    /// `client_secret_basic` (`basic`) or `client_secret_post`.
    Secret { secret: Secret, basic: bool },
    /// `private_key_jwt`: a fresh assertion signed with the client's key per request.
    Key {
        keys: ClientKeys,
        audience: AssertionAudience,
    },
}

fn config(e: impl std::fmt::Display) -> AcquireError {
    AcquireError::Configuration(e.to_string())
}

/// A refusal of the client (`invalid_client`, ...) with what its assertion was: the algorithm,
/// the key and its certificate's thumbprint, the audience (never the key or the assertion).
fn explained(e: AcquireError, assertion: Option<&Assertion>) -> AcquireError {
    match (e, assertion) {
        (AcquireError::Configuration(reason), Some(assertion)) => {
            AcquireError::Configuration(format!("{reason}; sent {}", assertion.described))
        }
        (e, _) => e,
    }
}

impl OidcProvider {
    pub fn new(identity: &IdentitySettings, redirect_uri: &str) -> Result<Self, AcquireError> {
        let (issuer, credential) = identity.require_client().map_err(config)?;
        let credentials = match credential {
            ClientCredential::Secret(secret) => Credentials::Secret {
                secret: secret.clone(),
                basic: identity.client_auth == ClientAuth::ClientSecretBasic,
            },
            ClientCredential::KeyFile { key, certificate } => Credentials::Key {
                keys: ClientKeys::open(key, certificate)
                    .map_err(|e| config(format!("identity.client_key_file: {e}")))?,
                audience: identity.client_assertion_audience,
            },
        };
        // Without named APIs' settings: `identity.scopes`, else Graph's profile.
        let scopes = match identity.scopes.as_slice() {
            [] => vec!["User.Read".to_owned()],
            scopes => scopes.to_vec(),
        };
        Ok(Self {
            kind: identity.provider,
            tenant_id: identity.tenant_id.clone(),
            issuer: IssuerUrl::new(issuer).map_err(config)?,
            client_id: ClientId::new(identity.client_id.clone()),
            credentials,
            prompt: identity.prompt,
            offline_access: identity.offline_access,
            redirect: RedirectUrl::new(redirect_uri.to_owned()).map_err(config)?,
            sign_in_scopes: scopes.clone(),
            first_token_scopes: scopes,
            refresh_every: identity.metadata_refresh,
            allow_insecure_http: identity.allow_insecure_http,
            http: ProviderHttp::new(identity.http_timeout, identity.max_response_size)
                .map_err(config)?,
            loaded: tokio::sync::RwLock::new(None),
            reload: tokio::sync::Mutex::new(()),
        })
    }

    /// A fresh client assertion for a request to the provider (`private_key_jwt`), None with
    /// a client secret.
    fn client_assertion(&self, loaded: &Loaded) -> Result<Option<Assertion>, AcquireError> {
        let Credentials::Key { keys, audience } = &self.credentials else {
            return Ok(None);
        };
        let audience = match audience {
            AssertionAudience::TokenEndpoint => loaded.token_url.as_str(),
            AssertionAudience::Issuer => self.issuer.as_str(),
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        keys.assertion(
            self.client_id.as_str(),
            audience,
            loaded.assertion_algorithms.as_deref(),
            now,
        )
        .map(Some)
        .map_err(config)
    }

    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The key a provider session (`sid`) of this issuer is recorded by: a hash, no value the
    /// provider gave (see [`crate::activity::provider_sessions`]).
    pub fn session_key(&self, sid: &str) -> String {
        crate::cache::replay::token_key(self.issuer(), sid)
    }

    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// The client `settings` describe, a sign-in asking for every API's scopes (or
    /// `identity.scopes`) and its access token for the profile page's API.
    pub fn from_settings(settings: &Settings) -> Result<Self, AcquireError> {
        let mut provider = Self::new(&settings.identity, &settings.web.redirect_uri())?;
        provider.sign_in_scopes = settings.sign_in_scopes();
        provider.first_token_scopes = settings.scopes_of(settings.profile_api());
        Ok(provider)
    }

    /// The scopes a sign-in asks for, beyond what every sign-in asks for (openid, profile,
    /// offline_access).
    pub fn sign_in_scopes(&self) -> Vec<&str> {
        self.sign_in_scopes.iter().map(String::as_str).collect()
    }

    /// The scopes of the access token a sign-in's code is redeemed for.
    pub fn first_token_scopes(&self) -> Vec<&str> {
        self.first_token_scopes.iter().map(String::as_str).collect()
    }

    /// Whether `scopes` are what a sign-in asks for (in any order or case).
    fn are_sign_in_scopes(&self, scopes: &[&str]) -> bool {
        let has = |set: &[&str], s: &str| set.iter().any(|t| t.eq_ignore_ascii_case(s));
        let sign_in = self.sign_in_scopes();
        scopes.iter().all(|s| has(&sign_in, s)) && sign_in.iter().all(|s| has(scopes, s))
    }

    /// Current metadata, fetched when missing or older than `metadata_refresh`. A failed
    /// refresh keeps serving the metadata already held.
    pub async fn metadata(&self) -> Result<Arc<Loaded>, AcquireError> {
        if let Some(loaded) = self.loaded.read().await.as_ref() {
            if loaded.fetched_at.elapsed() < self.refresh_every {
                return Ok(loaded.clone());
            }
        }
        self.reload(None).await
    }

    /// Fetches metadata and keys again: when they are stale, or (`outdated`) when a token
    /// named a key that the metadata we validated with does not have. One fetch at a time;
    /// whoever waited for it uses its result. A token with an unknown key can come from anyone
    /// (a bearer token, a logout token): such refetches are at most one per
    /// [`MIN_KEY_REFETCH`], the next one waiting, so strangers cannot make this process hammer
    /// the provider, and a key the provider really rotated to is still found.
    async fn reload(&self, outdated: Option<&Arc<Loaded>>) -> Result<Arc<Loaded>, AcquireError> {
        let _single_flight = self.reload.lock().await;
        let current = self.loaded.read().await.clone();
        if let Some(loaded) = &current {
            let usable = match outdated {
                Some(seen) => !Arc::ptr_eq(seen, loaded),
                None => loaded.fetched_at.elapsed() < self.refresh_every,
            };
            if usable {
                return Ok(loaded.clone());
            }
            if outdated.is_some() {
                let wait = MIN_KEY_REFETCH.saturating_sub(loaded.fetched_at.elapsed());
                tokio::time::sleep(wait).await;
            }
        }
        match self.discover().await {
            Ok(loaded) => {
                let loaded = Arc::new(loaded);
                *self.loaded.write().await = Some(loaded.clone());
                Ok(loaded)
            }
            Err(e) => match current {
                Some(stale) => {
                    tracing::warn!(error = %e, "provider metadata refresh failed; keeping what was loaded");
                    Ok(stale)
                }
                None => Err(e),
            },
        }
    }

    async fn discover(&self) -> Result<Loaded, AcquireError> {
        let metadata = Metadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| AcquireError::Transient {
                reason: format!(
                    "cannot load the provider's metadata from {}: {e}",
                    self.issuer.as_str()
                ),
                retry_after: None,
            })?;
        let token_url = metadata
            .token_endpoint()
            .cloned()
            .ok_or_else(|| config("the provider's metadata has no token endpoint"))?;
        let extra = metadata.additional_metadata();
        super::transport::check_endpoints(
            [
                ("token", token_url.as_str()),
                ("JWKS", metadata.jwks_uri().as_str()),
            ]
            .into_iter()
            .chain(
                extra
                    .revocation_endpoint
                    .as_deref()
                    .map(|u| ("revocation", u)),
            )
            .chain(
                extra
                    .end_session_endpoint
                    .as_deref()
                    .map(|u| ("end-session", u)),
            ),
            self.allow_insecure_http,
        )?;
        let end_session = extra
            .end_session_endpoint
            .as_deref()
            .and_then(|u| Url::parse(u).ok());
        let revocation = extra
            .revocation_endpoint
            .as_deref()
            .and_then(|u| Url::parse(u).ok());
        let iss_parameter = extra
            .authorization_response_iss_parameter_supported
            .unwrap_or(false);
        let environment = self
            .issuer
            .url()
            .host_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let realm = match self.kind {
            ProviderKind::Entra => self.tenant_id.clone(),
            // MSAL Python's choice for other providers: the token endpoint's first path segment.
            ProviderKind::Oidc => token_url
                .url()
                .path_segments()
                .and_then(|mut s| s.next())
                .unwrap_or_default()
                .to_owned(),
        };
        let assertion_algorithms = metadata
            .token_endpoint_auth_signing_alg_values_supported()
            .map(|algs| {
                algs.iter()
                    .filter_map(|alg| serde_json::to_value(alg).ok()?.as_str().map(str::to_owned))
                    .collect()
            });
        let token = token_url.url().clone();
        let mut client = ClientWith::<EndpointNotSet, EndpointNotSet>::new(
            self.client_id.clone(),
            metadata.issuer().clone(),
            metadata.jwks().clone(),
        )
        .set_auth_uri(metadata.authorization_endpoint().clone())
        .set_token_uri(token_url)
        .set_redirect_uri(self.redirect.clone())
        // With no secret (private_key_jwt), the body carries client_id beside the assertion.
        .set_auth_type(AuthType::RequestBody);
        if let Credentials::Secret { secret, basic } = &self.credentials {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
            if *basic {
                client = client.set_auth_type(AuthType::BasicAuth);
            }
        }
        Ok(Loaded {
            jwks: logout_token::key_set(metadata.jwks()),
            client,
            end_session,
            revocation,
            iss_parameter,
            context: ClientContext {
                client_id: self.client_id.as_str().to_owned(),
                environment,
                realm,
            },
            fetched_at: Instant::now(),
            token_url: token,
            assertion_algorithms,
        })
    }
}
