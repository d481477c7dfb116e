//! Token acquisition over the shared cache, for the web app and the worker alike.
//!
//! `acquire_silent` is the policy: a usable access token from the user's document is returned
//! at once; otherwise the user's refresh flight is joined. The pieces, each in its own file:
//! - `memory`: the in-process copy of documents, checked against the row's version;
//! - `flight`: one detached refresh per user per process, its outcome shared by all waiters;
//! - `lease`: the row's refresh lease, one refresh per user across processes;
//! - `refresh`: lease, redeem, save, validate;
//! - `persist`: the write after a redemption, which never loses a rotated refresh token.

mod flight;
mod lease;
mod memory;
mod on_behalf_of;
mod persist;
mod refresh;

use super::error::AcquireError;
use super::provider::OidcProvider;
use crate::cache::backend::{CacheBackend, Read};
use crate::cache::document::{AccessTokenEntry, CacheDocument, ClientContext};
use crate::cache::redis::RedisCacheStore;
use crate::cache::seal::{SealError, Sealer};
use crate::cache::store::{CacheStoreError, TokenCacheStore};
use crate::clock::Clock;
use crate::db::Database;
use crate::metrics::{metrics, Acquisition};
use crate::secret::Secret;
use crate::settings::{CacheSettings, IdentitySettings, Settings};
use crate::sync::lock;
use flight::Flights;
use memory::Memory;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

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

impl From<&AccessTokenEntry> for AccessToken {
    fn from(entry: &AccessTokenEntry) -> Self {
        Self {
            secret: entry.secret.clone(),
            expires_on: entry.expires_on(),
        }
    }
}

/// A signed-in page's session, as its cookie names it.
#[derive(Debug, Clone, Copy)]
pub struct AppSessionRef<'a> {
    /// The session epoch of the user's row at the sign-in.
    pub epoch: i64,
    /// The session's id in the user's document; None for a cookie from before sessions were
    /// listed, which the epoch alone ends.
    pub id: Option<&'a str>,
}

/// Who just signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub home_account_id: String,
    pub display_name: String,
    /// The session epoch of the user's row, for the session cookie.
    pub session_epoch: i64,
    /// The app session the sign-in began, listed in the user's document, for the session
    /// cookie (None: a sign-in recorded before sessions were listed).
    pub session_id: Option<String>,
}

