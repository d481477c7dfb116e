//! `worker --exec`: the job as a command run for each account, in a process group of its own,
//! with the account and fresh access tokens in its environment (never on its command line)
//! and nothing of the worker's own settings or secrets.
//!
//! The command's exit status is the job's outcome: 0 ok; [`TOKEN_REFUSED`] the API refused
//! the token; any other a failed job. Its stdout is discarded (a job keeps what it makes
//! itself); each line of its stderr is logged at debug and the last one is the failure's
//! reason, with the tokens it was given cut out.

use super::account::{next_attempt, pause, AccountReport, Failure, Kind, Next};
use super::job::{Api, Exec};
use super::{PassError, Worker};
use crate::activity::store::{Activity, Outcome};
use crate::identity::acquire::AccessToken;
use crate::secret::Secret;
use crate::text::{bounded, LOG_FIELD, REASON};
use rustix::process::{kill_process_group, Pid, Signal};
use std::ffi::OsString;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// The exit status by which a job says the API refused its token (EX_NOPERM): the account is
/// refreshed once past that token and the command run once more.
pub const TOKEN_REFUSED: i32 = 77;

/// The prefix of every variable the worker reads, and of those it gives a job.
const PREFIX: &str = "TOKENBRIDGE_";

/// What the command came to.
#[derive(Debug)]
pub(super) enum Ran {
    /// It exited with this status.
    Exited {
        code: i32,
        last_line: Option<String>,
    },
    /// A signal ended it (not one the worker sent).
    Signalled { last_line: Option<String> },
    /// It ran past the timeout; its process group was killed.
    TimedOut,
    /// The worker was stopped: the job had its SIGTERM and grace period.
    Stopped { code: Option<i32> },
}

impl Ran {
    /// The exit status, when the command exited.
    fn code(&self) -> Option<i32> {
        match self {
            Ran::Exited { code, .. } => Some(*code),
            Ran::Stopped { code } => *code,
            Ran::Signalled { .. } | Ran::TimedOut => None,
        }
    }
}

/// The command, and the environment every job starts from: the worker's own, without any
/// `TOKENBRIDGE_` variable (settings, secrets, the database URL).
pub(super) struct Command {
    pub argv: Vec<String>,
    pub timeout: Duration,
    pub grace: Duration,
    inherited: Vec<(OsString, OsString)>,
}

impl Command {
    pub fn new(argv: Vec<String>, timeout: Duration, grace: Duration) -> Self {
        let inherited = std::env::vars_os()
            .filter(|(name, _)| !name.to_string_lossy().starts_with(PREFIX))
            .collect();
        Self {
            argv,
            timeout,
            grace,
            inherited,
        }
    }

