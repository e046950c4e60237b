//! Calls to a provider that must happen, but not on a request's path
//! (revoking a refresh token at logout, a remote logout): written down
//! first, delivered by a background task, retried with backoff until the
//! provider confirms, across restarts.

use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::Notify;

use super::database::{Database, on_pool};
use crate::metrics::Metrics;
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

#[derive(Clone)]
pub struct Outbox {
    db: Database,
    /// A retried call is a failed one (`chronos_provider_failures_total`).
    metrics: Metrics,
}

impl Outbox {
    pub fn new(db: Database, metrics: Metrics) -> Self {
        Self { db, metrics }
    }

    /// Writes a call down, due now.
    pub async fn push(&self, kind: &'static str, payload: String) -> anyhow::Result<()> {
        match &self.db {
            Database::Sqlite { writer, .. } => {
                writer
                    .write(move |c| Self::push_on(c, kind, &payload))
                    .await?;
            }
            Database::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                Self::push_on_pg(&mut conn, kind, &payload).await?;
            }
        }
        Ok(())
    }

    /// [`push_on`](Self::push_on) on PostgreSQL, inside the caller's
    /// transaction.
    pub async fn push_on_pg(
        conn: &mut sqlx::PgConnection,
        kind: &str,
        payload: &str,
    ) -> sqlx::Result<()> {
        let now = unix_now() as i64;
        sqlx::query(
            "INSERT INTO outbox (kind, payload, next_attempt_at, created_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(kind)
        .bind(payload)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// [`push`](Self::push) inside a write on the writer, so the call is
    /// written down together with what made it necessary.
    pub fn push_on(conn: &Connection, kind: &str, payload: &str) -> rusqlite::Result<()> {
        let now = unix_now() as i64;
        conn.execute(
            "INSERT INTO outbox (kind, payload, next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?3)",
            params![kind, payload, now],
        )?;
        Ok(())
    }

    /// Calls that are due, oldest first.
    pub async fn due(&self, limit: i64) -> anyhow::Result<Vec<Pending>> {
        const DUE: &str =
            "SELECT id, kind, payload, attempts FROM outbox WHERE next_attempt_at <= $1
             ORDER BY id LIMIT $2";
        let now = unix_now() as i64;
        let rows: Vec<(i64, String, String, i64)> = on_pool!(&self.db, |pool| sqlx::query_as(DUE)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?);
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
    pub async fn done(&self, id: i64) -> anyhow::Result<()> {
        match &self.db {
            Database::Sqlite { writer, .. } => {
                writer
                    .write(move |c| c.execute("DELETE FROM outbox WHERE id = ?1", [id]))
                    .await?;
            }
            Database::Postgres(pool) => {
                sqlx::query("DELETE FROM outbox WHERE id = $1")
                    .bind(id)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Tries again later: 1 s, 2 s, 4 s... up to ten minutes apart.
    pub async fn retry(&self, pending: &Pending) -> anyhow::Result<()> {
        self.metrics.provider_failed("revoke");
        let backoff = 1u64
            .checked_shl(pending.attempts.clamp(0, 20) as u32)
            .unwrap_or(MAX_BACKOFF_SECONDS)
            .min(MAX_BACKOFF_SECONDS);
        let (next, id) = ((unix_now() + backoff) as i64, pending.id);
        match &self.db {
            Database::Sqlite { writer, .. } => {
                writer
                    .write(move |c| {
                        c.execute(
                            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?1 WHERE id = ?2",
                            params![next, id],
                        )
                    })
                    .await?;
            }
            Database::Postgres(pool) => {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1 WHERE id = $2",
                )
                .bind(next)
                .bind(id)
                .execute(pool)
                .await?;
            }
        }
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

    /// How many calls are waiting.
    pub async fn len(&self) -> anyhow::Result<i64> {
        const COUNT: &str = "SELECT COUNT(*) FROM outbox";
        Ok(on_pool!(&self.db, |pool| sqlx::query_scalar(COUNT)
            .fetch_one(pool)
            .await?))
    }
}
