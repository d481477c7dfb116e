//! Sign-in, the OpenID Connect callback, and sign-out.

use super::error::WebError;
use super::pending::{self, PendingSignIn};
use super::request_id::RequestId;
use super::session::TypedSession;
use super::AppState;
use crate::identity::{AcquireError, ResponseIssuer, SignedOut};
use crate::text::{bounded, LOG_FIELD};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// The longest `returnUrl` kept: the sign-in cookie must stay far below browsers' 4 KiB.
const MAX_RETURN_URL: usize = 1024;

/// `returnUrl` must be a path on this site (no scheme, no host, no `//` or `\` tricks) of at
/// most [`MAX_RETURN_URL`] bytes; anything else means `/`.
pub fn local_path(candidate: Option<&str>) -> String {
    match candidate {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && path.len() <= MAX_RETURN_URL
                && !path.chars().any(|c| c == '\\' || c.is_control()) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[derive(Deserialize)]
pub struct SignInQuery {
    #[serde(rename = "returnUrl")]
    return_url: Option<String>,
}

/// `GET /signin?returnUrl=/path`: off to the provider, with state, nonce and PKCE verifier in
/// a short-lived encrypted cookie.
pub async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<SignInQuery>,
    rid: RequestId,
) -> Result<HttpResponse, WebError> {
    let (url, sign_in) = state
        .acquirer
        .provider()
        .begin_sign_in(None)
        .await
        .map_err(|e| WebError::acquire(&e, &rid))?;
    let now = state.clock.now().unix_timestamp();
    let pending = PendingSignIn {
        state: sign_in,
        return_url: local_path(query.return_url.as_deref()),
        started: now,
        order: time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
    };
    let cookie = pending::seal(&state, &pending)
        .ok_or_else(|| WebError::bad_request("Cannot start the sign-in.", &rid))?;
    let mut response = HttpResponse::Found();
    response
        .insert_header(("Location", url.as_str()))
        .insert_header(("Cache-Control", "no-store"));
    for old in pending::to_drop(&state, &req, now) {
        response.cookie(old);
    }
    Ok(response.cookie(cookie).finish())
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// RFC 9207: the issuer that answered.
    iss: Option<String>,
}

/// `GET /signin-oidc`: the provider's answer. tokenbridge asks for `response_mode=query`
/// always: a `form_post` answer is a cross-site POST, on which browsers do not send the
/// SameSite=Lax sign-in cookie, so it could never be matched to its browser.
pub async fn callback_get(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    query: web::Query<Callback>,
    rid: RequestId,
) -> HttpResponse {
    let params = query.into_inner();
    let cookie = params.state.as_deref().map(|s| pending::name(&state, s));
    let mut response = match callback(&req, &state, &session, params, &rid).await {
        Ok(response) => response,
        Err(e) => actix_web::ResponseError::error_response(&e),
    };
    // Whatever the outcome, this sign-in's cookie is gone afterwards.
    if let Some(name) = cookie {
        let _ = response.add_cookie(&pending::removal(&state, &name));
    }
    response
}

async fn callback(
    req: &HttpRequest,
    state: &AppState,
    session: &TypedSession,
    params: Callback,
    rid: &RequestId,
) -> Result<HttpResponse, WebError> {
    // Before anything else, errors included: a response from a provider mixed up with ours
    // is not acted on (RFC 9207).
    match state
        .acquirer
        .provider()
        .check_response_issuer(params.iss.as_deref())
        .await
    {
        Ok(()) => {}
        Err(ResponseIssuer::Unavailable(e)) => return Err(WebError::acquire(&e, rid)),
        Err(refused) => {
            tracing::info!(request_id = %rid, problem = ?refused, iss = ?params.iss.as_deref().map(|i| bounded(i, LOG_FIELD)), "sign-in response refused: its issuer is not the configured one");
            return Err(WebError::sign_in_failed(
                "This sign-in response did not come from the identity provider this app sent you \
                 to. Please sign in again.",
                rid,
            ));
        }
    }
    if let Some(error) = params.error {
        tracing::info!(
            request_id = %rid,
            error = %bounded(&error, LOG_FIELD),
            description = ?params.error_description.as_deref().map(|d| bounded(d, LOG_FIELD)),
            "the provider refused the sign-in"
        );
        let sentence = match error.as_str() {
            "access_denied" => {
                "The identity provider did not let you sign in (access denied).".to_owned()
            }
            _ => format!(
                "The identity provider refused the sign-in ({}).",
                short(&error)
            ),
        };
        return Err(WebError::sign_in_failed(sentence, rid));
    }
    let returned_state = params.state.unwrap_or_default();
    let pending = pending::open(state, req, &returned_state).ok_or_else(|| {
        WebError::sign_in_failed(
            "This sign-in expired or was started in another browser. Please sign in again.",
            rid,
        )
    })?;
    let now = state.clock.now().unix_timestamp();
    let state_matches = bool::from(
        returned_state
            .as_bytes()
            .ct_eq(pending.state.state.as_bytes()),
    );
    if !state_matches || now - pending.started > pending::TTL {
        return Err(WebError::sign_in_failed(
            "This sign-in response does not belong to this browser. Please sign in again.",
            rid,
        ));
    }
    let code = params
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| WebError::sign_in_failed("The sign-in response has no code.", rid))?;
    let signed_in = state
        .acquirer
        .sign_in(&code, &pending.state, state.web.session_absolute)
        .await
        .map_err(|e| match e {
            // The user's to retry: an expired or replayed code, an answer that fails
            // validation. The app's configuration (invalid_client, ...) is not: a 500 that
            // says so, logged at ERROR, and /readyz fails until the provider accepts us again.
            AcquireError::InteractionRequired { .. } | AcquireError::Rejected(_) => {
                tracing::info!(request_id = %rid, error = %e, "code redemption failed");
                WebError::sign_in_failed(
                    "The identity provider's answer could not be used. Please sign in again.",
                    rid,
                )
            }
            other => WebError::acquire(&other, rid),
        })?;
    session
        .sign_in(
            &signed_in.home_account_id,
            &signed_in.display_name,
            signed_in.session_epoch,
            signed_in.session_id.as_deref(),
            now,
        )
        .map_err(|_| WebError::bad_request("Cannot start a session.", rid))?;
    tracing::info!(request_id = %rid, account = %signed_in.home_account_id, "signed in");
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", pending.return_url))
        .finish())
}

