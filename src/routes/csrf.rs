//! `GET /auth/csrf`: a fresh CSRF token in a JavaScript-readable cookie.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderValue, header};

use crate::app::AppState;
use crate::cookies::CookieKind;
use crate::unix_now;

pub async fn issue(State(state): State<Arc<AppState>>) -> Response {
    let token = state.csrf.issue(unix_now());
    let mut response = Response::new(Body::from(&br#"{"ok":true}"#[..]));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::SET_COOKIE,
        state.cookies.set(CookieKind::Csrf, &token),
    );
    response
}
