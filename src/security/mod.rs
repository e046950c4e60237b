//! The security layer: who the client is, what it may do, and what every
//! response carries.

/// The client's address and rate-limit key (trusted proxies, XFF, IPv6 /64).
pub mod client_ip;
/// CORS for the configured origins.
pub mod cors;
/// Signed double-submit CSRF tokens.
pub mod csrf;
/// Outermost layer: request id, size limits, security headers, access log.
pub mod envelope;
/// Origin, Fetch Metadata, rate limit and CSRF checks in front of routes.
pub mod guard;
/// The `RATE_LIMIT_*` grammar and the limiter.
pub mod rate_limit;
/// The allow-list of sign-in redirect targets.
pub mod redirects;
