//! The OpenID provider as a client sees it: discovery (cached, refreshed, and refetched when an
//! ID token names an unknown key), the authorization request, code redemption with ID token
//! validation, and refresh-token redemption. Built on the `openidconnect` crate.

use super::error::{classify, AcquireError};
use super::http::ProviderHttp;
use super::oidc_types::{ClientWith, IdTokenClaimsOf, Metadata, OidcClient, ProviderTokenResponse};
use crate::cache::document::{self, ClientContext, IdToken, IdTokenClaims};
use crate::secret::Secret;
use crate::settings::{ClientAuth, IdentitySettings, OfflineAccess, Prompt, ProviderKind};
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
    pub context: ClientContext,
    fetched_at: Instant,
}

pub struct OidcProvider {
    kind: ProviderKind,
    tenant_id: String,
    issuer: IssuerUrl,
    client_id: ClientId,
    secret: Secret,
    auth: ClientAuth,
    prompt: Prompt,
    offline_access: OfflineAccess,
    redirect: RedirectUrl,
    api_scopes: Vec<String>,
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

fn config(e: impl std::fmt::Display) -> AcquireError {
    AcquireError::Configuration(e.to_string())
}

fn seconds(value: &Option<serde_json::Value>) -> Option<i64> {
    match value.as_ref()? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl OidcProvider {
    pub fn new(identity: &IdentitySettings, redirect_uri: &str) -> Result<Self, AcquireError> {
        let (issuer, secret) = identity.require_client().map_err(config)?;
        Ok(Self {
            kind: identity.provider,
            tenant_id: identity.tenant_id.clone(),
            issuer: IssuerUrl::new(issuer).map_err(config)?,
            client_id: ClientId::new(identity.client_id.clone()),
            secret: secret.clone(),
            auth: identity.client_auth,
            prompt: identity.prompt,
            offline_access: identity.offline_access,
            redirect: RedirectUrl::new(redirect_uri.to_owned()).map_err(config)?,
            api_scopes: identity.scopes.clone(),
            refresh_every: identity.metadata_refresh,
            allow_insecure_http: identity.allow_insecure_http,
            http: ProviderHttp::new(identity.http_timeout, identity.max_response_size)
                .map_err(config)?,
            loaded: tokio::sync::RwLock::new(None),
            reload: tokio::sync::Mutex::new(()),
        })
    }

    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// The scopes tokenbridge asks for: the API's, plus what MSAL always adds.
    pub fn scopes(&self) -> Vec<&str> {
        self.api_scopes.iter().map(String::as_str).collect()
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

    /// Fetches metadata and keys again: when they are stale, or (`outdated`) when an ID token
    /// named a key that the metadata we validated with does not have. One fetch at a time;
    /// whoever waited for it uses its result.
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
        let client = ClientWith::<EndpointNotSet, EndpointNotSet>::new(
            self.client_id.clone(),
            metadata.issuer().clone(),
            metadata.jwks().clone(),
        )
        .set_client_secret(ClientSecret::new(self.secret.expose().to_owned()))
        .set_auth_uri(metadata.authorization_endpoint().clone())
        .set_token_uri(token_url)
        .set_redirect_uri(self.redirect.clone())
        .set_auth_type(match self.auth {
            ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
            ClientAuth::ClientSecretPost => AuthType::RequestBody,
        });
        Ok(Loaded {
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
        })
    }

    /// The provider URL to send the browser to, and what the callback must check.
    pub async fn begin_sign_in(
        &self,
        login_hint: Option<&str>,
    ) -> Result<(Url, SignInState), AcquireError> {
        let loaded = self.metadata().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = loaded
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        request = match self.offline_access {
            OfflineAccess::Scope => request.add_scope(Scope::new("offline_access".into())),
            OfflineAccess::AccessType => request.add_extra_param("access_type", "offline"),
        };
        for scope in &self.api_scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        // The answer comes back in the query: a form_post answer is a cross-site POST, which
        // browsers send without the SameSite=Lax sign-in cookie.
        request = request.add_extra_param("response_mode", "query");
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        request = match self.prompt {
            Prompt::None => request,
            Prompt::Consent => request.add_prompt(CoreAuthPrompt::Consent),
            Prompt::Login => request.add_prompt(CoreAuthPrompt::Login),
            Prompt::SelectAccount => request.add_prompt(CoreAuthPrompt::SelectAccount),
        };
        let (url, state, nonce) = request.url();
        Ok((
            url,
            SignInState {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
            },
        ))
    }

    /// Redeems an authorization code and validates the ID token (signature, issuer, audience,
    /// expiry, nonce, at_hash, and for Entra ID the tenant).
    pub async fn redeem_code(
        &self,
        code: &str,
        sign_in: &SignInState,
    ) -> Result<document::TokenResponse, AcquireError> {
        let loaded = self.metadata().await?;
        let mut request = loaded
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(sign_in.verifier.clone()));
        if self.kind == ProviderKind::Entra {
            request = request.add_extra_param("client_info", "1");
        }
        let response = request.request_async(&self.http).await.map_err(classify)?;
        let nonce = Nonce::new(sign_in.nonce.clone());
        // An answer that fails validation is refused as a possible attack, not reported as a
        // configuration problem.
        let id_token = self
            .validate(loaded, &response, Some(&nonce))
            .await
            .map_err(|e| match e {
                AcquireError::Configuration(reason) => AcquireError::Rejected(reason),
                other => other,
            })?;
        if id_token.is_none() {
            return Err(config(
                "the provider returned no ID token (is `openid` allowed for this client?)",
            ));
        }
        Ok(to_document(&response, id_token))
    }

    /// Redeems a refresh token with the metadata `loaded` (fetched before the caller took the
    /// user's lease, so nothing but this request runs under it). The answer's ID token is not
    /// validated yet: the caller saves the new tokens first, so a validation problem can never
    /// lose a refresh token the provider has already rotated.
    pub async fn redeem_refresh_token(
        &self,
        loaded: &Arc<Loaded>,
        refresh_token: &Secret,
        scopes: &[&str],
    ) -> Result<Redeemed, AcquireError> {
        let token = RefreshToken::new(refresh_token.expose().to_owned());
        let mut request = loaded.client.exchange_refresh_token(&token);
        if self.kind == ProviderKind::Entra {
            // MSAL's request: Entra ID issues a token for the scopes asked.
            for scope in ["openid", "profile", "offline_access"]
                .into_iter()
                .chain(scopes.iter().copied())
            {
                request = request.add_scope(Scope::new(scope.to_owned()));
            }
            request = request.add_extra_param("client_info", "1");
        }
        // Other providers: no `scope`, which RFC 6749 section 6 defines as "the scopes the
        // refresh token was granted". Asking for offline_access again fails with invalid_scope
        // at a provider that granted the token without it.
        let response = request.request_async(&self.http).await.map_err(classify)?;
        Ok(Redeemed {
            response,
            loaded: loaded.clone(),
        })
    }

    /// Validates a refresh answer's ID token with the keys already held, without any network
    /// request; an error also when the token names a key not yet fetched.
    pub fn check_id_token_offline(
        &self,
        redeemed: &Redeemed,
    ) -> Result<Option<IdToken>, AcquireError> {
        self.check(&redeemed.loaded, &redeemed.response, None)
    }

    /// Validates a refresh answer's ID token, fetching the provider's keys again when it names
    /// one not yet seen.
    pub async fn validate_id_token(
        &self,
        redeemed: &Redeemed,
    ) -> Result<Option<IdToken>, AcquireError> {
        self.validate(redeemed.loaded.clone(), &redeemed.response, None)
            .await
    }

    async fn validate(
        &self,
        loaded: Arc<Loaded>,
        response: &ProviderTokenResponse,
        nonce: Option<&Nonce>,
    ) -> Result<Option<IdToken>, AcquireError> {
        match check_claims(&loaded, response, nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The provider may have rotated its keys: fetch them once more.
                let reloaded = self.reload(Some(&loaded)).await?;
                self.check(&reloaded, response, nonce)
            }
            _ => self.check(&loaded, response, nonce),
        }
    }

