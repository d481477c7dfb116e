//! `/token`: authorization_code (PKCE), refresh_token, on-behalf-of and RFC 8693 token exchange
//! grants, client authentication, RFC 6749 error responses, and the faults the admin API
//! injects; the answer itself is `mint.rs`'s.

use super::client_auth::authenticate;
use super::mint::{mint, Answer};
use super::on_behalf_of::{
    on_behalf_of, token_exchange, JWT_BEARER, REFRESH_TOKEN_TYPE, TOKEN_EXCHANGE,
};
use super::params::{scopes, Params};
use super::resources::{one_resource, resource_of};
use super::state::{not_consented, FaultKind, Grant, GrantError};
use super::{now, unknown_tenant, Provider};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use std::time::Duration;

/// How long a `hang` fault holds the request: longer than any sane client timeout.
const HANG: Duration = Duration::from_secs(300);

pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({ "error": error, "error_description": description }))
}

fn bad_request(error: &str, description: &str) -> HttpResponse {
    oauth_error(StatusCode::BAD_REQUEST, error, description)
}

/// A response whose connection is cut before any answer arrives.
fn dropped() -> HttpResponse {
    let failing = futures_util::stream::once(async {
        Err::<web::Bytes, _>(std::io::Error::other(
            "connection dropped by an injected fault",
        ))
    });
    HttpResponse::Ok().streaming(failing)
}

pub async fn token(
    req: HttpRequest,
    tenant: web::Path<String>,
    body: web::Bytes,
    p: web::Data<Provider>,
) -> HttpResponse {
    if *tenant != p.tenant_id {
        return unknown_tenant(&tenant);
    }
    let behaviour = p.behaviour();
    if behaviour.token_latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.token_latency_ms)).await;
    }
    let fault = {
        let mut state = p.state();
        state.counters.token_requests += 1;
        state.next_fault()
    };
    let retry_after = |status: StatusCode, error: &str, seconds: u32| {
        let mut response = oauth_error(status, error, "injected fault");
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&seconds.to_string()) {
            response
                .headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, value);
        }
        response
    };
    let delay = fault
        .and_then(|f| f.delay_ms)
        .map_or(HANG, Duration::from_millis);
    match fault.map(|f| (f.kind, f.retry_after)) {
        None => respond(&req, &body, &p, false),
        Some((FaultKind::WrongAudience, _)) => respond(&req, &body, &p, true),
        Some((FaultKind::Status500, _)) => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "injected fault",
        ),
        Some((FaultKind::Status503, after)) => retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            after,
        ),
        Some((FaultKind::Status429, after)) => retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            after,
        ),
        Some((FaultKind::Hang, _)) => {
            tokio::time::sleep(HANG).await;
            oauth_error(
                StatusCode::GATEWAY_TIMEOUT,
                "temporarily_unavailable",
                "injected hang",
            )
        }
        Some((FaultKind::Drop, _)) => dropped(),
        Some((FaultKind::InvalidGrant, _)) => bad_request(
            "invalid_grant",
            "AADSTS70000: injected fault: the grant is invalid",
        ),
        Some((FaultKind::InvalidClient, _)) => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: injected fault: invalid client secret provided",
        ),
        Some((FaultKind::InteractionRequired, _)) => bad_request(
            "interaction_required",
            "AADSTS50076: injected fault: the user must sign in again",
        ),
        Some((FaultKind::LoseAnswer, _)) => {
            let _ = respond(&req, &body, &p, false);
            dropped()
        }
        Some((FaultKind::LateAnswer, _)) => {
            let answer = respond(&req, &body, &p, false);
            tokio::time::sleep(delay).await;
            answer
        }
    }
}

