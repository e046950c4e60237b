//! The durable store: the embedded SQLite file (one writer thread and a
//! read pool, [`super::sqlite`]) or PostgreSQL (a bounded pool shared by
//! any number of replicas, [`super::postgres`]). Each store module keeps
//! its statements for both engines side by side, so what a write means is
//! read in one place.

use sqlx::{PgPool, SqlitePool};

pub use super::open::OpenError;
use super::writer::{WriteError, Writer, purge_in_batches};
use super::{postgres, sqlite};
use crate::config::Settings;

/// Runs the same sqlx statement on whichever pool the database has (a read
/// written once for both engines: `$n` placeholders read the same):
/// `on_pool!(&self.db, |pool| sqlx::query(Q).bind(x).fetch_all(pool).await?)`.
/// Writes on SQLite go through the writer instead, so this serves reads.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::store::database::Database::Sqlite { pool: $pool, .. } => $body,
            $crate::store::database::Database::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

#[derive(Clone)]
pub enum Database {
    Sqlite { pool: SqlitePool, writer: Writer },
    Postgres(PgPool),
}

impl Database {
    /// Opens the database `DATABASE_URL` names (the SQLite file in DATA_DIR
    /// without it); migrates it, or with `DATABASE_MIGRATE=off` refuses one
    /// that is behind.
    pub async fn open(settings: &Settings) -> Result<Self, OpenError> {
        let url = sqlite::database_url(settings);
        let migrate = settings.storage.migrate_at_start;
        if postgres::is_postgres(&url) {
            return Ok(Self::Postgres(
                postgres::open(&url, &settings.storage, migrate).await?,
            ));
        }
        let pool = sqlite::open(&url, migrate).await?;
        let writer = Writer::open(&sqlite::database_path(&url))?;
        Ok(Self::Sqlite { pool, writer })
    }

    /// `chronos migrate`: applies what is pending; how many were applied.
    pub async fn migrate(settings: &Settings) -> Result<usize, OpenError> {
        let url = sqlite::database_url(settings);
        if postgres::is_postgres(&url) {
            postgres::migrate(&url, &settings.storage).await
        } else {
            sqlite::migrate(&url).await
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// The readiness probe's check: one round trip.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite { pool, .. } => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
    }

    /// Runs `delete` (`DELETE ... WHERE key IN (SELECT ... WHERE ... < $1
    /// LIMIT 1000)`: `$1` reads the same on both engines) until a batch
    /// deletes less than 1000 rows, each batch a short write.
    pub async fn purge(&self, delete: &'static str, bound: i64) -> anyhow::Result<u64> {
        match self {
            Self::Sqlite { writer, .. } => Ok(purge_in_batches(writer, delete, bound).await?),
            Self::Postgres(pool) => {
                let mut total = 0;
                loop {
                    let deleted = sqlx::query(delete)
                        .bind(bound)
                        .execute(pool)
                        .await?
                        .rows_affected();
                    total += deleted;
                    if deleted < 1000 {
                        return Ok(total);
                    }
                }
            }
        }
    }

    /// Records a one-time value until it expires (`insert`: an `INSERT ...
    /// VALUES ($1, $2) ON CONFLICT DO NOTHING` of key and expiry);
    /// `false` when it was recorded before.
    pub async fn record_once(
        &self,
        insert: &'static str,
        key: String,
        expires_at: i64,
    ) -> anyhow::Result<bool> {
        let inserted = match self {
            Self::Sqlite { writer, .. } => {
                writer
                    .write(move |c| c.execute(insert, rusqlite::params![key, expires_at]))
                    .await? as u64
            }
            Self::Postgres(pool) => sqlx::query(insert)
                .bind(key)
                .bind(expires_at)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(inserted == 1)
    }

    /// The SQLite writer; `None` on PostgreSQL.
    pub fn writer(&self) -> Option<&Writer> {
        match self {
            Self::Sqlite { writer, .. } => Some(writer),
            Self::Postgres(_) => None,
        }
    }
}

/// Whether an error means "the database cannot be reached right now"
/// (answered 503, retried later) rather than a fault in what was asked.
pub fn is_unavailable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<sqlx::Error>() {
            return match e {
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed => true,
                // Connection exceptions, shutdown, too many connections.
                sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                    code.starts_with("08")
                        || code.starts_with("57P")
                        || code == "53300"
                        || code == "25006"
                }),
                _ => false,
            };
        }
        if let Some(WriteError::Stopped) = e.downcast_ref::<WriteError>() {
            return true;
        }
        cause = e.source();
    }
    false
}
