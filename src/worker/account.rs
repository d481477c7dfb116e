//! One account: acquire a token silently, call the API, sort what happened into an outcome,
//! retrying transient failures within the pass (exponential backoff with jitter, honouring
//! `Retry-After`), and record it on the activity row.

use super::job::{Api, Job};
pub(super) use super::outcome::{AccountReport, CallReport, Kind};
use super::{PassError, Worker};
use crate::activity::store::{self as activities, Activity, Outcome};
use crate::api::ApiError;
use crate::identity::acquire::{AccessToken, Caller};
use crate::identity::AcquireError;
use crate::settings::DEFAULT_API;
use crate::text::{bound, REASON};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::watch;

/// Why one attempt failed.
pub(super) enum Failure {
    Interaction(String),
    Transient {
        reason: String,
        retry_after: Option<Duration>,
        /// The request reached the API, or may have: a call that is not idempotent is not
        /// sent again.
        sent: bool,
    },
    Api(String),
    Fatal(PassError),
}

impl From<AcquireError> for Failure {
    fn from(e: AcquireError) -> Self {
        // Reasons come from outside (the provider's words): bounded before they are reported
        // or stored.
        let cut = |reason: String| bound(reason, REASON);
        match e {
            AcquireError::InteractionRequired { reason } => Failure::Interaction(cut(reason)),
            // Only pages carry sessions; for a worker the row is simply gone.
            AcquireError::SessionEnded => Failure::Interaction("no token cache".into()),
            AcquireError::Transient {
                reason,
                retry_after,
            } => Failure::Transient {
                reason: cut(reason),
                retry_after,
                sent: false,
            },
            e @ (AcquireError::Configuration(_)
            | AcquireError::CacheKeys(_)
            | AcquireError::Rejected(_)) => {
                Failure::Fatal(PassError::Configuration(cut(e.to_string())))
            }
            AcquireError::Storage(reason) => Failure::Fatal(PassError::Storage(cut(reason))),
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unavailable(_) => Failure::Transient {
                reason: bound(e.to_string(), REASON),
                retry_after: None,
                sent: true,
            },
            ApiError::Refused(_) | ApiError::InvalidToken(_) | ApiError::Unexpected(_) => {
                Failure::Api(bound(e.to_string(), REASON))
            }
        }
    }
}

/// Longest pause between two tries of one account within a pass.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// The pause before try `attempt + 1`: 0.5 s doubling, with ±50% jitter, at least what the
/// provider asked for.
pub(super) fn pause(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << attempt.min(10));
    let jittered = base.mul_f64(0.5 + rand::random::<f64>());
    jittered.max(retry_after.unwrap_or_default()).min(MAX_PAUSE)
}

/// When an account that keeps failing transiently is tried again: a minute, doubling with each
/// consecutive failure, at most an hour, with jitter so accounts do not return in a herd.
pub(super) fn next_attempt(now: OffsetDateTime, failures: i32) -> OffsetDateTime {
    let minutes = 1_i64 << failures.clamp(0, 6);
    let jitter = rand::random::<f64>() * 0.2 + 0.9;
    let seconds = (minutes.min(60) as f64 * 60.0 * jitter) as i64;
    now + time::Duration::seconds(seconds)
}

/// What became of an account whose cache went during a pass.
enum Gone {
    No,
    SignedOut(&'static str),
    Erased,
}

/// The reason a signed-out account is reported with.
fn signed_out_reason(activity: &Activity) -> &'static str {
    if activity.signed_out_at_the_provider() {
        "the user signed out at the provider"
    } else {
        "the user signed out of the web app"
    }
}

/// The problem the web app recorded when the user signed in, if no worker has reported on the
/// account since.
fn marked_at_sign_in(activity: &Activity) -> Option<String> {
    if activity.failed_to_acquire_token && activity.last_attempt_at.is_none() {
        Some(
            activity
                .last_error
                .clone()
                .unwrap_or_else(|| "tokens cannot be acquired silently".into()),
        )
    } else {
        None
    }
}

