//! Sign-out that starts at the provider. Back-Channel Logout 1.0: the provider POSTs a logout
//! token (form-encoded `logout_token`); once it passes every check
//! (`identity::provider::logout_token`) and has not been seen before (`cache::replay`, where
//! the caches live, so a replay to another replica is refused too), what it names ends: by
//! `sid`, the app sessions that began in that provider session (and the cache of a user left
//! with none); by `sub`, the user everywhere (the cache row deleted, the activity marked as
//! signed out at the provider, so the worker stops at once, the refresh token revoked). Answers
//! 200 with `Cache-Control: no-store`, or 400 with an `error` body, as section 2.8 says.
//! Front-Channel Logout 1.0: the provider's logout page loads `?iss=&sid=` in an iframe; the
//! accounts that signed in through that `sid` are signed out everywhere.

use super::request_id::RequestId;
use super::{pages, AppState};
use crate::activity::store as activities;
use crate::cache::replay::token_key;
use crate::db::DbError;
use crate::identity::provider::LogoutTokenError;
use crate::identity::AcquireError;
use crate::metrics::metrics;
use crate::settings::ProviderKind;
use crate::text::{bounded, LOG_FIELD};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

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
        Err(e) => return unavailable(&rid, "backchannel", &e.to_string()),
    }
    let ended = match end(&state, checked.sub.as_deref(), checked.sid.as_deref()).await {
        Ok(ended) => ended,
        Err(e) => {
            // Not carried out: the provider may send the token again.
            if let Err(e) = state.acquirer.caches().forget_sighting(&key).await {
                tracing::warn!(request_id = %rid, error = %e, "could not forget the logout token; a resend will be refused");
            }
            return unavailable(&rid, "backchannel", &e.to_string());
        }
    };
    metrics().logout("backchannel", ended.result());
    tracing::info!(
        request_id = %rid,
        by = ended.by,
        accounts = ended.accounts,
        caches_deleted = ended.caches,
        sessions_ended = ended.sessions,
        "back-channel logout: the user signed out at the provider"
    );
    answer(StatusCode::OK, None)
}

/// What a logout ended, and by what it found it.
struct Ended {
    by: &'static str,
    accounts: usize,
    caches: usize,
    sessions: usize,
}

impl Ended {
    fn result(&self) -> &'static str {
        match (self.caches, self.sessions) {
            (0, 0) => "no_account",
            (0, _) => "sessions_ended",
            _ => "signed_out",
        }
    }
}

/// Ends what a logout token names. By `sid`: the app sessions that began in that provider
/// session (of the user `sub` names, when it does), and the cache of a user left with none.
/// By `sub` (alone, or with a `sid` no sign-in here recorded: the sessions it names cannot be
/// told apart, so all of them end): every account whose last sign-in had it, everywhere.
async fn end(
    state: &AppState,
    sub: Option<&str>,
    sid: Option<&str>,
) -> Result<Ended, AcquireError> {
    if let Some(sid) = sid {
        if let Some(ended) = state.acquirer.end_provider_session(sid, sub, false).await? {
            return Ok(Ended {
                by: "sid",
                accounts: ended.accounts,
                caches: ended.caches,
                sessions: ended.sessions,
            });
        }
    }
    let Some(subject) = sub else {
        return Ok(Ended {
            by: "sid",
            accounts: 0,
            caches: 0,
            sessions: 0,
        });
    };
    let wanted = subject.to_owned();
    let accounts = state
        .db
        .run(move |conn| activities::find_by_subject(conn, &wanted).map_err(DbError::from))
        .await?;
    let mut caches = 0;
    for account in &accounts {
        let removed = state
            .acquirer
            .sign_out_at_provider(&account.account_cache_key)
            .await?;
        caches += usize::from(removed);
    }
    Ok(Ended {
        by: "sub",
        accounts: accounts.len(),
        caches,
        sessions: 0,
    })
}

#[derive(Deserialize)]
pub struct FrontChannelQuery {
    iss: Option<String>,
    sid: Option<String>,
}

/// The longest `sid` looked up: providers' are GUIDs or a few dozen characters.
const MAX_SID: usize = 512;

/// `GET {web.frontchannel_logout_path}?iss=&sid=`: Front-Channel Logout 1.0. The provider's
/// logout page loads this in an iframe in the user's browser, where the session cookie
/// (SameSite=Lax) is not sent: the `sid` names the provider session, and the accounts that
/// signed in through it are signed out everywhere (the browser is the user's, so the user's
/// cache goes, as with `POST /signout`). `iss` must be the issuer; Entra ID, which sends
/// only `sid`, may leave it out. Answers a page that only the provider's origins may frame,
/// never cached.
pub async fn frontchannel(
    state: web::Data<AppState>,
    query: web::Query<FrontChannelQuery>,
    rid: RequestId,
) -> HttpResponse {
    let provider = state.acquirer.provider();
    let ancestors = provider.logout_page_origins().await.join(" ");
    let page = |status: StatusCode, heading: &str| {
        HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .insert_header((
                "Content-Security-Policy",
                format!("default-src 'none'; frame-ancestors {ancestors}; base-uri 'none'"),
            ))
            .body(pages::logout_frame(heading).into_string())
    };
    let query = query.into_inner();
    let issuer_ok = match query.iss.as_deref() {
        Some(iss) => iss == provider.issuer(),
        None => provider.kind() == ProviderKind::Entra,
    };
    let sid = query
        .sid
        .filter(|sid| !sid.is_empty() && sid.len() <= MAX_SID);
    let Some(sid) = sid.filter(|_| issuer_ok) else {
        metrics().logout("frontchannel", "invalid");
        tracing::info!(
            request_id = %rid,
            iss = ?query.iss.as_deref().map(|i| bounded(i, LOG_FIELD)),
            "front-channel logout refused: it needs this provider's iss and a sid"
        );
        return page(StatusCode::BAD_REQUEST, "This logout request is not valid");
    };
    match state.acquirer.end_provider_session(&sid, None, true).await {
        Ok(ended) => {
            let ended = ended.unwrap_or_default();
            let result = if ended.caches > 0 {
                "signed_out"
            } else {
                "no_account"
            };
            metrics().logout("frontchannel", result);
            tracing::info!(
                request_id = %rid,
                by = "sid",
                accounts = ended.accounts,
                caches_deleted = ended.caches,
                "front-channel logout: the user signed out at the provider"
            );
            page(StatusCode::OK, "Signed out")
        }
        Err(e) => {
            let _ = unavailable(&rid, "frontchannel", &e.to_string());
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The sign-out could not be completed",
            )
        }
    }
}

/// The store did not answer: the sign-out was not carried out (the provider may send the
/// token again).
fn unavailable(rid: &RequestId, kind: &'static str, why: &str) -> HttpResponse {
    metrics().logout(kind, "unavailable");
    tracing::error!(request_id = %rid, %why, "back-channel logout could not be carried out");
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(("temporarily_unavailable", "the token store did not answer")),
    )
}
