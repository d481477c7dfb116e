//! The web API mode's acquisition: a caller's token (already validated) is exchanged for the
//! user's own tokens (on-behalf-of, or RFC 8693 token exchange), which are stored in the user's
//! cache under the same contract as a refresh: one flight per user in a process, the row's
//! lease across processes (a row is made first for a user who has none, so there is a version
//! to take it on), compare-and-swap, the activity row in the write's transaction.
//!
//! Entries are named as MSAL.NET names its on-behalf-of entries (`user_assertion_hash`, the
//! caller token's hash): a later call with the same token uses the access token stored for it,
//! and a call with another token of the user's is exchanged again. The refresh token is the
//! account's, as a sign-in's is, so the worker later refreshes with it as for any user.

use super::lease::{Lease, Taking};
use super::persist::Write;
use super::refresh::{answered, store};
use super::{AccessToken, Caller, Core, Current, TokenAcquirer};
use crate::cache::backend::{Companion, Expected};
use crate::cache::document::{user_assertion_hash, CacheDocument};
use crate::cache::store::CacheStoreError;
use crate::identity::provider::{CallerToken, Loaded};
use crate::identity::AcquireError;
use crate::metrics::{metrics, Acquisition};
use crate::secret::Secret;
use crate::settings::Exchange;
use std::sync::Arc;
use tokio::time::Instant;

impl TokenAcquirer {
    /// An access token for `scopes` for the user who called with `caller`: the one stored for
    /// that very token while it is good, else the user's tokens from an exchange of it
    /// (`exchange`), stored in their cache with their activity. Concurrent calls for one user
    /// share one exchange, in this process and across processes.
    pub async fn acquire_on_behalf_of(
        &self,
        caller: &CallerToken,
        scopes: &[&str],
        exchange: Exchange,
    ) -> Result<AccessToken, AcquireError> {
        let provider = &self.core.provider;
        let id = caller.home_account_id(provider.kind()).ok_or_else(|| {
            AcquireError::Rejected("the caller's token names no user (oid and tid)".into())
        })?;
        let loaded = provider.metadata().await?;
        let hash = user_assertion_hash(caller.raw.expose());
        if let Some(current) = self.core.read(&id).await? {
            if let Some(token) = stored_for(&self.core, &loaded, &current, &id, scopes, &hash) {
                metrics().acquisition(Acquisition::CacheHit);
                return Ok(token);
            }
        }
        let key = format!("{id}\n{}\non-behalf-of", scopes.join(" "));
        let outcome = self
            .flights
            .join(&key, || {
                let request = Request {
                    core: self.core.clone(),
                    loaded,
                    id,
                    scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                    user_token: caller.raw.clone(),
                    hash,
                    exchange,
                };
                request.run()
            })
            .await;
        metrics().acquisition(match &outcome {
            Ok(_) => Acquisition::Exchanged,
            Err(AcquireError::InteractionRequired { .. }) => Acquisition::InteractionRequired,
            Err(AcquireError::Transient { .. }) => Acquisition::Transient,
            Err(_) => Acquisition::Error,
        });
        outcome.map_err(|e| self.core.noting(e))
    }
}

/// The access token stored for the caller's token `hash`, if it is still good to use.
fn stored_for(
    core: &Core,
    loaded: &Loaded,
    current: &Current,
    id: &str,
    scopes: &[&str],
    hash: &str,
) -> Option<AccessToken> {
    let margin = i64::try_from(core.options.refresh_margin.as_secs()).unwrap_or(i64::MAX);
    let now = core.now().unix_timestamp();
    let hit = current.document.find_access_token_for_assertion(
        &loaded.context,
        id,
        scopes,
        hash,
        now,
        margin,
    )?;
    (!hit.refresh_due).then(|| AccessToken::from(hit.entry))
}

/// One exchange for one user, as a detached flight runs it.
struct Request {
    core: Core,
    loaded: Arc<Loaded>,
    id: String,
    scopes: Vec<String>,
    user_token: Secret,
    hash: String,
    exchange: Exchange,
}

impl Request {
    async fn run(self) -> Result<AccessToken, AcquireError> {
        let Self { core, id, .. } = &self;
        let scope_refs: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let deadline = Instant::now() + core.options.lease_for * 2;
        let (lease, expected, document) = loop {
            let Some(current) = core.read(id).await? else {
                make_row(core, id).await?;
                continue;
            };
            if current.pending {
                return Err(AcquireError::Storage(
                    "this user's last tokens are still being written".into(),
                ));
            }
            // Another process may have exchanged this very token while this one waited.
            if let Some(token) =
                stored_for(core, &self.loaded, &current, id, &scope_refs, &self.hash)
            {
                return Ok(token);
            }
            match Lease::take(core, id, current.version, deadline).await? {
                Taking::Taken(lease) => {
                    let expected = Expected {
                        version: current.version,
                        session_epoch: current.session_epoch,
                    };
                    break (*lease, expected, current.document);
                }
                Taking::Changed => continue,
            }
        };
        let lease = lease.confirm_before_redeeming().await?;
        let sent_at = core.now().unix_timestamp();
        let answer = core
            .provider
            .redeem_on_behalf_of(&self.loaded, &self.user_token, &scope_refs, self.exchange)
            .await;
        let (lease, redeemed) = answered(core, lease, answer).await?;
        let write = Write {
            id: id.clone(),
            context: self.loaded.context.clone(),
            tokens: redeemed.tokens(None),
            scopes: self.scopes.clone(),
            // The caller is the user, present: their activity.
            caller: Caller::Web,
            redeemed_at: sent_at,
            base: (expected, document),
        };
        store(core, lease, &redeemed, write, Some(&self.hash)).await
    }
}

/// Makes an empty row for a user who has none, so that the exchange can take its lease (a
/// row someone else made meanwhile is as good). Nothing else is written: the activity row
/// comes with the tokens.
async fn make_row(core: &Core, id: &str) -> Result<(), AcquireError> {
    let nothing: Companion = Arc::new(|_| Ok(()));
    let made = core
        .caches
        .save_with(
            id,
            CacheDocument::default(),
            None,
            None,
            nothing,
            core.now(),
        )
        .await;
    match made {
        Ok(_) | Err(CacheStoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(core.noting(e.into())),
    }
}
