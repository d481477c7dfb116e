//! `tokenbridge worker`: acts for users who have left. Each pass claims due accounts from the
//! activity store, acquires tokens through the same `TokenAcquirer` as the web app (so a
//! user's refresh is serialized with the web app's by the cache row's lease), calls the API
//! and records each outcome. One pass, or `--every` until stopped.
//!
//! - `pass`: claiming, concurrency, release;
//! - `account`: one account, its retries and its outcome;
//! - `report`: what stdout shows.

mod account;
mod calls;
mod command;
mod exec;
mod job;
mod outcome;
mod pass;
mod report;

pub use outcome::{AccountReport, Kind};
pub use report::{Reporter, Summary};

use crate::cache::backend::CacheBackend;
use crate::clock::Clock;
use crate::db::{Database, DbError};
use crate::identity::acquire::{AcquirerOptions, TokenAcquirer};
use crate::settings::{Settings, WorkerSettings};
use crate::sync::lock;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why a pass stopped before its end.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PassError {
    /// It would fail for every account (client registration, scopes, cache keys): exit 2.
    #[error("configuration error: {0}")]
    Configuration(String),
    /// The database or the token cache store (Redis) failed: exit 1. Claims expire; nothing
    /// is lost.
    #[error("storage error: {0}")]
    Storage(String),
}

/// Expired cache rows are swept at most this often under `--every` (and on every single pass).
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

pub struct Worker {
    db: Database,
    acquirer: TokenAcquirer,
    /// What is done for each account.
    job: job::Job,
    caches: CacheBackend,
    clock: Arc<dyn Clock>,
    owner: String,
    options: WorkerSettings,
    sweep_batch: u32,
    /// How long a claim lasts: a page waits at most one account's time to start, then takes
    /// at most one account's time.
    claim_for: Duration,
    last_sweep: Mutex<Option<Instant>>,
    /// Passes begun, to name each one.
    passes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// The database pool's connections now, for the metrics.
    pub fn pool_state(&self) -> crate::metrics::PoolState {
        self.db.pool_state()
    }

    /// Connects to the database (which must be migrated) and prepares the provider client.
    pub async fn build(
        settings: &Settings,
        options: WorkerSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PassError> {
        let db = Database::open_migrated(settings.database.clone())
            .await
            .map_err(|e| PassError::Storage(e.to_string()))?;
        let process = crate::process::owner_id();
        let mut acquirer_options =
            AcquirerOptions::from_settings(&settings.identity, &settings.cache, process.clone());
        // Each account is visited once a pass: keeping documents would only grow memory.
        acquirer_options.memory_entries = 0;
        let acquirer =
            TokenAcquirer::from_settings(db.clone(), settings, clock.clone(), acquirer_options)
                .map_err(|e| PassError::Configuration(e.to_string()))?;
        let caches = acquirer.caches().clone();
        // A Redis that does not answer fails the run at once, with the reason.
        caches
            .check_at_start()
            .await
            .map_err(|e| PassError::Storage(e.to_string()))?;
        // Before anything is claimed: a key that is not the one its id stands for would take
        // every user's row for corrupt (exit 2, nothing marked, nothing written).
        caches
            .verify_keys(clock.now())
            .await
            .map_err(|e| match e.key_problem() {
                Some(problem) => PassError::Configuration(format!("cache.keys: {problem}")),
                None => PassError::Storage(e.to_string()),
            })?;
        let job = job::job(settings, &options)?;
        let one_try = job.one_try(settings.identity.http_timeout);
        let one_account = one_try * (options.retries + 1) + Duration::from_secs(60);
        let claim_for = options.claim_for.unwrap_or(one_account * 2);
        if claim_for < one_account {
            tracing::warn!(
                "worker.claim_for ({}) is shorter than one account may take ({}): another \
                 worker may take over an account still in flight",
                humantime::format_duration(claim_for),
                humantime::format_duration(one_account)
            );
        }
        Ok(Self {
            db,
            acquirer,
            job,
            caches,
            clock,
            owner: format!("worker-{process}"),
            options,
            sweep_batch: settings.cache.sweep_batch,
            claim_for,
            last_sweep: Mutex::new(None),
            passes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Passes until `stop` says so (one pass without `every`), each reported on `reporter`.
    /// A pass that fails ends the run with its error.
    pub async fn run<W: Write>(
        &self,
        reporter: &mut Reporter<W>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), PassError> {
        loop {
            let summary = self.pass(reporter, stop).await?;
            reporter.summary(&summary);
            let Some(every) = self.options.every else {
                return Ok(());
            };
            if *stop.borrow() {
                return Ok(());
            }
            let rest = every.saturating_sub(summary.duration);
            tokio::select! {
                () = tokio::time::sleep(rest) => {}
                Ok(()) = stop.changed() => return Ok(()),
            }
        }
    }

    /// Waits until the database pool makes no connection (see [`Database::settle`]).
    pub fn settle(&self, within: Duration) {
        self.db.settle(within);
    }

    /// Deletes expired cache rows, in batches: on every pass, at most once an hour. The
    /// provider sessions recorded for sign-ins whose app sessions have all ended go too.
    async fn sweep_if_due(&self) -> Result<u64, PassError> {
        if lock(&self.last_sweep).is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
            return Ok(0);
        }
        let (now, batch) = (self.clock.now(), self.sweep_batch);
        let swept = self
            .caches
            .sweep_expired(now, batch)
            .await
            .map_err(|e| PassError::Storage(e.to_string()))?;
        self.db
            .run(move |conn| {
                crate::activity::provider_sessions::sweep(conn, now, batch).map_err(DbError::from)
            })
            .await
            .map_err(|e| PassError::Storage(e.to_string()))?;
        *lock(&self.last_sweep) = Some(Instant::now());
        Ok(swept as u64)
    }
}
