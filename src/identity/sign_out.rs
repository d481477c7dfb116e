//! Signing out: the user's cache row is deleted and their activity marked (see
//! [`crate::cache::backend::CacheBackend::remove_session`]), for the session's own sign-ins
//! only (its epoch); the refresh token is then revoked at the provider when it offers that. A
//! database that does not answer does not keep the user signed in: the deletion is retried in
//! the background until the database is back.

use super::acquire::{AppSessionRef, Core, TokenAcquirer};
use super::activity::signed_out;
use super::error::AcquireError;
use crate::activity::provider_sessions;
use crate::activity::store::{self as activities, SignedOutBy};
use crate::cache::store::CacheStoreError;
use crate::db::DbError;
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
    /// Signs out `session` of user `id`, and with it every session of theirs. See
    /// [`SignedOut`].
    pub async fn sign_out(
        &self,
        id: &str,
        session: &AppSessionRef<'_>,
    ) -> Result<SignedOut, AcquireError> {
        let core = &self.core;
        let session_epoch = session.epoch;
        if let Some(listed) = session.id {
            // A session a logout at the provider ended signs nobody out either.
            match core.caches.load(id, core.now()).await {
                Ok(Some(loaded)) if !loaded.document.has_session(listed) => {
                    return Ok(SignedOut::NotCurrent)
                }
                // Absent, unreadable or not answering: the deletion below says which.
                _ => {}
            }
        }
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

/// What a logout naming a provider session ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderSessionEnded {
    /// Accounts that had signed in through it.
    pub accounts: usize,
    /// App sessions ended while the user had others (their cache stays).
    pub sessions: usize,
    /// Caches deleted: the user's only sign-ins ended (or the whole cache was asked for).
    pub caches: usize,
}

impl TokenAcquirer {
    /// Ends the app sessions that began in the provider's session `sid` (a Back- or
    /// Front-Channel Logout naming it), for the accounts that signed in through it (only the
    /// one whose last sign-in had `subject`, when given). An account left with no session is
    /// signed out at the provider as [`Self::sign_out_at_provider`] does; with `whole_cache`
    /// (a Front-Channel Logout: the browser the sessions were in is the user's) it is anyway.
    /// None when no account signed in through `sid` (or its sign-ins have all expired).
    pub async fn end_provider_session(
        &self,
        sid: &str,
        subject: Option<&str>,
        whole_cache: bool,
    ) -> Result<Option<ProviderSessionEnded>, AcquireError> {
        let core = &self.core;
        let (sid_key, now) = (core.provider.session_key(sid), core.now());
        let mut accounts = {
            let key = sid_key.clone();
            core.db
                .run(move |conn| {
                    provider_sessions::accounts(conn, &key, now).map_err(DbError::from)
                })
                .await?
        };
        if let Some(subject) = subject {
            let subject = subject.to_owned();
            let theirs = core
                .db
                .run(move |conn| activities::find_by_subject(conn, &subject).map_err(DbError::from))
                .await?;
            accounts.retain(|id| theirs.iter().any(|a| &a.account_cache_key == id));
        }
        if accounts.is_empty() {
            return Ok(None);
        }
        let mut ended = ProviderSessionEnded {
            accounts: accounts.len(),
            ..ProviderSessionEnded::default()
        };
        for id in &accounts {
            match end_sessions(core, id, &sid_key, whole_cache).await? {
                Some(Ending::Cache) => ended.caches += 1,
                Some(Ending::Sessions(n)) => ended.sessions += n,
                None => {}
            }
            let (key, id) = (sid_key.clone(), id.clone());
            core.db
                .run(move |conn| provider_sessions::forget(conn, &key, &id).map_err(DbError::from))
                .await?;
        }
        Ok(Some(ended))
    }
}

enum Ending {
    Cache,
    Sessions(usize),
}

/// Ends account `id`'s sessions from provider session `sid_key`: a write of its document
/// without them (compare-and-swap: a refresh writing meanwhile merges into it), or the
/// deletion of its row when none would be left or `whole_cache`. A row none of whose sessions
/// began there is left alone.
async fn end_sessions(
    core: &Core,
    id: &str,
    sid_key: &str,
    whole_cache: bool,
) -> Result<Option<Ending>, AcquireError> {
    for _ in 0..5 {
        let Some((row, mut document)) = core.caches.load_to_write_over(id, core.now()).await?
        else {
            return Ok(None);
        };
        let ending = document.end_sessions_from(sid_key);
        if ending == 0 {
            // None of its sessions is here: the row belongs to a sign-in since, which that
            // provider session did not begin.
            return Ok(None);
        }
        if whole_cache || document.sessions().next().is_none() {
            let epoch = row.session_epoch.unwrap_or_default();
            if remove(core, id, epoch, SignedOutBy::Provider).await? {
                return Ok(Some(Ending::Cache));
            }
            continue;
        }
        match core
            .caches
            .save_refreshed(id, document, row, None, core.now())
            .await
        {
            Ok(_) => {
                // Pages here read the row again: its version changed.
                core.forget(id);
                return Ok(Some(Ending::Sessions(ending)));
            }
            Err(CacheStoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(AcquireError::Storage(
        "the token cache kept changing while ending a provider session".into(),
    ))
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
