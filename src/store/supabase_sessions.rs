//! Sessions begun through this server with Supabase Auth as the session
//! authority (`supabase_sessions`): Supabase cannot list a person's
//! sessions or end one by id, so we keep our own record, with the latest
//! tokens sealed (a remote logout needs them), and the hash of every
//! refresh token issued for each (`supabase_refresh_tokens`), so an old one
//! presented again is traced to its session.

use super::database::Database;
use super::ids::{SessionId, UserId};
use super::sessions::{EndSessions, SessionInfo, SessionRef};
use super::sql::{Exec, StoreError, Work, args};

/// A session Supabase just issued or refreshed.
pub struct SupabaseSession {
    pub session_id: SessionId,
    pub user_id: UserId,
    /// RFC 3339, as Supabase gives it.
    pub user_created_at: String,
    pub now: i64,
    pub user_agent: Option<String>,
    pub ip: String,
    pub refresh_hash: String,
    /// Sealed `{"access", "refresh"}`.
    pub tokens: String,
}

/// A session that just ended here.
pub struct Ended {
    pub session_id: SessionId,
    /// Sealed `{"access", "refresh"}`, if recorded.
    pub tokens: Option<String>,
    pub last_used_at: i64,
}

/// Upserts a session and records its refresh token.
struct Record(SupabaseSession);

impl Work for Record {
    /// When the session began, if it was recorded.
    type Output = Option<i64>;

    async fn run<E: Exec>(self, tx: &mut E) -> Result<Option<i64>, StoreError> {
        const RECORD: &str = "INSERT INTO supabase_sessions
               (session_id, user_id, user_created_at, created_at, last_used_at, user_agent, ip, refresh_hash, tokens)
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8)
             ON CONFLICT (session_id) DO UPDATE SET
               last_used_at = excluded.last_used_at,
               user_agent = COALESCE(excluded.user_agent, supabase_sessions.user_agent),
               ip = excluded.ip,
               refresh_hash = excluded.refresh_hash,
               tokens = excluded.tokens
             WHERE supabase_sessions.ended_at IS NULL
             RETURNING created_at";
        const TOKEN: &str =
            "INSERT INTO supabase_refresh_tokens (refresh_hash, session_id, issued_at)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        let Record(session) = self;
        let began: Option<i64> = tx
            .fetch_optional(
                RECORD,
                args![
                    &session.session_id,
                    session.user_id,
                    session.user_created_at,
                    session.now,
                    session.user_agent,
                    session.ip,
                    &session.refresh_hash,
                    session.tokens
                ],
            )
            .await?;
        let Some(began) = began else {
            return Ok(None);
        };
        tx.execute(
            TOKEN,
            args![session.refresh_hash, session.session_id, session.now],
        )
        .await?;
        Ok(Some(began))
    }
}

#[derive(Clone)]
pub struct SupabaseSessions {
    db: Database,
}

impl SupabaseSessions {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// When the user's account was created, as recorded with any session.
    pub async fn user_created_at(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        const CREATED: &str =
            "SELECT user_created_at FROM supabase_sessions WHERE user_id = $1 LIMIT 1";
        self.db.read_optional(CREATED, args![user_id]).await
    }

    /// Records the session (an upsert) and its new refresh token, unless
    /// the session ended here meanwhile (`None` then): when it began.
    pub async fn record(&self, session: SupabaseSession) -> Result<Option<i64>, StoreError> {
        self.db.transaction(Record(session)).await
    }

    /// The session a refresh token (its hash, the newest or an older one)
    /// was issued for: when it ended here (if it did), began, was last used.
    pub async fn by_refresh(
        &self,
        refresh_hash: &str,
    ) -> Result<Option<(SessionId, Option<i64>, i64, i64)>, StoreError> {
        const KNOWN: &str = "SELECT s.session_id, s.ended_at, s.created_at, s.last_used_at
             FROM supabase_refresh_tokens t
             JOIN supabase_sessions s ON s.session_id = t.session_id WHERE t.refresh_hash = $1";
        self.db.read_optional(KNOWN, args![refresh_hash]).await
    }

