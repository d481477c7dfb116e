//! Writing a redeemed refresh token back: nothing the provider has rotated may be lost.
//!
//! The write is a compare-and-swap on the version the refresh started from. On a conflict (a
//! sign-in wrote meanwhile) the tokens are merged into the document now in the row and written
//! again. Storage errors (pool timeout, a lock held too long) are retried while the lease is
//! renewed; past the in-request budget the tokens stay in memory as a pending write and a
//! background task keeps trying, so the user's page still works and the next refresh in this
//! process does not redeem the old token again.

use super::lease::Lease;
use super::{Caller, Core};
use crate::cache::backend::Expected;
use crate::cache::document::{CacheDocument, ClientContext, Grant, TokenResponse};
use crate::cache::store::CacheStoreError;
use crate::identity::activity::{account_activity, recorded};
use crate::identity::AcquireError;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a refresh keeps retrying its write before the caller gets its token anyway and
/// the write carries on in the background.
pub(super) const IN_REQUEST_BUDGET: Duration = Duration::from_secs(10);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// The tokens of one redemption and the document they were redeemed from.
#[derive(Clone)]
pub(super) struct Write {
    pub id: String,
    pub context: ClientContext,
    pub tokens: TokenResponse,
    pub scopes: Vec<String>,
    pub caller: Caller,
    /// When the refresh request was sent (Unix seconds, rounded down): the answer's lifetimes
    /// count from here, never from its arrival (a slow answer would otherwise make a token
    /// look valid for longer than it is), and a refresh token in the row written after this
    /// is newer than ours and is kept.
    pub redeemed_at: i64,
    /// The row (version and the sign-in's session epoch) and document the refresh token was
    /// taken from.
    pub base: (Expected, Arc<CacheDocument>),
}

/// Why a write did not happen.
pub(super) enum Unwritten {
    /// The row cannot take these tokens (the user signed out meanwhile, or a configuration
    /// problem); retrying will not help.
    Refused(AcquireError),
    /// The database kept failing until the deadline; the write may be retried later.
    Failing {
        write: Box<Write>,
        error: AcquireError,
    },
}

impl Write {
    /// The base document with these tokens added: what the row should hold.
    pub fn document(&self) -> Result<CacheDocument, AcquireError> {
        let (_, base) = &self.base;
        let mut document = CacheDocument::clone(base);
        let mut tokens = self.tokens.clone();
        let newer_in_row = base
            .find_refresh_token(&self.context, &self.id)
            .and_then(|rt| {
                rt.last_modification_time
                    .as_deref()?
                    .trim()
                    .parse::<i64>()
                    .ok()
            })
            .is_some_and(|written| written > self.redeemed_at);
        if newer_in_row {
            // Someone redeemed or signed in after us: their refresh token is the newer one.
            tokens.refresh_token = None;
        }
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        document
            .add_token_response(
                &self.context,
                &tokens,
                &scopes,
                Grant::RefreshToken,
                Some(&self.id),
                self.redeemed_at,
            )
            .map_err(|e| AcquireError::Configuration(e.to_string()))?;
        Ok(document)
    }
}