    /// Validates the ID token of `response` with the keys in `loaded` (no network).
    fn check(
        &self,
        loaded: &Loaded,
        response: &ProviderTokenResponse,
        nonce: Option<&Nonce>,
    ) -> Result<Option<IdToken>, AcquireError> {
        let Some(id_token) = response.id_token() else {
            return Ok(None);
        };
        let claims = check_claims(loaded, response, nonce)
            .map_err(|e| config(format!("the ID token is not valid: {e}")))?;
        let extra = claims.additional_claims();
        if self.kind == ProviderKind::Entra
            && extra
                .tid
                .as_deref()
                .is_some_and(|tid| tid != self.tenant_id)
        {
            return Err(config("the ID token was issued for another tenant"));
        }
        Ok(Some(IdToken {
            raw: Secret::new(id_token.to_string()),
            claims: IdTokenClaims {
                sub: claims.subject().as_str().to_owned(),
                oid: extra.oid.clone(),
                tid: extra.tid.clone(),
                preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
                upn: extra.upn.clone(),
                name: claims
                    .name()
                    .and_then(|n| n.get(None))
                    .map(|n| n.as_str().to_owned()),
            },
        }))
    }

    /// RFC 9207's mix-up defence: an authorization response's `iss` must be the issuer this app
    /// sent the user to, compared as strings; a provider that advertises the parameter must
    /// send it. A response without `iss` from one that does not advertise it is accepted.
    pub async fn check_response_issuer(&self, iss: Option<&str>) -> Result<(), ResponseIssuer> {
        let loaded = self.metadata().await.map_err(ResponseIssuer::Unavailable)?;
        match iss {
            Some(iss) if iss == self.issuer.as_str() => Ok(()),
            Some(_) => Err(ResponseIssuer::Mismatch),
            None if loaded.iss_parameter => Err(ResponseIssuer::Missing),
            None => Ok(()),
        }
    }

