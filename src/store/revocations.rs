//! Revoked sessions. Every place that accepts an access token asks
//! [`RevocationStore::is_revoked`], which answers from memory; the list is
//! persisted so it survives a restart, and other processes' revocations
//! (the CLI, other replicas) are picked up by [`RevocationStore::sync`].

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;
use sqlx::SqlitePool;

use crate::unix_now;

#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Records the sessions as revoked, here and for every other process.
    async fn revoke(&self, session_ids: &[String]) -> anyhow::Result<()>;
    /// Whether an access token of this session must be refused. No I/O.
    fn is_revoked(&self, session_id: &str) -> bool;
    /// Picks up revocations recorded by other processes.
    async fn sync(&self) -> anyhow::Result<()>;
    /// Forgets revocations older than the longest access-token lifetime
    /// (every token of theirs has expired by then).
    async fn prune(&self) -> anyhow::Result<()>;
    /// How many revocations are held in memory.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Default)]
struct Revoked {
    /// session id -> revoked_at
    sessions: HashMap<String, u64>,
    last_seq: i64,
}

/// Revocations in the SQLite database, mirrored in a hash set.
pub struct SqliteRevocations {
    pool: SqlitePool,
    /// The longest access-token lifetime, seconds.
    window: u64,
    revoked: RwLock<Revoked>,
}

impl SqliteRevocations {
    /// Loads the revocations that can still matter.
    pub async fn load(pool: SqlitePool, window: u64) -> anyhow::Result<Self> {
        let store = Self {
            pool,
            window,
            revoked: RwLock::new(Revoked::default()),
        };
        store.sync().await?;
        Ok(store)
    }

    fn remember(&self, rows: Vec<(i64, String, i64)>) {
        if rows.is_empty() {
            return;
        }
        let horizon = unix_now().saturating_sub(self.window);
        let Ok(mut revoked) = self.revoked.write() else {
            return;
        };
        for (seq, session_id, revoked_at) in rows {
            revoked.last_seq = revoked.last_seq.max(seq);
            let revoked_at = u64::try_from(revoked_at).unwrap_or(0);
            if revoked_at >= horizon {
                revoked.sessions.insert(session_id, revoked_at);
            }
        }
    }
}

#[async_trait]
impl RevocationStore for SqliteRevocations {
    async fn revoke(&self, session_ids: &[String]) -> anyhow::Result<()> {
        if session_ids.is_empty() {
            return Ok(());
        }
        let now = unix_now() as i64;
        let mut tx = self.pool.begin().await?;
        let mut rows = Vec::with_capacity(session_ids.len());
        for id in session_ids {
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO revocations (session_id, revoked_at) VALUES (?, ?) RETURNING seq",
            )
            .bind(id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            rows.push((seq, id.clone(), now));
        }
        tx.commit().await?;
        self.remember(rows);
        Ok(())
    }

    fn is_revoked(&self, session_id: &str) -> bool {
        self.revoked
            .read()
            .map_or(true, |r| r.sessions.contains_key(session_id))
    }

    async fn sync(&self) -> anyhow::Result<()> {
        let last_seq = self.revoked.read().map_or(0, |r| r.last_seq);
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT seq, session_id, revoked_at FROM revocations WHERE seq > ? ORDER BY seq",
        )
        .bind(last_seq)
        .fetch_all(&self.pool)
        .await?;
        self.remember(rows);
        Ok(())
    }

    async fn prune(&self) -> anyhow::Result<()> {
        let horizon = unix_now().saturating_sub(self.window);
        if let Ok(mut revoked) = self.revoked.write() {
            revoked.sessions.retain(|_, at| *at >= horizon);
            revoked.sessions.shrink_to_fit();
        }
        sqlx::query("DELETE FROM revocations WHERE revoked_at < ?")
            .bind(horizon as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn len(&self) -> usize {
        self.revoked.read().map_or(0, |r| r.sessions.len())
    }
}
