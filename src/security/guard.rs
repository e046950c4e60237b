//! The request checks in front of the routes, in this order: Origin,
//! Fetch Metadata, rate limit, CSRF double-submit. Which checks apply to a
//! path is decided here, in one place, so the policy can be read at a glance.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use super::Security;
use super::csrf::{Binding, Purpose, same_token};
use super::dbsc;
use crate::cookies::CookieKind;
use crate::error::ApiError;
use crate::limits::ClientKey;
use crate::unix_now;

pub const CSRF_HEADER: &str = "x-csrf-token";
static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Posts of the password sign-in page (its forms, its passkey script):
/// they come from PUBLIC_URL's origin and carry their own single-use token
/// or WebAuthn challenge instead of the API's CSRF header.
pub const SIGNIN_FORM_PATHS: &[&str] = &[
    "/auth/signin",
    "/auth/signup",
    SECOND_STEP_PATH,
    ENROL_PATH,
    PASSKEY_OPTIONS_PATH,
    PASSKEY_PATH,
    PASSKEY_SIGNUP_OPTIONS_PATH,
    PASSKEY_SIGNUP_PATH,
];

/// The sign-in's second step after a right password: a TOTP or recovery code.
pub const SECOND_STEP_PATH: &str = "/auth/signin/second-factor";
/// Enrolling a second factor when `MFA_REQUIRED` asks for one.
pub const ENROL_PATH: &str = "/auth/signin/enrol";
/// Signing in with a passkey: options, then the answer.
pub const PASSKEY_OPTIONS_PATH: &str = "/auth/signin/passkey/options";
pub const PASSKEY_PATH: &str = "/auth/signin/passkey";
/// Creating an account with a passkey only.
pub const PASSKEY_SIGNUP_OPTIONS_PATH: &str = "/auth/signup/passkey/options";
pub const PASSKEY_SIGNUP_PATH: &str = "/auth/signup/passkey";

/// The account page's API (passkeys, TOTP): called by the account page on
/// PUBLIC_URL's origin, or by the app.
fn is_account_api(path: &str) -> bool {
    path.starts_with("/auth/passkeys") || path.starts_with("/auth/totp")
}

/// Where an OpenID provider posts back-channel logout tokens.
pub const BACKCHANNEL_LOGOUT: &str = "/auth/backchannel-logout";

/// Where the provider pushes Security Event Tokens (RISC).
pub const SECURITY_EVENTS: &str = "/auth/risc";