    /// RFC 7009: asks the provider to revoke a refresh token. `Ok(false)` when the provider
    /// has no revocation endpoint (Entra ID has none). The request is made here rather than by
    /// the OAuth library, which refuses any endpoint but https, loopback included.
    pub async fn revoke_refresh_token(&self, refresh_token: &Secret) -> Result<bool, AcquireError> {
        let loaded = self.metadata().await?;
        let Some(url) = loaded.revocation.clone() else {
            return Ok(false);
        };
        let (body, authorization) = self.revocation_body(refresh_token);
        let mut request = openidconnect::http::Request::builder()
            .method(openidconnect::http::Method::POST)
            .uri(url.as_str())
            .header(
                openidconnect::http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(openidconnect::http::header::ACCEPT, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(openidconnect::http::header::AUTHORIZATION, authorization);
        }
        let request = request.body(body).map_err(config)?;
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| AcquireError::Transient {
                reason: format!("the provider did not revoke the refresh token: {e}"),
                retry_after: e.retry_after(),
            })?;
        if response.status().is_success() {
            return Ok(true);
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            error: Option<String>,
        }
        let code = serde_json::from_slice::<ErrorBody>(response.body())
            .ok()
            .and_then(|b| b.error)
            .unwrap_or_default();
        Err(config(format!(
            "the provider refused to revoke the refresh token: HTTP {} {}",
            response.status().as_u16(),
            code.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(40)
                .collect::<String>()
        )))
    }

