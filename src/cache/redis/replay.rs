//! One-time tokens seen, in Redis (see `cache::replay`): `SET {prefix}:seen:{key} 1 NX EX`.

use super::RedisCacheStore;
use crate::cache::store::CacheStoreError;

impl RedisCacheStore {
    /// Remembers `key` for `seconds`; true the first time, false while it is remembered.
    pub async fn first_sighting(&self, key: &str, seconds: u64) -> Result<bool, CacheStoreError> {
        let key = format!("{}:seen:{key}", self.prefix);
        let set: Option<String> = self
            .call(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(seconds)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    /// Forgets `key`.
    pub async fn forget_sighting(&self, key: &str) -> Result<(), CacheStoreError> {
        let key = format!("{}:seen:{key}", self.prefix);
        let _: i64 = self
            .call(|mut c| async move { redis::cmd("DEL").arg(key).query_async(&mut c).await })
            .await?;
        Ok(())
    }
}
