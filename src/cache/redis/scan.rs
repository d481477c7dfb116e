//! Listing the cache rows in Redis a batch at a time (`SCAN` over this prefix's cache keys), for
//! `tokenbridge cache reseal`.

use super::RedisCacheStore;
use crate::cache::store::CacheStoreError;

impl RedisCacheStore {
    /// About `batch` row ids from `SCAN` cursor `from`, and the next cursor (0: done).
    pub async fn scan_ids(
        &self,
        from: u64,
        batch: u32,
    ) -> Result<(u64, Vec<String>), CacheStoreError> {
        let pattern = format!("{}:{{*}}:cache", self.prefix);
        let (next, keys): (u64, Vec<String>) = self
            .call(|mut c| async move {
                redis::cmd("SCAN")
                    .arg(from)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(batch)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let head = format!("{}:{{", self.prefix);
        let ids = keys
            .iter()
            .filter_map(|k| k.strip_prefix(&head)?.strip_suffix("}:cache"))
            .map(str::to_owned)
            .collect();
        Ok((next, ids))
    }
}
