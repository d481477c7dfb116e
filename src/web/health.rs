//! `GET /healthz` (the process answers) and `GET /readyz`: the database answers and takes
//! writes that commit (the last real write's outcome, else a committed heartbeat: see
//! `db::health`), Redis answers and takes writes when the token caches are there, the
//! provider's metadata is loaded and it does not refuse this client's configuration, and this
//! process's cache keys are the ones the store's check values name and open the stored token
//! caches. Each probe is bounded by [`PROBE_TIMEOUT`], so `/readyz` answers within seconds
//! during an outage, and the storage probes' answer is kept for [`CACHE_FOR`], so probes
//! cannot overload them.

use super::AppState;
use crate::cache::backend::CacheBackend;
use crate::db::health::{self, Recent, WriteHealth};
use crate::sync::lock;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use diesel::connection::SimpleConnection;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// The storage probes' last answer and when it was made.
#[derive(Default)]
pub struct Readiness(Mutex<Option<(Instant, Storage)>>);

/// What the storage probes found.
#[derive(Clone)]
pub struct Storage {
    database: &'static str,
    /// Redis's state (`ok` or `unavailable`) when the token caches are there.
    redis: Option<&'static str>,
    /// A key problem found opening a stored cache.
    keys: Option<String>,
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (status, body) = probe(&state).await;
    HttpResponse::build(status).json(body)
}

async fn probe(state: &AppState) -> (StatusCode, serde_json::Value) {
    let cached = lock(&state.readiness.0)
        .clone()
        .filter(|(at, ..)| at.elapsed() < CACHE_FOR);
    let Storage {
        database,
        redis,
        keys,
    } = match cached {
        Some((_, storage)) => storage,
        None => {
            let storage = storage(state).await;
            *lock(&state.readiness.0) = Some((Instant::now(), storage.clone()));
            storage
        }
    };
    let cache_keys = keys.or_else(|| state.acquirer.key_problem());
    if let Some(problem) = &cache_keys {
        tracing::error!(%problem, "not ready: this process cannot open the token caches");
    }
    let config_problem = state.acquirer.config_problem();
    let metadata = tokio::time::timeout(PROBE_TIMEOUT, state.acquirer.provider().metadata());
    let provider = match metadata.await {
        Err(_) | Ok(Err(_)) => "unavailable",
        Ok(Ok(_)) if config_problem.is_some() => "misconfigured",
        Ok(Ok(_)) => "ok",
    };
    if let Some(problem) = &config_problem {
        tracing::error!(%problem, "not ready: the identity provider refuses this client's configuration");
    }
    let mut body = serde_json::json!({
        "database": database,
        "provider": provider,
        "cache_keys": if cache_keys.is_some() { "misconfigured" } else { "ok" },
    });
    if let Some(problem) = &cache_keys {
        // Names keys, never a user: the messages come from the keys' checks.
        body["cache_keys_problem"] = problem.as_str().into();
    }
    if let Some(redis) = redis {
        body["redis"] = redis.into();
    }
    let ready = database == "ok"
        && redis.is_none_or(|r| r == "ok")
        && provider == "ok"
        && cache_keys.is_none();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

/// The database's state (`ok`, `unavailable`, or `not_writable`: answers but refuses the write
/// a sign-in makes), Redis's when the caches are there, and a key problem found opening a
/// stored cache.
async fn storage(state: &AppState) -> Storage {
    let caches = state.acquirer.caches();
    let (database, redis) = tokio::join!(database(state), redis(caches));
    let keys = match (database, redis) {
        ("unavailable", _) | (_, Some("unavailable")) => None,
        _ => keys(caches, state.clock.now()).await,
    };
    Storage {
        database,
        redis,
        keys,
    }
}

/// A key problem: a key that differs from the store's check value for its id (compared again
/// until it matches, so a fixed store needs no restart), or a stored row sealed with a key this
/// process lacks.
async fn keys(caches: &CacheBackend, now: time::OffsetDateTime) -> Option<String> {
    let problem = |e: crate::cache::store::CacheStoreError| e.key_problem().map(|p| p.to_string());
    if !caches.sealer().keys_checked() {
        match tokio::time::timeout(PROBE_TIMEOUT, caches.verify_keys(now)).await {
            Ok(Err(e)) if e.is_key_problem() => return problem(e),
            Ok(Ok(())) => {}
            // The store did not answer in time: the keys are not trusted yet.
            _ => return caches.sealer().key_problem().map(|p| p.to_string()),
        }
    }
    match tokio::time::timeout(PROBE_TIMEOUT, caches.check_keys()).await {
        Ok(Err(e)) => problem(e),
        _ => None,
    }
}

async fn database(state: &AppState) -> &'static str {
    let read = state.db.run(|conn| {
        conn.batch_execute("SELECT 1")
            .map_err(crate::db::DbError::from)
    });
    if !matches!(tokio::time::timeout(PROBE_TIMEOUT, read).await, Ok(Ok(()))) {
        return "unavailable";
    }
    let now = crate::clock::to_db(state.clock.now());
    let beat = state.db.run(move |conn| health::heartbeat(conn, now));
    takes_writes("the database", state.db.writes(), beat).await
}

/// Whether a store takes writes that commit: a real write that failed lately says no; one that
/// succeeded lately says yes; else the committed heartbeat `beat` is asked (and its success,
/// not a real write's, is not remembered: the next probe beats again).
async fn takes_writes<E: std::fmt::Display>(
    store: &str,
    writes: &WriteHealth,
    beat: impl std::future::Future<Output = Result<(), E>>,
) -> &'static str {
    match writes.recent() {
        Recent::Failed(reason) => {
            tracing::error!(%reason, "not ready: {store} refused a write lately");
            return "not_writable";
        }
        Recent::Succeeded => return "ok",
        Recent::Unknown => {}
    }
    match tokio::time::timeout(PROBE_TIMEOUT, beat).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::error!(error = %e, "not ready: {store} refuses writes");
            "not_writable"
        }
        Err(_) => "unavailable",
    }
}

/// Whether Redis takes writes (see [`takes_writes`]).
async fn redis_writes(caches: &CacheBackend) -> &'static str {
    let CacheBackend::Redis { store, .. } = caches else {
        return "ok";
    };
    takes_writes("Redis", store.writes(), store.heartbeat()).await
}

/// `None` when the token caches are in the database.
async fn redis(caches: &CacheBackend) -> Option<&'static str> {
    if !caches.is_redis() {
        return None;
    }
    match tokio::time::timeout(PROBE_TIMEOUT, caches.ping()).await {
        Ok(Ok(())) => Some(redis_writes(caches).await),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "not ready: the token cache store does not answer");
            Some("unavailable")
        }
        Err(_) => {
            tracing::error!(store = %caches.describe(), "not ready: the token cache store does not answer");
            Some("unavailable")
        }
    }
}
