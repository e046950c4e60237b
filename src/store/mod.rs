//! Everything that must outlive a request, and the only module with SQL.
//! One repository per aggregate, with methods named for what they do; each
//! statement is written once for both engines ([`sql`]) and runs on the
//! embedded SQLite file or on PostgreSQL ([`database`]). Beside them, state
//! behind small traits that one process keeps in memory and many replicas
//! share through Redis: rate-limit counters (here), revocation news.

/// Accounts and the identities that sign them in.
pub mod accounts;
/// One-time authorization codes of the embedded sign-in page.
pub mod codes;
/// Connected accounts at the provider and their sealed tokens.
pub mod connected_accounts;
/// The durable store: SQLite or PostgreSQL.
pub mod database;
/// Device-bound sessions' keys and answered challenges (DBSC).
pub mod dbsc;
/// Sign-in flows started by `/auth/google/login` (PKCE verifiers).
pub mod flows;
/// The ids of people and sessions, typed.
pub mod ids;
/// In-process rate-limit counters.
pub mod memory;
/// Moving a deployment from SQLite to PostgreSQL (`chronos migrate-data`).
pub mod migrate_data;
/// One-time values: form-token nonces, back-channel logout `jti`s.
pub mod nonces;
/// Why a database could not be opened (either engine).
pub mod open;
/// Calls to providers kept until they succeed (revocations, remote logouts).
pub mod outbox;
/// Passkeys and the WebAuthn ceremonies under way.
pub mod passkeys;
/// PostgreSQL: pool, migrations, start-up wait.
pub mod postgres;
/// What an OpenID provider told us about our sessions.
pub mod provider_sessions;
/// What replicas share through Redis: limiter counters, revocation news.
pub mod redis;
/// Revoked sessions: in memory for the hot path, followed in the database.
pub mod revocations;
/// TOTP factors, recovery codes, failed attempts.
pub mod second_factors;
/// Our own sessions and their refresh families.
pub mod sessions;
/// Statements written once for both engines; transactions as `Work`.
pub mod sql;
/// Opening the SQLite database and running migrations.
pub mod sqlite;
/// Sessions begun with Supabase Auth.
pub mod supabase_sessions;
/// Databases for the store's own tests.
#[cfg(test)]
pub(crate) mod testing;
/// The one writing connection of the SQLite database (group commit by
/// flat combining on the requests' own threads; a checkpointer thread).
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
    /// The same count, for a store that decides without waiting (in
    /// memory): `Some` spares the boxed future of [`Self::hit`] on every
    /// request.
    fn hit_now(&self, _key: ClientKey) -> Option<Result<(), Exceeded>> {
        None
    }
    /// Forgets keys whose limits have fully replenished; called periodically.
    /// Stores that expire keys on their own (Redis TTLs) do nothing.
    fn prune(&self) {}
    /// How many keys are tracked right now (benchmarks, diagnostics).
    fn tracked_keys(&self) -> usize;
}
