//! `GET /auth/google/login[?redirectTo=]`: starts a sign-in. The PKCE
//! verifier stays in the database; the browser gets a short-lived httpOnly
//! flow cookie that references it, so the code can only be exchanged by
//! the browser that started the flow.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{AppendHeaders, IntoResponse};
use http::header;
use serde_json::json;

use super::extract::{query_pairs, query_param};
use crate::app::AppState;
use crate::cookies::CookieKind;
use crate::error::{ApiError, Result};
use crate::identity::pkce_challenge;

pub async fn start(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse> {
    let pairs = query_pairs(query.as_deref());
    let requested = query_param(&pairs, "redirectTo");
    let target = state
        .redirects
        .resolve(requested.as_deref())
        .ok_or(ApiError::BadRequest("Invalid redirect URL"))?;
    let flow = state
        .flows
        .start(target)
        .await
        .map_err(ApiError::internal)?;
    let redirect_url = state
        .idp
        .authorize_url(target, &pkce_challenge(&flow.code_verifier));
    Ok((
        AppendHeaders([(
            header::SET_COOKIE,
            state.cookies.set(CookieKind::Flow, &flow.id),
        )]),
        Json(json!({ "redirectUrl": redirect_url })),
    ))
}
