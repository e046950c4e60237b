//! Calls to a provider that must happen, but not on a request's path
//! (revoking a refresh token at logout, a remote logout): written down
//! first, delivered by a background task, retried with backoff until the
//! provider confirms, across restarts.

use std::time::Duration;

use tokio::sync::Notify;

use super::database::Database;
use super::sql::{Exec, StoreError, args};
use crate::unix_now;

/// One pending call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: i64,
    pub kind: String,
    /// Sealed by the caller when it holds a secret.
    pub payload: String,
    pub attempts: i64,
}

/// The longest wait between two attempts.
const MAX_BACKOFF_SECONDS: u64 = 600;

const PUSH: &str =
    "INSERT INTO outbox (kind, payload, next_attempt_at, created_at) VALUES ($1, $2, $3, $3)";

/// Writes a call down, due now, inside the caller's transaction: the call
/// is written down together with what made it necessary.
pub(crate) async fn push_in<E: Exec>(
    tx: &mut E,
    kind: &str,
    payload: &str,
) -> Result<(), StoreError> {
    tx.execute(PUSH, args![kind, payload, unix_now() as i64])
        .await?;
    Ok(())
}

#[derive(Clone)]
pub struct Outbox {
    db: Database,
}

impl Outbox {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Writes a call down, due now.
    pub async fn push(&self, kind: &'static str, payload: String) -> Result<(), StoreError> {
        self.db
            .write(PUSH, args![kind, payload, unix_now() as i64])
            .await?;
        Ok(())
    }

    /// Calls that are due, oldest first.
    pub async fn due(&self, limit: i64) -> Result<Vec<Pending>, StoreError> {
        const DUE: &str =
            "SELECT id, kind, payload, attempts FROM outbox WHERE next_attempt_at <= $1
             ORDER BY id LIMIT $2";
        let rows: Vec<(i64, String, String, i64)> =
            self.db.read(DUE, args![unix_now() as i64, limit]).await?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, payload, attempts)| Pending {
                id,
                kind,
                payload,
                attempts,
            })
            .collect())
    }

    /// The provider confirmed (or the call can never succeed): forget it.
    pub async fn done(&self, id: i64) -> Result<(), StoreError> {
        self.db
            .write("DELETE FROM outbox WHERE id = $1", args![id])
            .await?;
        Ok(())
    }

    /// Tries again later: 1 s, 2 s, 4 s... up to ten minutes apart.
    pub async fn retry(&self, pending: &Pending) -> Result<(), StoreError> {
        let backoff = 1u64
            .checked_shl(pending.attempts.clamp(0, 20) as u32)
            .unwrap_or(MAX_BACKOFF_SECONDS)
            .min(MAX_BACKOFF_SECONDS);
        const RETRY: &str =
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1 WHERE id = $2";
        self.db
            .write(RETRY, args![(unix_now() + backoff) as i64, pending.id])
            .await?;
        Ok(())
    }

    /// Delivers the due calls of `kind` with `deliver`, every second and
    /// whenever `wake` is notified, until the process ends. `deliver`
    /// settles each call ([`done`](Self::done) or [`retry`](Self::retry)).
    pub async fn deliver_forever<F, Fut>(&self, kind: &str, wake: &Notify, deliver: F)
    where
        F: Fn(Pending) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        loop {
            match self.due(50).await {
                Ok(due) => {
                    for pending in due.into_iter().filter(|p| p.kind == kind) {
                        if let Err(error) = deliver(pending).await {
                            tracing::warn!(error = format!("{error:#}"), "outbox delivery failed");
                        }
                    }
                }
                Err(error) => tracing::warn!(error = format!("{error:#}"), "outbox read failed"),
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
