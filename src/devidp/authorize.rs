//! `/authorize` (code flow with PKCE S256, query or form_post), the sign-in form, and `/logout`.

use super::params::{scopes, Params};
use super::state::CodeRequest;
use super::users::parse_username;
use super::{now, pages, unknown_tenant, Provider};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

const SESSION_COOKIE: &str = "devidp_session";

/// A request whose client and redirect URI check out: errors from here on go back to it.
struct Authorization {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    form_post: bool,
}

enum Rejection {
    /// The client or redirect URI cannot be trusted: tell the user, never redirect (RFC 6749
    /// section 4.1.2.1).
    Page(String),
    Redirect(Authorization, &'static str, String),
}

impl Authorization {
    fn respond(&self, fields: &[(&str, &str)]) -> HttpResponse {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if let Some(state) = &self.state {
            all.push(("state", state));
        }
        if self.form_post {
            return pages::form_post(&self.redirect_uri, &all);
        }
        let mut target = match url::Url::parse(&self.redirect_uri) {
            Ok(url) => url,
            Err(_) => return pages::error(StatusCode::BAD_REQUEST, "The redirect URI is invalid."),
        };
        target.query_pairs_mut().extend_pairs(all);
        HttpResponse::Found()
            .insert_header(("Location", target.as_str()))
            .insert_header(("Cache-Control", "no-store"))
            .finish()
    }

