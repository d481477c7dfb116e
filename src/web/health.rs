//! `GET /healthz` (the process answers) and `GET /readyz` (database and provider reachable).

use super::AppState;
use actix_web::{web, HttpResponse};
use diesel::connection::SimpleConnection;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state
        .db
        .run(|conn| {
            conn.batch_execute("SELECT 1")
                .map_err(crate::db::DbError::from)
        })
        .await
        .map(|_| "ok")
        .unwrap_or("unavailable");
    let provider = match state.acquirer.provider().metadata().await {
        Ok(_) => "ok",
        Err(_) => "unavailable",
    };
    let body = serde_json::json!({ "database": database, "provider": provider });
    if database == "ok" && provider == "ok" {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
