//! `GET /auth/csrf`: a fresh CSRF token in a JavaScript-readable cookie.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{AppendHeaders, IntoResponse};
use http::header;
use serde_json::json;

use crate::app::AppState;
use crate::cookies::CookieKind;
use crate::unix_now;

pub async fn issue(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let token = state.csrf.issue(unix_now());
    (
        AppendHeaders([(
            header::SET_COOKIE,
            state.cookies.set(CookieKind::Csrf, &token),
        )]),
        Json(json!({ "ok": true })),
    )
}