    /// The session and user a refresh token (its hash) belongs to.
    pub async fn owner(&self, refresh_hash: &str) -> Result<Option<SessionRef>, StoreError> {
        const OWNER: &str = "SELECT s.user_id, s.session_id FROM supabase_refresh_tokens t
             JOIN supabase_sessions s ON s.session_id = t.session_id WHERE t.refresh_hash = $1";
        self.db.read_optional(OWNER, args![refresh_hash]).await
    }

    /// Ends the sessions `which` names that have not ended.
    pub async fn end(&self, which: &EndSessions, now: i64) -> Result<Vec<Ended>, StoreError> {
        const OWNED_BY: &str = "UPDATE supabase_sessions SET ended_at = $1
             WHERE session_id = $2 AND user_id = $3 AND ended_at IS NULL
             RETURNING session_id, tokens, last_used_at";
        const ANY: &str = "UPDATE supabase_sessions SET ended_at = $1
             WHERE session_id = $2 AND ended_at IS NULL
             RETURNING session_id, tokens, last_used_at";
        const ALL_OF: &str = "UPDATE supabase_sessions SET ended_at = $1
             WHERE user_id = $2 AND ended_at IS NULL
             RETURNING session_id, tokens, last_used_at";
        const ALL_OF_UNTIL: &str = "UPDATE supabase_sessions SET ended_at = $1
             WHERE user_id = $2 AND created_at <= $3 AND ended_at IS NULL
             RETURNING session_id, tokens, last_used_at";
        let (sql, args) = match which {
            EndSessions::OwnedBy {
                user_id,
                session_id,
            } => (OWNED_BY, args![now, session_id, user_id]),
            EndSessions::Any { session_id } => (ANY, args![now, session_id]),
            EndSessions::AllOf { user_id } => (ALL_OF, args![now, user_id]),
            EndSessions::AllOfUntil { user_id, until } => {
                (ALL_OF_UNTIL, args![now, user_id, *until])
            }
        };
        let rows: Vec<(SessionId, Option<String>, i64)> =
            self.db.write_returning(sql, args).await?;
        Ok(rows
            .into_iter()
            .map(|(session_id, tokens, last_used_at)| Ended {
                session_id,
                tokens,
                last_used_at,
            })
            .collect())
    }

    /// The user's sessions that have not ended and were used since
    /// `used_since`, newest first.
    pub async fn list_of(
        &self,
        user_id: &str,
        used_since: i64,
        begun_since: i64,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        const OF_USER: &str =
            "SELECT session_id, created_at, last_used_at, user_agent, ip FROM supabase_sessions
             WHERE user_id = $1 AND ended_at IS NULL AND last_used_at > $2 AND created_at > $3
             ORDER BY created_at DESC, session_id";
        self.db
            .read(OF_USER, args![user_id, used_since, begun_since])
            .await
    }

    /// Whether the session has not ended, was used since `used_since` and
    /// began after `begun_since`.
    pub async fn is_live(
        &self,
        session_id: &str,
        used_since: i64,
        begun_since: i64,
    ) -> Result<bool, StoreError> {
        const LIVE: &str = "SELECT COUNT(*) FROM supabase_sessions
             WHERE session_id = $1 AND ended_at IS NULL AND last_used_at > $2 AND created_at > $3";
        let n: i64 = self
            .db
            .read_one(LIVE, args![session_id, used_since, begun_since])
            .await?;
        Ok(n > 0)
    }

    /// Sessions not ended that began at or before `begun_by` (past
    /// `SESSION_MAX_LIFETIME`), a hundred at a time.
    pub async fn begun_by(&self, begun_by: i64) -> Result<Vec<SessionId>, StoreError> {
        const OLD: &str = "SELECT session_id FROM supabase_sessions
             WHERE ended_at IS NULL AND created_at <= $1 ORDER BY created_at LIMIT 100";
        self.db.read(OLD, args![begun_by]).await
    }

    /// Forgets sessions unused since `before`.
    pub async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        self.db
            .purge(
                "DELETE FROM supabase_sessions WHERE session_id IN
                   (SELECT session_id FROM supabase_sessions WHERE last_used_at < $1 LIMIT 1000)",
                before,
            )
            .await
    }
}
