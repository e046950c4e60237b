//! The security layer: who the client is, what it may do, and what every
//! response carries. [`envelope::Envelope`] wraps the routes with it; the
//! parts it applies are gathered in [`Security`].

/// The client's address (trusted proxies, XFF).
pub mod client_ip;
/// CORS for the configured origins.
pub mod cors;
/// Signed double-submit CSRF tokens, bound to the session and a purpose.
pub mod csrf;
/// Device Bound Session Credentials: sessions bound to a browser's key.
pub mod dbsc;
/// Outermost layer: request id, bounds, the guard, headers, access log.
pub mod envelope;
/// Origin, Fetch Metadata, rate limit and CSRF checks in front of routes.
pub mod guard;
/// The headers every response carries.
pub mod headers;
/// The rate limiter that answers 429.
pub mod rate_limit;
/// The allow-list of sign-in redirect targets.
pub mod redirects;

use std::sync::Arc;

use http::HeaderMap;

use crate::authority::{AccessClaims, AuthError, SessionAuthority};
use crate::cookies::{CookieKind, CookiePolicy};
use crate::error::ApiError;

/// Everything the security layer applies, built once from the settings.
pub struct Security {
    pub cookies: CookiePolicy,
    pub csrf: csrf::CsrfTokens,
    pub client_ip: client_ip::ClientIpResolver,
    pub auth_limiter: rate_limit::RateLimiter,
    pub verify_limiter: Option<rate_limit::RateLimiter>,
    /// `RATE_LIMIT_PROXY`, when set.
    pub proxy_limiter: Option<rate_limit::RateLimiter>,
    /// The proxied prefixes (`PROXY_ROUTES`): their bodies stream, within
    /// `proxy_max_body`, and every unsafe method needs the CSRF token.
    pub proxy_routes: crate::config::proxy::ProxyRoutes,
    pub proxy_max_body: u64,
    pub cors: cors::Cors,
    pub headers: headers::SecurityHeaders,
    /// PUBLIC_URL's origin: the only one the sign-in form posts from.
    pub public_origin: String,
    pub logout_require_csrf: bool,
    /// Names the session a request's cookies belong to (the CSRF binding).
    pub authority: Arc<dyn SessionAuthority>,
    /// Requests, latencies and refusals are counted here.
    pub metrics: crate::metrics::Metrics,
    /// `DBSC=on`: bound sessions need their bound cookie too.
    pub dbsc: Option<Arc<dbsc::Dbsc>>,
}

impl Security {
    /// The verified claims of the request's session cookie, if its session
    /// has not ended: what every authenticated path (and the proxy) asks.
    /// A session bound to a device (DBSC) also needs its live bound
    /// cookie: without one it is answered as no session, and the browser
    /// renews the cookie with a proof before it retries.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<AccessClaims>, ApiError> {
        let token = self
            .cookies
            .read(headers, CookieKind::Session)
            .ok_or(ApiError::NotAuthenticated)?;
        let claims = self
            .authority
            .authenticate(token)
            .await
            .map_err(|e| match e {
                // Not knowing a person's account date yet, with Supabase down,
                // is the provider's failure, not the token's.
                e @ (AuthError::Unavailable(_) | AuthError::Busy { .. }) => {
                    self.metrics.provider_failed("session");
                    ApiError::from_auth(e, ApiError::NotAuthenticated)
                }
                _ => ApiError::NotAuthenticated,
            })?;
        if !self.bound_cookie_ok(headers, &claims.sid) {
            return Err(ApiError::NotAuthenticated);
        }
        Ok(claims)
    }

    /// Whether the session, if it is bound to a device (DBSC), came with
    /// its live bound cookie. No I/O.
    pub fn bound_cookie_ok(&self, headers: &HeaderMap, session_id: &str) -> bool {
        self.dbsc.as_ref().is_none_or(|dbsc| {
            dbsc.allows(
                session_id,
                self.cookies.read(headers, CookieKind::Bound),
                crate::unix_now(),
            )
        })
    }
}
