//! Whether a store takes writes that really commit, for `/readyz`: the outcome of the most
//! recent real write (a sign-in's, a refresh's), and a committed heartbeat when no real write
//! succeeded lately. A write rolled back never reaches the disk, so a full disk or a file made
//! read-only would pass it while every sign-in fails.

use super::{DbConnection, DbError};
use crate::sync::lock;
use diesel::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A real write that failed this recently keeps a store not ready, whatever a heartbeat says:
/// a heartbeat's one small row may fit where a sign-in's rows do not.
pub const FAILURE_COUNTS_FOR: Duration = Duration::from_secs(10);
/// A real write that succeeded this recently makes a heartbeat unnecessary.
pub const SUCCESS_COUNTS_FOR: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Outcomes {
    succeeded: Option<Instant>,
    failed: Option<(Instant, String)>,
}

/// The outcomes of a store's real writes. Cheap to clone: clones share them.
#[derive(Clone, Default)]
pub struct WriteHealth(Arc<Mutex<Outcomes>>);

/// What the real writes say, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recent {
    /// The last real write failed (within [`FAILURE_COUNTS_FOR`]), for this reason.
    Failed(String),
    /// A real write succeeded lately and none failed since.
    Succeeded,
    /// Nothing recent enough: ask with a heartbeat.
    Unknown,
}

impl WriteHealth {
    pub fn succeeded(&self) {
        lock(&self.0).succeeded = Some(Instant::now());
    }

    pub fn failed(&self, reason: impl Into<String>) {
        lock(&self.0).failed = Some((Instant::now(), reason.into()));
    }

    pub fn recent(&self) -> Recent {
        let outcomes = lock(&self.0);
        let succeeded = outcomes.succeeded;
        if let Some((at, reason)) = &outcomes.failed {
            let since_success = succeeded.is_none_or(|ok| ok < *at);
            if since_success && at.elapsed() < FAILURE_COUNTS_FOR {
                return Recent::Failed(reason.clone());
            }
        }
        match succeeded {
            Some(at) if at.elapsed() < SUCCESS_COUNTS_FOR => Recent::Succeeded,
            _ => Recent::Unknown,
        }
    }
}

/// One committed write: the heartbeat row's time and count.
pub fn heartbeat(conn: &mut DbConnection, now: time::PrimitiveDateTime) -> Result<(), DbError> {
    use super::schema::readiness_heartbeat::dsl as hb;
    super::prepared::update(
        hb::readiness_heartbeat,
        hb::id.eq(1),
        (hb::beat_at.eq(now), hb::beats.eq(hb::beats + 1)),
    )
    .execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_real_write_decides_until_it_is_old() {
        let health = WriteHealth::default();
        assert_eq!(health.recent(), Recent::Unknown);
        health.succeeded();
        assert_eq!(health.recent(), Recent::Succeeded);
        health.failed("database or disk is full");
        assert_eq!(
            health.recent(),
            Recent::Failed("database or disk is full".into())
        );
        health.succeeded();
        assert_eq!(health.recent(), Recent::Succeeded);
    }
}
