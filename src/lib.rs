//! Chronos auth: a backend-for-frontend session server.
//!
//! Reading the modules in this order is a tour of a request's life, then of
//! what it is served from.

/// Building stores, identity, state and the service; binding; background tasks.
pub mod app;
/// The session authority: sessions, access and refresh tokens, revocation.
pub mod authority;
/// Operator commands: users and sessions.
pub mod cli;
/// Settings from the environment, one section per concern, validated.
pub mod config;
/// The cookie policy: one place sets and clears every cookie.
pub mod cookies;
/// The error type that maps to HTTP status and `{"detail"}` bodies.
pub mod error;
/// The HTML shell of the few pages we render, escaping, CSP nonces.
pub mod html;
/// Rate-limit grammar, client keys, coarse addresses (shared vocabulary).
pub mod limits;
/// Prometheus counters, and the exporter on METRICS_BIND.
pub mod metrics;
/// Query strings, read leniently.
pub mod query;
/// The routes, one module per endpoint family, as the service the envelope wraps.
pub mod routes;
/// Secrets generated into DATA_DIR; random tokens and their hashes; PKCE.
pub mod secrets;
/// The security layer: client IP, CORS, Origin/Fetch-Metadata/CSRF, rate limits, headers.
pub mod security;
/// The HTTP/1 accept loop with header timeouts and graceful shutdown.
pub mod server;
/// Sign-in methods in front of the authority: the password page, OpenID Connect.
pub mod signin;
/// What every route reads: settings, security parts, authority, sign-in method, flows.
pub mod state;
/// State behind traits: rate-limit counters, revocations, sign-in flows.
pub mod store;
/// Supabase Auth as session authority and sign-in method.
pub mod supabase;
/// Logging: logfmt or JSON lines with the request id, queued to a writer thread.
pub mod telemetry;
/// Calls to identity providers, with timeouts and bounded answers.
pub mod upstream;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
