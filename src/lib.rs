//! Chronos auth: a backend-for-frontend session server.
//!
//! Reading the modules in this order is a tour of a request's life.

/// Building the router and its layers; binding; running.
pub mod app;
/// Operator commands: users and sessions.
pub mod cli;
/// Settings from the environment, validated; the documented variable table.
pub mod config;
/// The cookie policy: one place sets and clears every cookie.
pub mod cookies;
/// The error type that maps to HTTP status and `{"detail"}` bodies.
pub mod error;
/// Identity providers behind one trait: the embedded one, access tokens, JWKS.
pub mod identity;
/// The routes, one module per endpoint family.
pub mod routes;
/// Secrets generated into DATA_DIR on first start.
pub mod secrets;
/// The security layer: client IP, CORS, Origin/Fetch-Metadata/CSRF, rate limits, headers.
pub mod security;
/// The HTTP/1 accept loop with header timeouts and graceful shutdown.
pub mod server;
/// State behind traits: rate-limit counters (memory now; shared stores later).
pub mod store;
/// Logging setup.
pub mod telemetry;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
