//! The process an `--exec` job runs in: no shell, a process group of its own, the worker's
//! environment without any `TOKENBRIDGE_` variable (settings, secrets, the database URL) or
//! database password variable (`PGPASSWORD`, `MYSQL_PWD`) plus the job's own; stdout discarded, each stderr line logged at debug with the tokens cut out,
//! the last one kept; a timeout and a stop signal that reach the whole group.

use crate::secret::Secret;
use crate::text::{bounded, REASON};
use rustix::process::{kill_process_group, Pid, Signal};
use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// The exit status by which a job says the API refused its token (EX_NOPERM): the account is
/// refreshed once past that token and the command run once more.
pub const TOKEN_REFUSED: i32 = 77;

/// The prefix of every variable the worker reads, and of those it gives a job.
pub(super) const PREFIX: &str = "TOKENBRIDGE_";

/// The variables the database client libraries read a password from (libpq, MariaDB's): the
/// worker's credentials, never a job's.
const DATABASE_SECRETS: &[&str] = &["PGPASSWORD", "PGPASSFILE", "MYSQL_PWD"];

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
    pub(super) fn code(&self) -> Option<i32> {
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
            .filter(|(name, _)| {
                let name = name.to_string_lossy();
                !name.starts_with(PREFIX) && !DATABASE_SECRETS.contains(&name.as_ref())
            })
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

    /// `sh -c script` with `token` as TOKENBRIDGE_ACCESS_TOKEN: its exit status and last line.
    async fn sh(script: &str, token: &str) -> (i32, Option<String>) {
        let mut stop = watch::channel(false).1;
        let tokens = [("TOKENBRIDGE_ACCESS_TOKEN".to_owned(), Secret::new(token))];
        let command = Command::new(
            vec!["sh".into(), "-c".into(), script.into()],
            Duration::from_secs(10),
            Duration::from_secs(1),
        );
        match command.run(&[], &tokens, &mut stop).await.unwrap() {
            Ran::Exited { code, last_line } => (code, last_line),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_last_stderr_line_is_kept_with_the_tokens_cut_out() {
        let long = "printf 'first\\nuses %s here\\n\\n' \"$TOKENBRIDGE_ACCESS_TOKEN\" >&2; \
                    head -c 20000 /dev/zero | tr '\\0' x >&2; printf '\\n' >&2; exit 3";
        let (code, last) = sh(long, "tok-123").await;
        assert_eq!(code, 3);
        assert_eq!(last.as_deref(), Some("[a line longer than 16384 bytes]"));
        let uses = "printf 'uses %s here' \"$TOKENBRIDGE_ACCESS_TOKEN\" >&2; exit 4";
        let (code, last) = sh(uses, "tok-123").await;
        assert_eq!(code, 4);
        assert_eq!(last.as_deref(), Some("uses [redacted] here"));
    }
}
