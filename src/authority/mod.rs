//! The session authority: who holds a session, and the tokens that prove
//! it. It issues access and refresh tokens, rotates refresh families,
//! verifies access tokens on every request (locally, no network), ends
//! sessions (revocation) and lists them.
//!
//! Sign-in methods sit in front of it: they prove who a person is and then
//! ask the authority for a session. The local authority
//! ([`local::LocalAuthority`]) keeps our own sessions in the database;
//! Supabase Auth is an authority of its own.

pub mod cache;
mod held;
pub mod local;
pub mod tokens;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;

use crate::store::revocations::RevocationStore;
use crate::store::sql::StoreError;

pub use crate::store::accounts::User;
pub use crate::store::ids::{SessionId, UserId};
pub use crate::store::sessions::{EndSessions, SessionInfo, SessionRef};
pub use tokens::AccessClaims;

/// `SESSION_MAX_LIFETIME` (seconds), as every authority applies it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lifetime(pub Option<u64>);

impl Lifetime {
    /// Sessions begun after this (Unix s) are within the lifetime.
    pub fn begun_since(self) -> i64 {
        match self.0 {
            Some(max) => crate::unix_now() as i64 - max as i64,
            None => i64::MIN,
        }
    }

    /// Whether a session begun at `begun_at` (Unix s) is within it.
    pub fn holds(self, begun_at: u64) -> bool {
        self.0.is_none_or(|max| begun_at + max > crate::unix_now())
    }

    /// `exp` capped at the session's end.
    pub fn cap(self, exp: u64, begun_at: u64) -> u64 {
        self.0.map_or(exp, |max| exp.min(begun_at + max))
    }
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

/// What the authority hands back when a session starts or refreshes.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub user: User,
    pub session_id: SessionId,
    pub access_token: String,
    pub refresh_token: String,
    /// The access token's `exp`, Unix seconds.
    pub expires_at: u64,
    /// The provider's tokens for the account the person signed in with,
    /// when they are kept (`PROVIDER_TOKENS=keep`): the vault stores them.
    pub provider_grant: Option<ProviderGrant>,
}

/// What a provider granted for one of its accounts: who it is and its
/// tokens, in clear until the vault seals them.
#[derive(Clone)]
pub struct ProviderGrant {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub access_token: String,
    /// Seconds; `None`: the provider did not say.
    pub expires_in: Option<u64>,
    pub refresh_token: Option<String>,
    /// Granted, space-separated.
    pub scope: Option<String>,
}

impl std::fmt::Debug for ProviderGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderGrant")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Who is asking, recorded with a session.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

/// Why the authority (or a sign-in method) refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The code, token or credentials were not accepted.
    #[error("rejected")]
    Rejected,
    /// A provider we depend on is unreachable or answered nonsense (502).
    #[error("provider unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// A provider we depend on asks us to slow down (503 with `Retry-After`).
    #[error("provider busy; retry in {retry_after} s")]
    Busy { retry_after: u64 },
    /// Our own failure (500).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

#[async_trait]
pub trait SessionAuthority: Send + Sync {
    /// Rotates a refresh token into a new pair.
    async fn refresh(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError>;

    /// An access token's signature, issuer, audience and dates (not
    /// revocation). Called on every request: answered from memory once the
    /// token has been seen.
    async fn verify_access_token(&self, token: &str) -> Result<Arc<AccessClaims>, AuthError>;

    /// The revocations this authority's sessions are checked against.
    fn revocations(&self) -> &dyn RevocationStore;

    /// Whether the session has been ended. No I/O.
    fn is_revoked(&self, session_id: &str) -> bool {
        self.revocations().is_revoked(session_id)
    }

    /// Whether a verified access token must be refused: its session ended,
    /// or its user's sessions of its time (a global logout the database
    /// could not take yet). No I/O.
    fn refuses(&self, claims: &AccessClaims) -> bool {
        self.revocations()
            .refuses(&claims.sid, &claims.sub, claims.iat)
    }

    /// A valid access token of a session that has not ended.
    async fn authenticate(&self, token: &str) -> Result<Arc<AccessClaims>, AuthError> {
        let claims = self.verify_access_token(token).await?;
        if self.refuses(&claims) {
            return Err(AuthError::Rejected);
        }
        Ok(claims)
    }

    /// The session an access token was issued for, its signature checked
    /// but not its expiry (an expired token still names its session: what
    /// the CSRF binding of a refresh needs).
    async fn session_of_access_token(&self, token: &str) -> Option<SessionRef>;

    /// The session a refresh token belongs to, if it is one of ours.
    async fn session_of_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<SessionRef>, AuthError>;

    /// Ends sessions: they can no longer refresh, and their access tokens
    /// are refused from now on. Returns the ids ended (empty when nothing
    /// matched, e.g. someone else's session id).
    async fn end_sessions(&self, which: EndSessions) -> Result<Vec<SessionId>, AuthError>;

    /// Whether the session still lives: not ended, not idle past its
    /// refresh token's life (what a DBSC refresh asks before renewing a
    /// bound cookie). One read.
    async fn is_live(&self, session_id: &str) -> Result<bool, AuthError>;

    /// The user's active sessions, newest first.
    async fn list_sessions(&self, user_id: &UserId) -> Result<Vec<SessionInfo>, AuthError>;

    /// The JWKS that verifies this authority's access tokens.
    fn jwks(&self) -> Arc<str>;

    /// An access token a refresh replaced: no longer worth remembering
    /// (it still verifies until it expires, from scratch).
    fn superseded(&self, access_token: &str);

    /// Forgets remembered access tokens that expired by `now`.
    fn sweep_verified(&self, now: u64);
}
