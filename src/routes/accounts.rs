//! Connected accounts (`PROVIDER_TOKENS=keep`): connecting another account
//! of the provider (`GET /auth/google/connect`, completed by the usual
//! `POST /auth/web/callback`), listing them, disconnecting one (its token
//! revoked at the provider), under our paths and the original backend's.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::IntoResponse;
use http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};

use super::session::authenticate;
use crate::error::{ApiError, Result};
use crate::routes::state::AppState;
use crate::store::accounts::rfc3339;
use crate::store::connected_accounts::Account;
use crate::vault::Vault;

fn vault(state: &AppState) -> Result<&Arc<Vault>> {
    state.vault.as_ref().ok_or(ApiError::NotFound)
}

/// `GET /auth/google/connect[?redirectTo=]`: the provider's consent screen
/// for connecting another of the signed-in person's accounts.
pub async fn connect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse> {
    let vault = vault(&state)?;
    let claims = authenticate(&state, &headers).await?;
    let (flow, target) =
        super::login::begin(&state, query.as_deref(), Some((&claims.sub, &claims.sid))).await?;
    let redirect_url = vault.connect_url(&flow, &target).await.map_err(|e| {
        super::session::provider_failure(&state, "login", &e);
        ApiError::from_auth(e, ApiError::AuthenticationFailed)
    })?;
    Ok(super::login::answer(&state, &flow, &redirect_url))
}

/// One account as `GET /auth/accounts` shows it.
#[derive(Serialize)]
struct Listed<'a> {
    id: &'a str,
    provider: &'a str,
    email: Option<&'a str>,
    name: Option<&'a str>,
    scopes: Vec<&'a str>,
    needs_reauth: bool,
    connected_at: String,
    signs_in: bool,
}

impl<'a> From<&'a Account> for Listed<'a> {
    fn from(a: &'a Account) -> Self {
        Listed {
            id: &a.id,
            provider: &a.provider,
            email: a.email.as_deref(),
            name: a.name.as_deref(),
            scopes: a.scopes.split_whitespace().collect(),
            needs_reauth: a.needs_reauth,
            connected_at: rfc3339(a.connected_at),
            signs_in: a.signs_in,
        }
    }
}

/// `GET /auth/accounts`: the caller's connected accounts.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>> {
    let vault = vault(&state)?;
    let claims = authenticate(&state, &headers).await?;
    let accounts = vault
        .accounts()
        .of_user(&claims.sub)
        .await
        .map_err(ApiError::internal)?;
    let listed: Vec<Listed> = accounts.iter().map(Listed::from).collect();
    Ok(Json(json!({ "accounts": listed })))
}

/// Disconnects one of the caller's accounts; `false`: not theirs (or gone).
async fn disconnect(
    state: &AppState,
    headers: &HeaderMap,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<bool> {
    let vault = vault(state)?;
    let claims = authenticate(state, headers).await?;
    let Ok(Path(id)) = id else {
        return Ok(false);
    };
    vault
        .disconnect(Some(&claims.sub), &id)
        .await
        .map_err(ApiError::internal)
}

/// `DELETE /auth/accounts/{id}`.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<Value>> {
    if !disconnect(&state, &headers, id).await? {
        return Err(ApiError::NotTheirs("Account not found"));
    }
    Ok(Json(json!({ "message": "Account disconnected" })))
}

/// `DELETE /auth/google/accounts/{id}`: the original backend's path and
/// bodies (404, never 403, for an id that is not the caller's).
pub async fn remove_google(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<Value>> {
    if !disconnect(&state, &headers, id).await? {
        return Err(ApiError::NotTheirs("Google account not found"));
    }
    Ok(Json(
        json!({ "success": true, "message": "Google account disconnected" }),
    ))
}
