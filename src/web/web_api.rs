//! The web API mode (`[web_api]`): `GET /api/me` (the API `web_api.api` names) and
//! `GET /api/{name}/me` (each configured API by name) for a single-page or mobile app that calls
//! with `Authorization: Bearer <the user's token for this API>`. The token is checked as a
//! resource server must (`identity::provider::access_token`), exchanged for the user's own
//! tokens on their behalf (`TokenAcquirer::acquire_on_behalf_of`: stored in their cache with
//! their activity, so the worker later acts for them), and the downstream API's answer is
//! passed on. Refusals carry RFC 6750 challenges; answers are JSON, never stored by caches.
//! Browsers may call from the configured origins only (CORS, in `cors`).

use super::request_id::RequestId;
use super::AppState;
use crate::api::{ApiClient, ApiError};
use crate::identity::acquire::Caller;
use crate::identity::provider::{BearerError, BearerRules};
use crate::identity::AcquireError;
use crate::settings::{Exchange, Settings};
use actix_web::http::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the API's handlers share beyond the app's state.
pub struct WebApi {
    rules: BearerRules,
    /// Each downstream API's scopes (what its exchanged token is for), by name.
    scopes: BTreeMap<String, Vec<String>>,
    /// The API `/api/me` calls.
    default: String,
    exchange: Exchange,
}

impl WebApi {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            rules: BearerRules {
                audiences: settings.web_api.audiences.clone(),
                scopes: settings.web_api.scopes.clone(),
            },
            scopes: settings
                .apis()
                .map(|api| (api.name.clone(), settings.scopes_of(api)))
                .collect(),
            default: settings.web_api_api().name.clone(),
            exchange: settings.web_api.exchange_for(settings.identity.provider),
        }
    }
}

/// A client for each downstream API, by name (one set per server thread, as the profile
/// page's client).
#[derive(Clone)]
pub struct DownstreamApis(pub BTreeMap<String, ApiClient>);

impl DownstreamApis {
    pub fn from_settings(settings: &Settings) -> Result<Self, ApiError> {
        settings
            .apis()
            .map(|api| Ok((api.name.clone(), ApiClient::new(api)?)))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// `/api`'s CORS policy: the configured origins may call `GET` with `Authorization` and read
/// the challenge; no cookies (the API takes none); preflights are remembered ten minutes.
pub fn cors(origins: &[String]) -> actix_cors::Cors {
    origins
        .iter()
        .fold(actix_cors::Cors::default(), |cors, origin| {
            cors.allowed_origin(origin)
        })
        .allowed_methods(["GET"])
        .allowed_header(AUTHORIZATION)
        .expose_headers([WWW_AUTHENTICATE])
        .max_age(600)
}

/// `GET /api/me`: the default downstream API's `path` for the caller's user, as JSON.
pub async fn me(
    req: HttpRequest,
    state: web::Data<AppState>,
    api: web::Data<WebApi>,
    downstream: web::Data<DownstreamApis>,
    rid: RequestId,
) -> HttpResponse {
    let name = api.default.clone();
    call(&req, &state, &api, &downstream, &name, &rid).await
}

/// `GET /api/{name}/me`: API `name`'s `path` for the caller's user (`default` is `[api]`).
pub async fn me_at(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
    api: web::Data<WebApi>,
    downstream: web::Data<DownstreamApis>,
    rid: RequestId,
) -> HttpResponse {
    call(&req, &state, &api, &downstream, &name, &rid).await
}

/// The caller checked, the user's token for API `name` acquired on their behalf, the API
/// called with it.
async fn call(
    req: &HttpRequest,
    state: &AppState,
    api: &WebApi,
    downstream: &DownstreamApis,
    name: &str,
    rid: &RequestId,
) -> HttpResponse {
    let (Some(client), Some(scopes)) = (downstream.0.get(name), api.scopes.get(name)) else {
        // Said before the token is looked at: which APIs exist is no secret of the users'.
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no API of that name is configured",
            rid,
        );
    };
    let token = match bearer(req) {
        Ok(token) => token,
        Err(NoBearer::Missing) => return challenge(StatusCode::UNAUTHORIZED, None, None),
        Err(NoBearer::Malformed(why)) => {
            return challenge(
                StatusCode::BAD_REQUEST,
                Some(("invalid_request", why)),
                None,
            )
        }
    };
    let provider = state.acquirer.provider();
    let caller = match provider.validate_access_token(token, &api.rules).await {
        Ok(caller) => caller,
        Err(BearerError::Invalid(why)) => {
            tracing::info!(request_id = %rid, %why, "bearer token refused");
            return invalid_token(&why);
        }
        Err(BearerError::InsufficientScope(scopes)) => {
            tracing::info!(request_id = %rid, "bearer token without the API's scope");
            return insufficient_scope(&scopes);
        }
        Err(BearerError::Unavailable(why)) => {
            tracing::warn!(request_id = %rid, %why, "the provider's keys could not be loaded");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the identity provider is not answering; try again in a moment",
                rid,
            );
        }
    };
    let Some(id) = caller.home_account_id(provider.kind()) else {
        return invalid_token("it names no user (an application's own token?)");
    };
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let token = match state
        .acquirer
        .acquire_on_behalf_of(&caller, &scopes, api.exchange)
        .await
    {
        Ok(token) => token,
        Err(e) => return acquire_failed(&e, rid),
    };
    let answer = match client.me(&token).await {
        // As the profile page does: one refresh past a token the API refused as invalid.
        Err(ApiError::InvalidToken(why)) => {
            tracing::info!(request_id = %rid, account = %id, %why, "the API refused the access token as invalid; refreshing once and calling again");
            match state
                .acquirer
                .acquire_after_rejection(&id, &scopes, Caller::Web, &token)
                .await
            {
                Ok(fresh) => client.me(&fresh).await,
                Err(e) => return acquire_failed(&e, rid),
            }
        }
        called => called,
    };
    match answer {
        Ok(profile) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(profile),
        Err(e) => {
            tracing::warn!(request_id = %rid, account = %id, error = %e, "the API call failed");
            let status = match e {
                ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            };
            error(
                status,
                "downstream_error",
                "the downstream API did not answer as expected",
                rid,
            )
        }
    }
}