impl From<CacheStoreError> for AcquireError {
    fn from(e: CacheStoreError) -> Self {
        if let Some(problem) = e.key_problem() {
            AcquireError::CacheKeys(problem.to_string())
        } else if e.is_corrupt() {
            tracing::error!(error = %e, "token cache row is corrupt; the user must sign in again");
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

pub(super) fn no_cache() -> AcquireError {
    AcquireError::InteractionRequired {
        reason: "no token cache for this account".into(),
    }
}

/// How an acquirer behaves; one place derives it from settings, for `serve` and `worker` alike.
#[derive(Debug, Clone)]
pub struct AcquirerOptions {
    /// Names this process in lease rows (each refresh adds its own suffix).
    pub owner: String,
    /// How long a refresh lease lasts: longer than a provider call and the write after it.
    pub lease_for: Duration,
    /// Access tokens with less than this left are refreshed (at most half their lifetime).
    pub refresh_margin: Duration,
    /// Documents kept in memory; 0 turns the in-process copy off (the worker's choice).
    pub memory_entries: u64,
    /// How long a caller waits for the write after a redemption: past it, the caller gets its
    /// token from this process's memory and the write goes on in the background.
    pub save_budget: Duration,
    /// Fault injection for tests: a pause between taking a refresh lease and confirming it, as
    /// a process the operating system stalls would make. Zero outside tests.
    pub pause_before_redeem: Duration,
}

impl AcquirerOptions {
    /// `owner`: this process's name (see [`crate::process::owner_id`]).
    pub fn from_settings(
        identity: &IdentitySettings,
        cache: &CacheSettings,
        owner: String,
    ) -> Self {
        Self {
            owner,
            // Metadata is loaded before the lease: it covers one redemption (one provider
            // timeout), its confirmation and the write, with room to spare.
            lease_for: identity.http_timeout * 3 + Duration::from_secs(5),
            refresh_margin: identity.refresh_margin,
            memory_entries: cache.memory_entries,
            save_budget: persist::IN_REQUEST_BUDGET,
            pause_before_redeem: Duration::ZERO,
        }
    }
}

/// Documents written to this process's memory but not yet to the database (see `persist`).
#[derive(Clone, Default)]
pub(super) struct Pending(Arc<Mutex<HashMap<String, Arc<CacheDocument>>>>);

impl Pending {
    fn get(&self, id: &str) -> Option<Arc<CacheDocument>> {
        lock(&self.0).get(id).cloned()
    }

    fn insert(&self, id: &str, document: Arc<CacheDocument>) {
        lock(&self.0).insert(id.to_owned(), document);
    }

    fn remove(&self, id: &str) {
        lock(&self.0).remove(id);
    }
}

/// The user's document as this process should see it now.
pub(super) struct Current {
    pub version: i64,
    pub document: Arc<CacheDocument>,
    /// Newer than the row: refreshed tokens still waiting to be written.
    pub pending: bool,
    /// The row's session epoch; None while a write is pending (the row was not read).
    pub session_epoch: Option<i64>,
}

/// A token found in a document, and whether the provider asked for it to be refreshed early.
pub(super) struct Usable {
    pub token: AccessToken,
    pub refresh_due: bool,
}

/// What the acquisition pieces share; cheap to clone into a detached refresh.
#[derive(Clone)]
pub(crate) struct Core {
    pub(crate) db: Database,
    pub(crate) caches: CacheBackend,
    pub(crate) provider: Arc<OidcProvider>,
    clock: Arc<dyn Clock>,
    options: Arc<AcquirerOptions>,
    memory: Memory,
    pending: Pending,
    problems: Arc<Problems>,
}

/// Configuration problems seen, for `/readyz`.
#[derive(Default)]
struct Problems {
    /// The last "this process cannot open the rows" error seen.
    keys: Mutex<Option<String>>,
    /// The provider's last "this client is misconfigured" answer (`invalid_client`, ...),
    /// until a sign-in or refresh succeeds.
    config: Mutex<Option<String>>,
}

impl Core {
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub(crate) fn remember(&self, id: &str, version: i64, document: CacheDocument) {
        self.memory.remember(id, version, Arc::new(document));
    }

    pub(crate) fn forget(&self, id: &str) {
        self.memory.forget(id);
    }

    /// Notes a key problem for `/readyz` and passes the error on.
    pub(crate) fn noting(&self, e: AcquireError) -> AcquireError {
        match &e {
            // A key not compared with the store yet means the store did not answer, which
            // `/readyz` sees for itself; anything else stays wrong until the process restarts.
            AcquireError::CacheKeys(reason)
                if !matches!(
                    self.caches.sealer().key_problem(),
                    Some(SealError::KeyUnchecked(_))
                ) =>
            {
                *lock(&self.problems.keys) = Some(reason.clone());
            }
            AcquireError::Configuration(reason) => {
                *lock(&self.problems.config) = Some(reason.clone());
            }
            _ => {}
        }
        e
    }

    /// The provider accepted this client (a sign-in or refresh succeeded).
    pub(crate) fn provider_accepted(&self) {
        lock(&self.problems.config).take();
    }

    /// The user's document: a pending write first, then memory when the row's version still
    /// matches (one query for the version, no blob), else the row.
    async fn read(&self, id: &str) -> Result<Option<Current>, AcquireError> {
        if let Some(document) = self.pending.get(id) {
            return Ok(Some(Current {
                version: -1,
                document,
                pending: true,
                session_epoch: None,
            }));
        }
        let remembered = self.memory.get(id);
        let known = remembered.as_ref().map(|(v, _)| *v);
        let read = self
            .caches
            .read(id, known, self.now())
            .await
            .map_err(|e| self.noting(e.into()))?;
        let (version, session_epoch, document) = match read {
            None => {
                self.forget(id);
                return Ok(None);
            }
            Some(Read::Loaded(loaded)) => {
                let document = Arc::new(loaded.document);
                self.memory.remember(id, loaded.version, document.clone());
                (loaded.version, loaded.session_epoch, document)
            }
            Some(Read::Unchanged {
                version,
                session_epoch,
            }) => match remembered {
                Some((_, document)) => (version, session_epoch, document),
                None => return Ok(None),
            },
        };
        Ok(Some(Current {
            version,
            session_epoch: Some(session_epoch),
            document,
            pending: false,
        }))
    }

    fn usable(
        &self,
        context: &ClientContext,
        document: &CacheDocument,
        id: &str,
        scopes: &[&str],
    ) -> Option<Usable> {
        let margin = i64::try_from(self.options.refresh_margin.as_secs()).unwrap_or(i64::MAX);
        let hit =
            document.find_access_token(context, id, scopes, self.now().unix_timestamp(), margin)?;
        Some(Usable {
            token: AccessToken::from(hit.entry),
            refresh_due: hit.refresh_due,
        })
    }
}

/// Where `settings` say the token caches are (the database, or Redis with `cache.url`), with
/// the configured keys: what the acquirer and the operator's tools open.
pub fn caches_from_settings(
    db: Database,
    settings: &Settings,
) -> Result<CacheBackend, AcquireError> {
    let sealer = Sealer::new(settings.cache.keys.clone(), settings.cache.read_plaintext);
    let sliding = settings.cache.sliding_expiration;
    let caches = match &settings.cache.redis {
        None => CacheBackend::sql(db.clone(), TokenCacheStore::new(sealer, sliding)),
        Some(redis) => CacheBackend::Redis {
            db: db.clone(),
            store: RedisCacheStore::new(
                &redis.url,
                &redis.key_prefix,
                sealer,
                sliding,
                settings.database.connect_timeout,
            )
            .map_err(|e| AcquireError::Configuration(e.to_string()))?,
        },
    };
    Ok(caches)
}

pub struct TokenAcquirer {
    pub(super) core: Core,
    flights: Flights,
}

impl std::fmt::Debug for TokenAcquirer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAcquirer")
            .field("owner", &self.core.options.owner)
            .finish_non_exhaustive()
    }
}

impl TokenAcquirer {
    /// The acquirer `serve` and `worker` build from settings: the provider client, the cache
    /// store (the database, or Redis with `cache.url`) with the configured keys, `options`
    /// (see [`AcquirerOptions::from_settings`]). Redis is connected on first use.
    pub fn from_settings(
        db: Database,
        settings: &Settings,
        clock: Arc<dyn Clock>,
        options: AcquirerOptions,
    ) -> Result<Self, AcquireError> {
        let provider = OidcProvider::from_settings(settings)?;
        let caches = caches_from_settings(db.clone(), settings)?;
        Ok(Self::with_caches(
            db,
            caches,
            Arc::new(provider),
            clock,
            options,
        ))
    }

