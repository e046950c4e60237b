//! PostgreSQL for many replicas: a bounded pool, the schema of
//! `migrations/postgres` (migrations take PostgreSQL's advisory lock, so
//! replicas starting together migrate once), start-up that waits for the
//! database up to `DATABASE_CONNECT_TIMEOUT` and then fails with one line.
//! A test or a tenant picks a schema with the URL's
//! `?options=-csearch_path%3Dname`.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::StorageSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a connection before it is answered 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The pool, once one connection has succeeded: retried with backoff for
/// up to `DATABASE_CONNECT_TIMEOUT` (a database starting beside us), then
/// the last error.
pub async fn connect(url: &str, storage: &StorageSettings) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name("chronos");
    let pool = PgPoolOptions::new()
        .max_connections(storage.max_connections)
        .min_connections(0)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(Duration::from_secs(300))
        // No ping before each use (a round trip per query): a broken
        // connection fails its query, which answers 503 and is dropped.
        .test_before_acquire(false)
        .connect_lazy_with(options);
    let deadline = Instant::now() + storage.connect_timeout;
    let mut wait = Duration::from_millis(100);
    loop {
        match sqlx::query("SELECT 1").execute(&pool).await {
            Ok(_) => return Ok(pool),
            Err(e) if Instant::now() + wait < deadline => {
                tracing::warn!(error = %e, "waiting for the database");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}
