//! The pass report on stdout: a line per account and a summary (text, with a progress bar on a
//! terminal), or one JSON object per line. Logs go to stderr, never here.

use super::account::{AccountReport, Kind};
use crate::settings::ReportFormat;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::Write;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Counts per outcome for one pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub accounts: u64,
    pub ok: u64,
    pub interaction_required: u64,
    pub signed_out: u64,
    pub transient: u64,
    pub api_error: u64,
    pub job_failed: u64,
    pub would_process: u64,
    /// Expired cache rows deleted by this pass's sweep.
    pub swept: u64,
    /// The pass was stopped (SIGINT/SIGTERM) before it ran out of accounts.
    pub stopped: bool,
    #[serde(skip)]
    pub duration: Duration,
}

impl Summary {
    pub fn add(&mut self, report: &AccountReport) {
        self.accounts += 1;
        *match report.outcome {
            Kind::Ok => &mut self.ok,
            Kind::InteractionRequired => &mut self.interaction_required,
            Kind::SignedOut => &mut self.signed_out,
            Kind::Transient => &mut self.transient,
            Kind::ApiError => &mut self.api_error,
            Kind::JobFailed => &mut self.job_failed,
            Kind::WouldProcess => &mut self.would_process,
        } += 1;
    }

    pub fn per_second(&self) -> f64 {
        let seconds = self.duration.as_secs_f64();
        if seconds > 0.0 {
            self.accounts as f64 / seconds
        } else {
            0.0
        }
    }
}

pub struct Reporter<W: Write> {
    format: ReportFormat,
    out: W,
    progress: Option<ProgressBar>,
}

fn expiry(unix: Option<i64>) -> Option<String> {
    let at = OffsetDateTime::from_unix_timestamp(unix?).ok()?;
    at.format(&Rfc3339).ok()
}

impl<W: Write> Reporter<W> {
    /// Reports to `out`; `progress` draws a progress bar above the lines (text on a terminal
    /// that can show one; the lines are then printed through the bar, to stdout).
    pub fn new(format: ReportFormat, out: W, progress: bool) -> Self {
        let target = ProgressDrawTarget::stdout();
        let drawable = progress && format == ReportFormat::Text && !target.is_hidden();
        let progress = drawable.then(|| {
            let bar = ProgressBar::with_draw_target(None, target);
            bar.set_style(
                ProgressStyle::with_template("{spinner} {pos} accounts, {per_sec} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            format,
            out,
            progress,
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn line(&mut self, line: &str) {
        match &self.progress {
            Some(bar) => bar.println(line),
            None => {
                // A closed stdout (a pipe whose reader left) must not stop the pass.
                let _ = writeln!(self.out, "{line}");
            }
        }
    }

    pub fn account(&mut self, report: &AccountReport) {
        let line = match self.format {
            ReportFormat::Json => {
                #[derive(Serialize)]
                struct Line<'a> {
                    #[serde(flatten)]
                    report: &'a AccountReport,
                    token_expires_at: Option<String>,
                }
                serde_json::to_string(&Line {
                    report,
                    token_expires_at: expiry(report.token_expires_on),
                })
                .unwrap_or_default()
            }
            ReportFormat::Text => {
                let who = report.user.as_deref().unwrap_or(&report.account);
                let mut line = format!("{who:<40} {:<21}", report.outcome.label());
                if let Some(at) = expiry(report.token_expires_on) {
                    line.push_str(&format!(" token until {at}"));
                }
                if report.outcome != Kind::WouldProcess {
                    line.push_str(&format!(" {:>6} ms", report.elapsed_ms));
                }
                if report.calls.len() > 1 {
                    let calls: Vec<String> = report
                        .calls
                        .iter()
                        .map(|c| match c.status {
                            Some(status) => format!("{} {status}", c.call),
                            None => format!("{} failed", c.call),
                        })
                        .collect();
                    line.push_str(&format!("  [{}]", calls.join(", ")));
                }
                if let Some(reason) = &report.reason {
                    line.push_str(&format!("  {reason}"));
                }
                line.trim_end().to_owned()
            }
        };
        self.line(&line);
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
    }

    pub fn summary(&mut self, summary: &Summary) {
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
        let line = match self.format {
            ReportFormat::Json => {
                #[derive(Serialize)]
                struct Line<'a> {
                    summary: &'a Summary,
                    duration_ms: u128,
                    accounts_per_second: f64,
                }
                serde_json::to_string(&Line {
                    summary,
                    duration_ms: summary.duration.as_millis(),
                    accounts_per_second: (summary.per_second() * 10.0).round() / 10.0,
                })
                .unwrap_or_default()
            }
            ReportFormat::Text => {
                let mut parts = Vec::new();
                for (count, label) in [
                    (summary.ok, "ok"),
                    (summary.interaction_required, "interaction required"),
                    (summary.signed_out, "signed out"),
                    (summary.transient, "transient"),
                    (summary.api_error, "API error"),
                    (summary.job_failed, "job failed"),
                    (summary.would_process, "would process"),
                ] {
                    if count > 0 {
                        parts.push(format!("{count} {label}"));
                    }
                }
                if parts.is_empty() {
                    parts.push("no accounts due".into());
                }
                format!(
                    "{} account(s): {} in {:.1} s ({:.1} accounts/s){}{}",
                    summary.accounts,
                    parts.join(", "),
                    summary.duration.as_secs_f64(),
                    summary.per_second(),
                    if summary.swept > 0 {
                        format!("; {} expired cache row(s) swept", summary.swept)
                    } else {
                        String::new()
                    },
                    if summary.stopped {
                        "; stopped early"
                    } else {
                        ""
                    },
                )
            }
        };
        self.line(&line);
        let _ = self.out.flush();
    }
}
