//! On-behalf-of (the web API mode): an API called with a user's access token exchanges it for
//! tokens of its own for that user, as Entra ID's jwt-bearer grant with
//! `requested_token_use=on_behalf_of` does. The OAuth library has no such grant, so the form is
//! built here as revocation's is, authenticated as every token request (a secret, or a fresh
//! `private_key_jwt` assertion), and the answer is sorted as any token answer.

use super::grants::to_document;
use super::*;
use crate::identity::error::ProviderError;
use openidconnect::RequestTokenError;

/// Entra ID's on-behalf-of grant type (RFC 7523's JWT bearer).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl OidcProvider {
    /// Exchanges `user_token` (a token this API was called with, already validated) for
    /// tokens for `scopes` and a refresh token (`offline_access`), for that user.
    pub async fn redeem_on_behalf_of(
        &self,
        user_token: &Secret,
        scopes: &[&str],
    ) -> Result<document::TokenResponse, AcquireError> {
        let loaded = self.metadata().await?;
        let assertion = self.client_assertion(&loaded)?;
        let scope: Vec<&str> = scopes.iter().copied().chain(["offline_access"]).collect();
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", JWT_BEARER)
            .append_pair("requested_token_use", "on_behalf_of")
            .append_pair("assertion", user_token.expose())
            .append_pair("scope", &scope.join(" "));
        if self.kind == ProviderKind::Entra {
            form.append_pair("client_info", "1");
        }
        let authorization = self.authenticate_form(&mut form, assertion.as_ref());
        let mut request = openidconnect::http::Request::builder()
            .method(openidconnect::http::Method::POST)
            .uri(loaded.token_url.as_str())
            .header(
                openidconnect::http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(openidconnect::http::header::ACCEPT, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(openidconnect::http::header::AUTHORIZATION, authorization);
        }
        let request = request.body(form.finish().into_bytes()).map_err(config)?;
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
        let answer: ProviderTokenResponse =
            serde_json::from_slice(response.body()).map_err(|e| AcquireError::Transient {
                reason: format!("the provider's answer could not be read: {e}"),
                retry_after: None,
            })?;
        Ok(to_document(&answer, None))
    }
}