    /// An acquirer over the SQL store.
    pub fn new(
        db: Database,
        store: TokenCacheStore,
        provider: Arc<OidcProvider>,
        clock: Arc<dyn Clock>,
        options: AcquirerOptions,
    ) -> Self {
        let caches = CacheBackend::sql(db.clone(), store);
        Self::with_caches(db, caches, provider, clock, options)
    }

    pub fn with_caches(
        db: Database,
        caches: CacheBackend,
        provider: Arc<OidcProvider>,
        clock: Arc<dyn Clock>,
        options: AcquirerOptions,
    ) -> Self {
        Self {
            core: Core {
                db,
                caches,
                provider,
                clock,
                memory: Memory::new(options.memory_entries),
                options: Arc::new(options),
                pending: Pending::default(),
                problems: Arc::default(),
            },
            flights: Flights::default(),
        }
    }

    pub fn provider(&self) -> &OidcProvider {
        &self.core.provider
    }

    /// Where the token caches are stored.
    pub fn caches(&self) -> &CacheBackend {
        &self.core.caches
    }

    /// Documents held in memory now.
    pub fn remembered(&self) -> u64 {
        self.core.memory.len()
    }

    /// Why this process cannot open the token caches, if it has found that it cannot: a
    /// configuration error for `/readyz` to report.
    pub fn key_problem(&self) -> Option<String> {
        lock(&self.core.problems.keys).clone()
    }

