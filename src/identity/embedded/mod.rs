//! The embedded identity provider: accounts, one-time codes, sessions and
//! refresh-token chains in SQLite; access tokens signed locally.
//!
//! Refresh tokens form a chain per session: the successor of token `t` is
//! `HMAC(refresh_key, t)`. Presenting a token that was already rotated
//! within `REFRESH_REUSE_INTERVAL_SECONDS` (two tabs refreshing at once)
//! returns the current head of the chain, so both tabs end up with the same
//! pair; presenting it later is treated as theft and ends the session.

pub mod accounts;
pub mod passwords;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sqlx::{SqliteConnection, SqlitePool};
use subtle::ConstantTimeEq;

use super::tokens::{AUDIENCE, AccessClaims, AccessTokens};
use super::{
    ClientInfo, EndSessions, IdentityProvider, IdpError, IssuedSession, SessionInfo, User,
    pkce_challenge, rfc3339,
};
use crate::secrets::{hash_token, random_token};
use crate::store::revocations::RevocationStore;
use crate::unix_now;
use accounts::UserRow;
pub use accounts::{AccountError, Accounts};
pub use passwords::Passwords;

/// One-time codes live this long.
pub const CODE_TTL_SECONDS: u64 = 300;
/// How far along a chain a grace-window replay may walk to find its head.
const MAX_CHAIN_WALK: usize = 16;

pub struct EmbeddedIdp {
    pool: SqlitePool,
    pub accounts: Accounts,
    tokens: Arc<AccessTokens>,
    refresh_mac: Hmac<Sha256>,
    revocations: Arc<dyn RevocationStore>,
    /// `PUBLIC_URL/auth/signin`.
    signin_url: String,
    refresh_ttl: u64,
    reuse_interval: u64,
}

/// Settings the provider needs.
pub struct EmbeddedConfig {
    pub public_url: String,
    pub refresh_key: Vec<u8>,
    pub refresh_ttl: u64,
    pub reuse_interval: u64,
}

