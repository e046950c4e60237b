//! The local session authority: one row per session in the database
//! ([`crate::store::sessions`]), access tokens signed with our own key,
//! revocations in the revocation store.
//!
//! Refresh tokens describe themselves: `base64url(2 ‖ session id ‖ counter
//! ‖ MAC)`, the MAC an HMAC-SHA256 (truncated to 128 bits) under a key in
//! DATA_DIR. The session row keeps the current counter, so one conditional
//! update decides everything a refresh can be:
//!
//! - the current token: the counter moves on, a new pair is issued;
//! - the previous one, within `REFRESH_REUSE_INTERVAL_SECONDS` of its
//!   rotation (two tabs refreshing at once): the current pair again, byte
//!   for byte (Ed25519 is deterministic and the pair's times are stored);
//! - any older token, however long after: theft; the session ends.
//!
//! Sessions from before this scheme hold chain tokens (the successor of `t`
//! is `HMAC(key, t)`, kept hashed in `refresh_tokens`); their next refresh
//! moves them over, and their old tokens are still recognised.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::held::HeldEnds;
use super::tokens::{AUDIENCE, AccessClaims, AccessTokens};
use super::{
    AuthError, ClientInfo, EndSessions, IssuedSession, Lifetime, SessionAuthority, SessionId,
    SessionInfo, SessionRef, UserId,
};
use crate::limits::coarse_ip;
use crate::metrics::Metrics;
use crate::secrets::hash_token;
use crate::store::database::{Database, is_unavailable};
use crate::store::revocations::RevocationStore;
use crate::store::sessions::{NewSession, Pair, Refresh, Refreshed, Rules, Sessions};
use crate::unix_now;

/// Refresh tokens longer than this are refused before any lookup.
const MAX_REFRESH_TOKEN_LEN: usize = 128;
/// The version byte of self-describing refresh tokens.
const V2: u8 = 2;
/// version, session id (16), counter (8), MAC (16).
const V2_LEN: usize = 1 + 16 + 8 + 16;
pub struct LocalAuthority {
    sessions: Sessions,
    /// Ends the database could not store (it was unreachable), retried
    /// until stored; their sessions are refused meanwhile.
    unstored: Mutex<Vec<EndSessions>>,
    /// `unstored`, on disk; `None` in an operator's command, which holds
    /// nothing (it fails and says so) and leaves the server's files alone.
    held: Option<HeldEnds>,
    tokens: Arc<AccessTokens>,
    refresh_mac: Hmac<Sha256>,
    revocations: Arc<dyn RevocationStore>,
    refresh_ttl: u64,
    /// `SESSION_MAX_LIFETIME`: how long a session lives from sign-in.
    lifetime: Lifetime,
    metrics: Metrics,
}

/// What the local authority needs besides its stores.
pub struct LocalConfig {
    pub refresh_key: Vec<u8>,
    /// How long a refresh token lives unused (`SESSION_IDLE_TIMEOUT`).
    pub refresh_ttl: u64,
    /// How long a session lives from sign-in (`SESSION_MAX_LIFETIME`).
    pub max_lifetime: Option<u64>,
    pub reuse_interval: u64,
    pub metrics: Metrics,
    /// Where session ends the database could not take are kept until stored.
    pub data_dir: std::path::PathBuf,
    /// Whether ends the database could not take are held until stored (a
    /// server), or the call fails (an operator's command).
    pub hold_ends: bool,
}

/// The sessions `ends` name (a user's every session is unknown without
/// the database).
fn known_sessions(ends: &[EndSessions]) -> Vec<SessionId> {
    ends.iter()
        .filter_map(|which| match which {
            EndSessions::Any { session_id } | EndSessions::OwnedBy { session_id, .. } => {
                Some(session_id.clone())
            }
            EndSessions::AllOf { .. } | EndSessions::AllOfUntil { .. } => None,
        })
        .collect()
}

