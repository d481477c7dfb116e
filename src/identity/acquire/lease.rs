//! The row's refresh lease as one refresh uses it: taken only on the version read (so the
//! holder's refresh token is the current one), confirmed right before the refresh token is
//! redeemed, released at the end. Each attempt has its own owner name, so the lease is never
//! re-entrant, not even inside one process. All lease times are the database's clock.

use super::Core;
use crate::cache::store::LeaseAttempt;
use crate::identity::AcquireError;
use std::time::Duration;
use tokio::time::Instant;

/// A lease this process holds on one user's row.
pub(super) struct Lease {
    core: Core,
    id: String,
    owner: String,
}

/// What came of trying to take the lease.
pub(super) enum Taking {
    Taken(Lease),
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
        let attempt = {
            let (store, key, owner, lease_for) = (
                core.store.clone(),
                id.to_owned(),
                owner.clone(),
                core.options.lease_for,
            );
            core.db
                .run(move |conn| store.take_lease(conn, &key, version, &owner, lease_for))
                .await?
        };
        match attempt {
            LeaseAttempt::Taken => Ok(Taking::Taken(Lease {
                core: core.clone(),
                id: id.to_owned(),
                owner,
            })),
            LeaseAttempt::Changed => Ok(Taking::Changed),
            LeaseAttempt::Held => {
                wait_for_change(core, id, version, deadline).await?;
                Ok(Taking::Changed)
            }
        }
    }

    /// Renews the lease if it is still ours. False: it expired and may be someone else's now.
    pub async fn confirm(&self) -> Result<bool, AcquireError> {
        let (store, key, owner, lease_for) = (
            self.core.store.clone(),
            self.id.clone(),
            self.owner.clone(),
            self.core.options.lease_for,
        );
        Ok(self
            .core
            .db
            .run(move |conn| store.confirm_lease(conn, &key, &owner, lease_for))
            .await?)
    }

    pub async fn release(self) {
        let (store, key, owner) = (self.core.store.clone(), self.id, self.owner);
        let released = self
            .core
            .db
            .run(move |conn| store.release_lease(conn, &key, &owner))
            .await;
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
        let (store, key, now) = (core.store.clone(), id.to_owned(), core.now());
        let current = core
            .db
            .run(move |conn| store.version_and_lease(conn, &key, now))
            .await?;
        match current {
            Some((v, true)) if v == version => continue,
            _ => return Ok(()),
        }
    }
}