impl Worker {
    /// Works one claimed account and records the outcome (releasing the claim).
    pub(super) async fn work(
        &self,
        activity: Activity,
        mut stop: watch::Receiver<bool>,
    ) -> Result<AccountReport, PassError> {
        let started = Instant::now();
        let mut report = AccountReport::new(&activity, Kind::Ok);
        let outcome = if activity.signed_out_at.is_some() {
            report.outcome = Kind::SignedOut;
            report.reason = Some(signed_out_reason(&activity).into());
            Outcome::InteractionRequired {
                reason: "signed out".into(),
            }
        } else if let Some(reason) = marked_at_sign_in(&activity) {
            // The web app found at sign-in that tokens cannot be renewed (no refresh token):
            // reported once now, rather than failing when the access token lapses.
            report.outcome = Kind::InteractionRequired;
            report.reason = Some(reason.clone());
            Outcome::InteractionRequired { reason }
        } else {
            let outcome = self.try_account(&activity, &mut report, &mut stop).await?;
            if report.outcome == Kind::InteractionRequired {
                // The cache may have gone while this pass held the account (its refresh then
                // fails to write, or finds no row): a sign-out, or an erasure.
                match self
                    .signed_out_meanwhile(&activity.account_cache_key)
                    .await?
                {
                    Gone::Erased => {
                        report.outcome = Kind::SignedOut;
                        report.reason = Some("the account was erased (accounts forget)".into());
                        report.elapsed_ms =
                            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        crate::metrics::metrics().worker_account(report.outcome.name());
                        // Nothing to record: recording would make no row again, and must not.
                        return Ok(report);
                    }
                    Gone::SignedOut(reason) => {
                        report.outcome = Kind::SignedOut;
                        report.reason = Some(reason.into());
                    }
                    Gone::No => {}
                }
            }
            outcome
        };
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        crate::metrics::metrics().worker_account(report.outcome.name());
        let (key, owner, now) = (
            activity.account_cache_key.clone(),
            self.owner.clone(),
            self.clock.now(),
        );
        let recorded = self
            .db
            .run(move |conn| {
                activities::record_outcome(conn, &key, &owner, &outcome, now)
                    .map_err(crate::db::DbError::from)
            })
            .await
            .map_err(|e| PassError::Storage(e.to_string()))?;
        if !recorded {
            tracing::warn!(account = %activity.account_cache_key, "the claim expired before the outcome was recorded");
        }
        Ok(report)
    }

    /// Whether account `key` was signed out or erased since this pass claimed it.
    async fn signed_out_meanwhile(&self, key: &str) -> Result<Gone, PassError> {
        let key = key.to_owned();
        let now = self
            .db
            .run(move |conn| activities::get(conn, &key).map_err(crate::db::DbError::from))
            .await
            .map_err(|e| PassError::Storage(e.to_string()))?;
        Ok(match now {
            None => Gone::Erased,
            Some(a) if a.signed_out_at.is_some() => Gone::SignedOut(signed_out_reason(&a)),
            Some(_) => Gone::No,
        })
    }

