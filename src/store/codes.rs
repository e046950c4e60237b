//! One-time authorization codes the embedded sign-in page issues
//! (`auth_codes`): stored hashed, bound to the flow's PKCE challenge and
//! redirect URI, used once, and remembered with the session they were
//! exchanged for (a replayed code ends that session).

use super::database::Database;
use super::ids::{SessionId, UserId};
use super::sql::{StoreError, args};

/// A code just taken for its first (and only) use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    pub user_id: UserId,
    pub code_challenge: String,
    pub redirect_uri: String,
    pub expires_at: i64,
}

/// What presenting a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// Its first use: it is used now.
    Fresh(IssuedCode),
    /// Used before (or never issued); the session it was exchanged for,
    /// if any.
    Replayed(Option<SessionId>),
}

#[derive(Clone)]
pub struct Codes {
    db: Database,
}

impl Codes {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records a code (its hash) for `user_id`.
    pub async fn issue(&self, code_hash: String, code: IssuedCode) -> Result<(), StoreError> {
        const ISSUE: &str =
            "INSERT INTO auth_codes (code_hash, user_id, code_challenge, redirect_uri, expires_at)
             VALUES ($1, $2, $3, $4, $5)";
        self.db
            .write(
                ISSUE,
                args![
                    code_hash,
                    code.user_id,
                    code.code_challenge,
                    code.redirect_uri,
                    code.expires_at
                ],
            )
            .await?;
        Ok(())
    }

    /// Marks the code used, unless it was: one conditional `UPDATE`, so
    /// of two replicas redeeming it at once exactly one gets the row; the
    /// other learns its session.
    pub async fn redeem(&self, code_hash: String, now: i64) -> Result<Redeemed, StoreError> {
        const TAKE: &str =
            "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL
             RETURNING user_id, code_challenge, redirect_uri, expires_at";
        const SESSION: &str = "SELECT session_id FROM auth_codes WHERE code_hash = $1";
        let fresh: Option<(UserId, String, String, i64)> = self
            .db
            .write_returning_one(TAKE, args![now, &code_hash])
            .await?;
        Ok(match fresh {
            Some((user_id, code_challenge, redirect_uri, expires_at)) => {
                Redeemed::Fresh(IssuedCode {
                    user_id,
                    code_challenge,
                    redirect_uri,
                    expires_at,
                })
            }
            None => Redeemed::Replayed(
                self.db
                    .read_optional::<Option<String>>(SESSION, args![code_hash])
                    .await?
                    .flatten()
                    .map(SessionId::from),
            ),
        })
    }

    /// Remembers the session the code was exchanged for.
    pub async fn exchanged_for(
        &self,
        code_hash: String,
        session_id: &str,
    ) -> Result<(), StoreError> {
        const BIND: &str = "UPDATE auth_codes SET session_id = $1 WHERE code_hash = $2";
        self.db.write(BIND, args![session_id, code_hash]).await?;
        Ok(())
    }

    /// Forgets codes that expired before `before`.
    pub async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        self.db
            .purge(
                "DELETE FROM auth_codes WHERE code_hash IN
                   (SELECT code_hash FROM auth_codes WHERE expires_at < $1 LIMIT 1000)",
                before,
            )
            .await
    }
}
