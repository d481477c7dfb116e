//! Time is a parameter: logic takes `now` from a [`Clock`] so expiry rules are tested without
//! sleeping. Database timestamps are UTC `PrimitiveDateTime`s truncated to microseconds, the
//! finest precision all three backends keep.

use std::sync::Arc;
use std::sync::Mutex;
use time::{Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The real wall clock, in UTC.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until moved; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: Duration) {
        *crate::sync::lock(&self.0) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *crate::sync::lock(&self.0)
    }
}

/// The UTC wall time stored in `TIMESTAMP`/`DATETIME(6)` columns, truncated to microseconds so a
/// value reads back exactly as it was written on every backend.
pub fn to_db(at: OffsetDateTime) -> PrimitiveDateTime {
    let utc = at.to_offset(UtcOffset::UTC);
    let micros = utc.microsecond();
    let truncated = utc.replace_microsecond(micros).unwrap_or(utc);
    PrimitiveDateTime::new(truncated.date(), truncated.time())
}

/// Reads a database timestamp back as UTC.
pub fn from_db(at: PrimitiveDateTime) -> OffsetDateTime {
    at.assume_utc()
}

/// Converts a `std::time::Duration` from settings into a `time::Duration`, saturating.
pub fn duration(d: std::time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn db_times_are_utc_and_truncated_to_microseconds() {
        let at = datetime!(2026-11-25 12:00:00.123456789 +02:00);
        let stored = to_db(at);
        assert_eq!(stored, datetime!(2026-11-25 10:00:00.123456));
        assert_eq!(from_db(stored), datetime!(2026-11-25 10:00:00.123456 UTC));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(datetime!(2026-01-01 0:00 UTC));
        assert_eq!(clock.now(), datetime!(2026-01-01 0:00 UTC));
        clock.advance(Duration::minutes(5));
        assert_eq!(clock.now(), datetime!(2026-01-01 0:05 UTC));
    }
}
