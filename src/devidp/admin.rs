//! The admin API (loopback, like everything here): faults, revocation, behaviour, counters.

use super::state::{Fault, FaultKind};
use super::users::{parse_username, Profile};
use super::{lock, Behaviour, Provider};
use crate::settings::Rotation;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/counters", web::get().to(counters))
        .route("/admin/faults", web::post().to(add_fault))
        .route("/admin/faults", web::delete().to(clear_faults))
        .route("/admin/api-refusals", web::post().to(refuse_api_calls))
        .route("/admin/behaviour", web::get().to(get_behaviour))
        .route("/admin/behaviour", web::patch().to(patch_behaviour))
        .route("/admin/users/{name}/revoke", web::post().to(revoke))
        .route("/admin/users/{name}/logout", web::post().to(logout))
        .route("/admin/users/{name}/disable", web::post().to(disable))
        .route("/admin/users/{name}/enable", web::post().to(enable))
        .route(
            "/admin/users/{name}/declined-scopes",
            web::put().to(decline),
        )
        .route("/admin/keys/rotate", web::post().to(rotate_keys))
        .route("/admin/logout-tokens", web::post().to(sign_logout_token))
        .route("/admin/refresh-tokens", web::post().to(mint_refresh_tokens));
}

async fn counters(p: web::Data<Provider>) -> HttpResponse {
    let counters = p.state().counters.clone();
    HttpResponse::Ok().json(counters)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    kind: FaultKind,
    #[serde(default = "one")]
    count: u32,
    #[serde(default = "one")]
    retry_after: u32,
    #[serde(default)]
    delay_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Refusals {
    count: u32,
}

/// The next `count` calls to the API answer 401 `invalid_token`, whatever the token.
async fn refuse_api_calls(p: web::Data<Provider>, body: web::Json<Refusals>) -> HttpResponse {
    if body.count > 10_000 {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({ "error": "count is at most 10000" }));
    }
    p.state().refuse_api_calls(body.count);
    HttpResponse::NoContent().finish()
}

fn one() -> u32 {
    1
}

/// Bounds on what the admin API accepts: enough for any test, not enough to wedge the
/// provider for hours.
const MAX_FAULTS: u32 = 10_000;
const MAX_DELAY_MS: u64 = 600_000;
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

fn out_of_range(what: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({
        "error": "invalid_request",
        "error_description": format!("{what} is out of range"),
    }))
}

async fn add_fault(p: web::Data<Provider>, body: web::Json<FaultRequest>) -> HttpResponse {
    if body.count > MAX_FAULTS {
        return out_of_range("count (at most 10000)");
    }
    if u64::from(body.retry_after) > MAX_DELAY_MS / 1000 {
        return out_of_range("retry_after (at most 600 s)");
    }
    if body.delay_ms.is_some_and(|d| d > MAX_DELAY_MS) {
        return out_of_range("delay_ms (at most 600000)");
    }
    let fault = Fault {
        kind: body.kind,
        retry_after: body.retry_after,
        delay_ms: body.delay_ms,
    };
    p.state().add_fault(fault, body.count);
    HttpResponse::NoContent().finish()
}

async fn clear_faults(p: web::Data<Provider>) -> HttpResponse {
    p.state().clear_faults();
    HttpResponse::NoContent().finish()
}

