//! Sign-out that starts at the provider: OpenID Connect Back-Channel Logout 1.0. The provider
//! POSTs a logout token (form-encoded `logout_token`); once it passes every check
//! (`identity::provider::logout_token`) and has not been seen before (`cache::replay`, where
//! the caches live, so a replay to another replica is refused too), the user it names by `sub`
//! is signed out everywhere: the cache row deleted, the activity marked as signed out at the
//! provider (the worker stops at once), the refresh token revoked. Answers 200 with
//! `Cache-Control: no-store`, or 400 with an `error` body, as section 2.8 says.

use super::request_id::RequestId;
use super::AppState;
use crate::activity::store as activities;
use crate::cache::replay::token_key;
use crate::db::DbError;
use crate::identity::provider::LogoutTokenError;
use crate::metrics::metrics;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

/// Remembered past the token's expiry by the clock skew the check allows.
const REMEMBER_PAST_EXPIRY: time::Duration = time::Duration::seconds(60);

fn answer(status: StatusCode, error: Option<(&str, &str)>) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.insert_header(("Cache-Control", "no-store"));
    match error {
        None => response.finish(),
        Some((error, description)) => response.json(serde_json::json!({
            "error": error,
            "error_description": description,
        })),
    }
}

fn refused(rid: &RequestId, result: &'static str, why: &str) -> HttpResponse {
    metrics().logout("backchannel", result);
    tracing::info!(request_id = %rid, result, why, "back-channel logout refused");
    answer(StatusCode::BAD_REQUEST, Some(("invalid_request", why)))
}

/// `POST {web.backchannel_logout_path}`.
pub async fn backchannel(
    state: web::Data<AppState>,
    body: web::Bytes,
    rid: RequestId,
) -> HttpResponse {
    let token = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "logout_token")
        .map(|(_, value)| value.into_owned());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return refused(&rid, "invalid", "logout_token is required");
    };
    let now = state.clock.now();
    let provider = state.acquirer.provider();
    let checked = match provider
        .validate_logout_token(&token, now.unix_timestamp())
        .await
    {
        Ok(checked) => checked,
        Err(LogoutTokenError::Invalid(why)) => return refused(&rid, "invalid", &why),
        Err(LogoutTokenError::Unavailable(why)) => {
            metrics().logout("backchannel", "unavailable");
            tracing::warn!(request_id = %rid, %why, "back-channel logout: the provider's keys cannot be loaded");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                Some((
                    "temporarily_unavailable",
                    "the provider's keys cannot be loaded",
                )),
            );
        }
    };
    let Some(subject) = checked.sub.clone() else {
        // Which of the app's sessions began with a provider session is not recorded yet.
        return refused(
            &rid,
            "invalid",
            "a logout token naming only a sid is not supported yet: it needs a sub",
        );
    };
    let expires_at = time::OffsetDateTime::from_unix_timestamp(checked.expires_at).unwrap_or(now)
        + REMEMBER_PAST_EXPIRY;
    let key = token_key(provider.issuer(), &checked.jti);
    match state
        .acquirer
        .caches()
        .first_sighting(&key, expires_at, now)
        .await
    {
        Ok(true) => {}
        Ok(false) => return refused(&rid, "replayed", "this logout token was used already"),
        Err(e) => return unavailable(&rid, &e.to_string()),
    }
    let (accounts, signed_out) = match sign_out(&state, &subject).await {
        Ok(done) => done,
        Err(why) => {
            // Not carried out: the provider may send the token again.
            if let Err(e) = state.acquirer.caches().forget_sighting(&key).await {
                tracing::warn!(request_id = %rid, error = %e, "could not forget the logout token; a resend will be refused");
            }
            return unavailable(&rid, &why);
        }
    };
    let result = if accounts == 0 {
        "no_account"
    } else {
        "signed_out"
    };
    metrics().logout("backchannel", result);
    tracing::info!(
        request_id = %rid,
        accounts,
        signed_out,
        sid = checked.sid.is_some(),
        "back-channel logout: the user signed out at the provider"
    );
    answer(StatusCode::OK, None)
}

/// Signs out every account whose last sign-in had `subject`: how many there were, and how
/// many still had a cache row.
async fn sign_out(state: &AppState, subject: &str) -> Result<(usize, usize), String> {
    let wanted = subject.to_owned();
    let accounts = state
        .db
        .run(move |conn| activities::find_by_subject(conn, &wanted).map_err(DbError::from))
        .await
        .map_err(|e| e.to_string())?;
    let mut signed_out = 0;
    for account in &accounts {
        let removed = state
            .acquirer
            .sign_out_at_provider(&account.account_cache_key)
            .await
            .map_err(|e| e.to_string())?;
        signed_out += usize::from(removed);
    }
    Ok((accounts.len(), signed_out))
}

/// The store did not answer: the sign-out was not carried out (the provider may send the
/// token again).
fn unavailable(rid: &RequestId, why: &str) -> HttpResponse {
    metrics().logout("backchannel", "unavailable");
    tracing::error!(request_id = %rid, %why, "back-channel logout could not be carried out");
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(("temporarily_unavailable", "the token store did not answer")),
    )
}
