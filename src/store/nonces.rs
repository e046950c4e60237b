//! One-time values, remembered until they expire: the nonces of sign-in
//! form tokens already posted (`used_form_tokens`) and the `jti`s of
//! back-channel logout tokens already acted on (`seen_logout_tokens`).
//! Both are kept hashed.

use super::database::Database;
use super::sql::{StoreError, args};

/// What a one-time value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneTime {
    /// A sign-in form token's nonce.
    FormToken,
    /// A back-channel logout token's `jti`.
    LogoutToken,
    /// A Security Event Token's `jti` (RISC).
    SecurityEvent,
}

impl OneTime {
    fn insert(self) -> &'static str {
        match self {
            Self::FormToken => {
                "INSERT INTO used_form_tokens (nonce, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            }
            Self::LogoutToken => {
                "INSERT INTO seen_logout_tokens (jti_hash, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            }
            Self::SecurityEvent => {
                "INSERT INTO seen_security_events (jti_hash, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            }
        }
    }

    fn purge(self) -> &'static str {
        match self {
            Self::FormToken => {
                "DELETE FROM used_form_tokens WHERE nonce IN
                   (SELECT nonce FROM used_form_tokens WHERE expires_at < $1 LIMIT 1000)"
            }
            Self::LogoutToken => {
                "DELETE FROM seen_logout_tokens WHERE jti_hash IN
                   (SELECT jti_hash FROM seen_logout_tokens WHERE expires_at < $1 LIMIT 1000)"
            }
            Self::SecurityEvent => {
                "DELETE FROM seen_security_events WHERE jti_hash IN
                   (SELECT jti_hash FROM seen_security_events WHERE expires_at < $1 LIMIT 1000)"
            }
        }
    }
}

#[derive(Clone)]
pub struct Nonces {
    db: Database,
}

impl Nonces {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records `hash` (of a `kind` value) until `expires_at`; `false` when
    /// it was recorded before. One statement, so of two replicas seeing the
    /// same value at once exactly one gets `true`.
    pub async fn first_use(
        &self,
        kind: OneTime,
        hash: String,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .db
            .write(kind.insert(), args![hash, expires_at])
            .await?
            == 1)
    }

    /// Forgets the values of `kind` that expired before `now`.
    pub async fn purge(&self, kind: OneTime, now: i64) -> Result<u64, StoreError> {
        self.db.purge(kind.purge(), now).await
    }
}
