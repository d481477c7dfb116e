//! One-time tokens seen (Back-Channel Logout tokens, by their issuer and `jti`), remembered
//! until they expire where the caches live: the `logout_tokens_seen` table, or Redis
//! (`{prefix}:seen:{key}`, `SET NX` with the token's remaining lifetime). The first sighting of
//! a token wins on every replica; another is a replay.

use super::backend::CacheBackend;
use super::store::CacheStoreError;
use crate::clock::to_db;
use crate::db::schema::logout_tokens_seen::{self as seen, dsl};
use crate::db::{DbConnection, DbError};
use diesel::prelude::*;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The key an id an issuer gave (a token's `jti`, a session's `sid`) is remembered by: SHA-256
/// of the issuer and the id, hex (no part of the token).
pub fn token_key(issuer: &str, jti: &str) -> String {
    let digest = Sha256::digest(format!("{issuer}\n{jti}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Remembers `key` until `expires_at`; true the first time, false for a replay. Rows past
/// their expiry are deleted first (tokens are few: one per sign-out at the provider).
pub fn first_sighting(
    conn: &mut DbConnection,
    key: &str,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> QueryResult<bool> {
    diesel::delete(seen::table.filter(dsl::expires_at.lt(to_db(now)))).execute(conn)?;
    let inserted = diesel::insert_into(seen::table)
        .values((
            dsl::token_key.eq(key),
            dsl::expires_at.eq(to_db(expires_at)),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Forgets `key`: what was to be done when it was seen could not be, so the token may come
/// again.
pub fn forget(conn: &mut DbConnection, key: &str) -> QueryResult<()> {
    diesel::delete(seen::table.filter(dsl::token_key.eq(key))).execute(conn)?;
    Ok(())
}

impl CacheBackend {
    /// Forgets a token seen (see [`forget`]).
    pub async fn forget_sighting(&self, key: &str) -> Result<(), CacheStoreError> {
        match self {
            Self::Sql { db, .. } => {
                let key = key.to_owned();
                db.run(move |conn| forget(conn, &key).map_err(DbError::from))
                    .await
                    .map_err(CacheStoreError::from)
            }
            Self::Redis { store, .. } => store.forget_sighting(key).await,
        }
    }

    /// Remembers a one-time token (see [`token_key`]) until `expires_at`, where the caches
    /// live; true the first time any process sees it, false for a replay.
    pub async fn first_sighting(
        &self,
        key: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, CacheStoreError> {
        match self {
            Self::Sql { db, .. } => {
                let key = key.to_owned();
                db.run(move |conn| {
                    first_sighting(conn, &key, expires_at, now).map_err(DbError::from)
                })
                .await
                .map_err(CacheStoreError::from)
            }
            Self::Redis { store, .. } => {
                let seconds = (expires_at - now).whole_seconds().max(1);
                store.first_sighting(key, seconds as u64).await
            }
        }
    }
}