async fn get_behaviour(p: web::Data<Provider>) -> HttpResponse {
    HttpResponse::Ok().json(p.behaviour())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BehaviourPatch {
    access_token_ttl_secs: Option<u64>,
    refresh_token_ttl_secs: Option<u64>,
    rotation: Option<Rotation>,
    token_latency_ms: Option<u64>,
    api_latency_ms: Option<u64>,
    refresh_in_secs: Option<u64>,
    offline_access: Option<super::OfflineAccess>,
}

async fn patch_behaviour(p: web::Data<Provider>, patch: web::Json<BehaviourPatch>) -> HttpResponse {
    let latency = [patch.token_latency_ms, patch.api_latency_ms];
    if latency.into_iter().flatten().any(|ms| ms > MAX_DELAY_MS) {
        return out_of_range("a latency (at most 600000 ms)");
    }
    let ttls = [
        patch.access_token_ttl_secs,
        patch.refresh_token_ttl_secs,
        patch.refresh_in_secs,
    ];
    if ttls.into_iter().flatten().any(|s| s > MAX_TTL_SECS) {
        return out_of_range("a lifetime (at most 10 years)");
    }
    let mut behaviour = lock(&p.behaviour);
    let b: &mut Behaviour = &mut behaviour;
    b.access_token_ttl_secs = patch
        .access_token_ttl_secs
        .unwrap_or(b.access_token_ttl_secs);
    b.refresh_token_ttl_secs = patch
        .refresh_token_ttl_secs
        .unwrap_or(b.refresh_token_ttl_secs);
    b.rotation = patch.rotation.unwrap_or(b.rotation);
    b.token_latency_ms = patch.token_latency_ms.unwrap_or(b.token_latency_ms);
    b.api_latency_ms = patch.api_latency_ms.unwrap_or(b.api_latency_ms);
    b.refresh_in_secs = patch
        .refresh_in_secs
        .filter(|s| *s > 0)
        .or(b.refresh_in_secs);
    b.offline_access = patch.offline_access.unwrap_or(b.offline_access);
    HttpResponse::Ok().json(*b)
}

fn with_user(name: &str, act: impl FnOnce(&str)) -> HttpResponse {
    match parse_username(name) {
        Ok(user) => {
            act(&user);
            HttpResponse::NoContent().finish()
        }
        Err(problem) => HttpResponse::BadRequest().json(serde_json::json!({ "error": problem })),
    }
}

async fn revoke(p: web::Data<Provider>, name: web::Path<String>) -> HttpResponse {
    with_user(&name, |user| p.state().revoke_user(user))
}

/// Ends the user's sessions at the provider, as an administrator or the user elsewhere does,
/// and tells the clients (Back-Channel Logout; every client with a back-channel URI when the
/// user has no session). Answers how many sessions ended.
async fn logout(p: web::Data<Provider>, name: web::Path<String>) -> HttpResponse {
    let user = match parse_username(&name) {
        Ok(user) => user,
        Err(problem) => {
            return HttpResponse::BadRequest().json(serde_json::json!({ "error": problem }))
        }
    };
    let sessions = p.state().sessions.end_user(&user);
    super::logout::ended(&p, &user, &sessions).await;
    HttpResponse::Ok().json(serde_json::json!({ "sessions_ended": sessions.len() }))
}

async fn disable(p: web::Data<Provider>, name: web::Path<String>) -> HttpResponse {
    with_user(&name, |user| p.state().set_disabled(user, true))
}

async fn enable(p: web::Data<Provider>, name: web::Path<String>) -> HttpResponse {
    with_user(&name, |user| p.state().set_disabled(user, false))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Declined {
    scopes: Vec<String>,
}

/// The user withdraws consent for these scopes: later refreshes answer without them.
async fn decline(
    p: web::Data<Provider>,
    name: web::Path<String>,
    body: web::Json<Declined>,
) -> HttpResponse {
    let scopes = body.into_inner().scopes;
    if scopes.len() > 32 || scopes.iter().any(|s| s.len() > 256) {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({ "error": "at most 32 scopes of 256 characters" }));
    }
    with_user(&name, |user| p.state().set_declined(user, scopes))
}

/// Users `{prefix}{n:07}` for n in 0..count, each given a refresh token as if they had signed
/// in: how benchmarks seed many accounts without as many sign-ins.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    client_id: String,
    prefix: String,
    count: u32,
    #[serde(default = "sign_in_scopes")]
    scopes: Vec<String>,
}

fn sign_in_scopes() -> Vec<String> {
    ["openid", "profile", "offline_access", "User.Read"]
        .map(str::to_owned)
        .to_vec()
}

const MAX_MINTED: u32 = 1_000_000;

async fn mint_refresh_tokens(p: web::Data<Provider>, body: web::Json<MintRequest>) -> HttpResponse {
    if body.count > MAX_MINTED {
        return out_of_range("count (at most 1000000)");
    }
    if p.client(&body.client_id).is_none() {
        return HttpResponse::BadRequest().json(serde_json::json!({
            "error": "invalid_request",
            "error_description": "no such client",
        }));
    }
    let ttl = i64::try_from(p.behaviour().refresh_token_ttl_secs).unwrap_or(i64::MAX);
    let now = super::now();
    let mut users = Vec::with_capacity(body.count as usize);
    let mut state = p.state();
    for n in 0..body.count {
        let username = match parse_username(&format!("{}{n:07}", body.prefix)) {
            Ok(username) => username,
            Err(problem) => {
                return HttpResponse::BadRequest().json(serde_json::json!({ "error": problem }))
            }
        };
        let refresh_token =
            state.mint_refresh_token(&username, &body.client_id, &body.scopes, ttl, now);
        users.push(serde_json::json!({
            "oid": Profile::of(&username).id,
            "username": username,
            "refresh_token": refresh_token,
        }));
    }
    drop(state);
    HttpResponse::Ok().json(serde_json::json!({ "users": users }))
}

async fn rotate_keys(p: web::Data<Provider>) -> HttpResponse {
    match p.keys.rotate_id_key() {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => {
            HttpResponse::InternalServerError().json(serde_json::json!({ "error": e.to_string() }))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogoutClaims {
    claims: serde_json::Map<String, serde_json::Value>,
}

/// Signs `claims` as a logout token with the provider's key, whatever they say: how tests
/// make each kind of invalid logout token a client must refuse.
async fn sign_logout_token(p: web::Data<Provider>, body: web::Json<LogoutClaims>) -> HttpResponse {
    match p.keys.sign_logout_token(&body.claims) {
        Ok(token) => HttpResponse::Ok().json(serde_json::json!({ "logout_token": token })),
        Err(e) => {
            HttpResponse::InternalServerError().json(serde_json::json!({ "error": e.to_string() }))
        }
    }
}
