//! Entra ID's on-behalf-of grant at the development provider: an API that a user called with a
//! token for it (from a single-page app) exchanges that token for tokens of its own for the
//! user (`grant_type` `urn:ietf:params:oauth:grant-type:jwt-bearer`, `requested_token_use`
//! `on_behalf_of`), a grant family of its own; the assertion is checked as Entra ID checks it.

use super::params::Params;
use super::resources::WEB_API;
use super::Provider;
use crate::settings::DevClient;

/// Entra ID's on-behalf-of grant type (RFC 7523's JWT bearer).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(serde::Deserialize)]
struct AssertionClaims {
    upn: String,
    scp: String,
}

/// The user an on-behalf-of request acts for: its `assertion` must be a token for the calling
/// client's API (signed with the published key, `aud` the client, unexpired, with the API's
/// scope), and `requested_token_use` `on_behalf_of`, as Entra ID requires.
pub fn on_behalf_of(
    p: &Provider,
    client: &DevClient,
    params: &Params,
) -> Result<String, (&'static str, String)> {
    if params.get("requested_token_use") != Some("on_behalf_of") {
        return Err((
            "invalid_request",
            "AADSTS90009: requested_token_use must be on_behalf_of".into(),
        ));
    }
    let Some(assertion) = params.get("assertion") else {
        return Err((
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'assertion'."
                .into(),
        ));
    };
    let claims: AssertionClaims = p
        .keys
        .verify_published(assertion, &p.issuer(), &client.client_id)
        .map_err(|e| {
            (
                "invalid_grant",
                format!("AADSTS50013: Assertion failed signature validation or its claims: {e}"),
            )
        })?;
    if !claims.scp.split_whitespace().any(|s| s == WEB_API.scope) {
        return Err((
            "invalid_grant",
            "AADSTS65001: the assertion does not carry the API's scope".into(),
        ));
    }
    let username = claims
        .upn
        .strip_suffix(&format!("@{}", super::users::DOMAIN))
        .unwrap_or(&claims.upn)
        .to_owned();
    Ok(username)
}
