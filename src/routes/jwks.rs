//! `GET /.well-known/jwks.json`: the public keys that verify access tokens.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use crate::routes::state::AppState;

pub async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let mut response = state.authority.jwks().to_string().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
