//! Signing out: the user's cache row is deleted and their activity marked, in one transaction,
//! for the session's own sign-ins only (its epoch); the refresh token is then revoked at the
//! provider when it offers that. A database that does not answer does not keep the user signed
//! in: the deletion is retried in the background until the database is back.

use super::acquire::{Core, TokenAcquirer};
use super::error::AcquireError;
use crate::cache::store::CacheStoreError;
use crate::db::DbConnection;
use crate::secret::Secret;
use diesel::Connection;
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
        match remove(core, id, session_epoch).await {
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

/// Deletes the row and marks the activity when the row's epoch is `session_epoch`; true when
/// it did. Then revokes the refresh token the row held, in the background.
async fn remove(core: &Core, id: &str, session_epoch: i64) -> Result<bool, AcquireError> {
    // Usually held already; the sign-out redirect needs it too. Unavailable: no revocation.
    let context = core
        .provider
        .metadata()
        .await
        .ok()
        .map(|m| m.context.clone());
    let (store, key, now) = (core.store.clone(), id.to_owned(), core.now());
    let removed = core
        .db
        .run(
            move |conn: &mut DbConnection| -> Result<Option<Option<Secret>>, CacheStoreError> {
                conn.transaction(|conn| {
                    match store.version_and_epoch(conn, &key, now)? {
                        Some((_, epoch)) if epoch == session_epoch => {}
                        _ => return Ok(None),
                    }
                    // A row this process cannot open is still deleted; it just cannot be
                    // revoked.
                    let refresh_token = match (&context, store.load(conn, &key, now)) {
                        (Some(context), Ok(Some(loaded))) => loaded
                            .document
                            .find_refresh_token(context, &key)
                            .map(|rt| rt.secret.clone()),
                        _ => None,
                    };
                    store.delete(conn, &key)?;
                    crate::activity::store::mark_signed_out(conn, &key, now)?;
                    Ok(Some(refresh_token))
                })
            },
        )
        .await?;
    let Some(refresh_token) = removed else {
        return Ok(false);
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
            match remove(&core, &id, session_epoch).await {
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
