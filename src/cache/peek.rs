//! A row as it is, for the operator's tools (`tokenbridge accounts`): its raw value (which
//! key seals it), version and session epoch, read without sliding its expiry: looking at a
//! user's cache is not using it.

use super::backend::CacheBackend;
use super::document::CacheDocument;
use super::seal::{sealed_with, Sealer};
use super::store::{open_document, CacheStoreError};
use crate::clock::to_db;
use crate::db::schema::token_cache::dsl as tc;
use crate::db::DbError;
use diesel::prelude::*;
use time::OffsetDateTime;

/// A stored row, unopened.
pub struct Peeked {
    pub value: Vec<u8>,
    pub version: i64,
    pub session_epoch: i64,
}

impl std::fmt::Debug for Peeked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peeked")
            .field("sealed_with", &self.sealed_with())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Peeked {
    /// The id of the key that seals it; None for a plain row.
    pub fn sealed_with(&self) -> Option<&str> {
        sealed_with(&self.value)
    }

    /// Its document, opened with `sealer`.
    pub fn open(&self, sealer: &Sealer, id: &str) -> Result<CacheDocument, CacheStoreError> {
        open_document(sealer, id, &self.value)
    }
}

impl CacheBackend {
    /// The live row of `id`, unopened, its expiry untouched.
    pub async fn peek(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Peeked>, CacheStoreError> {
        match self {
            Self::Sql { db, .. } => {
                let id = id.to_owned();
                db.run(move |conn| {
                    let row: Option<(Vec<u8>, i64, i64)> = tc::token_cache
                        .filter(tc::id.eq(&id))
                        .filter(tc::expires_at.gt(to_db(now)))
                        .select((tc::value, tc::version, tc::session_epoch))
                        .get_result(conn)
                        .optional()
                        .map_err(DbError::from)?;
                    Ok::<_, DbError>(row.map(|(value, version, session_epoch)| Peeked {
                        value,
                        version,
                        session_epoch,
                    }))
                })
                .await
                .map_err(CacheStoreError::from)
            }
            Self::Redis { store, .. } => store.peek(id).await,
        }
    }
}
