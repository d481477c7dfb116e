//! What can go wrong getting tokens, sorted by what the caller should do about it.

use super::http::HttpError;
use openidconnect::core::CoreErrorResponseType;
use openidconnect::{RequestTokenError, StandardErrorResponse};
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AcquireError {
    /// The user must sign in again (no refresh token, or the provider refused it).
    #[error("the user must sign in again: {reason}")]
    InteractionRequired { reason: String },
    /// The provider or the network failed; try again later. Never the user's fault.
    #[error("the identity provider is unavailable: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The client registration or settings are wrong; report it loudly, do not blame the user.
    #[error("identity configuration error: {0}")]
    Configuration(String),
    /// The token cache could not be read or written.
    #[error("token cache unavailable: {0}")]
    Storage(String),
}

pub type TokenRequestError =
    RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>;

/// Sorts a token-endpoint failure by the rules MSAL follows (MSAL_CACHE.md).
pub fn classify(error: TokenRequestError) -> AcquireError {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let code = response.error().as_ref().to_owned();
            let reason = match response.error_description() {
                Some(description) => format!("{code}: {description}"),
                None => code.clone(),
            };
            match code.as_str() {
                "invalid_grant"
                | "interaction_required"
                | "login_required"
                | "consent_required" => AcquireError::InteractionRequired { reason },
                "temporarily_unavailable" | "server_error" => AcquireError::Transient {
                    reason,
                    retry_after: None,
                },
                _ => AcquireError::Configuration(reason),
            }
        }
        RequestTokenError::Request(HttpError::Unavailable {
            status,
            retry_after,
        }) => AcquireError::Transient {
            reason: format!("the provider answered HTTP {status}"),
            retry_after,
        },
        RequestTokenError::Request(HttpError::Request(reason)) => {
            AcquireError::Configuration(reason)
        }
        RequestTokenError::Request(other) => AcquireError::Transient {
            reason: other.to_string(),
            retry_after: None,
        },
        RequestTokenError::Parse(e, _) => AcquireError::Transient {
            reason: format!("the provider's answer could not be read: {e}"),
            retry_after: None,
        },
        RequestTokenError::Other(reason) => AcquireError::Transient {
            reason,
            retry_after: None,
        },
    }
}

impl AcquireError {
    pub fn is_interaction_required(&self) -> bool {
        matches!(self, Self::InteractionRequired { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openidconnect::core::CoreErrorResponseType as Code;

    fn server(code: Code) -> AcquireError {
        classify(RequestTokenError::ServerResponse(
            StandardErrorResponse::new(code, Some("why".into()), None),
        ))
    }

    #[test]
    fn provider_errors_are_sorted_as_msal_does() {
        for code in [
            Code::InvalidGrant,
            Code::Extension("interaction_required".into()),
            Code::Extension("login_required".into()),
            Code::Extension("consent_required".into()),
        ] {
            assert!(server(code.clone()).is_interaction_required(), "{code:?}");
        }
        for code in [
            Code::Extension("temporarily_unavailable".into()),
            Code::Extension("server_error".into()),
        ] {
            assert!(
                matches!(server(code.clone()), AcquireError::Transient { .. }),
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidClient,
            Code::UnauthorizedClient,
            Code::InvalidScope,
        ] {
            assert!(
                matches!(server(code.clone()), AcquireError::Configuration(_)),
                "{code:?}"
            );
        }
        assert_eq!(
            server(Code::InvalidGrant),
            AcquireError::InteractionRequired {
                reason: "invalid_grant: why".into()
            }
        );
    }

    #[test]
    fn unavailable_providers_are_transient_and_keep_retry_after() {
        let busy = classify(RequestTokenError::Request(HttpError::Unavailable {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
        }));
        assert_eq!(
            busy,
            AcquireError::Transient {
                reason: "the provider answered HTTP 429".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            classify(RequestTokenError::Request(HttpError::Timeout)),
            AcquireError::Transient { .. }
        ));
        assert!(matches!(
            classify(RequestTokenError::Request(HttpError::Network(
                "refused".into()
            ))),
            AcquireError::Transient { .. }
        ));
    }
}
