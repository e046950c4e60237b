//! `GET /auth/session`, `POST /auth/web/callback`, `POST /auth/refresh`:
//! the session lifecycle, and the cookies that carry it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, header};
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, Client};
use crate::authority::{AccessClaims, AuthError, IssuedSession, SessionId, User, UserId};
use crate::cookies::CookieKind;
use crate::error::{ApiError, Result};
use crate::routes::state::AppState;
use crate::security::csrf::{Binding, Purpose};
use crate::security::envelope;
use crate::signin::Callback;
use crate::store::flows::Flow;
use crate::unix_now;
use crate::vault::Connected;

/// `{"user": ..., "expires_at": ...}`, fields in the API's order.
#[derive(Serialize)]
struct SessionBody<'a> {
    user: &'a User,
    expires_at: u64,
}

fn session_body(user: &User, expires_at: u64) -> Response {
    envelope::json_response(&SessionBody { user, expires_at })
}

/// The response that starts or renews a session: all three cookies
/// rewritten, with a fresh CSRF token bound to this session.
fn session_response(state: &AppState, issued: &IssuedSession, extra: HeaderMap) -> Response {
    let mut response = session_body(&issued.user, issued.expires_at);
    let headers = response.headers_mut();
    headers.extend(extra);
    let binding = Binding::Session(issued.session_id.clone());
    let csrf = state.csrf().issue(Purpose::Api, &binding, unix_now());
    for (kind, value) in [
        (CookieKind::Session, issued.access_token.as_str()),
        (CookieKind::Refresh, issued.refresh_token.as_str()),
        (CookieKind::Csrf, csrf.as_str()),
    ] {
        headers.append(header::SET_COOKIE, state.cookies().set(kind, value));
    }
    response
}

/// Counts a failure of the identity provider (`operation`: `login`,
/// `sign_in`, `refresh`, `session`) before it becomes a 502/503.
pub(super) fn provider_failure(state: &AppState, operation: &'static str, error: &AuthError) {
    if matches!(error, AuthError::Unavailable(_) | AuthError::Busy { .. }) {
        state.security.metrics.provider_failed(operation);
    }
}

/// The verified claims of the request's session cookie, if its session
/// has not ended ([`crate::security::Security::authenticate`]).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Arc<AccessClaims>> {
    state.security.authenticate(headers).await
}

