//! The durable store: the embedded SQLite file (one writer thread and a
//! read pool, [`super::sqlite`]) or PostgreSQL (a bounded pool shared by
//! any number of replicas, [`super::postgres`]). The repositories beside
//! this module run one statement text on either ([`super::sql`]).

use sqlx::{PgPool, SqlitePool};

pub use super::open::OpenError;
use super::sql::{Args, FromRow, PgConn, SqliteConn, StoreError, Work, args, bind_all, run_ready};
use super::writer::Writer;
use super::{postgres, sqlite};
use crate::config::{Settings, StorageSettings};

/// Runs the same sqlx code on whichever pool the database has (the reads
/// of [`super::sql`]); writes on SQLite go through the writer instead.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::store::database::Database::Sqlite { pool: $pool, .. } => $body,
            $crate::store::database::Database::Postgres($pool) => $body,
        }
    };
}

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
        Self::open_url(&sqlite::database_url(settings), &settings.storage).await
    }

    /// Opens the database at `url` (`sqlite://PATH` or `postgres://...`).
    pub async fn open_url(url: &str, storage: &StorageSettings) -> Result<Self, OpenError> {
        let migrate = storage.migrate_at_start;
        if postgres::is_postgres(url) {
            return Ok(Self::Postgres(postgres::open(url, storage, migrate).await?));
        }
        let pool = sqlite::open(url, migrate).await?;
        let writer = Writer::open(&sqlite::database_path(url))?;
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
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read_one::<i64>("SELECT 1", args![]).await.map(drop)
    }

    /// Runs `delete` (`DELETE ... WHERE key IN (SELECT ... WHERE ... < $1
    /// LIMIT 1000)`) until a batch deletes less than 1000 rows, each batch
    /// a short write of its own so that the requests' writes get in
    /// between.
    pub async fn purge(&self, delete: &'static str, bound: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = self.write(delete, args![bound]).await?;
            total += deleted;
            if deleted < 1000 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Statements and transactions, on whichever engine this is.
impl Database {
    /// Runs `work` in a transaction.
    pub async fn transaction<W: Work>(&self, work: W) -> Result<W::Output, StoreError> {
        match self {
            Self::Sqlite { writer, .. } => {
                writer
                    .write(move |c| run_ready(work.run(&mut SqliteConn(c)))?)
                    .await
            }
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let output = work.run(&mut PgConn(&mut tx)).await?;
                tx.commit().await?;
                Ok(output)
            }
        }
    }

    /// Runs one writing statement; how many rows it changed.
    pub async fn write(&self, sql: &'static str, args: Args) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite { writer, .. } => {
                writer
                    .write(move |c| SqliteConn(c).execute_now(sql, &args))
                    .await
            }
            Self::Postgres(pool) => Ok(bind_all!(sqlx::query(sql), args)
                .execute(pool)
                .await?
                .rows_affected()),
        }
    }

    /// Runs one writing statement; the rows it returns (`RETURNING`).
    pub async fn write_returning<R: FromRow + Send + 'static>(
        &self,
        sql: &'static str,
        args: Args,
    ) -> Result<Vec<R>, StoreError> {
        match self {
            Self::Sqlite { writer, .. } => {
                writer
                    .write(move |c| SqliteConn(c).fetch_all_now(sql, &args))
                    .await
            }
            Self::Postgres(pool) => {
                let rows = bind_all!(sqlx::query(sql), args).fetch_all(pool).await?;
                rows.iter().map(|row| R::from_row(row)).collect()
            }
        }
    }

    /// Runs one writing statement; the first row it returns, if any.
    pub async fn write_returning_one<R: FromRow + Send + 'static>(
        &self,
        sql: &'static str,
        args: Args,
    ) -> Result<Option<R>, StoreError> {
        match self {
            Self::Sqlite { writer, .. } => {
                writer
                    .write(move |c| SqliteConn(c).fetch_optional_now(sql, &args))
                    .await
            }
            Self::Postgres(pool) => {
                let row = bind_all!(sqlx::query(sql), args)
                    .fetch_optional(pool)
                    .await?;
                row.as_ref().map(|row| R::from_row(row)).transpose()
            }
        }
    }

    /// Every row a reading statement returns (SQLite: the read pool, which
    /// never waits for the writer).
    pub async fn read<R: FromRow>(
        &self,
        sql: &'static str,
        args: Args,
    ) -> Result<Vec<R>, StoreError> {
        on_pool!(self, |pool| {
            let rows = bind_all!(sqlx::query(sql), args).fetch_all(pool).await?;
            rows.iter().map(|row| R::from_row(row)).collect()
        })
    }

    /// The first row a reading statement returns, if any.
    pub async fn read_optional<R: FromRow>(
        &self,
        sql: &'static str,
        args: Args,
    ) -> Result<Option<R>, StoreError> {
        on_pool!(self, |pool| {
            let row = bind_all!(sqlx::query(sql), args)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(|row| R::from_row(row)).transpose()
        })
    }

    /// The row a reading statement must return.
    pub async fn read_one<R: FromRow>(
        &self,
        sql: &'static str,
        args: Args,
    ) -> Result<R, StoreError> {
        self.read_optional(sql, args)
            .await?
            .ok_or_else(|| StoreError::Statement(format!("no row: {sql}")))
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
        if let Some(e) = e.downcast_ref::<StoreError>() {
            match e {
                StoreError::Stopped => return true,
                StoreError::Sqlx(e) => return is_unavailable(e),
                StoreError::Shared(e) => return is_unavailable(e.as_ref()),
                _ => {}
            }
        }
        cause = e.source();
    }
    false
}
