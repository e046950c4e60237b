//! The local session authority: sessions and refresh-token chains in the
//! database, access tokens signed with our own key, revocations in the
//! revocation store.
//!
//! Refresh tokens form a chain per session: the successor of token `t` is
//! `HMAC(refresh_key, t)`. Presenting a token that was already rotated
//! within `REFRESH_REUSE_INTERVAL_SECONDS` (two tabs refreshing at once)
//! returns the current head of the chain, so both tabs end up with the same
//! pair; presenting it later is treated as theft and ends the session.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sqlx::{SqliteConnection, SqlitePool};

use super::tokens::{AUDIENCE, AccessClaims, AccessTokens};
use super::{
    AuthError, ClientInfo, EndSessions, IssuedSession, SessionAuthority, SessionInfo, SessionRef,
    User,
};
use crate::accounts::{UserRow, rfc3339, user_columns};
use crate::limits::coarse_ip;
use crate::secrets::{hash_token, random_token};
use crate::store::revocations::RevocationStore;
use crate::unix_now;

/// How far along a chain a grace-window replay may walk to find its head.
const MAX_CHAIN_WALK: usize = 16;
/// Refresh tokens longer than this are refused before any lookup.
const MAX_REFRESH_TOKEN_LEN: usize = 128;

pub struct LocalAuthority {
    pool: SqlitePool,
    tokens: Arc<AccessTokens>,
    refresh_mac: Hmac<Sha256>,
    revocations: Arc<dyn RevocationStore>,
    refresh_ttl: u64,
    reuse_interval: u64,
}

/// What the local authority needs besides its stores.
pub struct LocalConfig {
    pub refresh_key: Vec<u8>,
    /// How long a session lives without use (the refresh cookie's life).
    pub refresh_ttl: u64,
    pub reuse_interval: u64,
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// session id, created_at, rotated_at (ms), user id, session revoked_at.
type RefreshRow = (String, i64, Option<i64>, String, Option<i64>);
#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    created_at: i64,
    last_used_at: i64,
    user_agent: Option<String>,
    ip: Option<String>,
}

impl From<SessionRow> for SessionInfo {
    fn from(row: SessionRow) -> Self {
        SessionInfo {
            id: row.id,
            created_at: rfc3339(row.created_at),
            last_used_at: rfc3339(row.last_used_at),
            user_agent: row.user_agent,
            ip: row.ip,
        }
    }
}

