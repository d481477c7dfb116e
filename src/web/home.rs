//! `GET /`: the signed-in user's profile from the API, through silent token acquisition.

use super::error::WebError;
use super::request_id::RequestId;
use super::session::TypedSession;
use super::{html, pages, AppState};
use crate::api::{ApiClient, ApiError};
use crate::identity::acquire::Caller;
use crate::identity::AcquireError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

pub async fn home(
    state: web::Data<AppState>,
    api: web::Data<ApiClient>,
    session: TypedSession,
    rid: RequestId,
) -> Result<HttpResponse, WebError> {
    let Some(user) = state.user(&session) else {
        return Ok(html(StatusCode::OK, pages::signed_out("Welcome")));
    };
    let scopes: Vec<&str> = state.profile_scopes.iter().map(String::as_str).collect();
    let token = match state
        .acquirer
        .acquire_for_session(&user.home_account_id, &user.session(), &scopes)
        .await
    {
        Ok(token) => token,
        Err(AcquireError::SessionEnded) => {
            tracing::info!(request_id = %rid, account = %user.home_account_id, "a session that has ended: cookie dropped");
            session.sign_out();
            return Ok(html(
                StatusCode::OK,
                pages::signed_out("Your session has ended"),
            ));
        }
        Err(AcquireError::InteractionRequired { reason }) => {
            tracing::info!(request_id = %rid, account = %user.home_account_id, %reason, "interaction required");
            return Ok(HttpResponse::Found()
                .insert_header(("Location", "/signin?returnUrl=%2F"))
                .finish());
        }
        Err(e) => return Err(WebError::acquire(&e, &rid).signed_in(&user.csrf)),
    };
    let profile = match api.me(&token).await {
        // A token we believed valid, refused as invalid (expired on the way, revoked): one
        // refresh past it, one call more.
        Err(ApiError::InvalidToken(why)) => {
            tracing::info!(request_id = %rid, account = %user.home_account_id, %why, "the API refused the access token as invalid; refreshing once and calling again");
            let fresh = state
                .acquirer
                .acquire_after_rejection(&user.home_account_id, &scopes, Caller::Web, &token)
                .await
                .map_err(|e| WebError::acquire(&e, &rid).signed_in(&user.csrf))?;
            api.me(&fresh).await
        }
        called => called,
    }
    .map_err(|e| WebError::api(&e, &rid).signed_in(&user.csrf))?;
    Ok(html(
        StatusCode::OK,
        pages::profile(&user.name, &user.csrf, &profile),
    ))
}
