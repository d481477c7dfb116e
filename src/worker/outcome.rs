//! What happened to one account in a pass, as the report shows it: its outcome (`Kind`), the
//! reason, the token's expiry, each call of the job.

use crate::activity::store::Activity;
use serde::Serialize;

/// What happened to an account, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A token was acquired (cached or refreshed) and the API answered.
    Ok,
    /// The user must sign in to the web app again; later passes skip the account until then.
    InteractionRequired,
    /// The user signed out of the web app.
    SignedOut,
    /// The provider or the API was unavailable; tried again after `next_attempt_at`.
    Transient,
    /// The token was fine but the API refused the call.
    ApiError,
    /// The `--exec` command failed (another exit status than 0 or 77, a timeout, a stop).
    JobFailed,
    /// `--dry-run`: this account would be processed.
    WouldProcess,
}

impl Kind {
    /// As JSON reports and metrics name it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::InteractionRequired => "interaction_required",
            Kind::SignedOut => "signed_out",
            Kind::Transient => "transient",
            Kind::ApiError => "api_error",
            Kind::JobFailed => "job_failed",
            Kind::WouldProcess => "would_process",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::InteractionRequired => "interaction required",
            Kind::SignedOut => "signed out",
            Kind::Transient => "transient",
            Kind::ApiError => "API error",
            Kind::JobFailed => "job failed",
            Kind::WouldProcess => "would process",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct AccountReport {
    /// The account's cache key (home account id).
    pub account: String,
    /// The user principal name, when known.
    pub user: Option<String>,
    pub outcome: Kind,
    pub reason: Option<String>,
    /// The access token's expiry (Unix seconds), when one was acquired.
    pub token_expires_on: Option<i64>,
    pub attempts: u32,
    pub elapsed_ms: u64,
    /// The `--exec` command's last exit status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Each call of the job that was made, with its status (None: it failed, see `reason`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<CallReport>,
}

/// One call of the job, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// `NAME:METHOD:/path`.
    pub call: String,
    pub status: Option<u16>,
}

impl CallReport {
    pub(super) fn of(spec: &crate::settings::CallSpec, status: Option<u16>) -> Self {
        Self {
            call: spec.to_string(),
            status,
        }
    }
}

impl AccountReport {
    pub fn new(activity: &Activity, outcome: Kind) -> Self {
        Self {
            account: activity.account_cache_key.clone(),
            user: activity.user_principal_name.clone(),
            outcome,
            reason: None,
            token_expires_on: None,
            attempts: 0,
            elapsed_ms: 0,
            exit_code: None,
            calls: Vec::new(),
        }
    }
}
