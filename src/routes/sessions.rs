//! `GET /auth/sessions` and `DELETE /auth/sessions/{id}`: the caller's own
//! active sessions, and ending one of them. Someone else's session id gets
//! the same 404 as an unknown one, so existence never leaks.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};

use super::session::authenticate;
use crate::authority::{AuthError, EndSessions, SessionInfo};
use crate::error::{ApiError, Result};
use crate::metrics::Ended;
use crate::routes::state::AppState;

#[derive(Serialize)]
pub struct SessionEntry {
    #[serde(flatten)]
    session: SessionInfo,
    current: bool,
}

fn authority_error(e: AuthError) -> ApiError {
    ApiError::from_auth(e, ApiError::NotAuthenticated)
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<SessionEntry>>> {
    let claims = authenticate(&state, &headers).await?;
    let sessions = state
        .authority
        .list_sessions(&claims.sub)
        .await
        .map_err(authority_error)?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|session| SessionEntry {
                current: session.id == claims.sid,
                session,
            })
            .collect(),
    ))
}

pub async fn end(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<Value>> {
    let claims = authenticate(&state, &headers).await?;
    let Ok(Path(session_id)) = id else {
        return Err(ApiError::SessionNotFound);
    };
    let ended = state
        .authority
        .end_sessions(EndSessions::OwnedBy {
            user_id: claims.sub.clone(),
            session_id: session_id.into(),
        })
        .await
        .map_err(authority_error)?;
    if ended.is_empty() {
        return Err(ApiError::SessionNotFound);
    }
    state
        .security
        .metrics
        .sessions_ended(Ended::ByUser, ended.len());
    super::logout::tell_sign_in(&state, ended);
    Ok(Json(json!({ "message": "Session ended" })))
}