fn respond(req: &HttpRequest, body: &[u8], p: &Provider, wrong_audience: bool) -> HttpResponse {
    let params = match Params::parse(body) {
        Ok(params) => params,
        Err(problem) => return bad_request("invalid_request", &problem),
    };
    let client = match authenticate(req, &params, p) {
        Ok(client) => client,
        Err(failure) => return failure.response(),
    };
    let behaviour = p.behaviour();
    let refresh_ttl = i64::try_from(behaviour.refresh_token_ttl_secs).unwrap_or(i64::MAX);
    let now = now();
    let result = match params.get("grant_type") {
        Some("authorization_code") => {
            let (Some(code), Some(redirect_uri), Some(verifier)) = (
                params.get("code"),
                params.get("redirect_uri"),
                params.get("code_verifier"),
            ) else {
                return bad_request(
                    "invalid_request",
                    "code, redirect_uri and code_verifier are required",
                );
            };
            let granted = p.state().redeem_code(
                &client.client_id,
                code,
                redirect_uri,
                verifier,
                behaviour.offline_access == super::OfflineAccess::Always,
                refresh_ttl,
                now,
            );
            // A `scope` here (MSAL sends one) names the token's resource among those the
            // sign-in consented to; without one, Entra ID issues the first resource's.
            let asked = params.get("scope").map(scopes);
            granted.and_then(|grant| for_code(grant, asked.as_deref()))
        }
        Some("refresh_token") => {
            let Some(token) = params.get("refresh_token") else {
                return bad_request("invalid_request", "refresh_token is required");
            };
            let requested = params.get("scope").map(scopes);
            p.state()
                .redeem_refresh_token(
                    &client.client_id,
                    token,
                    requested.as_deref(),
                    behaviour.rotation,
                    refresh_ttl,
                    now,
                )
                .map(|grant| (grant, None))
        }
        Some(grant_type @ (JWT_BEARER | TOKEN_EXCHANGE)) => {
            let user = if grant_type == JWT_BEARER {
                on_behalf_of(p, client, &params)
            } else {
                token_exchange(p, client, &params)
            };
            match user {
                Ok(username) => {
                    let mut asked = params.get("scope").map(scopes).unwrap_or_default();
                    // RFC 8693: a refresh token is asked for by its type.
                    if params.get("requested_token_type") == Some(REFRESH_TOKEN_TYPE) {
                        asked.push("offline_access".into());
                    }
                    let mut state = p.state();
                    let granted = state.grant_on_behalf_of(
                        &client.client_id,
                        &username,
                        asked,
                        refresh_ttl,
                        now,
                    );
                    if granted.is_ok() && grant_type == TOKEN_EXCHANGE {
                        state.counters.token_exchanges += 1;
                    }
                    granted.map(|grant| (grant, None))
                }
                Err((error, description)) => return bad_request(error, &description),
            }
        }
        Some(other) => {
            return bad_request(
                "unsupported_grant_type",
                &format!("grant_type {other} is not supported"),
            )
        }
        None => return bad_request("invalid_request", "grant_type is required"),
    };
    // A refresh without `scope` (RFC 6749: the scopes granted) gets the first resource's.
    let first_wins = params.get("scope").is_none();
    let result = result.and_then(|(grant, asked)| {
        let for_one = one_resource(asked.as_deref().unwrap_or(&grant.scopes), first_wins).map_err(
            |description| GrantError {
                error: "invalid_scope",
                description,
            },
        )?;
        Ok((grant, for_one))
    });
    match result {
        Ok((grant, for_one)) => mint(
            p,
            client,
            &grant,
            &for_one,
            Answer {
                client_info: params.get("client_info") == Some("1"),
                wrong_audience,
                exchanged: params.get("grant_type") == Some(TOKEN_EXCHANGE),
            },
            now,
        ),
        Err(GrantError { error, description }) => bad_request(error, &description),
    }
}

/// A code's grant, and the scopes its token is asked for (`scope` in the redemption): each of
/// them consented to at sign-in, or the answer is Entra ID's "not consented".
fn for_code(
    grant: Grant,
    asked: Option<&[String]>,
) -> Result<(Grant, Option<Vec<String>>), GrantError> {
    let Some(asked) = asked else {
        return Ok((grant, None));
    };
    if let Some(missing) = asked
        .iter()
        .find(|s| resource_of(s).is_some() && !grant.scopes.contains(s))
    {
        return Err(not_consented(missing));
    }
    let asked = asked
        .iter()
        .filter(|s| resource_of(s).is_some() || grant.scopes.contains(s))
        .cloned()
        .collect();
    Ok((grant, Some(asked)))
}
