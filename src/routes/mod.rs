//! HTTP routes. Each module owns its handlers; [`router`] assembles them.

mod csrf;
mod health;
mod logout;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::app::AppState;
use crate::error::ApiError;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health::health))
        .route("/auth/csrf", get(csrf::issue))
        .route("/auth/logout", post(logout::logout))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
