//! HTTP routes. Each module owns its handlers; [`router`] assembles them.

mod csrf;
mod desktop;
pub mod extract;
mod health;
pub mod html;
mod jwks;
mod login;
mod logout;
pub mod session;
mod sessions;
mod signin;
mod verify;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, delete, get, post};

use crate::app::AppState;
use crate::error::ApiError;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health::health))
        .route("/auth/csrf", get(csrf::issue))
        .route("/auth/logout", post(logout::logout))
        .route("/auth/google/login", get(login::start))
        .route("/auth/web/callback", post(session::exchange))
        .route("/auth/session", get(session::current))
        .route("/auth/refresh", post(session::refresh))
        .route("/auth/desktop/callback", get(desktop::callback))
        .route("/auth/signin", get(signin::page).post(signin::sign_in))
        .route("/auth/signup", post(signin::sign_up))
        .route("/auth/verify", any(verify::verify))
        .route("/auth/sessions", get(sessions::list))
        .route("/auth/sessions/{id}", delete(sessions::end))
        .route("/.well-known/jwks.json", get(jwks::jwks))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
