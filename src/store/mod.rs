//! State that must outlive a request, behind small traits so that one
//! process can keep it in memory and many replicas can share it (Redis,
//! Postgres) without the HTTP layer noticing.

/// Sign-in flows started by `/auth/google/login` (PKCE verifiers).
pub mod flows;
/// In-process rate-limit counters.
pub mod memory;
/// Revoked sessions: in memory for the hot path, persisted in SQLite.
pub mod revocations;
/// Opening the SQLite database and running migrations.
pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;

use crate::security::client_ip::ClientKey;

/// A limit that a request went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// Index of the limit (in the order configured) that refused.
    pub limit: usize,
    /// How long until the request would have been allowed.
    pub retry_after: Duration,
}

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