/// A coarse network for display: IPv4 /24, IPv6 /48.
pub fn coarse_ip(ip: IpAddr) -> String {
    match crate::security::client_ip::canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// session id, created_at, rotated_at (ms), user id, session revoked_at.
type RefreshRow = (String, i64, Option<i64>, String, Option<i64>);

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl EmbeddedIdp {
    pub fn new(
        pool: SqlitePool,
        passwords: Passwords,
        tokens: Arc<AccessTokens>,
        revocations: Arc<dyn RevocationStore>,
        config: EmbeddedConfig,
    ) -> anyhow::Result<Self> {
        let refresh_mac = Hmac::<Sha256>::new_from_slice(&config.refresh_key)
            .map_err(|_| anyhow::anyhow!("bad refresh key"))?;
        Ok(Self {
            accounts: Accounts::new(pool.clone(), passwords),
            pool,
            tokens,
            refresh_mac,
            revocations,
            signin_url: format!("{}/auth/signin", config.public_url),
            refresh_ttl: config.refresh_ttl,
            reuse_interval: config.reuse_interval,
        })
    }

    /// The IdP half of the flow: after the sign-in page accepted the
    /// password, a one-time code for `redirect_uri`, bound to the challenge.
    pub async fn issue_code(
        &self,
        user_id: &str,
        code_challenge: &str,
        redirect_uri: &str,
    ) -> anyhow::Result<String> {
        let code = random_token(32);
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, user_id, code_challenge, redirect_uri, expires_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(hash_token(&code))
        .bind(user_id)
        .bind(code_challenge)
        .bind(redirect_uri)
        .bind((unix_now() + CODE_TTL_SECONDS) as i64)
        .execute(&self.pool)
        .await?;
        Ok(code)
    }

    /// Ends every session of a user and deletes the account.
    pub async fn remove_user(&self, user_id: &str) -> anyhow::Result<bool> {
        self.end_sessions(EndSessions::AllOf {
            user_id: user_id.to_string(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.accounts.delete(user_id).await
    }

    /// Deletes expired codes and long-dead sessions.
    pub async fn prune(&self) -> anyhow::Result<()> {
        let now = unix_now() as i64;
        sqlx::query("DELETE FROM auth_codes WHERE expires_at < ?")
            .bind(now - 3600)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE last_used_at < ?")
            .bind(now - self.refresh_ttl as i64 - 86_400)
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
    ) -> Result<(String, u64), IdpError> {
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
            .map_err(|e| IdpError::Internal(e.into()))?;
        Ok((token, exp))
    }

    async fn user_in(conn: &mut SqliteConnection, user_id: &str) -> Result<User, IdpError> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, email, name, avatar_url, created_at FROM users WHERE id = ?",
        )
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(User::from).ok_or(IdpError::Rejected)
    }

    async fn refresh_row(
        conn: &mut SqliteConnection,
        token: &str,
    ) -> Result<Option<RefreshRow>, IdpError> {
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

    async fn revoke_now(&self, session_ids: Vec<String>) -> Result<Vec<String>, IdpError> {
        self.revocations.revoke(&session_ids).await?;
        Ok(session_ids)
    }
}

#[async_trait]
impl IdentityProvider for EmbeddedIdp {
    fn authorize_url(&self, redirect_uri: &str, code_challenge: &str) -> String {
        let mut url = match url::Url::parse(&self.signin_url) {
            Ok(url) => url,
            Err(_) => return self.signin_url.clone(),
        };
        url.query_pairs_mut()
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, IdpError> {
        let now = unix_now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Burn the code first: whatever happens next, it is used.
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "UPDATE auth_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL
             RETURNING user_id, code_challenge, redirect_uri, expires_at",
        )
        .bind(now as i64)
        .bind(hash_token(code))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, challenge, bound_redirect, expires_at)) = row else {
            // Unknown, or a replay: a replayed code ends the session it made.
            let replayed: Option<Option<String>> =
                sqlx::query_scalar("SELECT session_id FROM auth_codes WHERE code_hash = ?")
                    .bind(hash_token(code))
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.commit().await?;
            if let Some(Some(session_id)) = replayed {
                self.end_sessions(EndSessions::One {
                    user_id: String::new(),
                    session_id,
                })
                .await
                .ok();
            }
            return Err(IdpError::Rejected);
        };
        let pkce_ok = bool::from(
            pkce_challenge(code_verifier)
                .as_bytes()
                .ct_eq(challenge.as_bytes()),
        );
        if expires_at <= now as i64 || !pkce_ok || bound_redirect != redirect_uri {
            tx.commit().await?;
            return Err(IdpError::Rejected);
        }
        let user = Self::user_in(&mut tx, &user_id).await?;
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
        sqlx::query("UPDATE auth_codes SET session_id = ? WHERE code_hash = ?")
            .bind(&session_id)
            .bind(hash_token(code))
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

    async fn refresh(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, IdpError> {
        if refresh_token.len() > 128 {
            return Err(IdpError::Rejected);
        }
        let now = unix_now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some((session_id, created_at, rotated_at, user_id, revoked_at)) =
            Self::refresh_row(&mut tx, refresh_token).await?
        else {
            return Err(IdpError::Rejected);
        };
        if revoked_at.is_some()
            || created_at + (self.refresh_ttl as i64) <= now as i64
            || self.revocations.is_revoked(&session_id)
        {
            return Err(IdpError::Rejected);
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
                    return Err(IdpError::Rejected);
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
                found.ok_or(IdpError::Rejected)?
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
                return Err(IdpError::Rejected);
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

    fn verify_access_token(&self, token: &str) -> Result<Arc<AccessClaims>, IdpError> {
        self.tokens
            .verify(token, unix_now())
            .map_err(|_| IdpError::Rejected)
    }

    async fn owner_of_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<(String, String)>, IdpError> {
        if refresh_token.len() > 128 {
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await?;
        Ok(Self::refresh_row(&mut conn, refresh_token)
            .await?
            .map(|(session_id, _, _, user_id, _)| (user_id, session_id)))
    }

    async fn end_sessions(&self, which: EndSessions) -> Result<Vec<String>, IdpError> {
        let now = unix_now() as i64;
        let ended: Vec<String> = match &which {
            EndSessions::One { user_id, session_id } if user_id.is_empty() => {
                // Internal use (code replay): the session, whoever owns it.
                sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id",
                )
                .bind(now)
                .bind(session_id)
                .fetch_all(&self.pool)
                .await?
            }
            EndSessions::One { user_id, session_id } => sqlx::query_scalar(
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

    async fn list_sessions(&self, user_id: &str) -> Result<Vec<SessionInfo>, IdpError> {
        let horizon = unix_now() as i64 - self.refresh_ttl as i64;
        let rows: Vec<(String, i64, i64, Option<String>, Option<String>)> = sqlx::query_as(
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
            .filter(|(id, ..)| !self.revocations.is_revoked(id))
            .map(|(id, created, used, user_agent, ip)| SessionInfo {
                id,
                created_at: rfc3339(created),
                last_used_at: rfc3339(used),
                user_agent,
                ip,
            })
            .collect())
    }

    fn jwks(&self) -> Arc<str> {
        self.tokens.jwks()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_shown_coarsely() {
        assert_eq!(coarse_ip("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(
            coarse_ip("2001:db8:abcd:12::1".parse().unwrap()),
            "2001:db8:abcd::/48"
        );
        assert_eq!(coarse_ip("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.0/24");
    }
}
