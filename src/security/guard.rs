//! The request checks in front of the routes, in this order: Origin,
//! Fetch Metadata, rate limit, CSRF double-submit. Which checks apply to a
//! path is decided here, in one place, so the policy can be read at a glance.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, header};

use crate::app::AppState;
use crate::cookies::CookieKind;
use crate::error::ApiError;
use crate::security::client_ip::ClientKey;
use crate::security::csrf::same_token;
use crate::unix_now;

pub const CSRF_HEADER: &str = "x-csrf-token";

/// Form posts of the embedded sign-in page: they come from PUBLIC_URL's
/// origin and carry their own hidden token instead of the API's CSRF header.
pub const SIGNIN_FORM_PATHS: &[&str] = &["/auth/signin", "/auth/signup"];

fn is_state_changing(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Does the API's CSRF check apply to this state-changing path?
fn csrf_applies(state: &AppState, path: &str) -> bool {
    match path {
        "/auth/web/callback" => false,
        "/auth/logout" => state.settings.logout_require_csrf,
        _ => !SIGNIN_FORM_PATHS.contains(&path),
    }
}

/// Header copy equals cookie copy (constant time) and the token verifies.
fn csrf_ok(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(sent) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(cookie) = state.cookies.read(headers, CookieKind::Csrf) else {
        return false;
    };
    same_token(sent, cookie) && state.csrf.verify(sent, unix_now()).is_ok()
}

/// The sign-in form is posted from our own page only (`PUBLIC_URL`'s
/// origin), never from the frontend or another CORS origin; everything else
/// from the CORS allow-list.
fn origin_allowed(state: &AppState, origin: &HeaderValue, path: &str) -> bool {
    if SIGNIN_FORM_PATHS.contains(&path) {
        state.public_origin.as_bytes() == origin.as_bytes()
    } else {
        state.cors.allows(origin)
    }
}

/// Runs the checks; `Some(response)` when the request is refused.
pub async fn check(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    client: ClientKey,
) -> Option<Response> {
    // Forward-auth is asked by a proxy about someone else's request: the
    // browser-facing checks are the upstream's business, not ours.
    let state_changing = is_state_changing(method) && path != "/auth/verify";
    let carries_auth = state.cookies.read(headers, CookieKind::Session).is_some()
        || state.cookies.read(headers, CookieKind::Refresh).is_some();

    if state_changing {
        if let Some(origin) = headers.get(header::ORIGIN)
            && !origin_allowed(state, origin, path)
        {
            return Some(ApiError::InvalidOrigin.into_response());
        }
        if carries_auth
            && let Some(site) = headers.get("sec-fetch-site")
            && !matches!(site.as_bytes(), b"same-origin" | b"same-site" | b"none")
        {
            return Some(ApiError::FetchMetadata.into_response());
        }
    }

    let limiter = if path == "/auth/verify" {
        state.verify_limiter.as_ref()
    } else if path.starts_with("/auth/") && method != Method::OPTIONS {
        Some(&state.auth_limiter)
    } else {
        None
    };
    if let Some(limiter) = limiter
        && let Err(limited) = limiter.check(client).await
    {
        let mut response = ApiError::RateLimited {
            body: limited.body,
            retry_after: limited.retry_after,
        }
        .into_response();
        // A person must always be able to sign out of their own browser,
        // even behind a busy NAT: clearing costs nothing. No other work.
        if path == "/auth/logout"
            && method == Method::POST
            && (!carries_auth || !csrf_applies(state, path) || csrf_ok(state, headers))
        {
            state.cookies.clear_all(response.headers_mut());
        }
        return Some(response);
    }

    if state_changing && carries_auth && csrf_applies(state, path) && !csrf_ok(state, headers) {
        return Some(ApiError::InvalidCsrf.into_response());
    }
    None
}
