//! The cache keys' check values in Redis (see `cache::key_check`): `{prefix}:keycheck:{id}`,
//! written with `SET NX` by the first process that uses the key, and rows opened to check
//! that this process has the keys they are sealed with.

use super::{glob_escape, id_of, RedisCacheStore};
use crate::cache::key_check::{outcome, samples_allow, settle, SAMPLES};
use crate::cache::seal::{sealed_with, KeyCheck};
use crate::cache::store::CacheStoreError;
use redis::AsyncCommands;

/// Rows looked at, at most, for the rows a key id seals: the look is bounded, not exhaustive.
const LOOKED_AT: usize = 64;

impl RedisCacheStore {
    fn check_key(&self, key_id: &str) -> String {
        format!("{}:keycheck:{key_id}", self.prefix)
    }

    /// Compares each configured key with the check value Redis holds for its id (written where
    /// there is none), recording the answer in the sealer. `Err` with
    /// [`CacheStoreError::is_key_problem`] when a key differs.
    pub async fn verify_keys(&self) -> Result<(), CacheStoreError> {
        for check in self.sealer.key_checks() {
            let key = self.check_key(&check.id);
            let stored: Option<String> = self
                .call(|mut c| {
                    let key = key.clone();
                    async move { c.get(key).await }
                })
                .await?;
            let stored = match stored {
                Some(stored) => Some(stored),
                None if !samples_allow(&self.sealer, &self.sealed_rows(&check).await?) => None,
                None => Some(self.register(&key, &check).await?),
            };
            settle(&self.sealer, &check, stored.as_deref());
        }
        outcome(&self.sealer)
    }

    /// Writes `check` unless a value is there already; the value Redis holds afterwards.
    async fn register(&self, key: &str, check: &KeyCheck) -> Result<String, CacheStoreError> {
        let (key, value) = (key.to_owned(), check.value.clone());
        let before: Option<String> = self
            .call(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(&value)
                    .arg("NX")
                    .arg("GET")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(before.unwrap_or_else(|| check.value.clone()))
    }

    /// A few rows sealed under `check.id`, among the first rows found.
    async fn sealed_rows(
        &self,
        check: &KeyCheck,
    ) -> Result<Vec<(String, Vec<u8>)>, CacheStoreError> {
        let mut found = Vec::new();
        for (id, value) in self.some_rows(LOOKED_AT).await? {
            if sealed_with(&value) == Some(check.id.as_str()) {
                found.push((id, value));
                if found.len() == SAMPLES {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Opens one stored row (any one under this prefix) to check that this process has the keys
    /// the rows are sealed with.
    pub async fn check_keys(&self) -> Result<(), CacheStoreError> {
        let Some((id, value)) = self.some_rows(1).await?.into_iter().next() else {
            return Ok(());
        };
        self.sealer
            .open(&id, &value)
            .map(drop)
            .map_err(|source| CacheStoreError::Undecryptable { id, source })
    }

    /// Up to `count` rows (id and sealed value) under this prefix, from a bounded scan: a
    /// prefix with few rows among many other keys is not searched through.
    async fn some_rows(&self, count: usize) -> Result<Vec<(String, Vec<u8>)>, CacheStoreError> {
        let pattern = format!("{}:*:cache", glob_escape(&self.prefix));
        let mut rows = Vec::new();
        let mut cursor = 0_u64;
        for _ in 0..10 {
            let pattern = pattern.clone();
            let (next, keys): (u64, Vec<String>) = self
                .call(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            for key in keys {
                let value: Option<Vec<u8>> = self
                    .call(|mut c| {
                        let key = key.clone();
                        async move { c.hget(key, "v").await }
                    })
                    .await?;
                if let (Some(value), Some(id)) = (value, id_of(&self.prefix, &key)) {
                    rows.push((id.to_owned(), value));
                    if rows.len() == count {
                        return Ok(rows);
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(rows)
    }
}
