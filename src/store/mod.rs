//! State that must outlive a request, behind small traits so that one
//! process can keep it in memory or in SQLite, and many replicas (PostgreSQL, Redis) can share
//! it, without the HTTP layer noticing: rate-limit counters (here),
//! revocations, sign-in flows.

/// The durable store: SQLite or PostgreSQL.
pub mod database;
/// Sign-in flows started by `/auth/google/login` (PKCE verifiers), in SQLite.
pub mod flows;
/// In-process rate-limit counters.
pub mod memory;
/// Why a database could not be opened (either engine).
pub mod open;
/// Calls to providers kept until they succeed (revocations, remote logouts).
pub mod outbox;
/// PostgreSQL: pool, migrations, start-up wait.
pub mod postgres;
/// What replicas share through Redis: limiter counters, revocation news.
pub mod redis;
/// Revoked sessions: in memory for the hot path, persisted in SQLite.
pub mod revocations;
/// Opening the SQLite database and running migrations.
pub mod sqlite;
/// The one writer of the SQLite database (group commit).
pub mod writer;

use async_trait::async_trait;

use crate::limits::ClientKey;
pub use crate::limits::Exceeded;

/// Counters for one rate-limit policy. A store is built with the policy's
/// limits and applies all of them on every hit.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts one request from `key`; `Err` when any limit is exhausted.
    async fn hit(&self, key: ClientKey) -> Result<(), Exceeded>;
    /// Forgets keys whose limits have fully replenished; called periodically.
    /// Stores that expire keys on their own (Redis TTLs) do nothing.
    fn prune(&self) {}
    /// How many keys are tracked right now (benchmarks, diagnostics).
    fn tracked_keys(&self) -> usize;
}
