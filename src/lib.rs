//! Chronos auth: a backend-for-frontend session server.
//!
//! The modules in the order a request meets them, then what serves it and
//! what builds it all.

/// 1. The HTTP/1 accept loop: header timeouts, keep-alive, graceful shutdown.
pub mod server;

/// 2. The security layer every request passes: the envelope (request id,
/// bounds, CORS, the guard's Origin, Fetch Metadata, rate limit and CSRF
/// checks, headers, the access log), client IP, redirects.
pub mod security;

/// 3. The routes, one module per endpoint family, and the state they read.
pub mod routes;

/// 3b. The backend-for-frontend proxy: the app's API calls, forwarded to
/// its upstreams with the session's token, streamed both ways.
pub mod proxy;

/// 4. What the pages and routes share: HTML pages, query strings.
pub mod web;

/// 5. The cookie policy: one place sets and clears every cookie.
pub mod cookies;

/// 6. The error type that maps to HTTP status and `{"detail"}` bodies.
pub mod error;

/// 7. The session authority: sessions, access and refresh tokens, revocation.
pub mod authority;

/// Passkeys and TOTP: the embedded accounts' credentials beyond a password.
pub mod credentials;
/// 8. Sign-in methods in front of the authority: the password page, OpenID
/// Connect, and the identity providers' HTTP client.
pub mod signin;

/// 9. Supabase Auth as session authority and sign-in method.
pub mod supabase;

/// 9b. The token vault: connected accounts, provider tokens for the app's
/// services (RFC 8693), the provider's security events.
pub mod vault;

/// 10. Everything that outlives a request, and the only module with SQL:
/// repositories on SQLite or PostgreSQL, counters and news through Redis.
pub mod store;

/// Rate-limit grammar, client keys, coarse addresses (the vocabulary the
/// security layer and the stores share).
pub mod limits;

/// Secrets generated into DATA_DIR; random tokens and their hashes; PKCE.
pub mod secrets;

/// Prometheus counters, and the exporter on METRICS_BIND.
pub mod metrics;

/// Logging: logfmt or JSON lines with the request id, queued to a writer thread.
pub mod telemetry;

/// Settings from the environment, one section per concern, validated.
pub mod config;

/// Building stores, identity, state and the service; binding; background tasks.
pub mod app;

/// Operator commands: users, sessions, migrations.
pub mod cli;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