/// Refuses at once what held ends name: their sessions, and for a user's
/// every session, the tokens issued until the end.
fn refuse_held(revocations: &dyn RevocationStore, ends: &[EndSessions]) {
    revocations.refuse_now(&known_sessions(ends));
    for which in ends {
        if let EndSessions::AllOfUntil { user_id, until } = which {
            revocations.refuse_user_now(user_id, *until as u64);
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

impl LocalAuthority {
    pub fn new(
        db: Database,
        tokens: Arc<AccessTokens>,
        revocations: Arc<dyn RevocationStore>,
        config: LocalConfig,
    ) -> anyhow::Result<Self> {
        let refresh_mac = Hmac::<Sha256>::new_from_slice(&config.refresh_key)
            .map_err(|_| anyhow::anyhow!("bad refresh key"))?;
        let sessions = Sessions::new(
            db,
            Rules {
                refresh_ttl: config.refresh_ttl as i64,
                reuse_interval_ms: config.reuse_interval as i64 * 1000,
            },
        );
        let (held, unstored) = if config.hold_ends {
            let (held, unstored) = HeldEnds::open(&config.data_dir)?;
            (Some(held), unstored)
        } else {
            (None, Vec::new())
        };
        refuse_held(revocations.as_ref(), &unstored);
        Ok(Self {
            sessions,
            unstored: Mutex::new(unstored),
            held,
            tokens,
            refresh_mac,
            revocations,
            refresh_ttl: config.refresh_ttl,
            lifetime: Lifetime(config.max_lifetime),
            metrics: config.metrics,
        })
    }

    /// The refresh token for `counter` of `session_id`.
    fn refresh_token(&self, session_id: &str, counter: u64) -> Result<String, AuthError> {
        let id = uuid::Uuid::parse_str(session_id).map_err(|e| AuthError::Internal(e.into()))?;
        let mut bytes = [0u8; V2_LEN];
        bytes[0] = V2;
        bytes[1..17].copy_from_slice(id.as_bytes());
        bytes[17..25].copy_from_slice(&counter.to_be_bytes());
        let mut mac = self.refresh_mac.clone();
        mac.update(&bytes[..25]);
        bytes[25..].copy_from_slice(&mac.finalize().into_bytes()[..16]);
        Ok(B64.encode(bytes))
    }

    /// The session and counter a self-describing token names, if its MAC
    /// is ours (checked in constant time).
    fn parse_refresh_token(&self, token: &str) -> Option<(SessionId, u64)> {
        let bytes = B64.decode(token).ok()?;
        if bytes.len() != V2_LEN || bytes[0] != V2 {
            return None;
        }
        let mut mac = self.refresh_mac.clone();
        mac.update(&bytes[..25]);
        mac.verify_truncated_left(&bytes[25..]).ok()?;
        let id = uuid::Uuid::from_slice(&bytes[1..17]).ok()?;
        let counter = u64::from_be_bytes(bytes[17..25].try_into().ok()?);
        Some((SessionId::from(id.hyphenated().to_string()), counter))
    }

    /// The access token that goes with the pair (a function of it, so a
    /// grace-window repeat gets byte-for-byte the same token).
    fn issue(&self, pair: Pair) -> Result<IssuedSession, AuthError> {
        let refresh_token = self.refresh_token(&pair.session_id, pair.counter)?;
        // Never past the session's absolute end, nor past the moment its
        // refresh token dies unused: every path that reads the token
        // refuses it from then on by its date alone.
        let exp = self.lifetime.cap(
            (pair.issued_at + self.tokens.ttl()).min(pair.issued_at + self.refresh_ttl),
            pair.begun_at,
        );
        let claims = AccessClaims {
            iss: self.tokens.issuer().to_string(),
            aud: AUDIENCE.to_string(),
            sub: pair.user.id.clone(),
            email: pair.user.email.clone(),
            sid: pair.session_id.clone(),
            jti: hash_token(&format!("jti:{refresh_token}"))[..22].to_string(),
            iat: pair.issued_at,
            exp,
            nbf: None,
            name: pair.user.name.clone(),
            avatar_url: pair.user.avatar_url.clone(),
            created_at: pair.user.created_at.clone(),
        };
        let access_token = self
            .tokens
            .issue(claims)
            .map_err(|e| AuthError::Internal(e.into()))?;
        Ok(IssuedSession {
            user: pair.user,
            session_id: pair.session_id,
            access_token,
            refresh_token,
            expires_at: exp,
            provider_grant: None,
        })
    }

    /// Opens a session for one of our accounts (a sign-in method has
    /// proven who the person is).
    pub async fn open(
        &self,
        user_id: &UserId,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        let now = unix_now() as i64;
        let session_id = SessionId::random();
        let user = self
            .sessions
            .open(NewSession {
                id: session_id.clone(),
                user_id: user_id.clone(),
                now,
                user_agent: client.user_agent.as_deref().map(|ua| truncate(ua, 256)),
                ip: coarse_ip(client.ip),
            })
            .await?
            .ok_or(AuthError::Rejected)?;
        self.issue(Pair {
            session_id,
            counter: 0,
            issued_at: now as u64,
            begun_at: now as u64,
            user,
        })
    }

    /// Deletes, a batch at a time, what can no longer matter: sessions
    /// unused for longer than a refresh token lives, and sessions ended
    /// longer ago than an access token lives (their revocation rows cover
    /// that time). Each batch is a short write of its own.
    pub async fn purge(&self) -> anyhow::Result<u64> {
        let now = unix_now() as i64;
        let idle = now - self.refresh_ttl as i64 - 60;
        let ended = now - self.tokens.ttl() as i64 - 60;
        Ok(self.sessions.purge(idle, ended).await?)
    }

    /// Ends sessions in the database, then records their revocations.
    async fn end_now(&self, which: EndSessions) -> Result<Vec<SessionId>, AuthError> {
        let ended = self.sessions.end(&which, unix_now() as i64).await?;
        self.revocations.revoke(&ended).await?;
        Ok(ended)
    }

    /// Stores the ends the database could not take when they happened;
    /// what still fails waits for the next call (every second).
    pub async fn store_unstored(&self) {
        // Left in place while they are tried, so the file on disk always
        // holds every end not yet stored (an end held meanwhile rewrites it).
        let pending = match self.unstored.lock() {
            Ok(unstored) if !unstored.is_empty() => unstored.clone(),
            _ => return,
        };
        let mut stored = Vec::new();
        for which in pending {
            if let Ok(ended) = self.end_now(which.clone()).await {
                tracing::info!(
                    sessions = ended.len(),
                    "stored a session end held while the database was unreachable"
                );
                stored.push(which);
            }
        }
        // Nothing stored: the file already says so (no rewrite every tick
        // of an outage).
        if stored.is_empty() {
            return;
        }
        if let Ok(mut unstored) = self.unstored.lock() {
            for which in stored {
                if let Some(at) = unstored.iter().position(|held| *held == which) {
                    unstored.remove(at);
                }
            }
            self.keep(&unstored);
        }
    }

    /// Writes the held ends to disk; a failure is logged (they are still
    /// held in memory and stored when the database answers).
    fn keep(&self, unstored: &[EndSessions]) {
        let Some(held) = &self.held else { return };
        if let Err(e) = held.write(unstored) {
            tracing::error!(error = %e, "cannot write held session ends to DATA_DIR");
        }
    }

    /// How many session ends wait to be stored.
    pub fn unstored_len(&self) -> usize {
        self.unstored.lock().map_or(0, |u| u.len())
    }

    /// Every active session, with its user's email, newest first (the
    /// operator's `chronos session list`): one query.
    pub async fn list_all_sessions(&self) -> Result<Vec<(String, SessionInfo)>, AuthError> {
        let horizon = unix_now() as i64 - self.refresh_ttl as i64;
        let rows = self
            .sessions
            .list_all(horizon, self.lifetime.begun_since())
            .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, session)| !self.revocations.is_revoked(&session.id))
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
        let found = match self.parse_refresh_token(refresh_token) {
            Some((session_id, counter)) => {
                if self.revocations.is_revoked(&session_id) {
                    return Err(AuthError::Rejected);
                }
                let refresh = Refresh {
                    session_id,
                    counter: i64::try_from(counter).map_err(|_| AuthError::Rejected)?,
                    user_agent: client.user_agent.as_deref().map(|ua| truncate(ua, 256)),
                    ip: coarse_ip(client.ip),
                };
                self.sessions.rotate(refresh).await?
            }
            None => {
                self.sessions
                    .rotate_legacy(hash_token(refresh_token))
                    .await?
            }
        };
        match found {
            // A global logout the database has not taken yet covers the
            // sessions begun until then.
            Refreshed::Pair(pair)
                if self
                    .revocations
                    .refuses(&pair.session_id, &pair.user.id, pair.begun_at) =>
            {
                Err(AuthError::Rejected)
            }
            // Past its absolute end: the session is over, whatever the
            // token (`SESSION_MAX_LIFETIME`). It is ended, so a later try
            // is refused as ended, not mistaken for reuse.
            Refreshed::Pair(pair) if !self.lifetime.holds(pair.begun_at) => {
                let session_id = pair.session_id.clone();
                if let Err(error) = self.end_now(EndSessions::Any { session_id }).await {
                    tracing::warn!(error = %error, "cannot end a session past its lifetime");
                }
                Err(AuthError::Rejected)
            }
            Refreshed::Pair(pair) => self.issue(pair),
            Refreshed::Reused { session_id, seq } => {
                self.revocations.recorded(seq, &session_id);
                self.metrics.reuse_detected();
                tracing::warn!(session_id = %session_id, "refresh token reuse detected; session ended");
                Err(AuthError::Rejected)
            }
            Refreshed::Rejected => Err(AuthError::Rejected),
        }
    }

    async fn verify_access_token(&self, token: &str) -> Result<Arc<AccessClaims>, AuthError> {
        self.tokens
            .verify(token, unix_now())
            .map_err(|_| AuthError::Rejected)
    }

    fn revocations(&self) -> &dyn RevocationStore {
        self.revocations.as_ref()
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
        Ok(match self.parse_refresh_token(refresh_token) {
            Some((session_id, _)) => self.sessions.owner(&session_id).await?,
            None => {
                self.sessions
                    .legacy_owner(&hash_token(refresh_token))
                    .await?
            }
        })
    }

    async fn end_sessions(&self, which: EndSessions) -> Result<Vec<SessionId>, AuthError> {
        match self.end_now(which.clone()).await {
            Err(AuthError::Internal(e)) if is_unavailable(e.as_ref()) && self.held.is_some() => {
                // The database cannot be reached: the sessions are refused
                // here and on every replica now, and stored once it can be.
                // A user's every session is every session begun until now
                // (those begun after the database is back are not ended).
                tracing::error!(
                    error = format!("{e:#}"),
                    "cannot store a session end; retrying until stored"
                );
                let which = match which {
                    EndSessions::AllOf { user_id } => EndSessions::AllOfUntil {
                        user_id,
                        until: unix_now() as i64,
                    },
                    other => other,
                };
                refuse_held(self.revocations.as_ref(), std::slice::from_ref(&which));
                if let Ok(mut unstored) = self.unstored.lock() {
                    unstored.push(which);
                    self.keep(&unstored);
                }
                Err(AuthError::Internal(e))
            }
            other => other,
        }
    }

    async fn is_live(&self, session_id: &str) -> Result<bool, AuthError> {
        let horizon = unix_now() as i64 - self.refresh_ttl as i64;
        Ok(!self.revocations.is_revoked(session_id)
            && self
                .sessions
                .is_live(session_id, horizon, self.lifetime.begun_since())
                .await?)
    }

    async fn list_sessions(&self, user_id: &UserId) -> Result<Vec<SessionInfo>, AuthError> {
        let horizon = unix_now() as i64 - self.refresh_ttl as i64;
        let rows = self
            .sessions
            .list_of(user_id, horizon, self.lifetime.begun_since())
            .await?;
        Ok(rows
            .into_iter()
            .filter(|row| !self.revocations.is_revoked(&row.id))
            .collect())
    }

    fn jwks(&self) -> Arc<str> {
        self.tokens.jwks()
    }

    fn superseded(&self, access_token: &str) {
        self.tokens.forget(access_token);
    }

    fn sweep_verified(&self, now: u64) {
        self.tokens.sweep(now);
    }
}
