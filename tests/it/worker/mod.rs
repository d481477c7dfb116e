//! `tokenbridge worker` against the development provider, with users signed in through the
//! real web app, on every backend.

mod calls;
mod exec;
mod faults;
mod hostile;
mod keys;
mod passes;
pub mod processes;

use crate::serve::TestApp;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokenbridge::settings::{ReportFormat, WorkerSettings};
use tokenbridge::worker::{PassError, Reporter, Summary, Worker};
use tokio::sync::watch;

/// What one pass reported: the account lines (JSON) and how it ended.
pub struct Pass {
    pub lines: Vec<Value>,
    pub result: Result<Summary, PassError>,
}

impl Pass {
    /// Outcome per user (upn, or account id without one).
    pub fn outcomes(&self) -> BTreeMap<String, String> {
        self.lines
            .iter()
            .map(|line| {
                let who = line["user"]
                    .as_str()
                    .or(line["account"].as_str())
                    .unwrap()
                    .trim_end_matches("@tokenbridge.dev")
                    .to_owned();
                (who, line["outcome"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    pub fn line(&self, user: &str) -> &Value {
        self.lines
            .iter()
            .find(|l| l["user"].as_str() == Some(&format!("{user}@tokenbridge.dev")))
            .unwrap_or_else(|| panic!("no line for {user}: {:?}", self.lines))
    }

    pub fn summary(&self) -> &Summary {
        self.result.as_ref().unwrap()
    }
}

pub fn outcomes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(u, o)| ((*u).to_owned(), (*o).to_owned()))
        .collect()
}

/// One pass of a worker built from the app's settings (and clock), options changed by `change`.
pub async fn pass(app: &TestApp, change: impl FnOnce(&mut WorkerSettings)) -> Pass {
    // Time passes between two passes, as it does outside tests: an account done at the very
    // instant a pass begins belongs to the pass before (see `activity::passes`).
    app.clock.advance(time::Duration::milliseconds(1));
    let mut options = app.settings.worker.clone();
    change(&mut options);
    let worker = Worker::build(&app.settings, options, Arc::new(app.clock.clone()))
        .await
        .unwrap();
    run_pass(&worker, std::future::ready(())).await
}

/// One pass of `worker`, with `meanwhile` running beside it.
pub async fn run_pass(worker: &Worker, meanwhile: impl std::future::Future<Output = ()>) -> Pass {
    let mut reporter = Reporter::new(ReportFormat::Json, Vec::new(), false);
    let (_stop, mut stopped) = watch::channel(false);
    let (result, ()) =
        futures_util::future::join(worker.pass(&mut reporter, &mut stopped), meanwhile).await;
    let lines = String::from_utf8(reporter.into_inner())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Pass { lines, result }
}

/// The activity row of `user`.
pub fn activity(app: &TestApp, user: &str) -> tokenbridge::activity::store::Activity {
    let rows = tokenbridge::activity::store::find_by_upn(
        &mut app.db.conn(),
        &format!("{user}@tokenbridge.dev"),
    )
    .unwrap();
    rows.into_iter().next().unwrap()
}