    fn error(&self, error: &str, description: &str) -> HttpResponse {
        self.respond(&[("error", error), ("error_description", description)])
    }
}

/// Checks an authorization request; returns what the code will carry.
fn validate(p: &Provider, params: &Params) -> Result<(Authorization, CodeRequest), Rejection> {
    let client_id = params.get("client_id").unwrap_or_default();
    let Some(client) = p.client(client_id) else {
        return Err(Rejection::Page(format!("Unknown client_id {client_id:?}.")));
    };
    let redirect_uri = params.get("redirect_uri").unwrap_or_default();
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(Rejection::Page(format!(
            "redirect_uri {redirect_uri:?} is not registered for client {client_id}."
        )));
    }
    let mode = params.get("response_mode").unwrap_or("query");
    let auth = Authorization {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        state: params.get("state").map(str::to_owned),
        form_post: mode == "form_post",
    };
    let reject = |auth, error, description: &str| {
        Err(Rejection::Redirect(auth, error, description.to_owned()))
    };
    if mode != "query" && mode != "form_post" {
        return reject(
            auth,
            "invalid_request",
            "response_mode must be query or form_post",
        );
    }
    if params.get("response_type") != Some("code") {
        return reject(
            auth,
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let challenge = params.get("code_challenge").unwrap_or_default();
    if params.get("code_challenge_method") != Some("S256") || challenge.len() != 43 {
        return reject(
            auth,
            "invalid_request",
            "PKCE is required: code_challenge with code_challenge_method=S256",
        );
    }
    let mut requested = scopes(params.get("scope").unwrap_or_default());
    if requested.is_empty() {
        return reject(auth, "invalid_request", "scope is required");
    }
    if p.behaviour().offline_access != super::OfflineAccess::Scope
        && params.get("prompt") != Some("consent")
    {
        // OpenID Connect Core 11: offline_access is ignored without prompt=consent.
        requested.retain(|s| s != "offline_access");
    }
    let request = CodeRequest {
        client_id: auth.client_id.clone(),
        redirect_uri: auth.redirect_uri.clone(),
        challenge: challenge.to_owned(),
        nonce: params.get("nonce").map(str::to_owned),
        scopes: requested,
        username: String::new(),
        sid: None,
    };
    Ok((auth, request))
}

fn session_cookie(value: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .finish()
}

/// A code for `username`, signed in through the provider session `sid`.
fn issue(
    p: &Provider,
    auth: &Authorization,
    mut request: CodeRequest,
    username: &str,
    sid: &str,
) -> HttpResponse {
    if p.state().is_disabled(username) {
        return auth.error("access_denied", "the user account is disabled");
    }
    request.username = username.to_owned();
    request.sid = Some(sid.to_owned());
    let code = p.state().issue_code(request, now());
    auth.respond(&[("code", &code)])
}

fn handle(
    req: &HttpRequest,
    tenant: &str,
    p: &Provider,
    params: Params,
    submitted: Option<&str>,
) -> HttpResponse {
    if tenant != p.tenant_id {
        return unknown_tenant(tenant);
    }
    let (auth, request) = match validate(p, &params) {
        Ok(valid) => valid,
        Err(Rejection::Page(message)) => return pages::error(StatusCode::BAD_REQUEST, &message),
        Err(Rejection::Redirect(auth, error, description)) => {
            return auth.error(error, &description)
        }
    };
    let action = req.uri().path();
    if let Some(typed) = submitted {
        return match parse_username(typed) {
            Ok(username) => {
                let (cookie, sid) = p.state().sessions.start(&username);
                let mut response = issue(p, &auth, request, &username, &sid);
                let _ = response.add_cookie(&session_cookie(cookie));
                response
            }
            Err(problem) => pages::sign_in(params.pairs(), action, typed, &p.users, Some(problem)),
        };
    }
    let session_user = req.cookie(SESSION_COOKIE).and_then(|c| {
        let state = p.state();
        let session = state.sessions.get(c.value())?;
        Some((session.username.clone(), session.sid.clone()))
    });
    let prompt = params.get("prompt").unwrap_or_default();
    let hint = params
        .get("login_hint")
        .and_then(|h| parse_username(h).ok());
    match session_user {
        None if prompt == "none" => {
            auth.error("login_required", "no one is signed in at the provider")
        }
        // `login` and `select_account` show the form; `consent` is implied (no consent page).
        Some((user, sid))
            if !matches!(prompt, "login" | "select_account")
                && hint.as_ref().is_none_or(|h| *h == user) =>
        {
            issue(p, &auth, request, &user, &sid)
        }
        _ => pages::sign_in(
            params.pairs(),
            action,
            params.get("login_hint").unwrap_or_default(),
            &p.users,
            None,
        ),
    }
}

/// GET carries the parameters in the query, POST (the sign-in form, or a POSTed request) in
/// the body.
fn params_of(req: &HttpRequest, body: &[u8]) -> Result<Params, String> {
    if req.method() == actix_web::http::Method::POST {
        Params::parse(body)
    } else {
        Params::parse(req.query_string().as_bytes())
    }
}

/// `/authorize`, GET or POST. Only a POST (the sign-in form) may carry `username`.
pub async fn authorize(
    req: HttpRequest,
    tenant: web::Path<String>,
    body: web::Bytes,
    p: web::Data<Provider>,
) -> HttpResponse {
    match params_of(&req, &body) {
        Ok(params) => {
            let username = (req.method() == actix_web::http::Method::POST)
                .then(|| {
                    params
                        .pairs()
                        .iter()
                        .find(|(n, _)| n == "username")
                        .map(|(_, v)| v.clone())
                })
                .flatten();
            handle(&req, &tenant, &p, params, username.as_deref())
        }
        Err(problem) => pages::error(StatusCode::BAD_REQUEST, &problem),
    }
}

/// `/logout`, GET or POST: ends the browser's session at the provider and tells the clients
/// signed in through it (back-channel before answering; front-channel in the page).
pub async fn logout(
    req: HttpRequest,
    tenant: web::Path<String>,
    body: web::Bytes,
    p: web::Data<Provider>,
) -> HttpResponse {
    let params = match params_of(&req, &body) {
        Ok(params) => params,
        Err(problem) => return pages::error(StatusCode::BAD_REQUEST, &problem),
    };
    if *tenant != p.tenant_id {
        return unknown_tenant(&tenant);
    }
    let ended = req
        .cookie(SESSION_COOKIE)
        .and_then(|cookie| p.state().sessions.end(cookie.value()));
    let frames = match &ended {
        Some(session) => {
            super::logout::ended(&p, &session.username, std::slice::from_ref(session)).await
        }
        None => Vec::new(),
    };
    end_session(&p, &params, &frames)
}

fn end_session(p: &Provider, params: &Params, frames: &[String]) -> HttpResponse {
    let mut response = match params.get("post_logout_redirect_uri") {
        None => pages::signed_out(frames, None),
        Some(target) => {
            let registered = p
                .clients
                .iter()
                .filter(|c| params.get("client_id").is_none_or(|id| id == c.client_id))
                .any(|c| c.post_logout_redirect_uris.iter().any(|u| u == target));
            match url::Url::parse(target) {
                Ok(mut url) if registered => {
                    if let Some(state) = params.get("state") {
                        url.query_pairs_mut().append_pair("state", state);
                    }
                    if frames.is_empty() {
                        HttpResponse::Found().insert_header(("Location", url.as_str())).finish()
                    } else {
                        // The clients' front-channel pages load first, then the browser goes on.
                        pages::signed_out(frames, Some(url.as_str()))
                    }
                }
                _ => pages::error(
                    StatusCode::BAD_REQUEST,
                    "You have signed out, but post_logout_redirect_uri is not registered for this client.",
                ),
            }
        }
    };
    let _ = response.add_removal_cookie(&session_cookie(String::new()));
    response
}
