//! `GET /healthz` (the process answers) and `GET /readyz` (database and provider reachable, the
//! provider not refusing this client's configuration, and the token caches openable with this
//! process's keys).

use super::AppState;
use actix_web::{web, HttpResponse};
use diesel::connection::SimpleConnection;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.acquirer.store().clone();
    let checked = state
        .db
        .run(move |conn| {
            conn.batch_execute("SELECT 1")
                .map_err(crate::db::DbError::from)?;
            Ok::<_, crate::db::DbError>(store.check_keys(conn))
        })
        .await;
    let (database, keys) = match checked {
        Err(_) => ("unavailable", None),
        Ok(Err(e)) if e.is_key_problem() => ("ok", Some(e.to_string())),
        Ok(_) => ("ok", None),
    };
    let cache_keys = keys.or_else(|| state.acquirer.key_problem());
    if let Some(problem) = &cache_keys {
        tracing::error!(%problem, "not ready: this process cannot open the token caches");
    }
    let config_problem = state.acquirer.config_problem();
    let provider = match state.acquirer.provider().metadata().await {
        Err(_) => "unavailable",
        Ok(_) if config_problem.is_some() => "misconfigured",
        Ok(_) => "ok",
    };
    if let Some(problem) = &config_problem {
        tracing::error!(%problem, "not ready: the identity provider refuses this client's configuration");
    }
    let body = serde_json::json!({
        "database": database,
        "provider": provider,
        "cache_keys": if cache_keys.is_some() { "misconfigured" } else { "ok" },
    });
    if database == "ok" && provider == "ok" && cache_keys.is_none() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
