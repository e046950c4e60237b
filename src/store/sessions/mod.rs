//! Our own sessions and their refresh families (`sessions`, one row per
//! session; the legacy `refresh_tokens` chain on SQLite databases from
//! before self-describing tokens). The session row keeps the refresh
//! counter, so one conditional `UPDATE` decides everything a refresh can
//! be ([`Sessions::rotate`]): the current token moves the counter on; the
//! previous one within the reuse interval gets the current pair again; any
//! older one ends the session (theft), its revocation written in the same
//! transaction.

mod batch;
#[cfg(test)]
mod tests;

use serde::Serialize;

use self::batch::RefreshBatcher;
use super::accounts::{User, rfc3339, user_columns, user_in};
use super::database::Database;
pub use super::ids::SessionId;
use super::ids::UserId;
use super::revocations::record_in;
use super::sql::{Exec, FromRow, Row, RowExt, StoreError, Work, args};

/// One active session, as `GET /auth/sessions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    pub id: SessionId,
    pub created_at: String,
    pub last_used_at: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl FromRow for SessionInfo {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.get(0)?,
            created_at: rfc3339(row.get(1)?),
            last_used_at: rfc3339(row.get(2)?),
            user_agent: row.get(3)?,
            ip: row.get(4)?,
        })
    }
}

/// A session and the user it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    pub user_id: UserId,
    pub session_id: SessionId,
}

impl FromRow for SessionRef {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self {
            user_id: row.get(0)?,
            session_id: row.get(1)?,
        })
    }
}

/// Which sessions to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum EndSessions {
    /// One session, only if it belongs to this user (a person ending their own).
    OwnedBy {
        user_id: UserId,
        session_id: SessionId,
    },
    /// Every session of the user.
    AllOf { user_id: UserId },
    /// Every session of the user begun at or before `until` (Unix seconds):
    /// a global logout stored later than it happened (the database was
    /// unreachable), which must not end the sessions begun since.
    AllOfUntil { user_id: UserId, until: i64 },
    /// One session, whoever owns it: the server's own decision (a replayed
    /// sign-in code, a provider's logout signal), never a client's request.
    Any { session_id: SessionId },
}

/// The rules of a refresh, the same for the whole process.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// How long a refresh token lives unused, seconds.
    pub refresh_ttl: i64,
    /// How long a just-rotated token still gets the current pair, ms.
    pub reuse_interval_ms: i64,
}

/// A session to open.
pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub now: i64,
    pub user_agent: Option<String>,
    pub ip: String,
}

/// One refresh: the session and counter its token names, and who asks.
pub struct Refresh {
    pub session_id: SessionId,
    pub counter: i64,
    pub user_agent: Option<String>,
    pub ip: String,
}

/// The pair a refresh hands out: the session's counter and when it was issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub session_id: SessionId,
    pub counter: u64,
    pub issued_at: u64,
    /// When the session began (a refusal of the user's sessions until a
    /// time covers it when it began by then).
    pub begun_at: u64,
    pub user: User,
}

/// What a refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    Pair(Pair),
    /// An old token came back: the session just ended (revocation seq).
    Reused {
        session_id: SessionId,
        seq: i64,
    },
    Rejected,
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A self-describing token's refresh, one session (the SQLite writer;
/// PostgreSQL runs the same rules for a batch, [`batch`]).
struct Rotate {
    refresh: Refresh,
    rules: Rules,
    now: i64,
    now_ms: i64,
}

impl Work for Rotate {
    type Output = Refreshed;

