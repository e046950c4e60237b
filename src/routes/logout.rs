//! `POST /auth/logout`, as the seed page says: no body or parameters
//! required (a body is ignored), always 200 `{"message": "Logged out"}`,
//! and the session, refresh and CSRF cookies cleared with the attributes
//! they were set with, whether or not the request carried them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use crate::app::AppState;

const BODY: &[u8] = br#"{"message":"Logged out"}"#;

pub async fn logout(State(state): State<Arc<AppState>>) -> Response {
    let mut response = Response::new(Body::from(BODY));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    state.cookies.clear_all(headers);
    response
}
