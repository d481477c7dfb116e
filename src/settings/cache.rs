//! `[cache]`: where the token caches live (the SQL database or Redis), how long they last,
//! the keys that seal them, and how much each process keeps in memory.

use super::{check_key_prefix, invalid, parse_duration, secret_from, Sections, SettingsError};
use crate::cache::redis::RedisUrl;
use crate::cache::seal::SealKeys;
use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Where the token caches live when not in the SQL database (`cache.url`).
    pub redis: Option<RedisSettings>,
    pub sliding_expiration: Duration,
    pub keys: Option<SealKeys>,
    /// `cache.keys_file` when it does not exist yet, for `migrate` only: it creates the file
    /// with a new key when the database holds no token caches (the quick start's first run).
    pub create_keys_file: Option<PathBuf>,
    pub read_plaintext: bool,
    pub sweep_batch: u32,
    /// Documents each process keeps in memory (least recently used go first); 0 turns it off.
    pub memory_entries: u64,
}

/// Token caches in Redis; account activity stays in the SQL database.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: RedisUrl,
    /// Every key starts with this and a colon, so deployments can share a Redis database.
    pub key_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCache {
    pub(super) url: Option<Secret>,
    pub(super) url_file: Option<PathBuf>,
    pub(super) key_prefix: String,
    sliding_expiration: String,
    pub(super) keys: Option<Secret>,
    pub(super) keys_file: Option<PathBuf>,
    read_plaintext: bool,
    sweep_batch: u32,
    memory_entries: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            key_prefix: "tokenbridge".into(),
            sliding_expiration: "90d".into(),
            keys: None,
            keys_file: None,
            read_plaintext: false,
            sweep_batch: 500,
            memory_entries: 10_000,
        }
    }
}

impl RawCache {
    pub(super) fn validate(mut self, sections: Sections) -> Result<CacheSettings, SettingsError> {
        // `migrate` makes the key file the settings name when it is absent (a new database).
        let keys_file_absent =
            self.keys.is_none() && self.keys_file.as_deref().is_some_and(|p| !p.exists());
        let create_keys_file = if keys_file_absent && sections == Sections::MIGRATE {
            self.keys_file.take()
        } else {
            None
        };
        let sliding_expiration =
            parse_duration("cache.sliding_expiration", &self.sliding_expiration)?;
        if sliding_expiration < Duration::from_secs(24 * 3600) {
            return Err(invalid(
                "cache.sliding_expiration",
                "must be at least 1d: a shorter expiry drops users' refresh tokens \
                 (they live for 90 days)",
            ));
        }
        let keys = secret_from("cache.keys", self.keys, self.keys_file)
            .map_err(|e| match e {
                SettingsError::Invalid { key, message } if keys_file_absent => {
                    SettingsError::Invalid {
                        key,
                        message: format!(
                            "{message}; `tokenbridge migrate` creates it with a new key for a new \
                         database"
                        ),
                    }
                }
                e => e,
            })?
            .map(|secret| SealKeys::parse(&secret))
            .transpose()
            .map_err(|e| invalid("cache.keys", e.to_string()))?;
        let redis = match secret_from("cache.url", self.url, self.url_file)? {
            None => None,
            Some(url) => Some(RedisSettings {
                url: RedisUrl::parse(url.expose())
                    .map_err(|e| invalid("cache.url", e.to_string()))?,
                key_prefix: check_key_prefix(self.key_prefix)?,
            }),
        };
        if self.memory_entries > 10_000_000 {
            return Err(invalid(
                "cache.memory_entries",
                "expected a number of documents from 0 (off) to 10000000",
            ));
        }
        if !(1..=10_000).contains(&self.sweep_batch) {
            return Err(invalid(
                "cache.sweep_batch",
                "expected a number from 1 to 10000",
            ));
        }
        Ok(CacheSettings {
            redis,
            sliding_expiration,
            keys,
            create_keys_file,
            read_plaintext: self.read_plaintext,
            sweep_batch: self.sweep_batch,
            memory_entries: self.memory_entries,
        })
    }
}
