//! Errors shown to people: a status, a human sentence and the request id. Details go to the
//! log (with the same request id), never to the page.

use super::pages;
use super::request_id::RequestId;
use crate::api::ApiError;
use crate::identity::AcquireError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use std::fmt;

pub struct WebError {
    status: StatusCode,
    title: &'static str,
    sentence: String,
    request_id: RequestId,
    /// Passed on as `Retry-After` (a provider's, on a 503).
    retry_after: Option<std::time::Duration>,
    /// The signed-in user's CSRF token: the page offers sign-out.
    sign_out: Option<String>,
}

impl fmt::Debug for WebError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.status, self.sentence, self.request_id)
    }
}

impl fmt::Display for WebError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sentence)
    }
}

impl WebError {
    pub fn new(
        status: StatusCode,
        title: &'static str,
        sentence: impl Into<String>,
        request_id: &RequestId,
    ) -> Self {
        Self {
            status,
            title,
            sentence: sentence.into(),
            request_id: request_id.clone(),
            retry_after: None,
            sign_out: None,
        }
    }

    /// For a signed-in user: the page offers sign-out, so no error traps them.
    pub fn signed_in(mut self, csrf: &str) -> Self {
        self.sign_out = Some(csrf.to_owned());
        self
    }

    pub fn bad_request(sentence: impl Into<String>, request_id: &RequestId) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "That did not work",
            sentence,
            request_id,
        )
    }

    pub fn sign_in_failed(sentence: impl Into<String>, request_id: &RequestId) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            sentence,
            request_id,
        )
    }

    /// Token acquisition failed; the detail is logged, the page says whose fault it is.
    pub fn acquire(e: &AcquireError, request_id: &RequestId) -> Self {
        if matches!(
            e,
            AcquireError::Configuration(_) | AcquireError::CacheKeys(_)
        ) {
            tracing::error!(request_id = %request_id, error = %e, "token acquisition failed: fix the configuration");
        } else {
            tracing::warn!(request_id = %request_id, error = %e, "token acquisition failed");
        }
        match e {
            AcquireError::InteractionRequired { .. } => Self::sign_in_failed(
                "The sign-in could not be completed. Please sign in again.",
                request_id,
            ),
            AcquireError::Rejected(_) => Self::sign_in_failed(
                "The identity provider's answer could not be used. Please sign in again.",
                request_id,
            ),
            AcquireError::SessionEnded => {
                Self::sign_in_failed("Your session has ended. Please sign in again.", request_id)
            }
            AcquireError::Transient { retry_after, .. } => Self {
                retry_after: *retry_after,
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Identity provider unavailable",
                    "The identity provider is not answering right now. Please try again in a \
                     moment.",
                    request_id,
                )
            },
            AcquireError::Storage(_) => Self::database_down(request_id),
            AcquireError::CacheKeys(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Configuration problem",
                "This server cannot open the stored sign-ins: its token cache encryption keys \
                 (cache.keys) are not the keys they were sealed with. An administrator has to \
                 fix this; nothing was changed.",
                request_id,
            ),
            AcquireError::Configuration(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Configuration problem",
                "The app and the identity provider disagree about its registration. An \
                 administrator has to fix this.",
                request_id,
            ),
        }
    }

    pub fn database_down(request_id: &RequestId) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            "The token store is unavailable right now. Please try again in a moment.",
            request_id,
        )
    }

    pub fn api(e: &ApiError, request_id: &RequestId) -> Self {
        tracing::warn!(request_id = %request_id, error = %e, "the API call failed");
        match e {
            ApiError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "API unavailable",
                "The API that holds your profile is not answering right now. Please try again in a moment.",
                request_id,
            ),
            ApiError::Refused(_) | ApiError::InvalidToken(_) | ApiError::Unexpected(_) => Self::new(
                StatusCode::BAD_GATEWAY,
                "API error",
                "The API that holds your profile refused the request.",
                request_id,
            ),
        }
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response
            .content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"));
        if let Some(after) = self.retry_after {
            response.insert_header(("Retry-After", after.as_secs().max(1).to_string()));
        }
        let page = pages::error(
            self.title,
            &self.sentence,
            self.request_id.as_str(),
            self.sign_out.as_deref(),
        );
        response.body(page.into_string())
    }
}
