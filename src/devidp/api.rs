//! The APIs' endpoints, each for the bearer of a valid access token for its resource (RFC
//! 6750): `GET /v1.0/me`, a Graph-like profile; `/tasks/v1.0/me/tasks`, the second API's list
//! of the user's tasks (GET) and a new task (POST).

use super::resources::{Resource, GRAPH, TASKS};
use super::users::Profile;
use super::Provider;
use actix_web::http::header::{HeaderValue, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    scp: String,
    upn: String,
    #[serde(default)]
    gen: u64,
}

fn challenge(resource: &Resource, status: StatusCode, error: Option<(&str, &str)>) -> HttpResponse {
    let mut value = String::from("Bearer realm=\"tokenbridge dev-idp\"");
    if let Some((code, description)) = error {
        value.push_str(&format!(
            ", error=\"{code}\", error_description=\"{description}\""
        ));
        if code == "insufficient_scope" {
            value.push_str(&format!(
                ", scope=\"{}{}\"",
                resource.prefix, resource.scope
            ));
        }
    }
    let mut response = HttpResponse::build(status).json(serde_json::json!({
        "error": {
            "code": error.map_or("InvalidAuthenticationToken", |(code, _)| code),
            "message": error.map_or("Access token is empty.", |(_, d)| d),
        }
    }));
    if let Ok(header) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(WWW_AUTHENTICATE, header);
    }
    response
}

pub async fn me(req: HttpRequest, p: web::Data<Provider>) -> HttpResponse {
    let username = match bearer(&req, &p, &GRAPH).await {
        Ok(username) => username,
        Err(refused) => return refused,
    };
    let mut body = match serde_json::to_value(Profile::of(&username)) {
        Ok(body) => body,
        Err(_) => return HttpResponse::InternalServerError().finish(),
    };
    body["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#users/$entity".into();
    HttpResponse::Ok().json(body)
}

/// `GET /tasks/v1.0/me/tasks`: the user's tasks, from the second API.
pub async fn tasks(req: HttpRequest, p: web::Data<Provider>) -> HttpResponse {
    let username = match bearer(&req, &p, &TASKS).await {
        Ok(username) => username,
        Err(refused) => return refused,
    };
    let upn = Profile::of(&username).user_principal_name;
    HttpResponse::Ok().json(serde_json::json!({
        "owner": upn,
        "value": [
            { "id": "1", "title": format!("Water {username}'s plants") },
            { "id": "2", "title": "Read the tokenbridge README" },
        ],
    }))
}

/// `POST /tasks/v1.0/me/tasks`: adds a task (counted, not kept), for jobs with side effects.
pub async fn add_task(req: HttpRequest, p: web::Data<Provider>) -> HttpResponse {
    match bearer(&req, &p, &TASKS).await {
        Ok(username) => {
            p.state().counters.tasks_added += 1;
            HttpResponse::Created().json(serde_json::json!({ "id": "3", "owner": username }))
        }
        Err(refused) => refused,
    }
}

/// The user a request's bearer token is for, when it is a valid token for `resource` with its
/// scope; otherwise the RFC 6750 refusal to answer. Counts the call.
async fn bearer(
    req: &HttpRequest,
    p: &Provider,
    resource: &Resource,
) -> Result<String, HttpResponse> {
    let challenge = |status, error| challenge(resource, status, error);
    let latency = p.behaviour().api_latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let header = req
        .headers()
        .get("Authorization")
        .and_then(|h| h.to_str().ok());
    // No credentials at all: a challenge without an error code (RFC 6750 section 3.1).
    let Some(header) = header else {
        return Err(challenge(StatusCode::UNAUTHORIZED, None));
    };
    let Some(token) = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Err(challenge(
            StatusCode::UNAUTHORIZED,
            Some(("invalid_request", "expected a Bearer token")),
        ));
    };
    let verified = p
        .keys
        .verify_access_token(token, &p.issuer(), resource.audience);
    let claims: Claims = match verified {
        Ok(claims) => claims,
        Err(e) => {
            let why = match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the access token has expired",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    "the access token is for another audience"
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "the access token signature is invalid"
                }
                _ => "the access token is invalid",
            };
            return Err(challenge(
                StatusCode::UNAUTHORIZED,
                Some(("invalid_token", why)),
            ));
        }
    };
    if !claims
        .scp
        .split_whitespace()
        .any(|s| s.eq_ignore_ascii_case(resource.scope))
    {
        let why = format!("the access token lacks the {} scope", resource.scope);
        return Err(challenge(
            StatusCode::FORBIDDEN,
            Some(("insufficient_scope", &why)),
        ));
    }
    let username = claims
        .upn
        .strip_suffix(&format!("@{}", super::users::DOMAIN))
        .unwrap_or(&claims.upn)
        .to_owned();
    let (disabled, refused) = {
        let mut state = p.state();
        state.count_api_call(&username, resource == &TASKS);
        // A token from before the user's tokens were revoked is refused at once, as Graph
        // does for revoked sessions: a worker finds out on its next call, not in an hour.
        let revoked = claims.gen < state.generation(&username);
        (state.is_disabled(&username), state.api_refusal() || revoked)
    };
    if refused {
        return Err(challenge(
            StatusCode::UNAUTHORIZED,
            Some(("invalid_token", "the access token has been revoked")),
        ));
    }
    if disabled {
        return Err(challenge(
            StatusCode::UNAUTHORIZED,
            Some(("invalid_token", "the user account is disabled")),
        ));
    }
    Ok(username)
}
