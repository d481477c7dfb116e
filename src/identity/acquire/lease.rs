//! The row's refresh lease as one refresh uses it: taken only on the version read (so the
//! holder's refresh token is the current one), confirmed right before the refresh token is
//! redeemed, released at the end (by the write of the refreshed tokens itself, when it can).
//! Each attempt has its own owner name, so the lease is never re-entrant, not even inside one
//! process. All lease times are the database's clock.

use super::Core;
use crate::cache::store::LeaseAttempt;
use crate::identity::AcquireError;
use crate::sync::lock;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A lease this process holds on one user's row.
pub(super) struct Lease {
    core: Core,
    id: String,
    owner: String,
    /// When the lease was last taken or renewed, by this host's monotonic clock, read before
    /// the statement was sent: the database's clock started the lease's term after that, so
    /// the lease is ours for at least `lease_for` from then.
    renewed_at: Mutex<Instant>,
}

/// Whether a lease taken or renewed at `renewed_at` is certainly still held at `now`, with at
/// least three quarters of its term left: confirming it in the database would tell nothing.
/// (Nobody else can take a live lease or release it; a sign-out deleting the row meanwhile is
/// found by the write.)
fn certainly_held(renewed_at: Instant, now: Instant, lease_for: Duration) -> bool {
    now.saturating_duration_since(renewed_at) < lease_for / 4
}

/// What came of trying to take the lease.
pub(super) enum Taking {
    Taken(Box<Lease>),
    /// The row moved on (or went away): read it again.
    Changed,
}

impl Lease {
    /// Takes the lease on `version` of the row, waiting (until `deadline`) while another
    /// process holds it: when it lets go or writes, the caller reads again.
    pub async fn take(
        core: &Core,
        id: &str,
        version: i64,
        deadline: Instant,
    ) -> Result<Taking, AcquireError> {
        let owner = format!("{}#{:016x}", core.options.owner, rand::random::<u64>());
        let sent = Instant::now();
        let attempt = core
            .caches
            .take_lease(id, version, &owner, core.options.lease_for)
            .await?;
        match attempt {
            LeaseAttempt::Taken => Ok(Taking::Taken(Box::new(Lease {
                core: core.clone(),
                id: id.to_owned(),
                owner,
                renewed_at: Mutex::new(sent),
            }))),
            LeaseAttempt::Changed => Ok(Taking::Changed),
            LeaseAttempt::Held => {
                wait_for_change(core, id, version, deadline).await?;
                Ok(Taking::Changed)
            }
        }
    }

    /// Renews the lease if it is still ours. False: it expired and may be someone else's now.
    /// A lease taken or renewed moments ago (see [`certainly_held`]) is ours without asking the
    /// database: a refresh confirms right after taking, so this saves it a statement.
    pub async fn confirm(&self) -> Result<bool, AcquireError> {
        let lease_for = self.core.options.lease_for;
        let sent = Instant::now();
        if certainly_held(*lock(&self.renewed_at), sent, lease_for) {
            return Ok(true);
        }
        let renewed = self
            .core
            .caches
            .confirm_lease(&self.id, &self.owner, lease_for)
            .await?;
        if renewed {
            *lock(&self.renewed_at) = sent;
        }
        Ok(renewed)
    }

    /// Right before a redemption (a refresh token redeemed, a caller's token exchanged): the
    /// last moment to find out that the lease expired, since after it the grant is spent. A
    /// lease lost by then is a transient error, nothing redeemed; one the database could not
    /// confirm is released. (Tests pause here first: `pause_before_redeem`.)
    pub async fn confirm_before_redeeming(self) -> Result<Self, AcquireError> {
        if !self.core.options.pause_before_redeem.is_zero() {
            tokio::time::sleep(self.core.options.pause_before_redeem).await;
        }
        match self.confirm().await {
            Ok(true) => Ok(self),
            Ok(false) => Err(AcquireError::Transient {
                reason: "the lease expired before the redemption; nothing was redeemed".into(),
                retry_after: None,
            }),
            Err(e) => {
                self.release().await;
                Err(e)
            }
        }
    }

    /// The owner name this lease is held under, for a write that ends it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease was released by the write that stored the refreshed tokens.
    pub fn ended_by_write(self) {}

    pub async fn release(self) {
        let released = self.core.caches.release_lease(&self.id, &self.owner).await;
        if let Err(e) = released {
            // The lease expires on its own; another process can take it then.
            tracing::warn!(error = %e, "could not release a refresh lease");
        }
    }
}

/// Waits until the row's version changes or nobody holds its lease any more.
async fn wait_for_change(
    core: &Core,
    id: &str,
    version: i64,
    deadline: Instant,
) -> Result<(), AcquireError> {
    let mut pause = Duration::from_millis(20);
    loop {
        if Instant::now() >= deadline {
            return Err(AcquireError::Transient {
                reason: "another process held this user's refresh lease for too long".into(),
                retry_after: None,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
        let current = core.caches.version_and_lease(id, core.now()).await?;
        match current {
            Some((v, true)) if v == version => continue,
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_confirmed_in_the_database_once_a_quarter_of_its_term_has_passed() {
        let lease_for = Duration::from_secs(40);
        let taken = Instant::now();
        assert!(certainly_held(taken, taken, lease_for));
        assert!(certainly_held(
            taken,
            taken + Duration::from_millis(9_999),
            lease_for
        ));
        assert!(!certainly_held(
            taken,
            taken + Duration::from_secs(10),
            lease_for
        ));
        assert!(!certainly_held(
            taken,
            taken + Duration::from_secs(60),
            lease_for
        ));
        // A clock that reads earlier than the take (it cannot) still counts as fresh.
        assert!(certainly_held(
            taken + Duration::from_secs(1),
            taken,
            lease_for
        ));
    }
}