/// Why a request carries no bearer token.
enum NoBearer {
    /// No credentials, or another scheme's: a bare challenge (RFC 6750 section 3.1).
    Missing,
    /// An `Authorization` header that is no bearer token: `invalid_request`.
    Malformed(&'static str),
}

/// The bearer token of `Authorization` (RFC 6750 section 2.1; never from the query or body).
fn bearer(req: &HttpRequest) -> Result<&str, NoBearer> {
    let mut headers = req.headers().get_all(AUTHORIZATION);
    let Some(value) = headers.next() else {
        return Err(NoBearer::Missing);
    };
    if headers.next().is_some() {
        return Err(NoBearer::Malformed("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| NoBearer::Malformed("the Authorization header is not text"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(NoBearer::Missing);
    }
    let token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if token.is_empty() || !token.chars().all(token68) {
        return Err(NoBearer::Malformed(
            "expected Authorization: Bearer <token> (a token68 value)",
        ));
    }
    Ok(token)
}

fn invalid_token(why: &str) -> HttpResponse {
    challenge(StatusCode::UNAUTHORIZED, Some(("invalid_token", why)), None)
}

fn insufficient_scope(scopes: &[String]) -> HttpResponse {
    challenge(
        StatusCode::FORBIDDEN,
        Some((
            "insufficient_scope",
            "the token does not carry this API's scope",
        )),
        Some(&scopes.join(" ")),
    )
}

/// An RFC 6750 refusal: the `WWW-Authenticate: Bearer` challenge (with the error, its
/// description and the scope needed, where there are any) and the same as a JSON body.
fn challenge(status: StatusCode, error: Option<(&str, &str)>, scope: Option<&str>) -> HttpResponse {
    let mut parameters = vec![format!("realm=\"{}\"", REALM)];
    if let Some((code, description)) = error {
        parameters.push(format!("error=\"{code}\""));
        parameters.push(format!("error_description=\"{}\"", quotable(description)));
    }
    if let Some(scope) = scope {
        parameters.push(format!("scope=\"{}\"", quotable(scope)));
    }
    let mut response = HttpResponse::build(status);
    response.insert_header(("Cache-Control", "no-store"));
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", parameters.join(", "))) {
        response.insert_header((WWW_AUTHENTICATE, value));
    }
    match error {
        Some((code, description)) => response.json(serde_json::json!({
            "error": code,
            "error_description": description,
        })),
        None => response.finish(),
    }
}

/// The challenges' realm.
const REALM: &str = "tokenbridge";

/// `text` as RFC 6750 allows inside a quoted parameter (printable ASCII but `"` and `\`).
fn quotable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '?',
        })
        .collect()
}

/// What the caller is told when the user's tokens could not be had; the detail is logged.
fn acquire_failed(e: &AcquireError, rid: &RequestId) -> HttpResponse {
    match e {
        AcquireError::InteractionRequired { reason } => {
            tracing::info!(request_id = %rid, %reason, "interaction required for the caller's user");
            // The app must send the user through an interactive sign-in (consent, MFA): its
            // token is fine, the user's grant is not.
            error(
                StatusCode::FORBIDDEN,
                "interaction_required",
                "the user must sign in to the app again (consent or a policy the provider \
                 enforces)",
                rid,
            )
        }
        AcquireError::Rejected(why) => invalid_token(why),
        AcquireError::Transient { retry_after, .. } => {
            tracing::warn!(request_id = %rid, error = %e, "exchange failed for now");
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the identity provider is not answering; try again in a moment",
                rid,
            );
            let after = retry_after
                .unwrap_or(Duration::from_secs(1))
                .as_secs()
                .max(1);
            if let Ok(value) = HeaderValue::from_str(&after.to_string()) {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
            response
        }
        AcquireError::Storage(_) => {
            tracing::warn!(request_id = %rid, error = %e, "exchange failed: token store");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the token store is unavailable; try again in a moment",
                rid,
            )
        }
        AcquireError::Configuration(_)
        | AcquireError::CacheKeys(_)
        | AcquireError::SessionEnded => {
            tracing::error!(request_id = %rid, error = %e, "exchange failed: fix the configuration");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the API is misconfigured; an administrator has to fix it",
                rid,
            )
        }
    }
}

/// A JSON error answer with the request id (the log has the detail).
fn error(status: StatusCode, code: &str, description: &str, rid: &RequestId) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({
            "error": code,
            "error_description": description,
            "request_id": rid.as_str(),
        }))
}
