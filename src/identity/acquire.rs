//! Token acquisition over the shared cache, for the web app and the worker alike.
//!
//! Silent acquisition (DESIGN.md): read the user's row (through an in-process copy keyed by
//! id and version), use an access token with at least 300 s left; otherwise refresh under the
//! row's lease, so one process at a time redeems a user's refresh token (strict rotation never
//! sees a reuse), with one refresh per user inside a process (single flight), written back by
//! compare-and-swap.

use super::error::AcquireError;
use super::provider::OidcProvider;
use crate::activity::store::ActivityUpsert;
use crate::cache::document::{CacheDocument, ClientContext, Grant, TokenResponse};
use crate::cache::store::{CacheStoreError, TokenCacheStore};
use crate::clock::Clock;
use crate::db::{Database, DbConnection};
use crate::secret::Secret;
use crate::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// Documents kept in memory at most; past that the copy is dropped and rebuilt from the database.
const MEMORY_ENTRIES: usize = 10_000;

/// Who is acquiring: the web app's writes count as the user's activity, the worker's never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Web,
    Worker,
}

/// An access token ready to use.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub secret: Secret,
    pub expires_on: i64,
}

/// Who just signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub home_account_id: String,
    pub display_name: String,
}

impl From<CacheStoreError> for AcquireError {
    fn from(e: CacheStoreError) -> Self {
        if e.is_unreadable() {
            tracing::error!(error = %e, "token cache row cannot be used; the user must sign in again");
            AcquireError::InteractionRequired {
                reason: e.to_string(),
            }
        } else {
            AcquireError::Storage(e.to_string())
        }
    }
}

impl From<crate::db::DbError> for AcquireError {
    fn from(e: crate::db::DbError) -> Self {
        AcquireError::Storage(e.to_string())
    }
}