/// A session with its user's email (the operator's listing).
#[derive(sqlx::FromRow)]
struct ListedSession {
    email: String,
    #[sqlx(flatten)]
    session: SessionRow,
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl LocalAuthority {
    pub fn new(
        pool: SqlitePool,
        tokens: Arc<AccessTokens>,
        revocations: Arc<dyn RevocationStore>,
        config: LocalConfig,
    ) -> anyhow::Result<Self> {
        let refresh_mac = Hmac::<Sha256>::new_from_slice(&config.refresh_key)
            .map_err(|_| anyhow::anyhow!("bad refresh key"))?;
        Ok(Self {
            pool,
            tokens,
            refresh_mac,
            revocations,
            refresh_ttl: config.refresh_ttl,
            reuse_interval: config.reuse_interval,
        })
    }

    /// Opens a session for one of our accounts (a sign-in method has
    /// proven who the person is).
    pub async fn open(
        &self,
        user_id: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        let now = unix_now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let user = Self::user_in(&mut tx, user_id).await?;
        let session_id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent, ip)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&session_id)
        .bind(&user.id)
        .bind(now as i64)
        .bind(now as i64)
        .bind(client.user_agent.as_deref().map(|ua| truncate(ua, 256)))
        .bind(coarse_ip(client.ip))
        .execute(&mut *tx)
        .await?;
        let refresh_token = random_token(32);
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES (?, ?, ?)",
        )
        .bind(hash_token(&refresh_token))
        .bind(&session_id)
        .bind(now as i64)
        .execute(&mut *tx)
        .await?;
        let (access_token, expires_at) =
            self.access_token_for(&user, &session_id, &refresh_token, now)?;
        tx.commit().await?;
        Ok(IssuedSession {
            user,
            session_id,
            access_token,
            refresh_token,
            expires_at,
        })
    }

    /// Deletes long-dead sessions (their refresh tokens go with them).
    pub async fn prune(&self) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE last_used_at < ?")
            .bind(unix_now() as i64 - self.refresh_ttl as i64 - 86_400)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn successor(&self, token: &str) -> String {
        let mut mac = self.refresh_mac.clone();
        mac.update(token.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    /// The access token that goes with refresh token `refresh` (issued at
    /// `issued_at`): a function of the pair, so a grace-window replay gets
    /// byte-for-byte the same access token (Ed25519 is deterministic).
    fn access_token_for(
        &self,
        user: &User,
        session_id: &str,
        refresh: &str,
        issued_at: u64,
    ) -> Result<(String, u64), AuthError> {
        let exp = issued_at + self.tokens.ttl();
        let claims = AccessClaims {
            iss: self.tokens.issuer().to_string(),
            aud: AUDIENCE.to_string(),
            sub: user.id.clone(),
            email: user.email.clone(),
            sid: session_id.to_string(),
            jti: hash_token(&format!("jti:{refresh}"))[..22].to_string(),
            iat: issued_at,
            exp,
            nbf: None,
            name: user.name.clone(),
            avatar_url: user.avatar_url.clone(),
            created_at: user.created_at.clone(),
        };
        let token = self
            .tokens
            .sign(&claims)
            .map_err(|e| AuthError::Internal(e.into()))?;
        Ok((token, exp))
    }

    async fn user_in(conn: &mut SqliteConnection, user_id: &str) -> Result<User, AuthError> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?"
        ))
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(User::from).ok_or(AuthError::Rejected)
    }

    async fn refresh_row(
        conn: &mut SqliteConnection,
        token: &str,
    ) -> Result<Option<RefreshRow>, AuthError> {
        Ok(sqlx::query_as(
            "SELECT rt.session_id, rt.created_at, COALESCE(rt.rotated_at_ms, rt.rotated_at * 1000),
                    s.user_id, s.revoked_at
             FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
             WHERE rt.token_hash = ?",
        )
        .bind(hash_token(token))
        .fetch_optional(&mut *conn)
        .await?)
    }

    async fn revoke_now(&self, session_ids: Vec<String>) -> Result<Vec<String>, AuthError> {
        self.revocations.revoke(&session_ids).await?;
        Ok(session_ids)
    }

    /// Every active session, with its user's email, newest first (the
    /// operator's `chronos session list`).
    pub async fn list_all_sessions(&self) -> Result<Vec<(String, SessionInfo)>, AuthError> {
        let horizon = unix_now() as i64 - self.refresh_ttl as i64;
        let rows: Vec<ListedSession> = sqlx::query_as(
            "SELECT s.id, u.email, s.created_at, s.last_used_at, s.user_agent, s.ip
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.revoked_at IS NULL AND s.last_used_at > ?
                 ORDER BY s.created_at DESC, s.id",
        )
        .bind(horizon)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|row| !self.revocations.is_revoked(&row.session.id))
            .map(|row| (row.email, SessionInfo::from(row.session)))
            .collect())
    }
}

