//! The job's calls for one account: each on its API with that API's token, a token the API
//! refuses as invalid refreshed once past, transient failures tried again within the pass (a
//! call that is not idempotent only while it cannot have reached the API).

use super::account::{pause, AccountReport, CallReport, Failure, Next};
use super::job::Call;
use super::{PassError, Worker};
use crate::activity::store::{Activity, Outcome};
use crate::api::{is_idempotent, ApiError};

impl Worker {
    /// One call, tried again while it fails transiently. None when it succeeded; its status
    /// is on `report` either way.
    pub(super) async fn try_call(
        &self,
        activity: &Activity,
        call: &Call,
        report: &mut AccountReport,
    ) -> Result<Option<Outcome>, PassError> {
        let key = &activity.account_cache_key;
        let (api, spec) = (&call.api, &call.spec);
        let mut tries = 0;
        loop {
            tries += 1;
            report.attempts += 1;
            let attempt = async {
                let token = self.token_for(key, api).await?;
                let method = spec.method.clone();
                let (status, token) = match api.client.call(method, &spec.path, &token).await {
                    // A token we believed valid, refused as invalid: one refresh past it, one
                    // call more, before anything is recorded.
                    Err(ApiError::InvalidToken(why)) => {
                        tracing::info!(account = %key, api = api.name(), %why, "the API refused the access token as invalid; refreshing once and calling again");
                        let fresh = self.token_past(key, api, &token).await?;
                        let method = spec.method.clone();
                        (api.client.call(method, &spec.path, &fresh).await?, fresh)
                    }
                    called => (called?, token),
                };
                Ok::<_, Failure>((status, token.expires_on))
            };
            let failure = match attempt.await {
                Ok((status, expires_on)) => {
                    report.token_expires_on.get_or_insert(expires_on);
                    report.calls.push(CallReport::of(spec, Some(status)));
                    return Ok(None);
                }
                Err(failure) => failure,
            };
            let (reason, retry_after, sent) = match self.after_failure(failure, activity, report) {
                Ok(Next::Record(outcome)) => {
                    report.calls.push(CallReport::of(spec, None));
                    return Ok(Some(outcome));
                }
                Ok(Next::Retry {
                    reason,
                    retry_after,
                    sent,
                }) => (reason, retry_after, sent),
                Err(e) => return Err(e),
            };
            let may_repeat = !sent || is_idempotent(&spec.method);
            if tries > self.options.retries || !may_repeat {
                report.calls.push(CallReport::of(spec, None));
                return Ok(Some(self.transient(reason, activity, report)));
            }
            tracing::info!(account = %key, attempt = tries, %reason, "transient failure; trying again");
            tokio::time::sleep(pause(tries - 1, retry_after)).await;
        }
    }
}