    /// The job: its calls in order (the first that fails ends it), or its command.
    async fn try_account(
        &self,
        activity: &Activity,
        report: &mut AccountReport,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, PassError> {
        match &self.job {
            Job::Calls(calls) => {
                for call in calls {
                    if let Some(failed) = self.try_call(activity, call, report).await? {
                        return Ok(failed);
                    }
                }
                Ok(Outcome::Success)
            }
            Job::Exec(exec) => self.try_exec(activity, exec, report, stop).await,
        }
    }

    /// An access token for `api` from the shared cache; "interaction required" for an API
    /// other than the default says which API and scopes.
    pub(super) async fn token_for(&self, key: &str, api: &Api) -> Result<AccessToken, Failure> {
        let scopes = api.scopes();
        self.acquirer
            .acquire_silent(key, &scopes, Caller::Worker)
            .await
            .map_err(|e| Failure::from(naming(e, api)))
    }

    /// A token other than `rejected`, which `api` refused as invalid.
    pub(super) async fn token_past(
        &self,
        key: &str,
        api: &Api,
        rejected: &AccessToken,
    ) -> Result<AccessToken, Failure> {
        self.acquirer
            .acquire_after_rejection(key, &api.scopes(), Caller::Worker, rejected)
            .await
            .map_err(|e| Failure::from(naming(e, api)))
    }

    /// What a failed try comes to: an outcome to record now (set on `report`), another try
    /// (a transient failure), or the end of the pass.
    pub(super) fn after_failure(
        &self,
        failure: Failure,
        activity: &Activity,
        report: &mut AccountReport,
    ) -> Result<Next, PassError> {
        match failure {
            Failure::Interaction(reason) => {
                // One line per account that must sign in again, with the provider's words:
                // how an operator tells a revocation from reuse detection.
                tracing::warn!(account = %activity.account_cache_key, user = activity.user_principal_name.as_deref().unwrap_or(""), %reason, "interaction required: the user must sign in to the web app again");
                report.outcome = Kind::InteractionRequired;
                report.reason = Some(reason.clone());
                Ok(Next::Record(Outcome::InteractionRequired { reason }))
            }
            Failure::Api(error) => {
                report.outcome = Kind::ApiError;
                report.reason = Some(error.clone());
                Ok(Next::Record(Outcome::ApiFailed { error }))
            }
            Failure::Fatal(e) => Err(e),
            Failure::Transient {
                reason,
                retry_after,
                sent,
            } => Ok(Next::Retry {
                reason,
                retry_after,
                sent,
            }),
        }
    }

    /// The outcome of a transient failure that is not tried again in this pass.
    pub(super) fn transient(
        &self,
        reason: String,
        activity: &Activity,
        report: &mut AccountReport,
    ) -> Outcome {
        report.outcome = Kind::Transient;
        report.reason = Some(reason.clone());
        Outcome::Transient {
            error: reason,
            next_attempt_at: next_attempt(self.clock.now(), activity.consecutive_failures),
        }
    }
}

/// What comes after a failed try.
pub(super) enum Next {
    Record(Outcome),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
        sent: bool,
    },
}

/// An "interaction required" for an API other than the default names the API and its scopes:
/// the user consented to the others.
fn naming(e: AcquireError, api: &Api) -> AcquireError {
    match e {
        AcquireError::InteractionRequired { reason } if api.name() != DEFAULT_API => {
            AcquireError::InteractionRequired {
                reason: format!("API {} ({}): {reason}", api.name(), api.scopes.join(" ")),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_and_json_reports_name_outcomes_alike() {
        for kind in [
            Kind::Ok,
            Kind::InteractionRequired,
            Kind::SignedOut,
            Kind::Transient,
            Kind::ApiError,
            Kind::JobFailed,
            Kind::WouldProcess,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
    }

    #[test]
    fn pauses_double_with_jitter_and_honour_retry_after() {
        for _ in 0..100 {
            let first = pause(0, None);
            assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(750));
            let third = pause(2, None);
            assert!(third >= Duration::from_millis(1000) && third <= Duration::from_millis(3000));
            assert!(pause(0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
            assert!(pause(20, Some(Duration::from_secs(3600))) <= MAX_PAUSE);
        }
    }

    #[test]
    fn accounts_that_keep_failing_come_back_later_and_later() {
        let now = OffsetDateTime::UNIX_EPOCH;
        for _ in 0..100 {
            let first = (next_attempt(now, 0) - now).whole_seconds();
            assert!((54..=66).contains(&first), "{first}");
            let fourth = (next_attempt(now, 3) - now).whole_seconds();
            assert!((432..=528).contains(&fourth), "{fourth}");
            let capped = (next_attempt(now, 30) - now).whole_seconds();
            assert!((3240..=3960).contains(&capped), "{capped}");
        }
    }
}