pub struct TokenAcquirer {
    pub(super) db: Database,
    pub(super) store: TokenCacheStore,
    pub(super) provider: Arc<OidcProvider>,
    clock: Arc<dyn Clock>,
    owner: String,
    lease_for: Duration,
    memory: Mutex<HashMap<String, (i64, Arc<CacheDocument>)>>,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for TokenAcquirer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAcquirer")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl TokenAcquirer {
    /// `lease_for` must outlast the slowest provider call (a few provider timeouts).
    pub fn new(
        db: Database,
        store: TokenCacheStore,
        provider: Arc<OidcProvider>,
        clock: Arc<dyn Clock>,
        lease_for: Duration,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        let owner = format!(
            "{host}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        Self {
            db,
            store,
            provider,
            clock,
            owner,
            lease_for,
            memory: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    pub fn provider(&self) -> &OidcProvider {
        &self.provider
    }

    pub(super) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub(super) fn scopes(&self) -> Vec<String> {
        self.provider
            .scopes()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    pub(super) fn remember(&self, id: &str, version: i64, document: CacheDocument) {
        let mut memory = lock(&self.memory);
        if memory.len() >= MEMORY_ENTRIES && !memory.contains_key(id) {
            memory.clear();
        }
        memory.insert(id.to_owned(), (version, Arc::new(document)));
    }

    pub(super) fn forget(&self, id: &str) {
        lock(&self.memory).remove(id);
    }

    /// The user's document and version, from memory when the database's version matches.
    async fn read(&self, id: &str) -> Result<Option<(i64, Arc<CacheDocument>)>, AcquireError> {
        let (store, key, now) = (self.store.clone(), id.to_owned(), self.now());
        let remembered = lock(&self.memory).get(id).cloned();
        let known = remembered.as_ref().map(|(v, _)| *v);
        let loaded = self
            .db
            .run(move |conn| -> Result<_, AcquireError> {
                // With a copy in memory, ask only for the version (no blob, no decryption);
                // without one (the worker's usual case), load at once: one query either way.
                if let Some(known) = known {
                    let Some(version) = store.current_version(conn, &key, now)? else {
                        return Ok(None);
                    };
                    if version == known {
                        return Ok(Some((version, None)));
                    }
                }
                Ok(store
                    .load(conn, &key, now)?
                    .map(|l| (l.version, Some(l.document))))
            })
            .await?;
        Ok(match loaded {
            None => {
                self.forget(id);
                None
            }
            Some((version, Some(document))) => {
                self.remember(id, version, document.clone());
                Some((version, Arc::new(document)))
            }
            Some((version, None)) => remembered.map(|(_, doc)| (version, doc)),
        })
    }

    fn usable(
        &self,
        context: &ClientContext,
        document: &CacheDocument,
        id: &str,
        scopes: &[&str],
    ) -> Option<(AccessToken, bool)> {
        let hit = document.find_access_token(context, id, scopes, self.now().unix_timestamp())?;
        let token = AccessToken {
            secret: hit.entry.secret.clone(),
            expires_on: hit.entry.expires_on(),
        };
        Some((token, hit.refresh_due))
    }

    /// An access token for `id` and `scopes`, refreshed if needed, without the user.
    pub async fn acquire_silent(
        &self,
        id: &str,
        scopes: &[&str],
        caller: Caller,
    ) -> Result<AccessToken, AcquireError> {
        let context = self.provider.metadata().await?.context.clone();
        let Some((_, document)) = self.read(id).await? else {
            return Err(AcquireError::InteractionRequired {
                reason: "no token cache for this account".into(),
            });
        };
        if let Some((token, false)) = self.usable(&context, &document, id, scopes) {
            return Ok(token);
        }
        // One refresh per user in this process: later callers wait here, then find the result.
        let flight = {
            let mut flights = lock(&self.flights);
            flights.entry(id.to_owned()).or_default().clone()
        };
        let result = {
            let _turn = flight.lock().await;
            self.refresh_under_lease(&context, id, scopes, caller).await
        };
        let mut flights = lock(&self.flights);
        if Arc::strong_count(&flight) <= 2 {
            flights.remove(id);
        }
        result
    }

    async fn refresh_under_lease(
        &self,
        context: &ClientContext,
        id: &str,
        scopes: &[&str],
        caller: Caller,
    ) -> Result<AccessToken, AcquireError> {
        let deadline = tokio::time::Instant::now() + self.lease_for * 2;
        loop {
            let Some((version, document)) = self.read(id).await? else {
                return Err(AcquireError::InteractionRequired {
                    reason: "no token cache for this account".into(),
                });
            };
            let usable = self.usable(context, &document, id, scopes);
            if let Some((token, false)) = &usable {
                return Ok(token.clone());
            }
            if self.take_lease(id).await? {
                let outcome = self
                    .refresh_with_lease(context, id, scopes, caller, version, &document, usable)
                    .await;
                self.release_lease(id).await;
                match outcome {
                    // Written meanwhile without the lease (a sign-in): read it and decide again.
                    Ok(None) => continue,
                    Ok(Some(token)) => return Ok(token),
                    Err(e) => return Err(e),
                }
            }
            // Someone else is refreshing this user: wait for their write, then read it.
            if tokio::time::Instant::now() >= deadline {
                return Err(AcquireError::Transient {
                    reason: "another process held this user's refresh lease for too long".into(),
                    retry_after: None,
                });
            }
            self.wait_for_change(id, version, deadline).await?;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn refresh_with_lease(
        &self,
        context: &ClientContext,
        id: &str,
        scopes: &[&str],
        caller: Caller,
        version: i64,
        document: &CacheDocument,
        fallback: Option<(AccessToken, bool)>,
    ) -> Result<Option<AccessToken>, AcquireError> {
        let Some(refresh_token) = document
            .find_refresh_token(context, id)
            .map(|rt| rt.secret.clone())
        else {
            return Err(AcquireError::InteractionRequired {
                reason: "no refresh token in the cache".into(),
            });
        };
        let response: TokenResponse = match self.provider.refresh(&refresh_token, scopes).await {
            Ok(response) => response,
            // Past refresh_on the old token is still good: use it while the provider is down.
            Err(e @ AcquireError::Transient { .. }) => {
                return fallback.map(|(token, _)| Some(token)).ok_or(e)
            }
            Err(e) => return Err(e),
        };
        let now = self.now();
        let mut updated = document.clone();
        updated
            .add_token_response(
                context,
                &response,
                scopes,
                Grant::RefreshToken,
                Some(id),
                now.unix_timestamp(),
            )
            .map_err(|e| AcquireError::Configuration(e.to_string()))?;
        let token = self
            .usable(context, &updated, id, scopes)
            .map(|(token, _)| token)
            .ok_or_else(|| {
                AcquireError::Configuration(
                    "the refreshed access token does not cover the scopes asked for".into(),
                )
            })?;
        let (store, key, doc) = (self.store.clone(), id.to_owned(), updated.clone());
        let account = updated.account(context, id).cloned();
        let saved = self
            .db
            .run(move |conn| -> Result<i64, CacheStoreError> {
                match caller {
                    Caller::Worker => store.save(conn, &key, &doc, Some(version), now),
                    Caller::Web => {
                        let upn = account
                            .as_ref()
                            .map(|a| a.username.clone())
                            .filter(|u| !u.is_empty());
                        let oid = account.as_ref().map(|a| a.local_account_id.clone());
                        let tid = account.as_ref().map(|a| a.realm.clone());
                        let activity = ActivityUpsert {
                            account_cache_key: &key,
                            account_identifier: &key,
                            object_id: oid.as_deref(),
                            tenant_id: tid.as_deref(),
                            user_principal_name: upn.as_deref(),
                        };
                        store.save_with_activity(conn, &doc, Some(version), &activity, now)
                    }
                }
            })
            .await;
        match saved {
            Ok(new_version) => {
                self.remember(id, new_version, updated);
                Ok(Some(token))
            }
            Err(CacheStoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn take_lease(&self, id: &str) -> Result<bool, AcquireError> {
        let (store, key, owner, now) = (
            self.store.clone(),
            id.to_owned(),
            self.owner.clone(),
            self.now(),
        );
        let until = now + crate::clock::duration(self.lease_for);
        self.db
            .run(move |conn: &mut DbConnection| store.acquire_lease(conn, &key, &owner, now, until))
            .await
            .map_err(AcquireError::from)
    }

    async fn release_lease(&self, id: &str) {
        let (store, key, owner) = (self.store.clone(), id.to_owned(), self.owner.clone());
        let released = self
            .db
            .run(move |conn| store.release_lease(conn, &key, &owner))
            .await;
        if let Err(e) = released {
            // The lease expires on its own; another process can take it then.
            tracing::warn!(error = %e, "could not release a refresh lease");
        }
    }

    async fn wait_for_change(
        &self,
        id: &str,
        version: i64,
        deadline: tokio::time::Instant,
    ) -> Result<(), AcquireError> {
        let mut pause = Duration::from_millis(20);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
            let (store, key, now) = (self.store.clone(), id.to_owned(), self.now());
            let current = self
                .db
                .run(move |conn| store.current_version(conn, &key, now))
                .await?;
            let lease = {
                let (store, key) = (self.store.clone(), id.to_owned());
                self.db.run(move |conn| store.lease(conn, &key)).await?
            };
            let lease_gone = lease.is_none_or(|(_, until)| until <= self.now());
            if current != Some(version) || lease_gone {
                return Ok(());
            }
        }
        Ok(())
    }
}
