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

    /// Notes a proof of the key (the purge keeps bindings in use).
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

    /// Deletes bindings with no proof since `idle_before` (their session's
    /// refresh token has expired by then: every refresh of a bound session
    /// comes with a proof of the key within its bound cookie's lifetime)
    /// and answered challenges expired before `now`.
    pub async fn purge(&self, idle_before: i64, now: i64) -> Result<u64, StoreError> {
        const IDLE: &str = "DELETE FROM dbsc_bindings WHERE session_id IN
               (SELECT session_id FROM dbsc_bindings WHERE refreshed_at < $1 LIMIT 1000)";
        const ANSWERED: &str = "DELETE FROM used_dbsc_challenges WHERE jti_hash IN
               (SELECT jti_hash FROM used_dbsc_challenges WHERE expires_at < $1 LIMIT 1000)";
        Ok(self.db.purge(IDLE, idle_before).await? + self.db.purge(ANSWERED, now).await?)
    }
}
