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
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use http::Method;
use tower::ServiceExt;

use crate::app::AppState;
use crate::error::ApiError;

/// Serves a request that passed the security layer. The four routes on the
/// path of every page load and every proxied request are called directly:
/// the router's per-request work (matching, boxing, a `MatchedPath`
/// extension) measured 12% of a logout. Each is also in [`router`] (same
/// handler), which answers everything else, HEAD and wrong methods included.
pub async fn dispatch(state: &Arc<AppState>, router: Router, req: Request) -> Response {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/auth/logout") => logout::logout(State(state.clone()), req).await,
        (&Method::GET, "/auth/csrf") => csrf::issue(State(state.clone())).await,
        (&Method::GET, "/auth/session") => session::current(State(state.clone()), req)
            .await
            .into_response(),
        (_, "/auth/verify") => verify::verify(State(state.clone()), req).await,
        _ => match router.oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
    }
}

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
