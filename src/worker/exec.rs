//! `worker --exec`: the job as a command run for each account (see `command` for the process),
//! with the account and fresh access tokens in its environment, never on its command line.
//!
//! The command's exit status is the job's outcome: 0 ok; [`TOKEN_REFUSED`] the API refused
//! the token (one refresh past it, one run more); any other a failed job, with the last line
//! of its stderr as the reason, backing off as a transient failure does.

use super::account::{next_attempt, pause, AccountReport, Failure, Kind, Next};
use super::command::{Ran, PREFIX, TOKEN_REFUSED};
use super::job::{Api, Exec};
use super::{PassError, Worker};
use crate::activity::store::{Activity, Outcome};
use crate::identity::acquire::AccessToken;
use crate::text::{bounded, LOG_FIELD};
use std::sync::Arc;
use tokio::sync::watch;

impl Worker {
    /// The command for one account: its tokens (tried again while acquisition fails
    /// transiently), one run, and after exit 77 one refresh past each token and one run more.
    pub(super) async fn try_exec(
        &self,
        activity: &Activity,
        exec: &Exec,
        report: &mut AccountReport,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, PassError> {
        let key = &activity.account_cache_key;
        let mut tries = 0;
        let mut tokens = loop {
            tries += 1;
            report.attempts += 1;
            let failure = match self.tokens(key, &exec.apis, None).await {
                Ok(tokens) => break tokens,
                Err(failure) => failure,
            };
            match self.after_failure(failure, activity, report)? {
                Next::Record(outcome) => return Ok(outcome),
                Next::Retry {
                    reason,
                    retry_after,
                    ..
                } if tries <= self.options.retries => {
                    tracing::info!(account = %key, attempt = tries, %reason, "transient failure; trying again");
                    tokio::time::sleep(pause(tries - 1, retry_after)).await;
                }
                Next::Retry { reason, .. } => return Ok(self.transient(reason, activity, report)),
            }
        };
        report.token_expires_on = tokens.first().map(|t| t.expires_on);
        let mut ran = self.run_for(activity, exec, &tokens, stop).await?;
        report.exit_code = ran.code();
        if matches!(
            ran,
            Ran::Exited {
                code: TOKEN_REFUSED,
                ..
            }
        ) {
            tracing::info!(account = %key, "the job says the API refused its token (exit {TOKEN_REFUSED}); refreshing once and running it again");
            tokens = match self.tokens(key, &exec.apis, Some(&tokens)).await {
                Ok(tokens) => tokens,
                Err(failure) => {
                    return match self.after_failure(failure, activity, report)? {
                        Next::Record(outcome) => Ok(outcome),
                        Next::Retry { reason, .. } => Ok(self.transient(reason, activity, report)),
                    }
                }
            };
            report.attempts += 1;
            ran = self.run_for(activity, exec, &tokens, stop).await?;
            report.exit_code = ran.code();
        }
        let failed = |why: String| (Kind::JobFailed, why);
        let (kind, reason) = match ran {
            Ran::Exited { code: 0, .. } | Ran::Stopped { code: Some(0) } => return Ok(Outcome::Success),
            Ran::Exited {
                code: TOKEN_REFUSED,
                last_line,
            } => (
                Kind::ApiError,
                with_last_line(
                    format!("the API refused the token again after a refresh (the job exited {TOKEN_REFUSED})"),
                    last_line,
                ),
            ),
            Ran::Exited { code, last_line } => {
                failed(with_last_line(format!("the job exited {code}"), last_line))
            }
            Ran::Signalled { last_line } => {
                failed(with_last_line("the job was ended by a signal".into(), last_line))
            }
            Ran::TimedOut => failed(format!(
                "the job ran longer than worker.exec_timeout ({}); its process group was killed",
                humantime::format_duration(exec.command.timeout)
            )),
            Ran::Stopped { .. } => failed(
                "the worker was stopped while the job ran: it had SIGTERM and worker.exec_grace"
                    .into(),
            ),
        };
        report.outcome = kind;
        report.reason = Some(reason.clone());
        Ok(match kind {
            Kind::ApiError => Outcome::ApiFailed { error: reason },
            _ => Outcome::JobFailed {
                error: reason,
                next_attempt_at: next_attempt(self.clock.now(), activity.consecutive_failures),
            },
        })
    }

    /// A token for each API, in order; past `rejected` (the tokens the job said were refused).
    async fn tokens(
        &self,
        key: &str,
        apis: &[Arc<Api>],
        rejected: Option<&[AccessToken]>,
    ) -> Result<Vec<AccessToken>, Failure> {
        let mut tokens = Vec::with_capacity(apis.len());
        for (n, api) in apis.iter().enumerate() {
            let token = match rejected.and_then(|r| r.get(n)) {
                Some(rejected) => self.token_past(key, api, rejected).await?,
                None => self.token_for(key, api).await?,
            };
            tokens.push(token);
        }
        Ok(tokens)
    }

    /// Runs the command with the account's variables and `tokens`; the exit status on the
    /// report. A command that cannot be started at all stops the pass (it would fail for
    /// every account).
    async fn run_for(
        &self,
        activity: &Activity,
        exec: &Exec,
        tokens: &[AccessToken],
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Ran, PassError> {
        let mut vars = vec![
            (
                format!("{PREFIX}ACCOUNT_ID"),
                activity.account_cache_key.clone(),
            ),
            (
                format!("{PREFIX}USER"),
                activity.user_principal_name.clone().unwrap_or_default(),
            ),
            (
                format!("{PREFIX}TENANT_ID"),
                activity.account_tenant_id.clone().unwrap_or_default(),
            ),
        ];
        let mut secrets = Vec::new();
        for (n, (api, token)) in exec.apis.iter().zip(tokens).enumerate() {
            let name = api.name().to_ascii_uppercase();
            if n == 0 {
                secrets.push((format!("{PREFIX}ACCESS_TOKEN"), token.secret.clone()));
                vars.push((
                    format!("{PREFIX}TOKEN_EXPIRES_ON"),
                    token.expires_on.to_string(),
                ));
            }
            secrets.push((format!("{PREFIX}ACCESS_TOKEN_{name}"), token.secret.clone()));
            vars.push((
                format!("{PREFIX}TOKEN_EXPIRES_ON_{name}"),
                token.expires_on.to_string(),
            ));
        }
        let ran = exec.command.run(&vars, &secrets, stop).await.map_err(|e| {
            PassError::Configuration(format!(
                "worker.exec: cannot run {}: {e}",
                bounded(&exec.command.argv[0], LOG_FIELD)
            ))
        })?;
        Ok(ran)
    }
}

/// The failure's reason, with the last line the job wrote to stderr.
fn with_last_line(reason: String, last_line: Option<String>) -> String {
    match last_line {
        Some(line) => format!("{reason}: {line}"),
        None => reason,
    }
}
