//! `GET /health`: liveness (the process answers). `GET /health/ready`:
//! readiness (serving, not draining, and the database answers).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use crate::routes::state::{AppState, Phase};

/// The longest the readiness probe waits for the database.
const DATABASE_CHECK: Duration = Duration::from_secs(1);

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "healthy" }))
}

/// Never cached: a stale "ready" would send traffic to a draining process.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let mut response = readiness(&state).await;
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

async fn readiness(state: &AppState) -> Response {
    let unavailable = |status: &str, detail: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": status, "detail": detail })),
        )
            .into_response()
    };
    match state.phase.get() {
        Phase::SERVING => {}
        Phase::DRAINING => return unavailable("draining", "The server is shutting down"),
        _ => return unavailable("starting", "The server is starting"),
    }
    let check = state.database.ping();
    match tokio::time::timeout(DATABASE_CHECK, check).await {
        Ok(Ok(_)) => Json(json!({ "status": "ready" })).into_response(),
        _ => unavailable("unavailable", "The database cannot be reached"),
    }
}