    /// What the provider last said is wrong with this client's configuration, until a sign-in
    /// or refresh succeeds again: for `/readyz` to report.
    pub fn config_problem(&self) -> Option<String> {
        lock(&self.core.problems.config).clone()
    }

    /// An access token for `id` and `scopes`, refreshed if needed, without the user.
    pub async fn acquire_silent(
        &self,
        id: &str,
        scopes: &[&str],
        caller: Caller,
    ) -> Result<AccessToken, AcquireError> {
        self.acquire(id, None, scopes, caller, None).await
    }

    /// After the API refused `rejected` as invalid although it had time left (it expired on
    /// the way, was revoked, or the clocks disagree): a token other than that one, from a
    /// refresh unless the cache holds another already. Callers ask once per refusal.
    pub async fn acquire_after_rejection(
        &self,
        id: &str,
        scopes: &[&str],
        caller: Caller,
        rejected: &AccessToken,
    ) -> Result<AccessToken, AcquireError> {
        self.acquire(id, None, scopes, caller, Some(&rejected.secret))
            .await
    }

    /// [`Self::acquire_silent`] for a signed-in page: the session must belong to the row's
    /// current sign-ins (its epoch), checked in the same query that checks the row's version,
    /// and still be listed in the user's document (a logout at the provider may have ended it).
    /// [`AcquireError::SessionEnded`] otherwise.
    pub async fn acquire_for_session(
        &self,
        id: &str,
        session: &AppSessionRef<'_>,
        scopes: &[&str],
    ) -> Result<AccessToken, AcquireError> {
        self.acquire(id, Some(session), scopes, Caller::Web, None)
            .await
    }

    async fn acquire(
        &self,
        id: &str,
        session: Option<&AppSessionRef<'_>>,
        scopes: &[&str],
        caller: Caller,
        rejected: Option<&Secret>,
    ) -> Result<AccessToken, AcquireError> {
        let loaded = self.core.provider.metadata().await?;
        let current = match self.core.read(id).await? {
            Some(current) => current,
            // No row: the user signed out (everywhere) or never signed in here.
            None if session.is_some() => return Err(AcquireError::SessionEnded),
            None => {
                metrics().acquisition(Acquisition::InteractionRequired);
                return Err(no_cache());
            }
        };
        if let Some(session) = session {
            let other_sign_in = current
                .session_epoch
                .is_some_and(|actual| actual != session.epoch);
            let ended = session
                .id
                .is_some_and(|listed| !current.document.has_session(listed));
            if other_sign_in || ended {
                return Err(AcquireError::SessionEnded);
            }
        }
        let cached = self
            .core
            .usable(&loaded.context, &current.document, id, scopes)
            .filter(|u| rejected.is_none_or(|r| r.expose() != u.token.secret.expose()));
        if let Some(Usable {
            token,
            refresh_due: false,
        }) = cached
        {
            metrics().acquisition(Acquisition::CacheHit);
            return Ok(token);
        }
        // A refresh past a rejected token is a flight of its own: an ordinary one may end with
        // the very token the API refused.
        let past = if rejected.is_some() { "\nrejected" } else { "" };
        let key = format!("{id}\n{}{past}", scopes.join(" "));
        let refreshed = self
            .flights
            .join(&key, || {
                let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
                let (core, id) = (self.core.clone(), id.to_owned());
                let rejected = rejected.cloned();
                // A refresh started now starts from the row just read.
                refresh::refresh(core, loaded, id, scopes, caller, Some(current), rejected)
            })
            .await;
        let (outcome, counted) = match (refreshed, cached) {
            // Past the provider's refresh_on the cached token is still good: use it while the
            // provider is unavailable.
            (Err(AcquireError::Transient { .. }), Some(usable)) => {
                (Ok(usable.token), Acquisition::CacheHit)
            }
            (Ok(token), _) => (Ok(token), Acquisition::Refreshed),
            (Err(e), _) => {
                let counted = match &e {
                    AcquireError::InteractionRequired { .. } => Acquisition::InteractionRequired,
                    AcquireError::Transient { .. } => Acquisition::Transient,
                    _ => Acquisition::Error,
                };
                (Err(self.core.noting(e)), counted)
            }
        };
        metrics().acquisition(counted);
        outcome
    }
}
