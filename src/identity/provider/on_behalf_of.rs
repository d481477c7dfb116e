//! On-behalf-of (the web API mode): an API called with a user's access token exchanges it for
//! tokens of its own for that user, as Entra ID's jwt-bearer grant with
//! `requested_token_use=on_behalf_of` does, or RFC 8693 token exchange at other providers. The
//! OAuth library has neither grant, so the form is built here as revocation's is,
//! authenticated as every token request (a secret, or a fresh `private_key_jwt` assertion), and
//! the answer is sorted as any token answer.

use super::revocation::form_post;
use super::*;
use crate::identity::error::ProviderError;
use crate::settings::Exchange;
use openidconnect::RequestTokenError;

/// Entra ID's on-behalf-of grant type (RFC 7523's JWT bearer).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 8693's grant type, and the token types it names.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";

impl OidcProvider {
    /// Exchanges `user_token` (a token this API was called with, already validated) for
    /// tokens for `scopes`, with an ID token (`openid profile`, as MSAL asks) and a refresh
    /// token (`offline_access` for on-behalf-of, `requested_token_type` for RFC 8693), for
    /// that user, with the metadata `loaded` (fetched before the
    /// caller took the user's lease). The answer's ID token is not validated yet (see
    /// [`Self::redeem_refresh_token`]).
    pub async fn redeem_on_behalf_of(
        &self,
        loaded: &Arc<Loaded>,
        user_token: &Secret,
        scopes: &[&str],
        exchange: Exchange,
    ) -> Result<Redeemed, AcquireError> {
        let assertion = self.client_assertion(loaded)?;
        // RFC 8693 asks for the refresh token by its token type, and Keycloak's standard
        // exchange refuses `offline_access`; Entra ID's grant takes it as a sign-in does.
        let sign_in: &[&str] = match exchange {
            Exchange::OnBehalfOf => &["openid", "profile", "offline_access"],
            Exchange::TokenExchange => &["openid", "profile"],
        };
        let scope: Vec<&str> = sign_in.iter().chain(scopes).copied().collect();
        // The form is built in a block of its own: its serializer cannot be held across an
        // await by a future that is sent between threads.
        let (body, authorization) = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            match exchange {
                Exchange::OnBehalfOf => form
                    .append_pair("grant_type", JWT_BEARER)
                    .append_pair("requested_token_use", "on_behalf_of")
                    .append_pair("assertion", user_token.expose()),
                // A refresh token is asked for (it comes with the access token): the worker
                // acts for the user later.
                Exchange::TokenExchange => form
                    .append_pair("grant_type", TOKEN_EXCHANGE)
                    .append_pair("subject_token", user_token.expose())
                    .append_pair("subject_token_type", ACCESS_TOKEN_TYPE)
                    .append_pair("requested_token_type", REFRESH_TOKEN_TYPE),
            };
            form.append_pair("scope", &scope.join(" "));
            if self.kind == ProviderKind::Entra {
                form.append_pair("client_info", "1");
            }
            let authorization = self.authenticate_form(&mut form, assertion.as_ref());
            (form.finish(), authorization)
        };
        let request = form_post(loaded.token_url.as_str(), body.into_bytes(), authorization)?;
        let refused = |e| explained(classify(e), assertion.as_ref());
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| refused(RequestTokenError::Request(e)))?;
        if !response.status().is_success() {
            return Err(
                match serde_json::from_slice::<ProviderError>(response.body()) {
                    Ok(error) => refused(RequestTokenError::ServerResponse(error)),
                    Err(_) => AcquireError::Transient {
                        reason: format!(
                            "the provider answered the on-behalf-of request with HTTP {}",
                            response.status().as_u16()
                        ),
                        retry_after: None,
                    },
                },
            );
        }
        let response: ProviderTokenResponse =
            serde_json::from_slice(response.body()).map_err(|e| AcquireError::Transient {
                reason: format!("the provider's answer could not be read: {e}"),
                retry_after: None,
            })?;
        Ok(Redeemed {
            response,
            loaded: loaded.clone(),
        })
    }
}
