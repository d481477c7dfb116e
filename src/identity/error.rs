//! What can go wrong getting tokens, sorted by what the caller should do about it.

use super::http::HttpError;
use crate::text::{bound, REASON};
use openidconnect::RequestTokenError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A token endpoint's error body (RFC 6749 section 5.2), with Entra ID's `suberror`, which
/// decides whether an `invalid_grant` is the user's business or the app's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderError {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_uri: Option<String>,
    #[serde(default)]
    pub suberror: Option<String>,
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)?;
        if let Some(suberror) = &self.suberror {
            write!(f, " ({suberror})")?;
        }
        if let Some(description) = &self.error_description {
            write!(f, ": {description}")?;
        }
        Ok(())
    }
}

impl openidconnect::ErrorResponse for ProviderError {}

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
    /// This process cannot open the stored token caches: a cache key is missing or unknown,
    /// or plain rows are refused. A configuration error: nobody's row is touched.
    #[error("token cache keys are misconfigured: {0}")]
    CacheKeys(String),
    /// The provider's answer to a sign-in failed validation (ID token signature, audience,
    /// nonce, ...): the response is refused, the user may sign in again.
    #[error("the sign-in answer was refused: {0}")]
    Rejected(String),
    /// The session belongs to sign-ins that have ended (the user signed out, everywhere, or
    /// signed in again after a sign-out): it must not be used.
    #[error("the session has ended")]
    SessionEnded,
}

pub type TokenRequestError = RequestTokenError<HttpError, ProviderError>;

/// Sorts a token-endpoint failure by the rules MSAL follows (MSAL_CACHE.md).
pub fn classify(error: TokenRequestError) -> AcquireError {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let reason = bound(response.to_string(), REASON);
            let app_problem = matches!(
                response.suberror.as_deref(),
                Some("client_mismatch" | "protection_policy_required")
            );
            match response.error.as_str() {
                "invalid_grant" if app_problem => AcquireError::Configuration(reason),
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
            reason: bound(
                format!("the provider's answer could not be read: {e}"),
                REASON,
            ),
            retry_after: None,
        },
        RequestTokenError::Other(reason) => AcquireError::Transient {
            reason: bound(reason, REASON),
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

    fn server(code: &str, suberror: Option<&str>) -> AcquireError {
        classify(RequestTokenError::ServerResponse(ProviderError {
            error: code.into(),
            error_description: Some("why".into()),
            error_uri: None,
            suberror: suberror.map(str::to_owned),
        }))
    }

    #[test]
    fn provider_errors_are_sorted_as_msal_does() {
        for code in [
            "invalid_grant",
            "interaction_required",
            "login_required",
            "consent_required",
        ] {
            assert!(server(code, None).is_interaction_required(), "{code}");
        }
        for code in ["temporarily_unavailable", "server_error"] {
            assert!(
                matches!(server(code, None), AcquireError::Transient { .. }),
                "{code}"
            );
        }
        for code in ["invalid_client", "unauthorized_client", "invalid_scope"] {
            assert!(
                matches!(server(code, None), AcquireError::Configuration(_)),
                "{code}"
            );
        }
        assert_eq!(
            server("invalid_grant", None),
            AcquireError::InteractionRequired {
                reason: "invalid_grant: why".into()
            }
        );
        // Entra ID suberrors that are the app's problem, not the user's.
        for suberror in ["client_mismatch", "protection_policy_required"] {
            assert!(
                matches!(
                    server("invalid_grant", Some(suberror)),
                    AcquireError::Configuration(_)
                ),
                "{suberror}"
            );
        }
        assert!(server("invalid_grant", Some("bad_token")).is_interaction_required());
    }

    #[test]
    fn error_bodies_parse_with_or_without_suberror() {
        let entra: ProviderError = serde_json::from_str(
            r#"{"error":"invalid_grant","error_description":"AADSTS700082","suberror":"bad_token","error_codes":[700082]}"#,
        )
        .unwrap();
        assert_eq!(entra.suberror.as_deref(), Some("bad_token"));
        let plain: ProviderError = serde_json::from_str(r#"{"error":"invalid_client"}"#).unwrap();
        assert_eq!(plain.to_string(), "invalid_client");
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
