//! `GET /openapi.json`: the API as an OpenAPI 3.1 document
//! (`docs/openapi.json`, compiled in). A test validates the running
//! server's answers against it, so the two cannot drift apart.

use axum::response::IntoResponse;
use http::{HeaderValue, header};

const DOCUMENT: &str = include_str!("../../docs/openapi.json");

pub async fn document() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT,
    )
}
