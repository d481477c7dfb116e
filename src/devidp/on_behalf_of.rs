//! Entra ID's on-behalf-of grant at the development provider: an API that a user called with a
//! token for it (from a single-page app) exchanges that token for tokens of its own for the
//! user (`grant_type` `urn:ietf:params:oauth:grant-type:jwt-bearer`, `requested_token_use`
//! `on_behalf_of`), a grant family of its own; the assertion is checked as Entra ID checks it.
//! RFC 8693 token exchange, as generic providers offer it, is the same exchange with other
//! parameter names (`subject_token`, `subject_token_type`).

use super::params::Params;
use super::resources::WEB_API;
use super::Provider;
use crate::settings::DevClient;

/// Entra ID's on-behalf-of grant type (RFC 7523's JWT bearer).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 8693's grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693's token type of an access token (the subject token, and the token issued).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693's token type of a refresh token (asked for as `requested_token_type`: the access
/// token comes with a refresh token).
pub const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";

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
    user_of(p, client, assertion)
}

/// The user an RFC 8693 token exchange acts for: `subject_token` an access token for the
/// calling client's API, checked as [`on_behalf_of`] checks its assertion; the token asked for
/// (`requested_token_type`) an access token, or a refresh token with it. As Keycloak's
/// standard token exchange, `offline_access` is refused: a refresh token is asked for by type.
pub fn token_exchange(
    p: &Provider,
    client: &DevClient,
    params: &Params,
) -> Result<String, (&'static str, String)> {
    let (Some(subject), Some(subject_type)) = (
        params.get("subject_token"),
        params.get("subject_token_type"),
    ) else {
        return Err((
            "invalid_request",
            "subject_token and subject_token_type are required".into(),
        ));
    };
    if subject_type != ACCESS_TOKEN_TYPE {
        return Err((
            "invalid_request",
            format!("subject_token_type {subject_type} is not supported"),
        ));
    }
    if params
        .get("scope")
        .is_some_and(|scope| scope.split_whitespace().any(|s| s == "offline_access"))
    {
        return Err((
            "invalid_scope",
            "offline_access is not allowed in a token exchange: ask for \
             requested_token_type urn:ietf:params:oauth:token-type:refresh_token"
                .into(),
        ));
    }
    if let Some(requested) = params.get("requested_token_type") {
        if requested != ACCESS_TOKEN_TYPE && requested != REFRESH_TOKEN_TYPE {
            return Err((
                "invalid_request",
                format!("requested_token_type {requested} is not supported"),
            ));
        }
    }
    user_of(p, client, subject)
}

/// The user a token for `client`'s API was issued to.
fn user_of(
    p: &Provider,
    client: &DevClient,
    assertion: &str,
) -> Result<String, (&'static str, String)> {
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
