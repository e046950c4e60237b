//! Second factors of embedded accounts: a TOTP secret (`totp_factors`,
//! sealed), recovery codes (`recovery_codes`, hashed) and the count of
//! failed attempts (`mfa_failures`).

use super::database::Database;
use super::ids::UserId;
use super::sql::{Exec, StoreError, Work, args};

/// An account's TOTP factor as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpFactor {
    /// Sealed.
    pub secret: String,
    /// `None` while enrolment waits for its first code.
    pub confirmed_at: Option<i64>,
    /// The last time step a code was accepted for.
    pub last_step: i64,
}

#[derive(Clone)]
pub struct SecondFactors {
    db: Database,
}

/// Replaces the account's recovery codes with these (hashes).
struct ReplaceCodes {
    user_id: UserId,
    hashes: Vec<String>,
    now: i64,
}

impl Work for ReplaceCodes {
    type Output = ();
    async fn run<E: Exec>(self, tx: &mut E) -> Result<(), StoreError> {
        const CLEAR: &str = "DELETE FROM recovery_codes WHERE user_id = $1";
        const ADD: &str =
            "INSERT INTO recovery_codes (code_hash, user_id, created_at) VALUES ($1, $2, $3)";
        tx.execute(CLEAR, args![&self.user_id]).await?;
        for hash in self.hashes {
            tx.execute(ADD, args![hash, &self.user_id, self.now])
                .await?;
        }
        Ok(())
    }
}

/// Deletes the factor and the codes that stand in for it.
struct Remove(UserId);

impl Work for Remove {
    type Output = bool;
    async fn run<E: Exec>(self, tx: &mut E) -> Result<bool, StoreError> {
        const FACTOR: &str = "DELETE FROM totp_factors WHERE user_id = $1";
        const CODES: &str = "DELETE FROM recovery_codes WHERE user_id = $1";
        const FAILURES: &str = "DELETE FROM mfa_failures WHERE user_id = $1";
        let removed = tx.execute(FACTOR, args![&self.0]).await?;
        tx.execute(CODES, args![&self.0]).await?;
        tx.execute(FAILURES, args![&self.0]).await?;
        Ok(removed == 1)
    }
}

impl SecondFactors {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub async fn totp(&self, user_id: &str) -> Result<Option<TotpFactor>, StoreError> {
        const TOTP: &str =
            "SELECT secret, confirmed_at, last_step FROM totp_factors WHERE user_id = $1";
        let row: Option<(String, Option<i64>, i64)> =
            self.db.read_optional(TOTP, args![user_id]).await?;
        Ok(row.map(|(secret, confirmed_at, last_step)| TotpFactor {
            secret,
            confirmed_at,
            last_step,
        }))
    }

    /// Starts (or restarts) enrolment with this sealed secret; `false`
    /// when the account has a confirmed factor already (it is removed
    /// first, deliberately).
    pub async fn begin_totp(
        &self,
        user_id: &str,
        sealed: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        const BEGIN: &str =
            "INSERT INTO totp_factors (user_id, secret, confirmed_at, last_step, created_at)
             VALUES ($1, $2, NULL, 0, $3)
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, last_step = 0,
               created_at = excluded.created_at
             WHERE totp_factors.confirmed_at IS NULL";
        Ok(self.db.write(BEGIN, args![user_id, sealed, now]).await? == 1)
    }

    /// Accepts a code of time step `step`: confirms an enrolment
    /// (`confirming`) or uses a confirmed factor. `false` when that step,
    /// or a later one, was accepted before: a code is good once.
    pub async fn accept_step(
        &self,
        user_id: &str,
        step: i64,
        confirming: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        const CONFIRM: &str = "UPDATE totp_factors SET confirmed_at = $3, last_step = $2
             WHERE user_id = $1 AND confirmed_at IS NULL AND last_step < $2";
        const USE: &str = "UPDATE totp_factors SET last_step = $2
             WHERE user_id = $1 AND confirmed_at IS NOT NULL AND last_step < $2";
        let changed = if confirming {
            self.db.write(CONFIRM, args![user_id, step, now]).await?
        } else {
            self.db.write(USE, args![user_id, step]).await?
        };
        Ok(changed == 1)
    }

    /// Removes the factor, its recovery codes and failure count; `false`
    /// when there was no factor.
    pub async fn remove(&self, user_id: &UserId) -> Result<bool, StoreError> {
        self.db.transaction(Remove(user_id.clone())).await
    }

    pub async fn replace_recovery_codes(
        &self,
        user_id: &UserId,
        hashes: Vec<String>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.db
            .transaction(ReplaceCodes {
                user_id: user_id.clone(),
                hashes,
                now,
            })
            .await
    }

    /// Uses up a recovery code; `false` when the account has no such code
    /// (never issued, or used).
    pub async fn use_recovery_code(&self, user_id: &str, hash: &str) -> Result<bool, StoreError> {
        const USE: &str = "DELETE FROM recovery_codes WHERE code_hash = $1 AND user_id = $2";
        Ok(self.db.write(USE, args![hash, user_id]).await? == 1)
    }

    pub async fn recovery_codes_left(&self, user_id: &str) -> Result<i64, StoreError> {
        const LEFT: &str = "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1";
        self.db.read_one::<i64>(LEFT, args![user_id]).await
    }

    /// Counts a failed attempt; the failures in the window that began at
    /// or after `window_start` (an older window starts again at one).
    pub async fn failed(
        &self,
        user_id: &str,
        now: i64,
        window_start: i64,
    ) -> Result<i64, StoreError> {
        const FAILED: &str = "INSERT INTO mfa_failures (user_id, failures, window_start)
             VALUES ($1, 1, $2)
             ON CONFLICT (user_id) DO UPDATE SET
               failures = CASE WHEN mfa_failures.window_start < $3 THEN 1
                               ELSE mfa_failures.failures + 1 END,
               window_start = CASE WHEN mfa_failures.window_start < $3 THEN $2
                                   ELSE mfa_failures.window_start END
             RETURNING failures";
        self.db
            .write_returning_one::<i64>(FAILED, args![user_id, now, window_start])
            .await?
            .ok_or_else(|| StoreError::Statement("upsert returned no row".into()))
    }

    /// Failures in the window that began at or after `window_start`.
    pub async fn failures(&self, user_id: &str, window_start: i64) -> Result<i64, StoreError> {
        const FAILURES: &str =
            "SELECT failures FROM mfa_failures WHERE user_id = $1 AND window_start >= $2";
        let row: Option<i64> = self
            .db
            .read_optional(FAILURES, args![user_id, window_start])
            .await?;
        Ok(row.unwrap_or(0))
    }

    pub async fn clear_failures(&self, user_id: &str) -> Result<(), StoreError> {
        const CLEAR: &str = "DELETE FROM mfa_failures WHERE user_id = $1";
        self.db.write(CLEAR, args![user_id]).await?;
        Ok(())
    }
}
