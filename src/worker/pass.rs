//! One pass: claim due accounts a page at a time (a page is never bigger than the accounts in
//! flight, so memory stays flat however many rows there are), work them with bounded
//! concurrency, report each, and give back what was claimed but not finished when the pass is
//! stopped or fails.

use super::account::{AccountReport, Kind};
use super::report::{Reporter, Summary};
use super::{PassError, Worker};
use crate::activity::passes;
use crate::activity::store::{self as activities, Activity, DueFilter};
use crate::db::DbError;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::time::Instant;
use time::OffsetDateTime;
use tokio::sync::watch;

impl Worker {
    /// Runs one pass. Returns its summary, or why it had to stop (a configuration error or a
    /// database failure); either way, nothing claimed stays claimed longer than its lease.
    pub async fn pass<W: Write>(
        &self,
        reporter: &mut Reporter<W>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Summary, PassError> {
        let ended = self.one_pass(reporter, stop).await;
        crate::metrics::metrics().worker_pass(ended.is_err(), self.clock.now().unix_timestamp());
        ended
    }

    async fn one_pass<W: Write>(
        &self,
        reporter: &mut Reporter<W>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Summary, PassError> {
        let started = Instant::now();
        let mut summary = Summary::default();
        if !self.options.dry_run {
            summary.swept = self.sweep_if_due().await?;
        }
        let outcome = if self.options.dry_run {
            self.dry_run(reporter, &mut summary).await
        } else {
            self.log_claims_of_others().await?;
            let pass = self.begin().await?;
            let outcome = self.claimed(reporter, &mut summary, stop, &pass).await;
            self.end(&pass).await;
            outcome
        };
        summary.duration = started.elapsed();
        outcome.map(|()| summary)
    }

    /// Says how many accounts other workers hold: running, or dead and leaving claims that
    /// expire (`worker.claim_for`) before those accounts are due again.
    async fn log_claims_of_others(&self) -> Result<(), PassError> {
        let (owner, now) = (self.owner.clone(), self.clock.now());
        let (held, until) = self
            .db
            .run(move |conn| activities::held_by_others(conn, &owner, now).map_err(DbError::from))
            .await
            .map_err(database)?;
        if held > 0 {
            let until = until
                .and_then(|u| {
                    u.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            tracing::info!(
                held,
                %until,
                "{held} account(s) are held by other workers' claims (until {until} at the \
                 latest): a worker that is running, or one that died, whose claims expire"
            );
        }
        Ok(())
    }

    /// Registers this pass among the passes running (see `activity::passes`).
    async fn begin(&self) -> Result<Pass, PassError> {
        let n = self
            .passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}-{n}", self.owner);
        let now = self.clock.now();
        let until = now + crate::clock::duration(self.claim_for);
        let pass_id = id.clone();
        let since = self
            .db
            .run(move |conn| passes::begin(conn, &pass_id, now, until).map_err(DbError::from))
            .await
            .map_err(database)?;
        Ok(Pass { id, since })
    }

    async fn end(&self, pass: &Pass) {
        let (id, now) = (pass.id.clone(), self.clock.now());
        let ended = self
            .db
            .run(move |conn| passes::end(conn, &id, now).map_err(DbError::from))
            .await;
        if let Err(e) = ended {
            tracing::warn!(error = %e, "could not end this pass's row; it expires on its own");
        }
    }

    /// Due now: idle for `older_than`, and not acted for since `since` (the earliest pass
    /// running when this one began) nor within `min_interval`.
    fn due_filter(&self, now: OffsetDateTime, since: OffsetDateTime) -> DueFilter {
        let ago = |d| now - crate::clock::duration(d);
        DueFilter {
            cutoff: ago(self.options.older_than),
            now,
            include_failed: self.options.include_failed,
            acted_before: since.min(ago(self.options.min_interval)),
        }
    }

    fn limit_reached(&self, count: u64) -> bool {
        self.options.limit.is_some_and(|limit| count >= limit)
    }

    /// Lists what a pass would process: reads only, claims nothing.
    async fn dry_run<W: Write>(
        &self,
        reporter: &mut Reporter<W>,
        summary: &mut Summary,
    ) -> Result<(), PassError> {
        let mut after: Option<String> = None;
        loop {
            let page = match &self.options.user {
                Some(user) if after.is_none() => self.find_user(user).await?,
                Some(_) => Vec::new(),
                None => {
                    let now = self.clock.now();
                    // As a pass beginning now would see it.
                    let since = self
                        .db
                        .run(move |conn| passes::earliest_running(conn, now).map_err(DbError::from))
                        .await
                        .map_err(database)?
                        .unwrap_or(now);
                    let (filter, from) = (self.due_filter(now, since), after.clone());
                    let size = self.page_size(summary.accounts);
                    self.db
                        .run(move |conn| {
                            activities::due_page(conn, filter, from.as_deref(), size)
                                .map_err(DbError::from)
                        })
                        .await
                        .map_err(database)?
                }
            };
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.account_cache_key.clone());
            for activity in &page {
                let report = AccountReport::new(activity, Kind::WouldProcess);
                summary.add(&report);
                reporter.account(&report);
                if self.limit_reached(summary.accounts) {
                    return Ok(());
                }
            }
        }
    }

    fn page_size(&self, done: u64) -> i64 {
        let room = self
            .options
            .limit
            .map_or(u64::MAX, |limit| limit.saturating_sub(done));
        i64::try_from(room.min(self.options.concurrency as u64).max(1)).unwrap_or(1)
    }

    /// The next claimed accounts: a page of due ones after `after`, or the one `--user` names.
    async fn claim(
        &self,
        pass: &Pass,
        after: Option<&str>,
        started: u64,
    ) -> Result<Vec<Activity>, PassError> {
        let now = self.clock.now();
        let (owner, until) = (
            self.owner.clone(),
            now + crate::clock::duration(self.claim_for),
        );
        if let Some(user) = &self.options.user {
            if after.is_some() {
                return Ok(Vec::new());
            }
            let mut claimed = Vec::new();
            for found in self.find_user(user).await? {
                let (key, owner) = (found.account_cache_key, owner.clone());
                let got = self
                    .db
                    .run(move |conn| {
                        activities::claim_key(conn, &key, &owner, now, until).map_err(DbError::from)
                    })
                    .await
                    .map_err(database)?;
                claimed.extend(got);
            }
            return Ok(claimed);
        }
        let (filter, from, size) = (
            self.due_filter(now, pass.since),
            after.map(str::to_owned),
            self.page_size(started),
        );
        let pass_id = pass.id.clone();
        self.db
            .run(move |conn| {
                // Alive while it claims: a pass beginning now sees this one.
                passes::renew(conn, &pass_id, until)?;
                activities::claim_due(conn, filter, from.as_deref(), size, &owner, until)
                    .map_err(DbError::from)
            })
            .await
            .map_err(database)
    }

    /// The accounts `--user` names: by home account id, else by user principal name.
    /// The account `--user` names (a user principal name or a home account id); none is an
    /// error that suggests the names that come close (`ada` for `ada@contoso.com`).
    async fn find_user(&self, user: &str) -> Result<Vec<Activity>, PassError> {
        let wanted = user.to_owned();
        let (found, close) = self
            .db
            .run(move |conn| activities::lookup(conn, &wanted).map_err(DbError::from))
            .await
            .map_err(database)?;
        if !found.is_empty() {
            return Ok(found);
        }
        let user = crate::text::bounded(user, crate::text::LOG_FIELD);
        Err(PassError::Configuration(if close.is_empty() {
            format!("--user {user} matches no account (a user principal name or a home account id)")
        } else {
            format!(
                "--user {user} matches no account; did you mean {}?",
                close.join(", ")
            )
        }))
    }

    async fn claimed<W: Write>(
        &self,
        reporter: &mut Reporter<W>,
        summary: &mut Summary,
        stop: &mut watch::Receiver<bool>,
        pass: &Pass,
    ) -> Result<(), PassError> {
        let mut queue: VecDeque<Activity> = VecDeque::new();
        let mut unfinished: HashSet<String> = HashSet::new();
        let mut in_flight = FuturesUnordered::new();
        let (mut after, mut exhausted, mut started) = (None::<String>, false, 0_u64);
        let mut stopping = *stop.borrow();
        // A stop signal whose sender is gone can never fire: stop watching it.
        let mut watching = !stopping;
        let mut failure = None;
        loop {
            // A stop seen by the accounts in flight (a command's SIGTERM ended one) may come
            // before `stop.changed()` is polled below: look before starting any more.
            if !stopping && *stop.borrow() {
                (stopping, watching) = (true, false);
                tracing::info!("stopping: finishing the accounts in flight, claiming no more");
            }
            while !stopping
                && failure.is_none()
                && in_flight.len() < self.options.concurrency
                && !self.limit_reached(started)
            {
                if queue.is_empty() {
                    if exhausted {
                        break;
                    }
                    match self.claim(pass, after.as_deref(), started).await {
                        Ok(page) if page.is_empty() => exhausted = true,
                        Ok(page) => {
                            after = page.last().map(|a| a.account_cache_key.clone());
                            unfinished.extend(page.iter().map(|a| a.account_cache_key.clone()));
                            queue.extend(page);
                        }
                        Err(e) => failure = Some(e),
                    }
                    continue;
                }
                if let Some(activity) = queue.pop_front() {
                    started += 1;
                    in_flight.push(self.work(activity, stop.clone()));
                }
            }
            if in_flight.is_empty() {
                break;
            }
            tokio::select! {
                done = in_flight.next() => match done {
                    Some(Ok(report)) => {
                        unfinished.remove(&report.account);
                        summary.add(&report);
                        reporter.account(&report);
                    }
                    Some(Err(e)) => {
                        // It would fail for every account: stop at once.
                        failure = Some(e);
                        break;
                    }
                    None => break,
                },
                // Seen at the top of the loop.
                changed = stop.changed(), if watching => watching = changed.is_ok(),
            }
        }
        drop(in_flight);
        summary.stopped = stopping;
        self.release(unfinished).await;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Gives back claims not worked to the end, so another pass can take them at once.
    async fn release(&self, keys: HashSet<String>) {
        if keys.is_empty() {
            return;
        }
        let owner = self.owner.clone();
        let released = self
            .db
            .run(move |conn| {
                for key in &keys {
                    activities::release(conn, key, &owner)?;
                }
                Ok::<_, DbError>(())
            })
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "could not release claimed accounts; their claims expire on their own");
        }
    }
}

/// A pass running: its row in `worker_passes`, and the earliest start of the passes that were
/// running when it began.
struct Pass {
    id: String,
    since: OffsetDateTime,
}

fn database(e: DbError) -> PassError {
    PassError::Storage(e.to_string())
}