#[async_trait]
impl SessionAuthority for LocalAuthority {
    async fn refresh(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        if refresh_token.len() > MAX_REFRESH_TOKEN_LEN {
            return Err(AuthError::Rejected);
        }
        let now = unix_now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some((session_id, created_at, rotated_at, user_id, revoked_at)) =
            Self::refresh_row(&mut tx, refresh_token).await?
        else {
            return Err(AuthError::Rejected);
        };
        if revoked_at.is_some()
            || created_at + (self.refresh_ttl as i64) <= now as i64
            || self.revocations.is_revoked(&session_id)
        {
            return Err(AuthError::Rejected);
        }
        let (head, head_created) = match rotated_at {
            None => {
                let next = self.successor(refresh_token);
                let claimed = sqlx::query(
                    "UPDATE refresh_tokens SET rotated_at = ?, rotated_at_ms = ?
                     WHERE token_hash = ? AND rotated_at IS NULL",
                )
                .bind(now as i64)
                .bind(unix_now_ms())
                .bind(hash_token(refresh_token))
                .execute(&mut *tx)
                .await?;
                if claimed.rows_affected() != 1 {
                    return Err(AuthError::Rejected);
                }
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES (?, ?, ?)",
                )
                .bind(hash_token(&next))
                .bind(&session_id)
                .bind(now as i64)
                .execute(&mut *tx)
                .await?;
                (next, now)
            }
            // Within the grace window (strictly: an interval of 0 means none).
            Some(rotated_ms) if unix_now_ms() - rotated_ms < self.reuse_interval as i64 * 1000 => {
                // A concurrent tab: hand out the chain's current head.
                let mut candidate = self.successor(refresh_token);
                let mut found = None;
                for _ in 0..MAX_CHAIN_WALK {
                    match Self::refresh_row(&mut tx, &candidate).await? {
                        Some((sid, created, None, _, _)) if sid == session_id => {
                            found = Some((candidate, created as u64));
                            break;
                        }
                        Some((sid, _, Some(_), _, _)) if sid == session_id => {
                            candidate = self.successor(&candidate);
                        }
                        _ => break,
                    }
                }
                found.ok_or(AuthError::Rejected)?
            }
            Some(_) => {
                // Replayed after the grace window: assume theft, end the session.
                sqlx::query(
                    "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                )
                .bind(now as i64)
                .bind(&session_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                self.revoke_now(vec![session_id.clone()]).await?;
                tracing::warn!(session_id = %session_id, "refresh token reuse detected; session ended");
                return Err(AuthError::Rejected);
            }
        };
        sqlx::query("UPDATE sessions SET last_used_at = ?, user_agent = COALESCE(?, user_agent), ip = ? WHERE id = ?")
            .bind(now as i64)
            .bind(client.user_agent.as_deref().map(|ua| truncate(ua, 256)))
            .bind(coarse_ip(client.ip))
            .bind(&session_id)
            .execute(&mut *tx)
            .await?;
        let user = Self::user_in(&mut tx, &user_id).await?;
        let (access_token, expires_at) =
            self.access_token_for(&user, &session_id, &head, head_created)?;
        tx.commit().await?;
        Ok(IssuedSession {
            user,
            session_id,
            access_token,
            refresh_token: head,
            expires_at,
        })
    }

    async fn verify_access_token(&self, token: &str) -> Result<Arc<AccessClaims>, AuthError> {
        self.tokens
            .verify(token, unix_now())
            .map_err(|_| AuthError::Rejected)
    }

    fn is_revoked(&self, session_id: &str) -> bool {
        self.revocations.is_revoked(session_id)
    }

    async fn session_of_access_token(&self, token: &str) -> Option<SessionRef> {
        self.tokens
            .verify_ignoring_expiry(token)
            .map(|claims| SessionRef {
                user_id: claims.sub.clone(),
                session_id: claims.sid.clone(),
            })
    }

    async fn session_of_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<SessionRef>, AuthError> {
        if refresh_token.len() > MAX_REFRESH_TOKEN_LEN {
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await?;
        Ok(Self::refresh_row(&mut conn, refresh_token).await?.map(
            |(session_id, _, _, user_id, _)| SessionRef {
                user_id,
                session_id,
            },
        ))
    }

    async fn end_sessions(&self, which: EndSessions) -> Result<Vec<String>, AuthError> {
        let now = unix_now() as i64;
        let ended: Vec<String> = match &which {
            EndSessions::Any { session_id } => {
                sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id",
                )
                .bind(now)
                .bind(session_id)
                .fetch_all(&self.pool)
                .await?
            }
            EndSessions::OwnedBy { user_id, session_id } => sqlx::query_scalar(
                "UPDATE sessions SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL RETURNING id",
            )
            .bind(now)
            .bind(session_id)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?,
            EndSessions::AllOf { user_id } => sqlx::query_scalar(
                "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL RETURNING id",
            )
            .bind(now)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?,
        };
        self.revoke_now(ended).await
    }

    async fn list_sessions(&self, user_id: &str) -> Result<Vec<SessionInfo>, AuthError> {
        let horizon = unix_now() as i64 - self.refresh_ttl as i64;
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT id, created_at, last_used_at, user_agent, ip FROM sessions
             WHERE user_id = ? AND revoked_at IS NULL AND last_used_at > ?
             ORDER BY created_at DESC, id",
        )
        .bind(user_id)
        .bind(horizon)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|row| !self.revocations.is_revoked(&row.id))
            .map(SessionInfo::from)
            .collect())
    }

    fn jwks(&self) -> Arc<str> {
        self.tokens.jwks()
    }
}