    async fn run<E: Exec>(self, tx: &mut E) -> Result<Refreshed, StoreError> {
        // All right-hand sides read the row as it was.
        const ROTATE: &str = "UPDATE sessions SET
               refresh_counter = CASE WHEN refresh_counter = $1 THEN $1 + 1 ELSE refresh_counter END,
               refresh_issued_at = CASE WHEN refresh_counter = $1 THEN $2 ELSE refresh_issued_at END,
               rotated_at_ms = CASE WHEN refresh_counter = $1 THEN $3 ELSE rotated_at_ms END,
               revoked_at = CASE
                 WHEN refresh_counter = $1 THEN NULL
                 WHEN refresh_counter = $1 + 1 AND $3 - rotated_at_ms < $4 THEN NULL
                 ELSE $2 END,
               last_used_at = CASE WHEN $2 - last_used_at >= 60 THEN $2 ELSE last_used_at END,
               user_agent = COALESCE($5, user_agent),
               ip = $6
             WHERE id = $7 AND revoked_at IS NULL AND refresh_issued_at > $8
               AND refresh_counter IS NOT NULL
             RETURNING refresh_counter, refresh_issued_at, revoked_at, user_id, created_at";
        let Self {
            refresh,
            rules,
            now,
            now_ms,
        } = self;
        let row: Option<(i64, i64, Option<i64>, UserId, i64)> = tx
            .fetch_optional(
                ROTATE,
                args![
                    refresh.counter,
                    now,
                    now_ms,
                    rules.reuse_interval_ms,
                    refresh.user_agent,
                    refresh.ip,
                    &refresh.session_id,
                    now - rules.refresh_ttl
                ],
            )
            .await?;
        let Some((current, issued_at, revoked_at, user_id, begun_at)) = row else {
            return Ok(Refreshed::Rejected);
        };
        let session_id = refresh.session_id;
        if revoked_at.is_some() {
            let seq = record_in(tx, &session_id, now).await?;
            return Ok(Refreshed::Reused { session_id, seq });
        }
        handed_out(tx, session_id, (current, issued_at, begun_at), &user_id).await
    }
}

/// The pair a refresh hands out, with its user read in the same
/// transaction (rejected when the account is gone).
/// `times`: the counter, when it was issued, when the session began.
async fn handed_out<E: Exec>(
    tx: &mut E,
    session_id: SessionId,
    (counter, issued_at, begun_at): (i64, i64, i64),
    user_id: &UserId,
) -> Result<Refreshed, StoreError> {
    let Some(user) = user_in(tx, user_id).await? else {
        return Ok(Refreshed::Rejected);
    };
    Ok(Refreshed::Pair(Pair {
        session_id,
        counter: counter as u64,
        issued_at: issued_at as u64,
        begun_at: begun_at as u64,
        user,
    }))
}

/// A chain token from before self-describing tokens (SQLite only): its
/// session moves to counters on its next refresh.
struct RotateLegacy {
    token_hash: String,
    rules: Rules,
    now: i64,
    now_ms: i64,
}

impl Work for RotateLegacy {
    type Output = Refreshed;

    async fn run<E: Exec>(self, tx: &mut E) -> Result<Refreshed, StoreError> {
        const FIND: &str =
            "SELECT rt.session_id, rt.created_at, COALESCE(rt.rotated_at_ms, rt.rotated_at * 1000),
                    s.user_id, s.revoked_at, s.refresh_counter, s.refresh_issued_at, s.created_at
             FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
             WHERE rt.token_hash = $1";
        const ROTATED: &str =
            "UPDATE refresh_tokens SET rotated_at = $1, rotated_at_ms = $2 WHERE token_hash = $3";
        const TO_COUNTERS: &str = "UPDATE sessions SET refresh_counter = 1, refresh_issued_at = $1,
                    rotated_at_ms = $2, last_used_at = $1 WHERE id = $3";
        let Self {
            token_hash,
            rules,
            now,
            now_ms,
        } = self;
        type Found = (
            SessionId,
            i64,
            Option<i64>,
            UserId,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            i64,
        );
        let row: Option<Found> = tx.fetch_optional(FIND, args![&token_hash]).await?;
        let Some((
            session_id,
            created_at,
            rotated_ms,
            user_id,
            revoked_at,
            counter,
            issued_at,
            begun_at,
        )) = row
        else {
            return Ok(Refreshed::Rejected);
        };
        if revoked_at.is_some() || created_at <= now - rules.refresh_ttl {
            return Ok(Refreshed::Rejected);
        }
        let interval_ms = rules.reuse_interval_ms;
        let (counter, issued_at) = match (rotated_ms, counter) {
            // The chain's head: the session moves to counters.
            (None, None) => {
                tx.execute(ROTATED, args![now, now_ms, &token_hash]).await?;
                tx.execute(TO_COUNTERS, args![now, now_ms, &session_id])
                    .await?;
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
                const END: &str =
                    "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
                tx.execute(END, args![now, &session_id]).await?;
                let seq = record_in(tx, &session_id, now).await?;
                return Ok(Refreshed::Reused { session_id, seq });
            }
        };
        handed_out(tx, session_id, (counter, issued_at, begun_at), &user_id).await
    }
}

