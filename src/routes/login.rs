//! `GET /auth/google/login[?redirectTo=]`: starts a sign-in. The PKCE
//! verifier stays in the flow store; the browser gets a short-lived
//! httpOnly flow cookie that references it, so the code can only be
//! exchanged by the browser that started the flow.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{AppendHeaders, IntoResponse};
use http::header;
use serde_json::json;

use crate::authority::{SessionId, UserId};
use crate::cookies::CookieKind;
use crate::error::{ApiError, Result};
use crate::routes::state::AppState;
use crate::store::flows::StartedFlow;
use crate::web::query::{query_pairs, query_param};

pub async fn start(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse> {
    let (flow, target) = begin(&state, query.as_deref(), None).await?;
    let redirect_url = state
        .sign_in
        .authorize_url(&flow, &target)
        .await
        .map_err(|e| {
            super::session::provider_failure(&state, "login", &e);
            ApiError::from_auth(e, ApiError::AuthenticationFailed)
        })?;
    Ok(answer(&state, &flow, &redirect_url))
}

/// The allow-listed `redirectTo` of the query (or the default target), and
/// a flow started for it (`connect`: one connecting an account to this
/// person and session).
pub(super) async fn begin(
    state: &AppState,
    query: Option<&str>,
    connect: Option<(&UserId, &SessionId)>,
) -> Result<(StartedFlow, String)> {
    let pairs = query_pairs(query);
    let requested = query_param(&pairs, "redirectTo");
    let target = state
        .redirects
        .resolve(requested.as_deref())
        .ok_or(ApiError::BadRequest("Invalid redirect URL"))?;
    let flow = state
        .flows
        .start_for(target, connect)
        .await
        .map_err(ApiError::internal)?;
    Ok((flow, target.to_string()))
}

/// A started flow's answer: the flow cookie, and where the browser goes.
pub(super) fn answer(
    state: &AppState,
    flow: &StartedFlow,
    redirect_url: &str,
) -> impl IntoResponse + use<> {
    (
        AppendHeaders([(
            header::SET_COOKIE,
            state.cookies().set(CookieKind::Flow, &flow.id),
        )]),
        Json(json!({ "redirectUrl": redirect_url })),
    )
}
