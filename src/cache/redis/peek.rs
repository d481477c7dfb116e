//! A row as it is, without sliding its expiry (see `cache::peek`).

use super::RedisCacheStore;
use crate::cache::peek::Peeked;
use crate::cache::store::CacheStoreError;

impl RedisCacheStore {
    /// The live row of `id`: value, version, session epoch.
    pub async fn peek(&self, id: &str) -> Result<Option<Peeked>, CacheStoreError> {
        let key = self.cache_key(id);
        let fields: (Option<Vec<u8>>, Option<i64>, Option<i64>) = self
            .call(|mut c| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("v")
                    .arg("ver")
                    .arg("ep")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(match fields {
            (Some(value), Some(version), Some(session_epoch)) => Some(Peeked {
                value,
                version,
                session_epoch,
            }),
            _ => None,
        })
    }
}