fn is_state_changing(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Does the API's CSRF check apply to this state-changing path?
fn csrf_applies(security: &Security, path: &str) -> bool {
    match path {
        // The browser's own calls (DBSC): a signed proof of a challenge
        // issued to the session stands in for the token.
        "/auth/web/callback" | dbsc::REGISTER_PATH | dbsc::REFRESH_PATH => false,
        "/auth/logout" => security.logout_require_csrf,
        _ => !SIGNIN_FORM_PATHS.contains(&path),
    }
}

/// Header copy equals cookie copy (constant time), and the token verifies
/// for the API in the session these cookies belong to.
async fn csrf_ok(security: &Security, headers: &HeaderMap) -> bool {
    let Some(sent) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(cookie) = security.cookies.read(headers, CookieKind::Csrf) else {
        return false;
    };
    if !same_token(sent, cookie) {
        return false;
    }
    let binding = Binding::of(&*security.authority, &security.cookies, headers).await;
    security
        .csrf
        .verify(Purpose::Api, &binding, sent, unix_now())
        .is_ok()
}

/// The sign-in form is posted from our own page only (`PUBLIC_URL`'s
/// origin), never from the frontend or another CORS origin; everything else
/// from the CORS allow-list.
fn origin_allowed(security: &Security, origin: &HeaderValue, path: &str) -> bool {
    if SIGNIN_FORM_PATHS.contains(&path) {
        security.public_origin.as_bytes() == origin.as_bytes()
    } else if path == dbsc::REGISTER_PATH || path == dbsc::REFRESH_PATH || is_account_api(path) {
        // The browser calls them from the page's origin: ours, or the app's.
        security.public_origin.as_bytes() == origin.as_bytes() || security.cors.allows(origin)
    } else {
        security.cors.allows(origin)
    }
}

/// Runs the checks; `Some(response)` when the request is refused.
/// `proxied`: the path is under a `PROXY_ROUTES` prefix.
pub async fn check(
    security: &Security,
    method: &Method,
    path: &str,
    proxied: bool,
    headers: &HeaderMap,
    client: ClientKey,
) -> Option<Response> {
    // Forward-auth is asked by a proxy about someone else's request: the
    // browser-facing checks are the upstream's business, not ours.
    let state_changing = if proxied {
        // An upstream may act on any method (a catch-all handler, one that
        // upper-cases it, WebDAV): only the safe ones go without a token.
        !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
    } else {
        is_state_changing(method) && path != "/auth/verify"
    };
    // A WebSocket opened from another site would carry the session cookie
    // (cross-site WebSocket hijacking): its handshake, a GET, gets the
    // Origin and Fetch Metadata checks of an unsafe method. (It cannot
    // carry a CSRF header: browsers let no script set one.)
    let cross_origin_checked = state_changing || (proxied && headers.contains_key(header::UPGRADE));
    // Read only when a check needs it (most requests are GETs).
    let carries_auth = || {
        security
            .cookies
            .read(headers, CookieKind::Session)
            .is_some()
            || security
                .cookies
                .read(headers, CookieKind::Refresh)
                .is_some()
    };

    if cross_origin_checked {
        if let Some(origin) = headers.get(header::ORIGIN)
            && !origin_allowed(security, origin, path)
        {
            return Some(ApiError::InvalidOrigin.into_response());
        }
        // The DBSC calls are the browser's own, proof-protected, and may
        // come from a cross-site web app's page.
        if let Some(site) = headers.get(&SEC_FETCH_SITE)
            && path != dbsc::REGISTER_PATH
            && path != dbsc::REFRESH_PATH
            && carries_auth()
            && !matches!(site.as_bytes(), b"same-origin" | b"same-site" | b"none")
        {
            return Some(ApiError::FetchMetadata.into_response());
        }
    }

    let limiter = if proxied {
        security.proxy_limiter.as_ref()
    } else if path == "/auth/verify" {
        security.verify_limiter.as_ref()
    } else if path == BACKCHANNEL_LOGOUT || path == SECURITY_EVENTS {
        // The identity provider's signed calls, possibly many at once (an
        // administrator ending a team's sessions): each must land.
        None
    } else if path.starts_with("/auth/") && method != Method::OPTIONS {
        Some(&security.auth_limiter)
    } else {
        None
    };
    if let Some(limiter) = limiter
        && let Err(limited) = limiter.check(client).await
    {
        security.metrics.rate_limited(if proxied {
            "proxy"
        } else if path == "/auth/verify" {
            "verify"
        } else {
            "auth"
        });
        let mut response = ApiError::RateLimited {
            body: limited.body,
            retry_after: limited.retry_after,
        }
        .into_response();
        // A person must always be able to sign out of their own browser,
        // even behind a busy NAT: clearing costs nothing. No other work.
        if path == "/auth/logout"
            && method == Method::POST
            && (!carries_auth()
                || !csrf_applies(security, path)
                || csrf_ok(security, headers).await)
        {
            security.cookies.clear_all(response.headers_mut());
        }
        return Some(response);
    }

    // Every unsafe call to a proxied API needs the token, cookies or not:
    // no route is exempt (Duende BFF GHSA-4j63-5v5f-xcc4).
    if state_changing
        && (proxied || (csrf_applies(security, path) && carries_auth()))
        && !csrf_ok(security, headers).await
    {
        return Some(ApiError::InvalidCsrf.into_response());
    }
    None
}
