//! The local session authority: one row per session in the database,
//! access tokens signed with our own key, revocations in the revocation
//! store. Every write goes through the database's one writer.
//!
//! Refresh tokens describe themselves: `base64url(2 ‖ session id ‖ counter
//! ‖ MAC)`, the MAC an HMAC-SHA256 (truncated to 128 bits) under a key in
//! DATA_DIR. The session row keeps the current counter, so one conditional
//! `UPDATE` decides everything a refresh can be:
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
use rusqlite::{Connection, OptionalExtension, params};
use sha2::Sha256;

use super::batch::{Refresh, RefreshBatcher, Rules};
use super::held::HeldEnds;
use super::refreshed::{Pair, Refreshed};
use super::tokens::{AUDIENCE, AccessClaims, AccessTokens};
use super::{
    AuthError, ClientInfo, EndSessions, IssuedSession, SessionAuthority, SessionInfo, SessionRef,
    User,
};
use crate::accounts::{UserRow, rfc3339, user_columns};
use crate::limits::coarse_ip;
use crate::metrics::Metrics;
use crate::secrets::hash_token;
use crate::store::database::{Database, is_unavailable, on_pool};
use crate::store::revocations::RevocationStore;
use crate::store::writer::WriteError;
use crate::unix_now;

/// Refresh tokens longer than this are refused before any lookup.
const MAX_REFRESH_TOKEN_LEN: usize = 128;
/// The version byte of self-describing refresh tokens.
const V2: u8 = 2;
/// version, session id (16), counter (8), MAC (16).
const V2_LEN: usize = 1 + 16 + 8 + 16;
/// Rows deleted per purge step (each a short write).
pub const PURGE_BATCH: i64 = 1000;

pub struct LocalAuthority {
    db: Database,
    /// Ends the database could not store (it was unreachable), retried
    /// until stored; their sessions are refused meanwhile.
    unstored: Mutex<Vec<EndSessions>>,
    /// `unstored`, on disk.
    held: HeldEnds,
    /// PostgreSQL: refreshes go to the database in batches.
    batcher: Option<RefreshBatcher>,
    tokens: Arc<AccessTokens>,
    refresh_mac: Hmac<Sha256>,
    revocations: Arc<dyn RevocationStore>,
    refresh_ttl: u64,
    reuse_interval: u64,
    metrics: Metrics,
}

/// What the local authority needs besides its stores.
pub struct LocalConfig {
    pub refresh_key: Vec<u8>,
    /// How long a refresh token lives (the refresh cookie's life).
    pub refresh_ttl: u64,
    pub reuse_interval: u64,
    pub metrics: Metrics,
    /// Where session ends the database could not take are kept until stored.
    pub data_dir: std::path::PathBuf,
}

/// The sessions `ends` name (a user's every session is unknown without
/// the database).
fn known_sessions(ends: &[EndSessions]) -> Vec<String> {
    ends.iter()
        .filter_map(|which| match which {
            EndSessions::Any { session_id } | EndSessions::OwnedBy { session_id, .. } => {
                Some(session_id.clone())
            }
            EndSessions::AllOf { .. } => None,
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl From<WriteError> for AuthError {
    fn from(e: WriteError) -> Self {
        AuthError::Internal(e.into())
    }
}

fn user_row(conn: &Connection, user_id: &str) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = ?1"
    ))?
    .query_row([user_id], |row| {
        Ok(User {
            id: row.get(0)?,
            email: row.get(1)?,
            name: row.get(2)?,
            avatar_url: row.get(3)?,
            created_at: rfc3339(row.get(4)?),
        })
    })
    .optional()
}

/// Ends a session whose old token came back, in the same transaction.
fn end_for_reuse(conn: &Connection, session_id: &str, now: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "UPDATE sessions SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
        params![now, session_id],
    )?;
    conn.query_row(
        "INSERT INTO revocations (session_id, revoked_at) VALUES (?1, ?2) RETURNING seq",
        params![session_id, now],
        |row| row.get(0),
    )
}