/// Rows ended per purge step (each a short write).
pub const PURGE_BATCH: i64 = 1000;

pub struct Sessions {
    db: Database,
    rules: Rules,
    /// PostgreSQL: refreshes go to the database in batches.
    batcher: Option<RefreshBatcher>,
}

impl Sessions {
    /// The sessions of `db` under `rules` (on PostgreSQL this starts the
    /// refresh batcher: call it inside the runtime).
    pub fn new(db: Database, rules: Rules) -> Self {
        let batcher = match &db {
            Database::Postgres(pool) => Some(RefreshBatcher::start(pool.clone(), rules, 1)),
            Database::Sqlite { .. } => None,
        };
        Self { db, rules, batcher }
    }

    /// Opens a session for an existing account: its user, or `None` when
    /// the account is gone.
    pub async fn open(&self, session: NewSession) -> Result<Option<User>, StoreError> {
        const OPEN: &str =
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent, ip,
                                   refresh_counter, refresh_issued_at)
             SELECT $1, id, $3, $3, $4, $5, 0, $3 FROM users WHERE id = $2";
        const USER: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        let NewSession {
            id,
            user_id,
            now,
            user_agent,
            ip,
        } = session;
        let opened = self
            .db
            .write(OPEN, args![id, &user_id, now, user_agent, ip])
            .await?;
        if opened == 0 {
            return Ok(None);
        }
        self.db.read_optional(USER, args![user_id]).await
    }

    /// The refresh of a self-describing token: one conditional update.
    pub async fn rotate(&self, refresh: Refresh) -> Result<Refreshed, StoreError> {
        if let Some(batcher) = &self.batcher {
            return batcher.refresh(refresh).await;
        }
        let work = Rotate {
            refresh,
            rules: self.rules,
            now: crate::unix_now() as i64,
            now_ms: unix_now_ms(),
        };
        self.db.transaction(work).await
    }

    /// The refresh of a legacy chain token (whose hash is `token_hash`).
    pub async fn rotate_legacy(&self, token_hash: String) -> Result<Refreshed, StoreError> {
        // PostgreSQL databases began with self-describing tokens.
        if self.db.is_postgres() {
            return Ok(Refreshed::Rejected);
        }
        let work = RotateLegacy {
            token_hash,
            rules: self.rules,
            now: crate::unix_now() as i64,
            now_ms: unix_now_ms(),
        };
        self.db.transaction(work).await
    }

    /// Ends the sessions `which` names that have not ended: their ids.
    pub async fn end(&self, which: &EndSessions, now: i64) -> Result<Vec<SessionId>, StoreError> {
        const ANY: &str =
            "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING id";
        const OWNED_BY: &str = "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL RETURNING id";
        const ALL_OF: &str = "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL RETURNING id";
        const ALL_OF_UNTIL: &str = "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND created_at <= $3 AND revoked_at IS NULL RETURNING id";
        let (sql, args) = match which {
            EndSessions::Any { session_id } => (ANY, args![now, session_id]),
            EndSessions::OwnedBy {
                user_id,
                session_id,
            } => (OWNED_BY, args![now, session_id, user_id]),
            EndSessions::AllOf { user_id } => (ALL_OF, args![now, user_id]),
            EndSessions::AllOfUntil { user_id, until } => {
                (ALL_OF_UNTIL, args![now, user_id, *until])
            }
        };
        self.db.write_returning(sql, args).await
    }

    /// Whether the session has not ended, its refresh token was issued
    /// after `issued_since` and it began after `begun_since` (it can still
    /// refresh).
    pub async fn is_live(
        &self,
        session_id: &str,
        issued_since: i64,
        begun_since: i64,
    ) -> Result<bool, StoreError> {
        const LIVE: &str = "SELECT COUNT(*) FROM sessions
             WHERE id = $1 AND revoked_at IS NULL
               AND COALESCE(refresh_issued_at, last_used_at) > $2 AND created_at > $3";
        let n: i64 = self
            .db
            .read_one(LIVE, args![session_id, issued_since, begun_since])
            .await?;
        Ok(n > 0)
    }

    /// The session a self-describing token names, and its user.
    pub async fn owner(&self, session_id: &str) -> Result<Option<SessionRef>, StoreError> {
        const OWNER: &str = "SELECT user_id, id FROM sessions WHERE id = $1";
        self.db.read_optional(OWNER, args![session_id]).await
    }

    /// The session a legacy chain token (its hash) belongs to.
    pub async fn legacy_owner(&self, token_hash: &str) -> Result<Option<SessionRef>, StoreError> {
        if self.db.is_postgres() {
            return Ok(None);
        }
        const OWNER: &str =
            "SELECT s.user_id, s.id FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
             WHERE rt.token_hash = $1";
        self.db.read_optional(OWNER, args![token_hash]).await
    }

    /// The user's sessions that have not ended, whose refresh token was
    /// issued after `used_since` (it can still refresh; `last_used_at`
    /// moves once a minute only) and that began after `begun_since`,
    /// newest first.
    pub async fn list_of(
        &self,
        user_id: &str,
        used_since: i64,
        begun_since: i64,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        const OF_USER: &str = "SELECT id, created_at, last_used_at, user_agent, ip FROM sessions
             WHERE user_id = $1 AND revoked_at IS NULL
               AND COALESCE(refresh_issued_at, last_used_at) > $2 AND created_at > $3
             ORDER BY created_at DESC, id";
        self.db
            .read(OF_USER, args![user_id, used_since, begun_since])
            .await
    }

    /// Every session that has not ended, can still refresh (a refresh
    /// token issued after `used_since`) and began after `begun_since`,
    /// with its user's email, newest first (the operator's listing).
    pub async fn list_all(
        &self,
        used_since: i64,
        begun_since: i64,
    ) -> Result<Vec<(String, SessionInfo)>, StoreError> {
        const ALL: &str = "SELECT s.id, s.created_at, s.last_used_at, s.user_agent, s.ip, u.email
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.revoked_at IS NULL
               AND COALESCE(s.refresh_issued_at, s.last_used_at) > $1 AND s.created_at > $2
             ORDER BY s.created_at DESC, s.id";
        struct Listed(String, SessionInfo);
        impl FromRow for Listed {
            fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
                Ok(Self(row.get(5)?, SessionInfo::from_row(row)?))
            }
        }
        let rows: Vec<Listed> = self.db.read(ALL, args![used_since, begun_since]).await?;
        Ok(rows
            .into_iter()
            .map(|Listed(email, s)| (email, s))
            .collect())
    }

    /// Deletes, a batch at a time, sessions unused since `idle_before` and
    /// sessions ended before `ended_before`; how many.
    pub async fn purge(&self, idle_before: i64, ended_before: i64) -> Result<u64, StoreError> {
        // Each LIMIT inside a derived table: SQLite refuses a LIMIT before
        // UNION ALL, PostgreSQL one outside parentheses; both read this.
        const PURGE: &str = "DELETE FROM sessions WHERE id IN (
               SELECT id FROM (SELECT id FROM sessions WHERE last_used_at < $1 LIMIT $3) AS idle
               UNION ALL
               SELECT id FROM (SELECT id FROM sessions WHERE revoked_at < $2 LIMIT $3) AS ended)";
        let mut total = 0;
        loop {
            let deleted = self
                .db
                .write(PURGE, args![idle_before, ended_before, PURGE_BATCH])
                .await?;
            total += deleted;
            if (deleted as i64) < PURGE_BATCH {
                return Ok(total);
            }
            // Let the requests' writes in between batches.
            tokio::task::yield_now().await;
        }
    }
}
