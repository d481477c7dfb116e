//! `GET /healthz` (the process answers) and `GET /readyz`: the database answers and takes a
//! write, the provider's metadata is loaded and it does not refuse this client's configuration,
//! and the token caches open with this process's keys. Each probe is bounded by
//! [`PROBE_TIMEOUT`], so `/readyz` answers within seconds during an outage, and the database's
//! answer is kept for [`CACHE_FOR`], so probes cannot overload it.

use super::AppState;
use crate::sync::lock;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use diesel::connection::SimpleConnection;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// The database probe's last answer and when it was made.
#[derive(Default)]
pub struct Readiness(Mutex<Option<(Instant, &'static str, Option<String>)>>);

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
    let (database, keys) = match cached {
        Some((_, database, keys)) => (database, keys),
        None => {
            let (database, keys) = database(state).await;
            *lock(&state.readiness.0) = Some((Instant::now(), database, keys.clone()));
            (database, keys)
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
    let body = serde_json::json!({
        "database": database,
        "provider": provider,
        "cache_keys": if cache_keys.is_some() { "misconfigured" } else { "ok" },
    });
    let ready = database == "ok" && provider == "ok" && cache_keys.is_none();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

/// The database's state (`ok`, `unavailable`, or `not_writable`: answers but refuses the write
/// a sign-in makes), and a key problem found opening a stored cache.
async fn database(state: &AppState) -> (&'static str, Option<String>) {
    let store = state.acquirer.store().clone();
    let read = state.db.run(move |conn| {
        conn.batch_execute("SELECT 1")
            .map_err(crate::db::DbError::from)?;
        Ok::<_, crate::db::DbError>(store.check_keys(conn))
    });
    let keys = match tokio::time::timeout(PROBE_TIMEOUT, read).await {
        Err(_) | Ok(Err(_)) => return ("unavailable", None),
        Ok(Ok(Err(e))) if e.is_key_problem() => Some(e.to_string()),
        Ok(Ok(_)) => None,
    };
    match tokio::time::timeout(PROBE_TIMEOUT, state.acquirer.check_writable()).await {
        Ok(Ok(())) => ("ok", keys),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "not ready: the database refuses writes");
            ("not_writable", keys)
        }
        Err(_) => ("unavailable", keys),
    }
}
