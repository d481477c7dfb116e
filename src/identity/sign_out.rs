//! Signing out: the user's cache row is deleted and their activity marked (see
//! [`crate::cache::backend::CacheBackend::remove_session`]), for the session's own sign-ins
//! only (its epoch); the refresh token is then revoked at the provider when it offers that. A
//! database that does not answer does not keep the user signed in: the deletion is retried in
//! the background until the database is back.

use super::acquire::{Core, TokenAcquirer};
use super::activity::signed_out;
use super::error::AcquireError;
use crate::activity::store::SignedOutBy;
use crate::secret::Secret;
use std::time::Duration;

/// How a sign-out went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedOut {
    /// The row is gone (and the refresh token revoked where the provider offers it).
    Done,
    /// The session was not the user's current one (a copy from before a sign-out): nothing
    /// was deleted.
    NotCurrent,
    /// The database did not answer: the deletion is retried in the background.
    Deferred,
}

/// How long a deferred sign-out keeps trying.
const RETRY_FOR: Duration = Duration::from_secs(3600);
const MAX_PAUSE: Duration = Duration::from_secs(60);

impl TokenAcquirer {
    /// Signs out the session with `session_epoch` of user `id`. See [`SignedOut`].
    pub async fn sign_out(&self, id: &str, session_epoch: i64) -> Result<SignedOut, AcquireError> {
        let core = &self.core;
        match remove(core, id, session_epoch, SignedOutBy::App).await {
            Ok(true) => Ok(SignedOut::Done),
            Ok(false) => Ok(SignedOut::NotCurrent),
            Err(AcquireError::Storage(reason)) => {
                core.forget(id);
                tracing::warn!(account = %id, %reason, "sign-out: the token store did not answer; removing the user's tokens in the background");
                retry_later(core.clone(), id.to_owned(), session_epoch);
                Ok(SignedOut::Deferred)
            }
            Err(e) => Err(e),
        }
    }
}

impl TokenAcquirer {
    /// Ends every session of user `id` because the provider said the user signed out there
    /// (a Back- or Front-Channel Logout): the row is deleted whatever its epoch, the activity
    /// marked as signed out at the provider, the refresh token revoked. False when there was
    /// no row. A refresh in flight elsewhere then fails to write (its epoch is gone).
    pub async fn sign_out_at_provider(&self, id: &str) -> Result<bool, AcquireError> {
        let core = &self.core;
        // A sign-in that recreated the row between the read and the delete is a new one:
        // one more try, then it stays.
        for _ in 0..2 {
            let Some((_, epoch)) = core.caches.version_and_epoch(id, core.now()).await? else {
                return Ok(false);
            };
            if remove(core, id, epoch, SignedOutBy::Provider).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Deletes the row and marks the activity when the row's epoch is `session_epoch`; true when
/// it did. Then revokes the refresh token the row held, in the background.
async fn remove(
    core: &Core,
    id: &str,
    session_epoch: i64,
    by: SignedOutBy,
) -> Result<bool, AcquireError> {
    // Usually held already; the sign-out redirect needs it too. Unavailable: no revocation.
    let context = core
        .provider
        .metadata()
        .await
        .ok()
        .map(|m| m.context.clone());
    let removed = core
        .caches
        .remove_session(
            id,
            session_epoch,
            signed_out(id, by, core.now()),
            core.now(),
        )
        .await?;
    let Some(document) = removed else {
        return Ok(false);
    };
    // A row this process could not open was still deleted; it just cannot be revoked.
    let refresh_token: Option<Secret> = match (&context, &document) {
        (Some(context), Some(document)) => document
            .find_refresh_token(context, id)
            .map(|rt| rt.secret.clone()),
        _ => None,
    };
    core.forget(id);
    if let Some(refresh_token) = refresh_token {
        let (provider, account) = (core.provider.clone(), id.to_owned());
        tokio::spawn(async move {
            match provider.revoke_refresh_token(&refresh_token).await {
                Ok(true) => tracing::info!(%account, "refresh token revoked at the provider"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%account, error = %e, "signed out, but the provider did not revoke the refresh token")
                }
            }
        });
    }
    Ok(true)
}

/// Keeps trying a sign-out the database did not answer: 1 s doubling to a minute, for an hour.
fn retry_later(core: Core, id: String, session_epoch: i64) {
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_secs(1);
        loop {
            tokio::time::sleep(pause).await;
            match remove(&core, &id, session_epoch, SignedOutBy::App).await {
                Ok(_) => {
                    tracing::info!(account = %id, "deferred sign-out completed");
                    return;
                }
                Err(AcquireError::Storage(_)) if started.elapsed() < RETRY_FOR => {
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(e) => {
                    tracing::error!(account = %id, error = %e, "deferred sign-out gave up: the user's tokens are still stored");
                    return;
                }
            }
        }
    });
}
