//! Identity providers behind one trait. The BFF routes drive the same
//! OAuth-shaped flow whichever provider is configured:
//!
//! 1. `authorize_url` — where the browser signs in, with a PKCE challenge;
//! 2. `exchange_code` — the one-time code + verifier become a session;
//! 3. `verify_access_token` — on every request, locally (no network);
//! 4. `refresh` — rotate the refresh token;
//! 5. `end_sessions` / `list_sessions` — logout and "log out everywhere".
//!
//! The embedded provider implements it over SQLite; Supabase Auth maps it
//! onto `/authorize`, `/token?grant_type=pkce|refresh_token`, JWKS and
//! `/logout?scope=`.

pub mod embedded;
pub mod tokens;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

pub use tokens::AccessClaims;

/// The user object of the API (`{"id", "email", "name", "avatar_url", "created_at"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

impl User {
    pub fn from_claims(claims: &AccessClaims) -> Self {
        Self {
            id: claims.sub.clone(),
            email: claims.email.clone(),
            name: claims.name.clone(),
            avatar_url: claims.avatar_url.clone(),
            created_at: claims.created_at.clone(),
        }
    }
}

/// What the provider hands back when a session starts or refreshes.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub user: User,
    pub session_id: String,
    pub access_token: String,
    pub refresh_token: String,
    /// The access token's `exp`, Unix seconds.
    pub expires_at: u64,
}

/// Who is asking, recorded with a new session.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

/// One active session, as `GET /auth/sessions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: String,
    pub last_used_at: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Which sessions to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndSessions {
    /// One session, if it belongs to this user.
    One { user_id: String, session_id: String },
    /// Every session of the user.
    AllOf { user_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// The code, verifier, refresh token or credentials were not accepted.
    #[error("rejected")]
    Rejected,
    /// The provider could not be reached or answered nonsense (502).
    #[error("identity provider unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// Our own failure (500).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for IdpError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// Where the browser goes to sign in. `redirect_uri` has been
    /// allow-listed; `code_challenge` is the PKCE S256 challenge.
    fn authorize_url(&self, redirect_uri: &str, code_challenge: &str) -> String;

    /// Exchanges a one-time code (bound to `code_verifier` and
    /// `redirect_uri`) for a new session.
    async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, IdpError>;

    /// Rotates a refresh token.
    async fn refresh(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, IdpError>;

    /// Checks an access token's signature and expiry (not revocation).
    fn verify_access_token(&self, token: &str) -> Result<Arc<AccessClaims>, IdpError>;

    /// The session and user a refresh token belongs to, if it is one of ours
    /// (used by logout when the access token is gone or expired).
    async fn owner_of_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<(String, String)>, IdpError>;

    /// Ends sessions: they can no longer refresh. Returns the ids ended
    /// (empty when nothing matched, e.g. someone else's session id).
    async fn end_sessions(&self, which: EndSessions) -> Result<Vec<String>, IdpError>;

    /// The user's active sessions, newest first.
    async fn list_sessions(&self, user_id: &str) -> Result<Vec<SessionInfo>, IdpError>;

    /// The JWKS that verifies this provider's access tokens.
    fn jwks(&self) -> Arc<str>;
}

/// RFC 3339 for a Unix time.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}
