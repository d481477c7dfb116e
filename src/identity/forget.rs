//! Erasing an account (the right to erasure, `tokenbridge accounts forget`): the user's cache
//! row, whatever sign-in it belongs to, and with it (in the same transaction on SQL; right after
//! it with Redis) the activity row and the provider sessions recorded for it. Asked to, the
//! refresh token is revoked at the provider first; a revocation that fails stops the erasure,
//! which would otherwise lose the one token that can still be revoked. Running it again finds
//! nothing and changes nothing.

use super::acquire::TokenAcquirer;
use super::error::AcquireError;
use crate::activity::accounts;
use crate::activity::store as activities;
use crate::cache::backend::Companion;
use crate::db::DbError;
use std::sync::Arc;

/// What asking for a revocation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    NotAsked,
    /// The provider revoked the refresh token.
    Revoked,
    /// The provider offers no RFC 7009 endpoint (Entra ID): nothing could be revoked.
    NotOffered,
    /// The cache held no refresh token (or there was no cache).
    NoRefreshToken,
}

/// What was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    pub cache: bool,
    pub activity: bool,
    pub revocation: Revocation,
}

impl TokenAcquirer {
    /// Erases account `id` (see the module documentation).
    pub async fn forget_account(&self, id: &str, revoke: bool) -> Result<Forgotten, AcquireError> {
        let core = &self.core;
        let revocation = if revoke {
            self.revoke_first(id).await?
        } else {
            Revocation::NotAsked
        };
        let activity = {
            let key = id.to_owned();
            core.db
                .run(move |conn| activities::get(conn, &key).map_err(DbError::from))
                .await?
                .is_some()
        };
        let erase: Companion = {
            let key = id.to_owned();
            Arc::new(move |conn| accounts::erase(conn, &key).map(drop).map_err(DbError::from))
        };
        let mut cache = false;
        // A sign-in that makes the row again between the read and the delete: once more.
        for _ in 0..2 {
            let Some((_, epoch)) = core.caches.version_and_epoch(id, core.now()).await? else {
                break;
            };
            if core
                .caches
                .remove_session(id, epoch, erase.clone(), core.now())
                .await?
                .is_some()
            {
                cache = true;
                break;
            }
        }
        if !cache {
            core.db.run(move |conn| erase(conn)).await?;
        }
        core.forget(id);
        Ok(Forgotten {
            cache,
            activity,
            revocation,
        })
    }

    async fn revoke_first(&self, id: &str) -> Result<Revocation, AcquireError> {
        let core = &self.core;
        let Some(row) = core.caches.peek(id, core.now()).await? else {
            return Ok(Revocation::NoRefreshToken);
        };
        let document = match row.open(core.caches.sealer(), id) {
            Ok(document) => document,
            // Nothing in it can be revoked; the erasure goes on.
            Err(e) if e.is_corrupt() => return Ok(Revocation::NoRefreshToken),
            Err(e) => return Err(e.into()),
        };
        let context = core.provider.metadata().await?.context.clone();
        let Some(refresh_token) = document.find_refresh_token(&context, id) else {
            return Ok(Revocation::NoRefreshToken);
        };
        Ok(
            if core
                .provider
                .revoke_refresh_token(&refresh_token.secret)
                .await?
            {
                Revocation::Revoked
            } else {
                Revocation::NotOffered
            },
        )
    }
}
