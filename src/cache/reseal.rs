//! Rewriting rows with the key new writes use (`tokenbridge cache reseal`): every row sealed
//! with another configured key (or, with `cache.read_plaintext`, stored plain) is opened and
//! written back sealed with the first key, by compare-and-swap on its version and session
//! epoch, so a refresh writing at the same moment never loses its write (it merges into the
//! resealed row, or the reseal finds the row rewritten, by then with the first key, and moves
//! on). Rows already on the first key are left alone, so a run stopped half-way is simply run
//! again. The rows are listed a batch at a time: by id in SQL, by `SCAN` in Redis.

use super::backend::{CacheBackend, Expected};
use super::store::CacheStoreError;
use crate::db::schema::token_cache::dsl as tc;
use crate::db::DbError;
use diesel::prelude::*;
use time::OffsetDateTime;

/// Where a listing of the rows is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowCursor {
    Start,
    /// SQL: the last id listed.
    After(String),
    /// Redis: the `SCAN` cursor.
    Scan(u64),
    Done,
}

/// What became of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resealed {
    /// Written back with the first key.
    Rewritten,
    /// Already on the first key (or written by someone else meanwhile, which seals with it).
    Current,
    /// Gone (signed out, expired) before it could be rewritten.
    Gone,
}

impl CacheBackend {
    /// Up to `batch` row ids from `cursor`, and the cursor after them.
    pub async fn row_ids(
        &self,
        cursor: RowCursor,
        batch: u32,
    ) -> Result<(Vec<String>, RowCursor), CacheStoreError> {
        match (self, cursor) {
            (_, RowCursor::Done) => Ok((Vec::new(), RowCursor::Done)),
            (Self::Sql { db, .. }, cursor) => {
                let after = match cursor {
                    RowCursor::After(id) => id,
                    _ => String::new(),
                };
                let ids: Vec<String> = db
                    .run(move |conn| {
                        tc::token_cache
                            .filter(tc::id.gt(after))
                            .select(tc::id)
                            .order(tc::id)
                            .limit(i64::from(batch))
                            .load(conn)
                            .map_err(DbError::from)
                    })
                    .await?;
                let next = match ids.last() {
                    Some(last) if ids.len() == batch as usize => RowCursor::After(last.clone()),
                    _ => RowCursor::Done,
                };
                Ok((ids, next))
            }
            (Self::Redis { store, .. }, cursor) => {
                let from = match cursor {
                    RowCursor::Scan(at) => at,
                    _ => 0,
                };
                let (next, ids) = store.scan_ids(from, batch).await?;
                Ok((
                    ids,
                    if next == 0 {
                        RowCursor::Done
                    } else {
                        RowCursor::Scan(next)
                    },
                ))
            }
        }
    }

    /// Rewrites row `id` with the first key unless it is on it already (see the module
    /// documentation).
    pub async fn reseal(&self, id: &str, now: OffsetDateTime) -> Result<Resealed, CacheStoreError> {
        let writing = self.sealer().writing_key().map(str::to_owned);
        for _ in 0..5 {
            let Some(row) = self.peek(id, now).await? else {
                return Ok(Resealed::Gone);
            };
            if row.sealed_with() == writing.as_deref() {
                return Ok(Resealed::Current);
            }
            let document = row.open(self.sealer(), id)?;
            let expected = Expected {
                version: row.version,
                session_epoch: Some(row.session_epoch),
            };
            match self.save_refreshed(id, document, expected, None, now).await {
                Ok(_) => return Ok(Resealed::Rewritten),
                // Written meanwhile: look again.
                Err(CacheStoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(CacheStoreError::Conflict {
            id: id.to_owned(),
            current: None,
        })
    }
}