/// Writes `write`, retrying until `deadline` (None: for as long as it takes), renewing
/// `lease` as it goes; with `end_lease`, the write that succeeds also releases it. Returns the
/// new version and document.
pub(super) async fn save(
    core: &Core,
    mut write: Write,
    lease: Option<&Lease>,
    end_lease: bool,
    deadline: Option<Instant>,
) -> Result<(i64, Arc<CacheDocument>), Unwritten> {
    let ending = lease.filter(|_| end_lease).map(|l| l.owner().to_owned());
    let mut pause = Duration::from_millis(50);
    let mut attempts = 0_u32;
    loop {
        attempts += 1;
        let document = write.document().map_err(Unwritten::Refused)?;
        let error = match write_once(core, &write, &document, ending.clone()).await {
            Ok(version) => {
                if attempts > 1 {
                    tracing::info!(account = %write.id, attempts, "refreshed tokens written after retrying");
                }
                let document = Arc::new(document);
                core.memory.remember(&write.id, version, document.clone());
                return Ok((version, document));
            }
            Err(CacheStoreError::Conflict { .. }) => match reload(core, &write.id).await {
                Ok(Some((row, _)))
                    if write.base.0.session_epoch.is_some()
                        && row.session_epoch != write.base.0.session_epoch =>
                {
                    // The user signed out and in again: these tokens belong to a sign-in that
                    // has ended, and the row to the new one.
                    return Err(Unwritten::Refused(AcquireError::InteractionRequired {
                        reason: "the user signed out while their tokens were being refreshed"
                            .into(),
                    }));
                }
                Ok(Some(base)) => {
                    write.base = base;
                    // Merge and write again at once; a row that keeps changing is retried
                    // with pauses, like any other failure.
                    if attempts < 5 {
                        continue;
                    }
                    AcquireError::Storage("the token cache kept changing".into())
                }
                Ok(None) => {
                    return Err(Unwritten::Refused(AcquireError::InteractionRequired {
                        reason: "the user signed out while their tokens were being refreshed"
                            .into(),
                    }))
                }
                Err(e @ AcquireError::CacheKeys(_)) => return Err(Unwritten::Refused(e)),
                Err(e) => e,
            },
            Err(e) if e.is_key_problem() => return Err(Unwritten::Refused(e.into())),
            Err(e) => AcquireError::Storage(e.to_string()),
        };
        if deadline.is_some_and(|d| Instant::now() + pause >= d) {
            return Err(Unwritten::Failing {
                write: Box::new(write),
                error,
            });
        }
        tracing::warn!(account = %write.id, attempts, error = %error, "writing refreshed tokens failed; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
        if let Some(lease) = lease {
            // Keep other processes from redeeming the old token while the write is retried.
            let _ = lease.confirm().await;
        }
    }
}

/// Keeps writing in the background after the caller got its token; the document stays in
/// memory as this process's view of the user until it is written.
pub(super) fn save_in_background(core: &Core, write: Write, lease: Lease) {
    let core = core.clone();
    tokio::spawn(async move {
        let id = write.id.clone();
        match save(&core, write, Some(&lease), false, None).await {
            Ok(_) => {}
            Err(Unwritten::Refused(e)) => {
                tracing::warn!(account = %id, error = %e, "refreshed tokens were not written");
            }
            Err(Unwritten::Failing { error, .. }) => {
                tracing::error!(account = %id, error = %error, "refreshed tokens could not be written");
            }
        }
        core.pending.remove(&id);
        lease.release().await;
    });
}

/// Saves the document: for the web app with the user's activity (see
/// [`crate::cache::backend::CacheBackend::save_with`]); the worker's writes are never
/// the user's activity. `ending_lease`: the lease owner whose lease the write releases.
async fn write_once(
    core: &Core,
    write: &Write,
    document: &CacheDocument,
    ending_lease: Option<String>,
) -> Result<i64, CacheStoreError> {
    let (now, expected, doc) = (core.now(), write.base.0, document.clone());
    if write.caller == Caller::Worker {
        return core
            .caches
            .save_refreshed(&write.id, doc, expected, ending_lease, now)
            .await;
    }
    let activity = account_activity(
        &write.id,
        document.account(&write.context, &write.id),
        write.tokens.id_token.as_ref().map(|t| &t.claims),
        core.provider.kind(),
        None,
    );
    let saved = core
        .caches
        .save_with(
            &write.id,
            doc,
            Some(expected),
            ending_lease,
            recorded(activity, now),
            now,
        )
        .await?;
    Ok(saved.version)
}

/// The row as it is now, to merge into (a corrupt one is written over; see
/// [`crate::cache::backend::CacheBackend::load_to_write_over`]).
async fn reload(
    core: &Core,
    id: &str,
) -> Result<Option<(Expected, Arc<CacheDocument>)>, AcquireError> {
    let row = core.caches.load_to_write_over(id, core.now()).await?;
    Ok(row.map(|(row, document)| (row, Arc::new(document))))
}