/// Provider error codes are shown, but only as short plain tokens.
fn short(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

#[derive(Deserialize)]
pub struct SignOutForm {
    csrf: Option<String>,
}

/// `POST /signout` with the session's CSRF token.
pub async fn sign_out(
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<SignOutForm>,
    rid: RequestId,
) -> Result<HttpResponse, WebError> {
    let Some(user) = state.user(&session) else {
        return Ok(HttpResponse::SeeOther()
            .insert_header(("Location", "/"))
            .finish());
    };
    let given = form.csrf.clone().unwrap_or_default();
    if !bool::from(given.as_bytes().ct_eq(user.csrf.as_bytes())) || given.is_empty() {
        return Err(WebError::bad_request(
            "The sign-out form has expired. Reload the page and try again.",
            &rid,
        ));
    }
    // Whatever happens below, this browser is signed out.
    let outcome = state
        .acquirer
        .sign_out(&user.home_account_id, &user.session())
        .await;
    session.sign_out();
    let provider_logout = state
        .acquirer
        .provider()
        .end_session_url(&state.web.post_logout_redirect_uri())
        .await;
    let target = match outcome.map_err(|e| WebError::acquire(&e, &rid))? {
        SignedOut::Done => {
            tracing::info!(request_id = %rid, account = %user.home_account_id, "signed out");
            provider_logout.map_or_else(|| "/signout-callback-oidc".to_owned(), |u| u.to_string())
        }
        // A copy of an ended session (the user signed out, or signed in again since) signs
        // nobody out: it is only dropped.
        SignedOut::NotCurrent => {
            tracing::info!(request_id = %rid, account = %user.home_account_id, "sign-out from an ended session: cookie dropped");
            "/".to_owned()
        }
        SignedOut::Deferred => {
            return Ok(super::html(
                actix_web::http::StatusCode::OK,
                super::pages::signed_out_pending(provider_logout.as_ref().map(|u| u.as_str())),
            ));
        }
    };
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", target))
        .finish())
}

/// `GET /signout-callback-oidc`: where the provider sends people after signing out.
pub async fn signed_out() -> HttpResponse {
    super::html(
        actix_web::http::StatusCode::OK,
        super::pages::signed_out("You have signed out"),
    )
}
