//! `POST /auth/risc`: Security Event Tokens pushed by the provider (RFC
//! 8935 push delivery; Google's Cross-Account Protection). 202 when
//! accepted, else 400 with `{"err", "description"}`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde_json::json;

use crate::error::ApiError;
use crate::routes::state::AppState;
use crate::vault::risc::Refused;

fn refuse(err: &'static str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "err": err, "description": description })),
    )
        .into_response()
}

pub async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(risc) = &state.risc else {
        return ApiError::NotFound.into_response();
    };
    let metrics = &state.security.metrics;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if content_type.as_deref() != Some("application/secevent+jwt") {
        metrics.security_event("invalid");
        return refuse(
            "invalid_request",
            "the body must be a Security Event Token (Content-Type: application/secevent+jwt)",
        );
    }
    let Ok(token) = std::str::from_utf8(&body) else {
        metrics.security_event("invalid");
        return refuse("invalid_request", "the body is not a JWT");
    };
    match risc.receive(token.trim()).await {
        Ok(heard) => {
            for event in heard.events {
                metrics.security_event(event);
            }
            StatusCode::ACCEPTED.into_response()
        }
        Err(refused) => {
            metrics.security_event("invalid");
            let description = match refused {
                Refused::InvalidRequest => "the token is malformed or lacks a required claim",
                Refused::InvalidKey => {
                    "the token's signature does not verify with the transmitter's keys"
                }
                Refused::InvalidIssuer => "the token is from another issuer",
                Refused::InvalidAudience => "the token is addressed to another audience",
            };
            refuse(refused.code(), description)
        }
    }
}
