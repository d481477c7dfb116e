//! Ending a user's tokens at the provider: RFC 7009 revocation and the RP-initiated logout
//! (end-session) URL.

use super::*;

impl OidcProvider {
    /// RFC 7009: asks the provider to revoke a refresh token. `Ok(false)` when the provider
    /// has no revocation endpoint (Entra ID has none). The request is made here rather than by
    /// the OAuth library, which refuses any endpoint but https, loopback included.
    pub async fn revoke_refresh_token(&self, refresh_token: &Secret) -> Result<bool, AcquireError> {
        let loaded = self.metadata().await?;
        let Some(url) = loaded.revocation.clone() else {
            return Ok(false);
        };
        let assertion = self.client_assertion(&loaded)?;
        let (body, authorization) = self.revocation_body(refresh_token, assertion.as_ref());
        let request = form_post(url.as_str(), body, authorization)?;
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
        Err(explained(
            config(format!(
                "the provider refused to revoke the refresh token: HTTP {} {}",
                response.status().as_u16(),
                code.chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(40)
                    .collect::<String>()
            )),
            assertion.as_ref(),
        ))
    }

    /// An RFC 7009 request's form body, and its `Authorization` header (see
    /// [`OidcProvider::authenticate_form`]).
    fn revocation_body(
        &self,
        refresh_token: &Secret,
        assertion: Option<&Assertion>,
    ) -> (Vec<u8>, Option<String>) {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", refresh_token.expose())
            .append_pair("token_type_hint", "refresh_token");
        let authorization = self.authenticate_form(&mut form, assertion);
        (form.finish().into_bytes(), authorization)
    }

    /// The client's authentication for a form it sends the provider itself (the OAuth
    /// library sends the others): the `Authorization` header for client_secret_basic (each part
    /// form-encoded before Basic encoding, RFC 6749 section 2.3.1), or the client id with the
    /// secret or with `assertion` (`private_key_jwt`) in the form.
    pub(super) fn authenticate_form(
        &self,
        form: &mut url::form_urlencoded::Serializer<'_, String>,
        assertion: Option<&Assertion>,
    ) -> Option<String> {
        use base64::Engine as _;
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        match (&self.credentials, assertion) {
            (_, Some(assertion)) => {
                form.append_pair("client_id", self.client_id.as_str());
                for (name, value) in assertion.params() {
                    form.append_pair(name, &value);
                }
                None
            }
            (
                Credentials::Secret {
                    secret,
                    basic: true,
                },
                None,
            ) => {
                let pair = format!(
                    "{}:{}",
                    encode(self.client_id.as_str()),
                    encode(secret.expose())
                );
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            (Credentials::Secret { secret, .. }, None) => {
                form.append_pair("client_id", self.client_id.as_str())
                    .append_pair("client_secret", secret.expose());
                None
            }
            (Credentials::Key { .. }, None) => None,
        }
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

    /// The origins whose pages may load the app's Front-Channel Logout URI in a frame: the
    /// issuer's and its end-session endpoint's (they differ at some providers).
    pub async fn logout_page_origins(&self) -> Vec<String> {
        let mut origins = vec![self.issuer.url().origin().ascii_serialization()];
        if let Ok(loaded) = self.metadata().await {
            if let Some(end_session) = &loaded.end_session {
                let origin = end_session.origin().ascii_serialization();
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
        }
        origins
    }
}

/// A form the client POSTs to the provider itself (revocation, on-behalf-of), with its
/// `Authorization` header when the client authenticates by one.
pub(super) fn form_post(
    url: &str,
    body: Vec<u8>,
    authorization: Option<String>,
) -> Result<openidconnect::http::Request<Vec<u8>>, AcquireError> {
    use openidconnect::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
    let mut request = openidconnect::http::Request::builder()
        .method(openidconnect::http::Method::POST)
        .uri(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json");
    if let Some(authorization) = authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    request.body(body).map_err(config)
}