    /// An RFC 7009 request's form body, and its `Authorization` header for client_secret_basic
    /// (each part form-encoded before Basic encoding, RFC 6749 section 2.3.1).
    fn revocation_body(&self, refresh_token: &Secret) -> (Vec<u8>, Option<String>) {
        use base64::Engine as _;
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", refresh_token.expose())
            .append_pair("token_type_hint", "refresh_token");
        let authorization = match self.auth {
            ClientAuth::ClientSecretBasic => {
                let pair = format!(
                    "{}:{}",
                    encode(self.client_id.as_str()),
                    encode(self.secret.expose())
                );
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            ClientAuth::ClientSecretPost => {
                form.append_pair("client_id", self.client_id.as_str())
                    .append_pair("client_secret", self.secret.expose());
                None
            }
        };
        (form.finish().into_bytes(), authorization)
    }

    /// The provider's end-session URL with our post-logout redirect, if it has one.
    pub async fn end_session_url(&self, post_logout_redirect_uri: &str) -> Option<Url> {
        let loaded = self.metadata().await.ok()?;
        let mut url = loaded.end_session.clone()?;
        url.query_pairs_mut()
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri)
            .append_pair("client_id", self.client_id.as_str());
        Some(url)
    }
}

/// Clock skew allowed when checking an ID token's expiry, as Microsoft's and most OpenID
/// libraries allow: a provider whose clock runs a little behind ours is not an error.
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Signature, issuer, audience, expiry (with [`CLOCK_SKEW`]), nonce and `at_hash`.
fn check_claims(
    loaded: &Loaded,
    response: &ProviderTokenResponse,
    nonce: Option<&Nonce>,
) -> Result<IdTokenClaimsOf, ClaimsVerificationError> {
    let Some(id_token) = response.id_token() else {
        return Err(ClaimsVerificationError::Other("no ID token".into()));
    };
    let verifier = loaded
        .client
        .id_token_verifier()
        .set_time_fn(|| chrono::Utc::now() - CLOCK_SKEW);
    let claims = match nonce {
        Some(nonce) => id_token.claims(&verifier, nonce),
        None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
    }?;
    if let Some(expected) = claims.access_token_hash() {
        let alg = id_token
            .signing_alg()
            .map_err(ClaimsVerificationError::SignatureVerification)?;
        let key = id_token
            .signing_key(&verifier)
            .map_err(ClaimsVerificationError::SignatureVerification)?;
        let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
            .map_err(|e| ClaimsVerificationError::Other(e.to_string()))?;
        if &actual != expected {
            return Err(ClaimsVerificationError::InvalidNonce(
                "at_hash does not match the access token".into(),
            ));
        }
    }
    Ok(claims.clone())
}

/// Why an authorization response's issuer is refused (RFC 9207).
#[derive(Debug)]
pub enum ResponseIssuer {
    /// `iss` names another issuer: the response may come from a provider mixed up with ours.
    Mismatch,
    /// The provider advertises `iss` but the response has none.
    Missing,
    /// The provider's metadata could not be loaded to tell.
    Unavailable(AcquireError),
}

/// A refresh token redeemed: the provider's answer, its ID token not yet validated.
pub struct Redeemed {
    response: ProviderTokenResponse,
    loaded: Arc<Loaded>,
}

impl std::fmt::Debug for Redeemed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redeemed([redacted])")
    }
}

impl Redeemed {
    /// The tokens to store, with `id_token` once it is validated (None until then).
    pub fn tokens(&self, id_token: Option<IdToken>) -> document::TokenResponse {
        to_document(&self.response, id_token)
    }
}

fn to_document(
    response: &ProviderTokenResponse,
    id_token: Option<IdToken>,
) -> document::TokenResponse {
    let extra = response.extra_fields().extra_fields();
    document::TokenResponse {
        access_token: Secret::new(response.access_token().secret().clone()),
        token_type: Some("Bearer".into()),
        expires_in: response
            .expires_in()
            .and_then(|d| i64::try_from(d.as_secs()).ok()),
        ext_expires_in: seconds(&extra.ext_expires_in),
        refresh_in: seconds(&extra.refresh_in),
        refresh_token: response
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone())),
        id_token,
        scope: response.scopes().map(|scopes| {
            scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        }),
        client_info: extra.client_info.clone(),
        family_id: extra.foci.clone(),
    }
}
