//! `[worker]`: what `tokenbridge worker` does by default; its command-line flags override these.

use super::{invalid, parse_duration, SettingsError};
use serde::Deserialize;
use std::time::Duration;

/// How the worker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// A line per account and a summary, for people (a progress bar on a terminal).
    Text,
    /// One JSON object per account and a summary object, one per line.
    Json,
}

/// One call of the worker's job: `NAME:METHOD:/path` on a named API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpec {
    pub api: String,
    pub method: reqwest::Method,
    pub path: String,
}

/// The methods a call may use: it sends no body.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

impl std::str::FromStr for CallSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "expected NAME:METHOD:/path such as default:GET:/me (METHOD one of {}), not {:?}",
                METHODS.join(", "),
                text.chars().take(200).collect::<String>()
            )
        };
        let mut parts = text.trim().splitn(3, ':');
        let (Some(api), Some(method), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(usage());
        };
        let method = method.to_ascii_uppercase();
        if !super::valid_api_name(api)
            || !METHODS.contains(&method.as_str())
            || !path.starts_with('/')
            || path.contains(char::is_whitespace)
        {
            return Err(usage());
        }
        Ok(Self {
            api: api.to_owned(),
            method: method.parse().map_err(|_| usage())?,
            path: path.to_owned(),
        })
    }
}

impl std::fmt::Display for CallSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.api, self.method, self.path)
    }
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Accounts whose last activity in the web app is at least this old are processed.
    pub older_than: Duration,
    /// Run a pass every this long until stopped; None: one pass.
    pub every: Option<Duration>,
    /// Accounts in flight at once.
    pub concurrency: usize,
    /// At most this many accounts per pass.
    pub limit: Option<u64>,
    /// Only this account: a user principal name or a home account id.
    pub user: Option<String>,
    /// Also retry accounts marked "interaction required".
    pub include_failed: bool,
    /// List what would be processed; change nothing.
    pub dry_run: bool,
    pub format: ReportFormat,
    /// Retries of a transient failure within a pass.
    pub retries: u32,
    /// Where a worker running `--every` serves `GET /metrics`; None: not at all.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How long a claim on an account lasts (what a worker that dies leaves behind); None:
    /// the longest an account may take (see `Worker::build`).
    pub claim_for: Option<Duration>,
    /// An account a worker acted for less than this long ago is not due, whatever
    /// `older_than` says: the least time between two jobs for one user.
    pub min_interval: Duration,
    /// The job: these calls, in order (empty: `GET {api.path}` on the default API).
    pub calls: Vec<CallSpec>,
    /// The job as a command run for each account instead (its argv; no shell).
    pub exec: Option<Vec<String>>,
    /// The APIs whose tokens an exec job gets (the first is `TOKENBRIDGE_ACCESS_TOKEN`).
    pub exec_apis: Vec<String>,
    /// An exec job still running after this long is killed (its whole process group).
    pub exec_timeout: Duration,
    /// How long an exec job has to end after the worker is stopped and passes SIGTERM on.
    pub exec_grace: Duration,
}

/// A command line split into its words as a shell would (quotes, backslashes), without a
/// shell: no variables, globs or pipes unless the command is itself `sh -c '...'`.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    match shlex::split(line) {
        Some(words) if !words.is_empty() => Ok(words),
        Some(_) => Err("is empty".into()),
        None => Err("has an unmatched quote or a trailing backslash".into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWorker {
    older_than: String,
    every: String,
    metrics_listen: String,
    concurrency: usize,
    limit: u64,
    user: String,
    include_failed: bool,
    dry_run: bool,
    format: ReportFormat,
    retries: u32,
    claim_for: String,
    min_interval: String,
    calls: Vec<String>,
    exec: String,
    exec_apis: Vec<String>,
    exec_timeout: String,
    exec_grace: String,
}

impl Default for RawWorker {
    fn default() -> Self {
        Self {
            older_than: "5m".into(),
            every: String::new(),
            metrics_listen: "127.0.0.1:9465".into(),
            concurrency: 16,
            limit: 0,
            user: String::new(),
            include_failed: false,
            dry_run: false,
            format: ReportFormat::Text,
            retries: 3,
            claim_for: String::new(),
            min_interval: "0s".into(),
            calls: Vec::new(),
            exec: String::new(),
            exec_apis: vec![super::DEFAULT_API.to_owned()],
            exec_timeout: "5m".into(),
            exec_grace: "10s".into(),
        }
    }
}

impl RawWorker {
    pub(super) fn validate(self) -> Result<WorkerSettings, SettingsError> {
        let every = match self.every.trim() {
            "" => None,
            every => {
                let d = parse_duration("worker.every", every)?;
                if d < Duration::from_secs(1) {
                    return Err(invalid("worker.every", "must be at least 1s (or \"\")"));
                }
                Some(d)
            }
        };
        if !(1..=1024).contains(&self.concurrency) {
            return Err(invalid(
                "worker.concurrency",
                "expected a number of accounts from 1 to 1024",
            ));
        }
        if self.retries > 10 {
            return Err(invalid("worker.retries", "expected a number from 0 to 10"));
        }
        let claim_for = match self.claim_for.trim() {
            "" => None,
            claim_for => {
                let d = parse_duration("worker.claim_for", claim_for)?;
                if d < Duration::from_secs(60) {
                    return Err(invalid(
                        "worker.claim_for",
                        "must be at least 1m (or \"\" for the longest an account may take)",
                    ));
                }
                Some(d)
            }
        };
        let calls = self
            .calls
            .iter()
            .map(|call| call.parse().map_err(|e| invalid("worker.calls", e)))
            .collect::<Result<_, _>>()?;
        let exec = match self.exec.trim() {
            "" => None,
            line => Some(split_command(line).map_err(|e| invalid("worker.exec", e))?),
        };
        if exec.is_some() && !self.calls.is_empty() {
            return Err(invalid(
                "worker.exec",
                "a job is either calls or a command: set worker.calls or worker.exec, not both",
            ));
        }
        if let Some(wrong) = self.exec_apis.iter().find(|a| !super::valid_api_name(a)) {
            return Err(invalid(
                "worker.exec_apis",
                format!("{wrong:?} is not an API's name"),
            ));
        }
        if self.exec_apis.is_empty() {
            return Err(invalid(
                "worker.exec_apis",
                "names no API: an exec job gets at least one token",
            ));
        }
        Ok(WorkerSettings {
            calls,
            exec,
            exec_apis: self.exec_apis,
            exec_timeout: super::positive("worker.exec_timeout", &self.exec_timeout)?,
            exec_grace: parse_duration("worker.exec_grace", &self.exec_grace)?,
            claim_for,
            min_interval: parse_duration("worker.min_interval", &self.min_interval)?,
            older_than: parse_duration("worker.older_than", &self.older_than)?,
            every,
            concurrency: self.concurrency,
            limit: (self.limit > 0).then_some(self.limit),
            user: Some(self.user.trim().to_owned()).filter(|u| !u.is_empty()),
            include_failed: self.include_failed,
            dry_run: self.dry_run,
            format: self.format,
            retries: self.retries,
            metrics_listen: match self.metrics_listen.trim() {
                "" | "off" => None,
                address => Some(address.parse().map_err(|_| {
                    invalid(
                        "worker.metrics_listen",
                        format!(
                            "expected an address such as \"127.0.0.1:9465\", or \"off\", not {:?}",
                            self.metrics_listen
                        ),
                    )
                })?),
            },
        })
    }
}
