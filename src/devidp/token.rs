//! `/token`: authorization_code (PKCE) and refresh_token grants, client authentication, RFC 6749
//! error responses, and the faults the admin API injects.

use super::client_auth::authenticate;
use super::keys::{at_hash, random_token};
use super::on_behalf_of::{on_behalf_of, JWT_BEARER};
use super::params::{scopes, Params};
use super::resources::{one_resource, resource_of, ForOne, WEB_API};
use super::state::{not_consented, FaultKind, Grant, GrantError};
use super::users::Profile;
use super::{now, unknown_tenant, Provider};
use crate::settings::DevClient;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
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
        Some(JWT_BEARER) => match on_behalf_of(p, client, &params) {
            Ok(username) => {
                let asked = params.get("scope").map(scopes).unwrap_or_default();
                p.state()
                    .grant_on_behalf_of(&client.client_id, &username, asked, refresh_ttl, now)
                    .map(|grant| (grant, None))
            }
            Err((error, description)) => return bad_request(error, &description),
        },
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
            params.get("client_info") == Some("1"),
            wrong_audience,
            now,
        ),
        Err(GrantError { error, description }) => bad_request(error, &description),
    }
}

/// The answer's `scope`: the token's resource's scopes, with the sign-in's own (openid, ...)
/// for Graph, as Entra ID answers.
fn answered_scope(grant: &Grant, for_one: &ForOne) -> String {
    if for_one.resource.full_scope_names {
        return for_one.scopes.join(" ");
    }
    grant
        .scopes
        .iter()
        .filter(|s| resource_of(s).is_none() || for_one.scopes.contains(s))
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Serialize)]
struct IdTokenClaims<'a> {
    ver: &'static str,
    iss: String,
    sub: String,
    aud: &'a str,
    exp: i64,
    iat: i64,
    nbf: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    oid: &'a str,
    tid: &'a str,
    name: &'a str,
    preferred_username: &'a str,
    at_hash: String,
    /// The provider session (Front- and Back-Channel Logout name it).
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    ver: &'static str,
    iss: String,
    aud: &'static str,
    sub: String,
    exp: i64,
    iat: i64,
    nbf: i64,
    scp: String,
    oid: &'a str,
    tid: &'a str,
    appid: &'a str,
    name: &'a str,
    upn: &'a str,
    uti: String,
    /// The user's revocation generation (see `Grant::generation`); a development-provider
    /// claim only its own API reads.
    gen: u64,
}

/// Entra ID gives each client its own `sub` for a user (pairwise subject).
pub(super) fn pairwise_sub(oid: &str, client_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{oid}:{client_id}").as_bytes()))
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

fn mint(
    p: &Provider,
    client: &DevClient,
    grant: &Grant,
    for_one: &ForOne,
    client_info: bool,
    wrong_audience: bool,
    now: i64,
) -> HttpResponse {
    let profile = Profile::of(&grant.username);
    let behaviour = p.behaviour();
    let ttl = i64::try_from(behaviour.access_token_ttl_secs).unwrap_or(i64::MAX / 2);
    let sub = pairwise_sub(&profile.id, &client.client_id);
    let access_claims = AccessTokenClaims {
        ver: "2.0",
        iss: p.issuer(),
        aud: for_one.resource.audience,
        sub: sub.clone(),
        exp: now + ttl,
        iat: now,
        nbf: now,
        scp: for_one.scp(),
        oid: &profile.id,
        tid: &p.tenant_id,
        appid: &client.client_id,
        name: &profile.display_name,
        upn: &profile.user_principal_name,
        uti: random_token(),
        gen: grant.generation,
    };
    // The web API checks its tokens with the published keys, as a resource server does; the
    // other APIs are the provider's own, which check them with theirs.
    let signed = if for_one.resource == &WEB_API {
        p.keys.sign_id_token(&access_claims)
    } else {
        p.keys.sign_access_token(&access_claims)
    };
    let access_token = match signed {
        Ok(token) => token,
        Err(e) => {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &e.to_string(),
            )
        }
    };
    let mut body = serde_json::json!({
        "token_type": "Bearer",
        "scope": answered_scope(grant, for_one),
        "expires_in": ttl,
        "ext_expires_in": ttl,
        "access_token": access_token,
    });
    if grant.scopes.iter().any(|s| s == "openid") {
        let id_claims = IdTokenClaims {
            ver: "2.0",
            iss: p.issuer(),
            sub,
            aud: if wrong_audience {
                "someone-else"
            } else {
                &client.client_id
            },
            exp: now + 3600,
            iat: now,
            nbf: now,
            nonce: grant.nonce.as_deref(),
            oid: &profile.id,
            tid: &p.tenant_id,
            name: &profile.display_name,
            preferred_username: &profile.user_principal_name,
            at_hash: at_hash(&access_token),
            sid: grant.sid.as_deref(),
        };
        match p.keys.sign_id_token(&id_claims) {
            Ok(token) => body["id_token"] = token.into(),
            Err(e) => {
                return oauth_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    &e.to_string(),
                )
            }
        }
    }
    if let Some(refresh_in) = behaviour.refresh_in_secs {
        body["refresh_in"] = refresh_in.into();
    }
    if let Some(refresh_token) = &grant.refresh_token {
        body["refresh_token"] = refresh_token.clone().into();
    }
    if client_info {
        let info = serde_json::json!({ "uid": profile.id, "utid": p.tenant_id });
        body["client_info"] = URL_SAFE_NO_PAD.encode(info.to_string()).into();
    }
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(body)
}