/// The sessions' `UPDATE` on the SQLite writer; the ids it ended.
fn end_sqlite(c: &Connection, which: EndSessions, now: i64) -> rusqlite::Result<Vec<String>> {
    let (sql, args): (&str, Vec<String>) = match which {
        EndSessions::Any { session_id } => (
            "UPDATE sessions SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL RETURNING id",
            vec![session_id],
        ),
        EndSessions::OwnedBy {
            user_id,
            session_id,
        } => (
            "UPDATE sessions SET revoked_at = ?1 WHERE id = ?2 AND user_id = ?3 AND revoked_at IS NULL RETURNING id",
            vec![session_id, user_id],
        ),
        EndSessions::AllOf { user_id } => (
            "UPDATE sessions SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL RETURNING id",
            vec![user_id],
        ),
    };
    let mut statement = c.prepare(sql)?;
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&now];
    values.extend(args.iter().map(|a| a as &dyn rusqlite::ToSql));
    statement
        .query_map(values.as_slice(), |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()
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
        let batcher = match &db {
            Database::Postgres(pool) => Some(RefreshBatcher::start(
                pool.clone(),
                Rules {
                    refresh_ttl: config.refresh_ttl as i64,
                    reuse_interval_ms: config.reuse_interval as i64 * 1000,
                },
                1,
            )),
            Database::Sqlite { .. } => None,
        };
        let (held, unstored) = HeldEnds::open(&config.data_dir)?;
        revocations.refuse_now(&known_sessions(&unstored));
        Ok(Self {
            db,
            batcher,
            unstored: Mutex::new(unstored),
            held,
            tokens,
            refresh_mac,
            revocations,
            refresh_ttl: config.refresh_ttl,
            reuse_interval: config.reuse_interval,
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
    fn parse_refresh_token(&self, token: &str) -> Option<(String, u64)> {
        let bytes = B64.decode(token).ok()?;
        if bytes.len() != V2_LEN || bytes[0] != V2 {
            return None;
        }
        let mut mac = self.refresh_mac.clone();
        mac.update(&bytes[..25]);
        mac.verify_truncated_left(&bytes[25..]).ok()?;
        let id = uuid::Uuid::from_slice(&bytes[1..17]).ok()?;
        let counter = u64::from_be_bytes(bytes[17..25].try_into().ok()?);
        Some((id.hyphenated().to_string(), counter))
    }

    /// The access token that goes with the pair (a function of it, so a
    /// grace-window repeat gets byte-for-byte the same token).
    fn issue(&self, pair: Pair) -> Result<IssuedSession, AuthError> {
        let refresh_token = self.refresh_token(&pair.session_id, pair.counter)?;
        let exp = pair.issued_at + self.tokens.ttl();
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
        })
    }

    /// Opens a session for one of our accounts (a sign-in method has
    /// proven who the person is).
    pub async fn open(
        &self,
        user_id: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        let now = unix_now() as i64;
        let session_id = uuid::Uuid::new_v4().to_string();
        let user_id = user_id.to_string();
        let user_agent = client.user_agent.as_deref().map(|ua| truncate(ua, 256));
        let ip = coarse_ip(client.ip);
        let id = session_id.clone();
        let writer = match &self.db {
            Database::Sqlite { writer, .. } => writer,
            Database::Postgres(pool) => {
                let user: Option<UserRow> = sqlx::query_as(concat!(
                    "WITH s AS (
                       INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent, ip,
                                             refresh_counter, refresh_issued_at)
                       SELECT $1, id, $3, $3, $4, $5, 0, $3 FROM users WHERE id = $2
                       RETURNING user_id)
                     SELECT ",
                    user_columns!(),
                    " FROM users JOIN s ON s.user_id = users.id"
                ))
                .bind(&id)
                .bind(&user_id)
                .bind(now)
                .bind(user_agent)
                .bind(ip)
                .fetch_optional(pool)
                .await?;
                let user = User::from(user.ok_or(AuthError::Rejected)?);
                return self.issue(Pair {
                    session_id,
                    counter: 0,
                    issued_at: now as u64,
                    user,
                });
            }
        };
        let user = writer
            .write(move |c| {
                let Some(user) = user_row(c, &user_id)? else {
                    return Ok(None);
                };
                c.prepare_cached(
                    "INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent, ip,
                                           refresh_counter, refresh_issued_at)
                     VALUES (?1, ?2, ?3, ?3, ?4, ?5, 0, ?3)",
                )?
                .execute(params![id, user.id, now, user_agent, ip])?;
                Ok(Some(user))
            })
            .await?
            .ok_or(AuthError::Rejected)?;
        self.issue(Pair {
            session_id,
            counter: 0,
            issued_at: now as u64,
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
        let mut total = 0;
        loop {
            let deleted = match &self.db {
                Database::Sqlite { writer, .. } => {
                    writer
                        .write(move |c| {
                            c.execute(
                                "DELETE FROM sessions WHERE id IN (
                                   SELECT id FROM sessions WHERE last_used_at < ?1 LIMIT ?3
                                   UNION ALL
                                   SELECT id FROM sessions WHERE revoked_at < ?2 LIMIT ?3)",
                                params![idle, ended, PURGE_BATCH],
                            )
                        })
                        .await? as u64
                }
                Database::Postgres(pool) => sqlx::query(
                    "DELETE FROM sessions WHERE id IN (
                       (SELECT id FROM sessions WHERE last_used_at < $1 LIMIT $3)
                       UNION ALL
                       (SELECT id FROM sessions WHERE revoked_at < $2 LIMIT $3))",
                )
                .bind(idle)
                .bind(ended)
                .bind(PURGE_BATCH)
                .execute(pool)
                .await?
                .rows_affected(),
            };
            total += deleted;
            if (deleted as i64) < PURGE_BATCH {
                return Ok(total);
            }
            // Let the requests' writes in between batches.
            tokio::task::yield_now().await;
        }
    }

    /// A self-describing token: the one conditional update.
    async fn refresh_v2(
        &self,
        session_id: String,
        counter: u64,
        client: &ClientInfo,
    ) -> Result<Refreshed, AuthError> {
        let user_agent = client.user_agent.as_deref().map(|ua| truncate(ua, 256));
        let ip = coarse_ip(client.ip);
        let counter = i64::try_from(counter).map_err(|_| AuthError::Rejected)?;
        // PostgreSQL: the batch states the times once for all its rows.
        if let Some(batcher) = &self.batcher {
            let refresh = Refresh {
                session_id,
                counter,
                user_agent,
                ip,
            };
            return batcher.refresh(refresh).await;
        }
        let Database::Sqlite { writer, .. } = &self.db else {
            return Err(AuthError::Internal(anyhow::anyhow!(
                "PostgreSQL without its refresh batcher"
            )));
        };
        let now = unix_now() as i64;
        let now_ms = unix_now_ms();
        let interval_ms = self.reuse_interval as i64 * 1000;
        let horizon = now - self.refresh_ttl as i64;
        Ok(writer
            .write(move |c| {
                // All right-hand sides read the row as it was.
                let row: Option<(i64, i64, Option<i64>, String)> = c
                    .prepare_cached(
                        "UPDATE sessions SET
                           refresh_counter = CASE WHEN refresh_counter = ?1 THEN ?1 + 1 ELSE refresh_counter END,
                           refresh_issued_at = CASE WHEN refresh_counter = ?1 THEN ?2 ELSE refresh_issued_at END,
                           rotated_at_ms = CASE WHEN refresh_counter = ?1 THEN ?3 ELSE rotated_at_ms END,
                           revoked_at = CASE
                             WHEN refresh_counter = ?1 THEN NULL
                             WHEN refresh_counter = ?1 + 1 AND ?3 - rotated_at_ms < ?4 THEN NULL
                             ELSE ?2 END,
                           last_used_at = CASE WHEN ?2 - last_used_at >= 60 THEN ?2 ELSE last_used_at END,
                           user_agent = COALESCE(?5, user_agent),
                           ip = ?6
                         WHERE id = ?7 AND revoked_at IS NULL AND refresh_issued_at > ?8
                           AND refresh_counter IS NOT NULL
                         RETURNING refresh_counter, refresh_issued_at, revoked_at, user_id",
                    )?
                    .query_row(
                        params![counter, now, now_ms, interval_ms, user_agent, ip, session_id, horizon],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .optional()?;
                let Some((current, issued_at, revoked_at, user_id)) = row else {
                    return Ok(Refreshed::Rejected);
                };
                if revoked_at.is_some() {
                    let seq: i64 = c.query_row(
                        "INSERT INTO revocations (session_id, revoked_at) VALUES (?1, ?2) RETURNING seq",
                        params![session_id, now],
                        |r| r.get(0),
                    )?;
                    return Ok(Refreshed::Reused { session_id, seq });
                }
                let Some(user) = user_row(c, &user_id)? else {
                    return Ok(Refreshed::Rejected);
                };
                Ok(Refreshed::Pair(Pair {
                    session_id,
                    counter: current as u64,
                    issued_at: issued_at as u64,
                    user,
                }))
            })
            .await?)
    }

    /// A chain token from before self-describing tokens: its session moves
    /// to the new scheme on its next refresh.
    async fn refresh_legacy(&self, token: &str) -> Result<Refreshed, AuthError> {
        let token_hash = hash_token(token);
        let now = unix_now() as i64;
        let now_ms = unix_now_ms();
        let interval_ms = self.reuse_interval as i64 * 1000;
        let horizon = now - self.refresh_ttl as i64;
        // PostgreSQL databases began with self-describing tokens.
        let Database::Sqlite { writer, .. } = &self.db else {
            return Ok(Refreshed::Rejected);
        };
        Ok(writer
            .write(move |c| {
                type Row = (String, i64, Option<i64>, String, Option<i64>, Option<i64>, Option<i64>);
                let row: Option<Row> = c
                    .query_row(
                        "SELECT rt.session_id, rt.created_at, COALESCE(rt.rotated_at_ms, rt.rotated_at * 1000),
                                s.user_id, s.revoked_at, s.refresh_counter, s.refresh_issued_at
                         FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
                         WHERE rt.token_hash = ?1",
                        [&token_hash],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
                    )
                    .optional()?;
                let Some((session_id, created_at, rotated_ms, user_id, revoked_at, counter, issued_at)) = row
                else {
                    return Ok(Refreshed::Rejected);
                };
                if revoked_at.is_some() || created_at <= horizon {
                    return Ok(Refreshed::Rejected);
                }
                let pair = match (rotated_ms, counter) {
                    // The chain's head: the session moves to counters.
                    (None, None) => {
                        c.execute(
                            "UPDATE refresh_tokens SET rotated_at = ?1, rotated_at_ms = ?2 WHERE token_hash = ?3",
                            params![now, now_ms, token_hash],
                        )?;
                        c.execute(
                            "UPDATE sessions SET refresh_counter = 1, refresh_issued_at = ?1,
                                    rotated_at_ms = ?2, last_used_at = ?1 WHERE id = ?3",
                            params![now, now_ms, session_id],
                        )?;
                        (1, now)
                    }
                    // A repeat of the head within the grace window: the new pair.
                    (Some(rotated), Some(counter)) if now_ms - rotated < interval_ms => {
                        (counter, issued_at.unwrap_or(now))
                    }
                    // Rotated by an earlier version, within the window: not
                    // theft, but nothing to hand out either.
                    (Some(rotated), None) if now_ms - rotated < interval_ms => {
                        return Ok(Refreshed::Rejected);
                    }
                    // Any other old token: theft.
                    _ => {
                        let seq = end_for_reuse(c, &session_id, now)?;
                        return Ok(Refreshed::Reused { session_id, seq });
                    }
                };
                let Some(user) = user_row(c, &user_id)? else {
                    return Ok(Refreshed::Rejected);
                };
                Ok(Refreshed::Pair(Pair {
                    session_id,
                    counter: pair.0 as u64,
                    issued_at: pair.1 as u64,
                    user,
                }))
            })
            .await?)
    }

    /// Ends sessions in the database, then records their revocations.
    async fn end_now(&self, which: EndSessions) -> Result<Vec<String>, AuthError> {
        let now = unix_now() as i64;
        let ended: Vec<String> = match &self.db {
            Database::Sqlite { writer, .. } => {
                writer.write(move |c| end_sqlite(c, which, now)).await?
            }
            Database::Postgres(pool) => {
                let query = match &which {
                    EndSessions::Any { session_id } => sqlx::query_scalar(
                        "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING id",
                    )
                    .bind(now)
                    .bind(session_id),
                    EndSessions::OwnedBy {
                        user_id,
                        session_id,
                    } => sqlx::query_scalar(
                        "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL RETURNING id",
                    )
                    .bind(now)
                    .bind(session_id)
                    .bind(user_id),
                    EndSessions::AllOf { user_id } => sqlx::query_scalar(
                        "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL RETURNING id",
                    )
                    .bind(now)
                    .bind(user_id),
                };
                query.fetch_all(pool).await?
            }
        };
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
        if let Err(e) = self.held.write(unstored) {
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
        const ALL: &str = "SELECT u.email, s.id, s.created_at, s.last_used_at, s.user_agent, s.ip
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.revoked_at IS NULL AND s.last_used_at > $1
             ORDER BY s.created_at DESC, s.id";
        let rows: Vec<ListedSession> = on_pool!(&self.db, |pool| sqlx::query_as(ALL)
            .bind(horizon)
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .filter(|row| !self.revocations.is_revoked(&row.session.id))
            .map(|row| (row.email, SessionInfo::from(row.session)))
            .collect())
    }
}

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
                self.refresh_v2(session_id, counter, client).await?
            }
            None => self.refresh_legacy(refresh_token).await?,
        };
        match found {
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
        const BY_ID: &str = "SELECT user_id, id FROM sessions WHERE id = $1";
        let row: Option<(String, String)> = match (self.parse_refresh_token(refresh_token), &self.db)
        {
            (Some((session_id, _)), Database::Sqlite { pool, .. }) => {
                sqlx::query_as(BY_ID)
                    .bind(session_id)
                    .fetch_optional(pool)
                    .await?
            }
            (Some((session_id, _)), Database::Postgres(pool)) => {
                sqlx::query_as(BY_ID)
                    .bind(session_id)
                    .fetch_optional(pool)
                    .await?
            }
            (None, Database::Postgres(_)) => None,
            (None, Database::Sqlite { pool, .. }) => {
                sqlx::query_as(
                    "SELECT s.user_id, s.id FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
                     WHERE rt.token_hash = ?",
                )
                .bind(hash_token(refresh_token))
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(row.map(|(user_id, session_id)| SessionRef {
            user_id,
            session_id,
        }))
    }

    async fn end_sessions(&self, which: EndSessions) -> Result<Vec<String>, AuthError> {
        match self.end_now(which.clone()).await {
            Err(AuthError::Internal(e)) if is_unavailable(e.as_ref()) => {
                // The database cannot be reached: the session is refused
                // here and on every replica now, and stored once it can be.
                tracing::error!(
                    error = format!("{e:#}"),
                    "cannot store a session end; retrying until stored"
                );
                self.revocations
                    .refuse_now(&known_sessions(std::slice::from_ref(&which)));
                if let Ok(mut unstored) = self.unstored.lock() {
                    unstored.push(which);
                    self.keep(&unstored);
                }
                Err(AuthError::Internal(e))
            }
            other => other,
        }
    }

    async fn list_sessions(&self, user_id: &str) -> Result<Vec<SessionInfo>, AuthError> {
        let horizon = unix_now() as i64 - self.refresh_ttl as i64;
        const OF_USER: &str = "SELECT id, created_at, last_used_at, user_agent, ip FROM sessions
             WHERE user_id = $1 AND revoked_at IS NULL AND last_used_at > $2
             ORDER BY created_at DESC, id";
        let rows: Vec<SessionRow> = on_pool!(&self.db, |pool| sqlx::query_as(OF_USER)
            .bind(user_id)
            .bind(horizon)
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .filter(|row| !self.revocations.is_revoked(&row.id))
            .map(SessionInfo::from)
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
