//! The in-process copy of users' documents, keyed by id and checked against the row's version
//! on every use: a page load whose row has not changed reads only the version, never the blob.
//! Bounded and least-recently-used (moka's TinyLFU), so a busy site keeps its active users and
//! never drops the whole copy at once. A process that visits each user once (the worker) turns
//! it off with zero entries.

use crate::cache::document::CacheDocument;
use std::sync::Arc;

#[derive(Clone)]
pub(super) struct Memory(Option<moka::sync::Cache<String, (i64, Arc<CacheDocument>)>>);

impl Memory {
    pub fn new(entries: u64) -> Self {
        Self((entries > 0).then(|| moka::sync::Cache::new(entries)))
    }

    /// The remembered version and document, if any.
    pub fn get(&self, id: &str) -> Option<(i64, Arc<CacheDocument>)> {
        self.0.as_ref()?.get(id)
    }

    pub fn remember(&self, id: &str, version: i64, document: Arc<CacheDocument>) {
        if let Some(cache) = &self.0 {
            cache.insert(id.to_owned(), (version, document));
        }
    }

    pub fn forget(&self, id: &str) {
        if let Some(cache) = &self.0 {
            cache.invalidate(id);
        }
    }

    /// How many documents are held (after pending evictions are applied).
    pub fn len(&self) -> u64 {
        self.0.as_ref().map_or(0, |cache| {
            cache.run_pending_tasks();
            cache.entry_count()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_copy_stays_bounded_and_keeps_its_active_users() {
        let memory = Memory::new(100);
        let doc = Arc::new(CacheDocument::default());
        for round in 0..50 {
            // One active user, seen on every round, among a stream of users seen once.
            memory.remember("active", round, doc.clone());
            assert!(memory.get("active").is_some());
            for n in 0..100 {
                memory.remember(&format!("passer-by-{round}-{n}"), 1, doc.clone());
            }
        }
        assert!(memory.len() <= 100, "{} entries", memory.len());
        assert_eq!(
            memory.get("active").map(|(v, _)| v),
            Some(49),
            "the active user survived 5000 others"
        );
        assert!(memory.len() > 50, "the copy was not cleared wholesale");
    }

    #[test]
    fn zero_entries_turns_the_copy_off() {
        let memory = Memory::new(0);
        memory.remember("a", 1, Arc::new(CacheDocument::default()));
        assert!(memory.get("a").is_none());
        assert_eq!(memory.len(), 0);
    }

    #[test]
    fn forgotten_users_are_gone() {
        let memory = Memory::new(10);
        memory.remember("a", 1, Arc::new(CacheDocument::default()));
        memory.forget("a");
        assert!(memory.get("a").is_none());
    }
}
