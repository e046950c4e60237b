//! `POST /auth/logout`, as the API contract says: no body or parameters
//! required (a body is ignored), always 200 `{"message": "Logged out"}`,
//! and the session, refresh and CSRF cookies cleared with the attributes
//! they were set with, whether or not the request carried them.
//!
//! Beyond that contract, it ends the session on the server (`LOGOUT_SCOPE`, or
//! `?scope=local|global|none`): the refresh family can no longer refresh and
//! the access token is refused everywhere at once. Only sessions the caller
//! proves to own are ended: by a valid access token, or by a refresh token
//! the provider knows. Anything else in the cookies is ignored silently.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::authority::{EndSessions, SessionId, SessionRef};
use crate::config::LogoutScope;
use crate::cookies::CookieKind;
use crate::metrics::Ended;
use crate::routes::state::AppState;
use crate::security::envelope;
use crate::web::query::{query_pairs, query_param};

const BODY: &[u8] = br#"{"message":"Logged out"}"#;

static CLEAR_SITE_DATA: HeaderName = HeaderName::from_static("clear-site-data");

/// Takes the whole request (not `HeaderMap`, which axum would clone).
pub async fn logout(state: Arc<AppState>, req: Request) -> Response {
    let headers = req.headers();
    let scope = req
        .uri()
        .query()
        .and_then(|q| query_param(&query_pairs(Some(q)), "scope"))
        .and_then(|s| LogoutScope::parse(&s))
        .unwrap_or(state.settings.sessions.logout_scope);
    sign_out(&state, headers, scope).await;
    let mut response = envelope::response(Body::from(BODY));
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    cleared(&state, out);
    response
}

/// What both logouts do on the server: count it, and end the sessions the
/// cookies own as `scope` says.
async fn sign_out(state: &AppState, headers: &HeaderMap, scope: LogoutScope) {
    state.security.metrics.logout(scope);
    if scope != LogoutScope::None {
        end_owned_sessions(state, headers, scope).await;
    }
}

/// What both logouts tell the browser: every cookie cleared, and
/// `LOGOUT_CLEAR_SITE_DATA`.
fn cleared(state: &AppState, out: &mut HeaderMap) {
    state.cookies().clear_all(out);
    if let Some(directives) = &state.clear_site_data {
        out.insert(CLEAR_SITE_DATA.clone(), directives.clone());
    }
}

/// `GET /auth/logout/provider[?redirectTo=URL]` (OpenID Connect
/// RP-Initiated Logout 1.0): ends the session here exactly as `POST
/// /auth/logout` does (cookies cleared, `LOGOUT_SCOPE`), then sends the
/// browser to the provider's `end_session_endpoint` with `id_token_hint`,
/// `client_id` and `post_logout_redirect_uri`: `FRONTEND_URL/login`, or an
/// allow-listed `redirectTo`. Without such an endpoint (the embedded
/// provider, Supabase) it goes straight there. A cross-site subresource
/// (an image, a fetch) cannot sign anyone out: only a navigation can.
pub async fn at_provider(state: Arc<AppState>, req: Request) -> Response {
    let headers = req.headers();
    let fetched_cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
        && headers
            .get("sec-fetch-mode")
            .is_some_and(|v| v.as_bytes() != b"navigate");
    if fetched_cross_site {
        return crate::error::ApiError::FetchMetadata.into_response();
    }
    let pairs = query_pairs(req.uri().query());
    let default = format!("{}/login", state.settings.security.frontend_url);
    let target = match query_param(&pairs, "redirectTo").filter(|r| !r.is_empty()) {
        None => default,
        Some(r) if r == default || state.redirects.allows(&r) => r,
        Some(_) => {
            return crate::error::ApiError::BadRequest("Invalid redirect URL").into_response();
        }
    };
    // Asked before the session ends: the provider session it began.
    let session = owned_sessions(&state, headers).await.into_iter().next();
    let location = match &session {
        Some(session) => state
            .sign_in
            .end_session_url(&session.session_id, &target)
            .await
            .unwrap_or_else(|| target.clone()),
        None => target.clone(),
    };
    // Checked before anything ends: a refused target ends nothing.
    let Ok(location) = HeaderValue::from_str(&location) else {
        return crate::error::ApiError::BadRequest("Invalid redirect URL").into_response();
    };
    sign_out(&state, headers, state.settings.sessions.logout_scope).await;
    let mut response = envelope::response(Body::empty());
    *response.status_mut() = http::StatusCode::SEE_OTHER;
    let out = response.headers_mut();
    out.insert(header::LOCATION, location);
    cleared(&state, out);
    response
}

/// The sessions the request's cookies prove ownership of: a valid access
/// token's, or a refresh token's the authority issued.
async fn owned_sessions(state: &AppState, headers: &HeaderMap) -> Vec<SessionRef> {
    let mut owned = Vec::new();
    if let Some(token) = state.cookies().read(headers, CookieKind::Session)
        && let Ok(claims) = state.authority.verify_access_token(token).await
    {
        owned.push(SessionRef {
            user_id: claims.sub.clone(),
            session_id: claims.sid.clone(),
        });
    }
    if let Some(token) = state.cookies().read(headers, CookieKind::Refresh) {
        match state.authority.session_of_refresh_token(token).await {
            Ok(Some(session)) if !owned.contains(&session) => owned.push(session),
            Ok(_) => {}
            Err(error) => tracing::error!(error = %error, "logout: refresh token lookup failed"),
        }
    }
    owned
}

async fn end_owned_sessions(state: &AppState, headers: &HeaderMap, scope: LogoutScope) {
    let mut all_ended = Vec::new();
    for SessionRef {
        user_id,
        session_id,
    } in owned_sessions(state, headers).await
    {
        let this_one = EndSessions::OwnedBy {
            user_id: user_id.clone(),
            session_id,
        };
        let which = match scope {
            LogoutScope::Global => EndSessions::AllOf { user_id },
            _ => this_one.clone(),
        };
        // The contract is "always 200": a failure is logged loudly, and the
        // cookies are cleared regardless.
        match state.authority.end_sessions(which).await {
            Ok(ended) => {
                tracing::info!(sessions = ended.len(), "logout ended sessions");
                state
                    .security
                    .metrics
                    .sessions_ended(Ended::Logout, ended.len());
                all_ended.extend(ended);
            }
            Err(error) => {
                state.security.metrics.revocation_failed();
                tracing::error!(error = %error, "logout: could not end the session");
                // A global end the database could not take is held and
                // retried; this session at least is refused at once (the
                // authority holds ends whose session it knows).
                if scope == LogoutScope::Global {
                    let _ = state.authority.end_sessions(this_one).await;
                }
            }
        }
    }
    tell_sign_in(state, all_ended);
}

/// Lets the sign-in method tell its provider, off the response path.
pub fn tell_sign_in(state: &AppState, ended: Vec<SessionId>) {
    if ended.is_empty() {
        return;
    }
    let sign_in = state.sign_in.clone();
    tokio::spawn(async move { sign_in.sessions_ended(&ended).await });
}