/// Takes the whole request (not `HeaderMap`, which axum would clone).
pub async fn current(state: Arc<AppState>, req: Request) -> Response {
    match authenticate(&state, req.headers()).await {
        Ok(claims) => session_body(&User::from_claims(&claims), claims.exp),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
pub struct CodeExchange {
    code: String,
    /// The provider's `state`, when the client passes it on (then checked).
    #[serde(default)]
    state: Option<String>,
}

pub async fn exchange(
    State(state): State<Arc<AppState>>,
    Client(client): Client,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CodeExchange>,
) -> Result<Response> {
    if body.code.is_empty() || body.code.len() > 512 {
        return Err(ApiError::AuthenticationFailed);
    }
    // The flow cookie proves this browser started the sign-in.
    let flow_id = state
        .cookies()
        .read(&headers, CookieKind::Flow)
        .ok_or(ApiError::AuthenticationFailed)?;
    let flow = state
        .flows
        .take(flow_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::AuthenticationFailed)?;
    if let Some((user_id, session_id)) = &flow.connect {
        return connect_account(&state, &headers, &body, &flow, (user_id, session_id)).await;
    }
    let callback = Callback {
        code: &body.code,
        state: body.state.as_deref(),
    };
    let mut issued = state
        .sign_in
        .complete(callback, &flow, &client)
        .await
        .map_err(|e| {
            provider_failure(&state, "sign_in", &e);
            ApiError::from_auth(e, ApiError::AuthenticationFailed)
        })?;
    // The provider's tokens go to the person's connected account.
    if let (Some(vault), Some(grant)) = (&state.vault, issued.provider_grant.take()) {
        let kept = vault
            .keep(&issued.user.id, grant, true)
            .await
            .map_err(ApiError::internal)?;
        if let Connected::OtherUser = kept {
            tracing::warn!(
                "the account signed in with is connected to another person; its tokens were not kept"
            );
        }
    }
    let mut extra = HeaderMap::new();
    extra.append(header::SET_COOKIE, state.cookies().clear(CookieKind::Flow));
    offer_binding(&state, &issued.session_id, &mut extra);
    Ok(session_response(&state, &issued, extra))
}

/// DBSC=on: a session not bound yet is offered to be, with a challenge.
fn offer_binding(state: &AppState, session_id: &str, headers: &mut HeaderMap) {
    if let Some(dbsc) = &state.security.dbsc
        && !dbsc.is_bound(session_id)
        && let Some(offer) = dbsc.registration_header(session_id, unix_now())
    {
        headers.insert(crate::security::dbsc::REGISTRATION.clone(), offer);
    }
}

/// The callback of a connect flow: the account joins the signed-in
/// person's, whose session goes on as it is (same cookies, same `sid`).
async fn connect_account(
    state: &AppState,
    headers: &HeaderMap,
    body: &CodeExchange,
    flow: &Flow,
    (user_id, session_id): (&UserId, &SessionId),
) -> Result<Response> {
    let vault = state.vault.as_ref().ok_or(ApiError::AuthenticationFailed)?;
    // The browser that started the connect is still that person's session.
    let claims = authenticate(state, headers).await?;
    if claims.sub != *user_id || claims.sid != *session_id {
        return Err(ApiError::NotAuthenticated);
    }
    let connected = vault
        .complete_connect(&body.code, body.state.as_deref(), flow, user_id)
        .await
        .map_err(|e| {
            provider_failure(state, "sign_in", &e);
            ApiError::from_auth(e, ApiError::AuthenticationFailed)
        })?;
    if let Connected::OtherUser = connected {
        return Err(ApiError::Conflict(
            "This account is connected to another user",
        ));
    }
    let mut headers = HeaderMap::new();
    headers.append(header::SET_COOKIE, state.cookies().clear(CookieKind::Flow));
    Ok((
        headers,
        session_body(&User::from_claims(&claims), claims.exp),
    )
        .into_response())
}

pub async fn refresh(
    State(state): State<Arc<AppState>>,
    Client(client): Client,
    headers: HeaderMap,
) -> Result<Response> {
    let token = state
        .cookies()
        .read(&headers, CookieKind::Refresh)
        .ok_or(ApiError::RefreshFailed)?;
    match state.authority.refresh(token, &client).await {
        // A bound session renews only with its live bound cookie. The pair
        // is not handed out, but the token has moved on: a copied jar's
        // try shows as reuse when the device next refreshes (theft ends
        // the family, as without DBSC). Only the bound cookie it lacked
        // (or sent dead) is cleared.
        Ok(issued) if !state.security.bound_cookie_ok(&headers, &issued.session_id) => {
            let mut response = ApiError::RefreshFailed.into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, state.cookies().clear(CookieKind::Bound));
            Ok(response)
        }
        Ok(issued) => {
            // The token this pair replaces leaves the verified cache, so
            // the cache holds one token per active session.
            if let Some(old) = state.cookies().read(&headers, CookieKind::Session)
                && old != issued.access_token
            {
                state.authority.superseded(old);
            }
            let mut extra = HeaderMap::new();
            offer_binding(&state, &issued.session_id, &mut extra);
            Ok(session_response(&state, &issued, extra))
        }
        // A refused refresh token is dead (used, ended, expired): the
        // cookies that carry it are cleared, so the client signs in again.
        Err(AuthError::Rejected) => {
            let mut response = ApiError::RefreshFailed.into_response();
            state.cookies().clear_all(response.headers_mut());
            Ok(response)
        }
        Err(e) => {
            provider_failure(&state, "refresh", &e);
            Err(ApiError::from_auth(e, ApiError::RefreshFailed))
        }
    }
}
