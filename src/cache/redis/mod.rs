//! Token caches in Redis (`cache.url`), with the contract of the SQL store
//! ([`super::store::TokenCacheStore`]): compare-and-swap saves on a version, the refresh lease,
//! a sliding expiry, rows sealed exactly as in SQL. Account activity stays in SQL.
//!
//! Each user has two keys, `{prefix}:{<id>}:cache` (a hash: `v` the sealed document, `ver` its
//! version, `ep` its session epoch; the key's TTL is the sliding expiry) and
//! `{prefix}:{<id>}:lease` (the lease owner, with the lease's term as its TTL, so lease times
//! are Redis's clock, one clock for every process). Every step that reads and then writes is a
//! Lua script, atomic on the server: the client is one multiplexed connection, which cannot
//! hold a `WATCH`. The braces put both keys in one hash slot.

mod key_check;
mod peek;
mod replay;
mod scan;
mod scripts;
mod url;

pub use self::url::{RedisUrl, RedisUrlError};
use super::backend::{Expected, Read};
use super::document::CacheDocument;
use super::seal::Sealer;
use super::store::{new_session_epoch, open_document, seal_document, CacheStoreError, LoadedCache};
use super::store::{LeaseAttempt, Saved};
use crate::db::health::WriteHealth;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// The Redis token-cache store. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct RedisCacheStore {
    conn: ConnectionManager,
    url: RedisUrl,
    prefix: Arc<str>,
    sealer: Sealer,
    sliding: Duration,
    /// Every command's bound, reconnection included: an outage is an error within this long.
    timeout: Duration,
    /// The outcomes of real writes, for `/readyz`.
    writes: WriteHealth,
}

