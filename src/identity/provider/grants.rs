//! The grants: the authorization request, code redemption, refresh-token redemption, and the
//! provider's answer as a cache document's token response. Every new grant lands here.

use super::*;

impl OidcProvider {
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
        for scope in &self.sign_in_scopes {
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
            // MSAL's request: one resource's scopes (a sign-in may have asked for several
            // resources' to have them consented; Entra ID issues a token for one at a time).
            let scopes: Vec<&str> = ["openid", "profile", "offline_access"]
                .into_iter()
                .chain(self.first_token_scopes())
                .collect();
            request = request.add_extra_param("scope", scopes.join(" "));
        }
        let assertion = self.client_assertion(&loaded)?;
        for (name, value) in assertion.iter().flat_map(Assertion::params) {
            request = request.add_extra_param(name, value);
        }
        let response = request
            .request_async(&self.http)
            .await
            .map_err(|e| explained(classify(e), assertion.as_ref()))?;
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
        } else if !self.are_sign_in_scopes(scopes) {
            // One API's scopes only: a token no broader than that API needs. For the sign-in's
            // own scopes no `scope`, which RFC 6749 section 6 defines as "the scopes the
            // refresh token was granted" (asking for offline_access again fails with
            // invalid_scope at a provider that granted the token without it).
            for scope in scopes {
                request = request.add_scope(Scope::new((*scope).to_owned()));
            }
        }
        let assertion = self.client_assertion(loaded)?;
        for (name, value) in assertion.iter().flat_map(Assertion::params) {
            request = request.add_extra_param(name, value);
        }
        let response = request
            .request_async(&self.http)
            .await
            .map_err(|e| explained(classify(e), assertion.as_ref()))?;
        Ok(Redeemed {
            response,
            loaded: loaded.clone(),
        })
    }
}

fn seconds(value: &Option<serde_json::Value>) -> Option<i64> {
    match value.as_ref()? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A refresh token redeemed: the provider's answer, its ID token not yet validated.
pub struct Redeemed {
    pub(super) response: ProviderTokenResponse,
    pub(super) loaded: Arc<Loaded>,
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

pub(super) fn to_document(
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
        user_assertion_hash: None,
    }
}