    /// Runs the command with `vars` and the `tokens` (the documented `TOKENBRIDGE_*`
    /// variables) added to its environment; the tokens are cut out of anything it writes to
    /// stderr. An error: it could not be started at all (not found, not executable).
    pub async fn run(
        &self,
        vars: &[(String, String)],
        tokens: &[(String, Secret)],
        stop: &mut watch::Receiver<bool>,
    ) -> std::io::Result<Ran> {
        let mut command = tokio::process::Command::new(&self.argv[0]);
        command
            .args(&self.argv[1..])
            .env_clear()
            .envs(self.inherited.iter().map(|(k, v)| (k, v)))
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .envs(tokens.iter().map(|(k, v)| (k, v.expose())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let group = child.id().and_then(|id| Pid::from_raw(id as i32));
        let stderr = child.stderr.take();
        let secrets: Vec<Secret> = tokens.iter().map(|(_, v)| v.clone()).collect();
        let lines = tokio::spawn(read_stderr(stderr, secrets));
        let signal = |signal| {
            if let Some(group) = group {
                // The group may be gone already: nothing to do then.
                let _ = kill_process_group(group, signal);
            }
        };
        let mut watching = !*stop.borrow();
        let ran = tokio::select! {
            status = child.wait() => Some(status?),
            () = tokio::time::sleep(self.timeout) => {
                signal(Signal::KILL);
                let _ = child.wait().await;
                None
            }
            () = wait_for_stop(stop, &mut watching) => {
                signal(Signal::TERM);
                let code = match tokio::time::timeout(self.grace, child.wait()).await {
                    Ok(status) => status?.code(),
                    Err(_) => {
                        signal(Signal::KILL);
                        let _ = child.wait().await;
                        None
                    }
                };
                lines.abort();
                return Ok(Ran::Stopped { code });
            }
        };
        // What is left of the group (a child it started and left behind) goes with it.
        signal(Signal::KILL);
        let Some(status) = ran else {
            lines.abort();
            return Ok(Ran::TimedOut);
        };
        // A grandchild that keeps stderr open would hold the reader: it was just killed.
        let last_line = lines.await.unwrap_or_default();
        Ok(match status.code() {
            Some(code) => Ran::Exited { code, last_line },
            None => Ran::Signalled { last_line },
        })
    }
}

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

/// Resolves when the worker is told to stop; never when its stop signal cannot fire.
async fn wait_for_stop(stop: &mut watch::Receiver<bool>, watching: &mut bool) {
    loop {
        if !*watching {
            return std::future::pending().await;
        }
        if *stop.borrow() {
            return;
        }
        if stop.changed().await.is_err() {
            *watching = false;
        }
    }
}

/// The longest stderr line kept: a longer one is dropped whole (cutting it could leave part
/// of a token behind), so a job's output never grows the worker's memory.
const LONGEST_LINE: usize = 16 * 1024;

/// Logs each line at debug and returns the last that is not blank, `secrets` cut out.
async fn read_stderr(
    stderr: Option<tokio::process::ChildStderr>,
    secrets: Vec<Secret>,
) -> Option<String> {
    let mut stderr = stderr?;
    let mut lines = Lines {
        line: Vec::new(),
        too_long: false,
        last: None,
        secrets,
    };
    let mut chunk = [0u8; 8192];
    loop {
        let read = stderr.read(&mut chunk).await.unwrap_or(0);
        if read == 0 {
            if !lines.line.is_empty() || lines.too_long {
                lines.end();
            }
            return lines.last;
        }
        for piece in chunk[..read].split_inclusive(|b| *b == b'\n') {
            let complete = piece.last() == Some(&b'\n');
            let piece = piece.strip_suffix(b"\n").unwrap_or(piece);
            if lines.too_long || lines.line.len() + piece.len() > LONGEST_LINE {
                lines.too_long = true;
                lines.line.clear();
            } else {
                lines.line.extend_from_slice(piece);
            }
            if complete {
                lines.end();
            }
        }
    }
}

/// The stderr line being read, and the last one kept.
struct Lines {
    line: Vec<u8>,
    too_long: bool,
    last: Option<String>,
    secrets: Vec<Secret>,
}

impl Lines {
    fn end(&mut self) {
        let text = if self.too_long {
            format!("[a line longer than {LONGEST_LINE} bytes]")
        } else {
            redacted(&String::from_utf8_lossy(&self.line), &self.secrets)
        };
        let text = bounded(&text, REASON);
        tracing::debug!(line = %text, "exec job stderr");
        if !text.trim().is_empty() {
            self.last = Some(text.into_owned());
        }
        self.line.clear();
        self.too_long = false;
    }
}

/// `text` with every one of `secrets` replaced.
fn redacted(text: &str, secrets: &[Secret]) -> String {
    secrets
        .iter()
        .filter(|s| !s.expose().is_empty())
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret.expose(), "[redacted]")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_stderr_line_is_kept_with_the_tokens_cut_out() {
        let (mut stop, token) = (watch::channel(false).1, Secret::new("tok-123"));
        let vars = [("TOKENBRIDGE_ACCESS_TOKEN".to_owned(), token)];
        let script = "printf 'first\\nuses %s here\\n\\n' \"$TOKENBRIDGE_ACCESS_TOKEN\" >&2; \
                      head -c 20000 /dev/zero | tr '\\0' x >&2; printf '\\n' >&2; exit 3";
        let command = Command::new(
            vec!["sh".into(), "-c".into(), script.into()],
            Duration::from_secs(10),
            Duration::from_secs(1),
        );
        match command.run(&[], &vars, &mut stop).await.unwrap() {
            Ran::Exited { code, last_line } => {
                assert_eq!(code, 3);
                assert_eq!(
                    last_line.as_deref(),
                    Some("[a line longer than 16384 bytes]")
                );
            }
            other => panic!("{other:?}"),
        }
        let script = "printf 'uses %s here' \"$TOKENBRIDGE_ACCESS_TOKEN\" >&2; exit 4";
        let command = Command::new(
            vec!["sh".into(), "-c".into(), script.into()],
            Duration::from_secs(10),
            Duration::from_secs(1),
        );
        match command.run(&[], &vars, &mut stop).await.unwrap() {
            Ran::Exited { code, last_line } => {
                assert_eq!(code, 4);
                assert_eq!(last_line.as_deref(), Some("uses [redacted] here"));
            }
            other => panic!("{other:?}"),
        }
    }
}
