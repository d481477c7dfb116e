//! One refresh of one user's tokens, as a detached flight runs it: take the row's lease on the
//! version read, confirm it, redeem the refresh token, save the answer (see `persist`; the
//! write releases the lease), and only then validate an ID token that needs the network.
//! Provider metadata is loaded before the lease, so nothing but the redemption and the write
//! happen while it is held.

use super::lease::{Lease, Taking};
use super::persist::{self, Unwritten, Write};
use super::{no_cache, AccessToken, Caller, Core, Current};
use crate::cache::backend::Expected;
use crate::identity::provider::{Loaded, Redeemed};
use crate::identity::AcquireError;
use crate::secret::Secret;
use std::sync::Arc;
use tokio::time::Instant;

/// Refreshes `id`'s tokens. `read`: the row as the caller read it just before starting this
/// refresh, used instead of reading it again (the lease is taken only if it is still current).
pub(super) async fn refresh(
    core: Core,
    loaded: Arc<Loaded>,
    id: String,
    scopes: Vec<String>,
    caller: Caller,
    mut read: Option<Current>,
    rejected: Option<Secret>,
) -> Result<AccessToken, AcquireError> {
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let context = &loaded.context;
    let deadline = Instant::now() + core.options.lease_for * 2;
    let (lease, expected, document) = loop {
        let current = match read.take() {
            Some(current) => current,
            None => core.read(&id).await?.ok_or_else(no_cache)?,
        };
        if current.pending {
            return Err(AcquireError::Storage(
                "this user's last refreshed tokens are still being written".into(),
            ));
        }
        // Another process may have refreshed while this one waited (a token the API refused
        // does not count).
        if let Some(hit) = core.usable(context, &current.document, &id, &scope_refs) {
            let refused = rejected
                .as_ref()
                .is_some_and(|r| r.expose() == hit.token.secret.expose());
            if !hit.refresh_due && !refused {
                return Ok(hit.token);
            }
        }
        match Lease::take(&core, &id, current.version, deadline).await? {
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
    let Some(refresh_token) = document
        .find_refresh_token(context, &id)
        .map(|rt| rt.secret.clone())
    else {
        lease.release().await;
        return Err(AcquireError::InteractionRequired {
            reason: "no refresh token in the cache".into(),
        });
    };
    let lease = lease.confirm_before_redeeming().await?;
    // Lifetimes count from before the request was sent (see `Write::redeemed_at`).
    let sent_at = core.now().unix_timestamp();
    let answer = core
        .provider
        .redeem_refresh_token(&loaded, &refresh_token, &scope_refs)
        .await;
    let (lease, redeemed) = answered(&core, lease, answer).await?;
    let write = Write {
        id: id.clone(),
        context: context.clone(),
        tokens: redeemed.tokens(None),
        scopes: scopes.clone(),
        caller,
        redeemed_at: sent_at,
        base: (expected, document),
    };
    store(&core, lease, &redeemed, write, None).await
}

/// The provider's answer to a redemption made under `lease`: taken, the provider accepted this
/// client (which `/readyz` reports); refused, the lease is let go and the error passed on.
pub(super) async fn answered(
    core: &Core,
    lease: Lease,
    answer: Result<Redeemed, AcquireError>,
) -> Result<(Lease, Redeemed), AcquireError> {
    match answer {
        Ok(redeemed) => {
            core.provider_accepted();
            Ok((lease, redeemed))
        }
        Err(e) => {
            lease.release().await;
            Err(e)
        }
    }
}

/// Stores what a redemption under `lease` brought (`redeemed`) as `write` says (its tokens
/// are set here, each named with `assertion_hash` for an on-behalf-of exchange), and returns
/// the access token for `write.scopes`. The write ends the lease.
pub(super) async fn store(
    core: &Core,
    lease: Lease,
    redeemed: &Redeemed,
    mut write: Write,
    assertion_hash: Option<&str>,
) -> Result<AccessToken, AcquireError> {
    let tokens = |id_token| {
        let mut tokens = redeemed.tokens(id_token);
        tokens.user_assertion_hash = assertion_hash.map(str::to_owned);
        tokens
    };
    let (core, id) = (core.clone(), write.id.clone());
    let scopes = write.scopes.clone();
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    // The ID token is stored only once validated; validating needs the network only when it
    // names a key not fetched yet, and that waits until the tokens are safe.
    let (id_token, unchecked) = match core.provider.check_id_token_offline(redeemed) {
        Ok(id_token) => (id_token, false),
        Err(_) => (None, true),
    };
    write.tokens = tokens(id_token);
    // The write ends the lease, unless the ID token is still to be validated and stored.
    let saved = persist::save(
        &core,
        write.clone(),
        Some(&lease),
        !unchecked,
        Some(Instant::now() + core.options.save_budget),
    )
    .await;
    let (version, document) = match saved {
        Ok(saved) => saved,
        Err(Unwritten::Refused(e)) => {
            lease.release().await;
            return Err(e);
        }
        Err(Unwritten::Failing { write, error }) => {
            // The caller gets its token; this process keeps the tokens and keeps writing.
            let document = match write.document() {
                Ok(document) => Arc::new(document),
                Err(e) => {
                    lease.release().await;
                    return Err(e);
                }
            };
            tracing::error!(account = %id, %error, "refreshed tokens are not written yet; keeping them in memory and retrying");
            core.pending.insert(&id, document.clone());
            let token = just_redeemed(&core, &write, &document, &scope_refs);
            persist::save_in_background(&core, *write, lease);
            return token;
        }
    };
    if !unchecked {
        lease.ended_by_write();
        return just_redeemed(&core, &write, &document, &scope_refs);
    }
    match core.provider.validate_id_token(redeemed).await {
        Ok(Some(id_token)) => {
            write.tokens = tokens(Some(id_token));
            let expected = Expected {
                version,
                ..write.base.0
            };
            write.base = (expected, document.clone());
            // One try: the tokens are written already; only the account details wait.
            let once = Some(Instant::now());
            match persist::save(&core, write.clone(), Some(&lease), true, once).await {
                Ok(_) => {
                    lease.ended_by_write();
                    return just_redeemed(&core, &write, &document, &scope_refs);
                }
                Err(Unwritten::Failing { error, .. } | Unwritten::Refused(error)) => {
                    tracing::warn!(account = %id, %error, "could not store the validated ID token");
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            lease.release().await;
            return Err(e);
        }
    }
    lease.release().await;
    just_redeemed(&core, &write, &document, &scope_refs)
}

/// The access token just redeemed, whatever its lifetime (MSAL does the same): holding a fresh
/// token to the refresh margin would refresh again at once when tokens are short-lived.
fn just_redeemed(
    core: &Core,
    write: &Write,
    document: &crate::cache::document::CacheDocument,
    scopes: &[&str],
) -> Result<AccessToken, AcquireError> {
    let now = core.now().unix_timestamp();
    document
        .find_access_token(&write.context, &write.id, scopes, now, 0)
        .map(|hit| AccessToken::from(hit.entry))
        .ok_or_else(|| not_granted(write.tokens.scope.as_deref(), scopes))
}

/// A refresh answer without a scope asked for: the user declined it or withdrew consent (as
/// providers let users do). That is this user's to fix by signing in and consenting again,
/// not the provider's configuration, which works for everyone else.
fn not_granted(granted: Option<&str>, asked: &[&str]) -> AcquireError {
    let granted: Vec<&str> = granted.unwrap_or_default().split_whitespace().collect();
    let missing: Vec<&str> = asked
        .iter()
        .copied()
        .filter(|s| !granted.iter().any(|g| g.eq_ignore_ascii_case(s)))
        .collect();
    let reason = if missing.is_empty() {
        "the provider's access token does not cover the scopes asked for".to_owned()
    } else {
        format!(
            "the provider did not grant {} for this user (consent declined or withdrawn): \
             sign in and consent again",
            missing.join(" ")
        )
    };
    AcquireError::InteractionRequired {
        reason: crate::text::bound(reason, crate::text::REASON),
    }
}
