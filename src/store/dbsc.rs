//! Device Bound Session Credentials: the key each bound session proved it
//! holds (`dbsc_bindings`), and the challenges already answered
//! (`used_dbsc_challenges`). The server keeps the bindings in memory for
//! the hot path ([`crate::security::dbsc`]); this is their durable copy,
//! and how other processes learn of them.

use super::database::Database;
use super::sql::{StoreError, args};

/// A session's key, as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub session_id: String,
    /// `ES256` or `RS256`.
    pub algorithm: String,
    /// RFC 7638 thumbprint of the key, base64url.
    pub thumbprint: String,
    /// The public JWK, JSON.
    pub public_jwk: String,
    pub bound_at: i64,
}

#[derive(Clone)]
pub struct DbscBindings {
    db: Database,
}

impl DbscBindings {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Binds the session to the key; `false` when it was already bound
    /// (a session is bound once, to one key). One statement, so of two
    /// registrations racing exactly one wins.
    pub async fn bind(&self, binding: &Binding) -> Result<bool, StoreError> {
        const BIND: &str = "INSERT INTO dbsc_bindings
               (session_id, algorithm, thumbprint, public_jwk, bound_at, refreshed_at)
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING";
        let Binding {
            session_id,
            algorithm,
            thumbprint,
            public_jwk,
            bound_at,
        } = binding;
        Ok(self
            .db
            .write(
                BIND,
                args![session_id, algorithm, thumbprint, public_jwk, *bound_at],
            )
            .await?
            == 1)
    }

    /// The session's binding, if it is bound.
    pub async fn of(&self, session_id: &str) -> Result<Option<Binding>, StoreError> {
        const OF: &str = "SELECT session_id, algorithm, thumbprint, public_jwk, bound_at
             FROM dbsc_bindings WHERE session_id = $1";
        let row: Option<(String, String, String, String, i64)> =
            self.db.read_optional(OF, args![session_id]).await?;
        Ok(row.map(
            |(session_id, algorithm, thumbprint, public_jwk, bound_at)| Binding {
                session_id,
                algorithm,
                thumbprint,
                public_jwk,
                bound_at,
            },
        ))
    }

    /// Sessions bound since `since` (Unix s) and their thumbprints: what
    /// another process registered (all of them with `since` = 0).
    pub async fn bound_since(&self, since: i64) -> Result<Vec<(String, String)>, StoreError> {
        const SINCE: &str = "SELECT session_id, thumbprint FROM dbsc_bindings WHERE bound_at >= $1";
        self.db.read(SINCE, args![since]).await
    }

    /// Notes a proof of the key.
    pub async fn refreshed(&self, session_id: &str, now: i64) -> Result<(), StoreError> {
        const REFRESHED: &str = "UPDATE dbsc_bindings SET refreshed_at = $1 WHERE session_id = $2";
        self.db.write(REFRESHED, args![now, session_id]).await?;
        Ok(())
    }

    /// Records a challenge (its hash) as answered until `expires_at`;
    /// `false` when it was answered before.
    pub async fn first_answer(
        &self,
        jti_hash: String,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        const ANSWER: &str = "INSERT INTO used_dbsc_challenges (jti_hash, expires_at)
             VALUES ($1, $2) ON CONFLICT DO NOTHING";
        Ok(self.db.write(ANSWER, args![jti_hash, expires_at]).await? == 1)
    }

    /// Deletes the bindings of sessions no longer kept (ours or
    /// Supabase's: purged once ended or idle past their refresh token's
    /// life) and the answered challenges expired before `expired_before`.
    /// A live session's binding is never deleted: it would count as
    /// unbound again.
    pub async fn purge(&self, expired_before: i64) -> Result<u64, StoreError> {
        const ORPHANS: &str = "DELETE FROM dbsc_bindings WHERE session_id IN
               (SELECT b.session_id FROM dbsc_bindings b
                WHERE b.bound_at < $1
                  AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = b.session_id)
                  AND NOT EXISTS (SELECT 1 FROM supabase_sessions p WHERE p.session_id = b.session_id)
                LIMIT 1000)";
        const ANSWERED: &str = "DELETE FROM used_dbsc_challenges WHERE jti_hash IN
               (SELECT jti_hash FROM used_dbsc_challenges WHERE expires_at < $1 LIMIT 1000)";
        Ok(self.db.purge(ORPHANS, crate::unix_now() as i64).await?
            + self.db.purge(ANSWERED, expired_before).await?)
    }
}