impl std::fmt::Debug for RedisCacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCacheStore")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCacheStore {
    /// The store for `url`; it connects on first use and reconnects by itself after an
    /// outage. `timeout` bounds connecting and every command. Call [`Self::ping`] to find out
    /// at start that the URL, password or server is wrong.
    pub fn new(
        url: &RedisUrl,
        prefix: &str,
        sealer: Sealer,
        sliding_expiration: Duration,
        timeout: Duration,
    ) -> Result<Self, CacheStoreError> {
        let failed = |e: redis::RedisError| CacheStoreError::Redis {
            url: url.to_string(),
            reason: e.to_string(),
        };
        let client = redis::Client::open(url.expose()).map_err(failed)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = client.get_connection_manager_lazy(config).map_err(failed)?;
        Ok(Self {
            conn,
            url: url.clone(),
            prefix: prefix.into(),
            sealer,
            sliding: sliding_expiration,
            timeout,
            writes: WriteHealth::default(),
        })
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The outcomes of this process's real writes to Redis (shared by clones).
    pub fn writes(&self) -> &WriteHealth {
        &self.writes
    }

    /// One committed write (`/readyz`, when no real write told lately): a Redis that refuses
    /// writes (out of memory under `noeviction`, a failed snapshot with
    /// `stop-writes-on-bgsave-error`) answers `PING` but fails here.
    pub async fn heartbeat(&self) -> Result<(), CacheStoreError> {
        let key = format!("{}:heartbeat", self.prefix);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.call(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(now)
                .arg("PX")
                .arg(60_000)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    fn cache_key(&self, id: &str) -> String {
        format!("{}:{{{id}}}:cache", self.prefix)
    }

    fn lease_key(&self, id: &str) -> String {
        format!("{}:{{{id}}}:lease", self.prefix)
    }

    fn window_ms(&self) -> u64 {
        u64::try_from(self.sliding.as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs one command or script, bounded by the store's timeout.
    async fn call<T, F>(&self, f: impl FnOnce(ConnectionManager) -> F) -> Result<T, CacheStoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(CacheStoreError::Redis {
                url: self.url.to_string(),
                reason: e.to_string(),
            }),
            Err(_) => Err(CacheStoreError::Redis {
                url: self.url.to_string(),
                reason: format!("no answer within {:?}", self.timeout),
            }),
        }
    }

    /// Runs `script` with the keys and arguments `with` gives it, bounded by the store's
    /// timeout.
    async fn script<T: redis::FromRedisValue>(
        &self,
        script: &'static redis::Script,
        with: impl FnOnce(&mut redis::ScriptInvocation<'static>),
    ) -> Result<T, CacheStoreError> {
        let mut invocation = script.prepare_invoke();
        with(&mut invocation);
        self.call(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
    }

    /// Redis answers (`/readyz`).
    pub async fn ping(&self) -> Result<(), CacheStoreError> {
        self.call(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }

    /// Redis's `maxmemory-policy`, when the server lets it be read (managed services may not).
    pub async fn eviction_policy(&self) -> Option<String> {
        let answer: Result<Vec<String>, _> = self
            .call(|mut c| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query_async(&mut c)
                    .await
            })
            .await;
        answer.ok()?.into_iter().nth(1)
    }

    /// Loads a user's document. Reading slides the expiry (at most about once per 1% of the
    /// window). A row that cannot be opened or parsed is an error and is left as it is.
    pub async fn load(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<LoadedCache>, CacheStoreError> {
        match self.read(id, None, now).await? {
            Some(Read::Loaded(loaded)) => Ok(Some(loaded)),
            Some(Read::Unchanged { .. }) | None => Ok(None),
        }
    }

    /// The row, or only its version and epoch when it is still at `known`: the one round trip
    /// a signed-in page makes.
    pub async fn read(
        &self,
        id: &str,
        known: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<Option<Read>, CacheStoreError> {
        let window = self.window_ms();
        let known = known.map(|v| v.to_string()).unwrap_or_default();
        let row: Option<(i64, i64, i64, Vec<u8>)> = self
            .script(&scripts::READ, |s| {
                s.key(self.cache_key(id))
                    .arg(known)
                    .arg(window)
                    .arg(window / 100);
            })
            .await?;
        let Some((version, session_epoch, ttl_ms, value)) = row else {
            return Ok(None);
        };
        if value.is_empty() {
            return Ok(Some(Read::Unchanged {
                version,
                session_epoch,
            }));
        }
        let document = open_document(&self.sealer, id, &value)?;
        let ttl = Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0));
        Ok(Some(Read::Loaded(LoadedCache {
            document,
            version,
            expires_at: now.saturating_add(crate::clock::duration(ttl)),
            session_epoch,
        })))
    }

    /// The version and session epoch of a live row, without reading its value.
    pub async fn version_and_epoch(&self, id: &str) -> Result<Option<(i64, i64)>, CacheStoreError> {
        let key = self.cache_key(id);
        let (version, epoch): (Option<i64>, Option<i64>) = self
            .call(|mut c| async move { c.hmget(key, &["ver", "ep"]).await })
            .await?;
        Ok(version.zip(epoch))
    }

    /// Compare-and-swap write over `expected` (None: the row must be absent; its epoch, when
    /// given, must match too); with `ending_lease`, that owner's refresh lease is released in
    /// the same script. Returns the new version and the row's session epoch;
    /// [`CacheStoreError::Conflict`] when someone wrote meanwhile.
    pub async fn save(
        &self,
        id: &str,
        document: &CacheDocument,
        expected: Option<Expected>,
        ending_lease: Option<&str>,
    ) -> Result<Saved, CacheStoreError> {
        let sealed = seal_document(&self.sealer, id, document)?;
        // "" for what is not there: an absent row, no lease to end, any epoch.
        let text = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
        let (written, version, session_epoch): (i64, i64, i64) = self
            .script(&scripts::SAVE, |s| {
                s.key(self.cache_key(id))
                    .key(self.lease_key(id))
                    .arg(text(expected.map(|e| e.version)))
                    .arg(sealed)
                    .arg(self.window_ms())
                    .arg(ending_lease.unwrap_or_default())
                    .arg(new_session_epoch().to_string())
                    .arg(text(expected.and_then(|e| e.session_epoch)));
            })
            .await?;
        if written == 1 {
            Ok(Saved {
                version,
                session_epoch,
            })
        } else {
            Err(CacheStoreError::Conflict {
                id: id.to_owned(),
                current: (version >= 0).then_some(version),
            })
        }
    }

    /// Takes the refresh lease for `owner`, for `lease_for` by Redis's clock, if the row is
    /// still at `version` and nobody holds a live lease (see `TokenCacheStore::take_lease`).
    pub async fn take_lease(
        &self,
        id: &str,
        version: i64,
        owner: &str,
        lease_for: Duration,
    ) -> Result<LeaseAttempt, CacheStoreError> {
        let answer: i64 = self
            .script(&scripts::TAKE_LEASE, |s| {
                s.key(self.cache_key(id))
                    .key(self.lease_key(id))
                    .arg(version)
                    .arg(owner)
                    .arg(lease_ms(lease_for));
            })
            .await?;
        Ok(match answer {
            1 => LeaseAttempt::Taken,
            3 => LeaseAttempt::Held,
            _ => LeaseAttempt::Changed,
        })
    }

    /// Renews `owner`'s lease for another `lease_for` if it still holds it. False: it was lost.
    pub async fn confirm_lease(
        &self,
        id: &str,
        owner: &str,
        lease_for: Duration,
    ) -> Result<bool, CacheStoreError> {
        let renewed: i64 = self
            .script(&scripts::CONFIRM_LEASE, |s| {
                s.key(self.lease_key(id))
                    .arg(owner)
                    .arg(lease_ms(lease_for));
            })
            .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease back, if `owner` still holds it (compare-and-delete).
    pub async fn release_lease(&self, id: &str, owner: &str) -> Result<bool, CacheStoreError> {
        let released: i64 = self
            .script(&scripts::RELEASE_LEASE, |s| {
                s.key(self.lease_key(id)).arg(owner);
            })
            .await?;
        Ok(released == 1)
    }

    /// The live row's version, and whether anyone holds a live lease on it, in one script.
    pub async fn version_and_lease(
        &self,
        id: &str,
    ) -> Result<Option<(i64, bool)>, CacheStoreError> {
        let (version, held): (i64, i64) = self
            .script(&scripts::VERSION_AND_LEASE, |s| {
                s.key(self.cache_key(id)).key(self.lease_key(id));
            })
            .await?;
        Ok((version >= 0).then_some((version, held == 1)))
    }

    /// Who holds the row's lease and until when, if anyone.
    pub async fn lease(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(String, OffsetDateTime)>, CacheStoreError> {
        let lease = self.lease_key(id);
        let (owner, ttl): (Option<String>, i64) = self
            .call(|mut c| async move {
                redis::pipe()
                    .get(&lease)
                    .pttl(&lease)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(owner.filter(|_| ttl > 0).map(|owner| {
            let left = Duration::from_millis(u64::try_from(ttl).unwrap_or(0));
            (owner, now.saturating_add(crate::clock::duration(left)))
        }))
    }

    /// Deletes the row if its session epoch is `session_epoch`, atomically: `None` when it was
    /// not (or there was no row); otherwise the document it held, when it could be opened (for
    /// revoking its refresh token).
    pub async fn delete_session(
        &self,
        id: &str,
        session_epoch: i64,
    ) -> Result<Option<Option<CacheDocument>>, CacheStoreError> {
        let value: Option<Vec<u8>> = self
            .script(&scripts::DELETE_SESSION, |s| {
                s.key(self.cache_key(id))
                    .key(self.lease_key(id))
                    .arg(session_epoch);
            })
            .await?;
        Ok(value.map(|value| open_document(&self.sealer, id, &value).ok()))
    }
}

/// A lease term in whole milliseconds (at least one).
fn lease_ms(lease_for: Duration) -> u64 {
    u64::try_from(lease_for.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The user id in a cache key `{prefix}:{<id>}:cache`.
fn id_of<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(prefix)?
        .strip_prefix(":{")?
        .strip_suffix("}:cache")
}

/// `text` matched literally by a `SCAN MATCH` pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_id_between_braces_and_give_it_back() {
        assert_eq!(
            id_of("tb", "tb:{uid.utid}:cache"),
            Some("uid.utid"),
            "the id"
        );
        assert_eq!(id_of("tb", "tb:{uid.utid}:lease"), None);
        assert_eq!(id_of("other", "tb:{uid.utid}:cache"), None);
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(lease_ms(Duration::from_micros(10)), 1);
    }
}
