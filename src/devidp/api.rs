//! `GET /v1.0/me`: a Graph-like profile for the bearer of a valid access token (RFC 6750).

use super::users::Profile;
use super::{Provider, API_AUDIENCE, API_SCOPE};
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

fn challenge(status: StatusCode, error: Option<(&str, &str)>) -> HttpResponse {
    let mut value = String::from("Bearer realm=\"tokenbridge dev-idp\"");
    if let Some((code, description)) = error {
        value.push_str(&format!(
            ", error=\"{code}\", error_description=\"{description}\""
        ));
        if code == "insufficient_scope" {
            value.push_str(&format!(", scope=\"{API_SCOPE}\""));
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
        return challenge(StatusCode::UNAUTHORIZED, None);
    };
    let Some(token) = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return challenge(
            StatusCode::UNAUTHORIZED,
            Some(("invalid_request", "expected a Bearer token")),
        );
    };
    let claims: Claims = match p.keys.verify_access_token(token, &p.issuer(), API_AUDIENCE) {
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
            return challenge(StatusCode::UNAUTHORIZED, Some(("invalid_token", why)));
        }
    };
    if !claims
        .scp
        .split_whitespace()
        .any(|s| s.eq_ignore_ascii_case(API_SCOPE))
    {
        return challenge(
            StatusCode::FORBIDDEN,
            Some((
                "insufficient_scope",
                "the access token lacks the User.Read scope",
            )),
        );
    }
    let username = claims
        .upn
        .strip_suffix(&format!("@{}", super::users::DOMAIN))
        .unwrap_or(&claims.upn)
        .to_owned();
    let (disabled, refused) = {
        let mut state = p.state();
        state.count_api_call(&username);
        // A token from before the user's tokens were revoked is refused at once, as Graph
        // does for revoked sessions: a worker finds out on its next call, not in an hour.
        let revoked = claims.gen < state.generation(&username);
        (state.is_disabled(&username), state.api_refusal() || revoked)
    };
    if refused {
        return challenge(
            StatusCode::UNAUTHORIZED,
            Some(("invalid_token", "the access token has been revoked")),
        );
    }
    if disabled {
        return challenge(
            StatusCode::UNAUTHORIZED,
            Some(("invalid_token", "the user account is disabled")),
        );
    }
    let mut body = match serde_json::to_value(Profile::of(&username)) {
        Ok(body) => body,
        Err(_) => return HttpResponse::InternalServerError().finish(),
    };
    body["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#users/$entity".into();
    HttpResponse::Ok().json(body)
}
