//! The durable store: the embedded SQLite file (one writing connection and a
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
        let db = Self::connect(url, storage).await?;
        if storage.migrate_at_start {
            db.run_migrations().await?;
        } else {
            let pending = db.pending_migrations().await?;
            if pending > 0 {
                return Err(OpenError::Pending { pending });
            }
        }
        Ok(db)
    }

    async fn connect(url: &str, storage: &StorageSettings) -> Result<Self, OpenError> {
        if postgres::is_postgres(url) {
            return Ok(Self::Postgres(postgres::connect(url, storage).await?));
        }
        let pool = sqlite::connect(url).await?;
        let writer = Writer::open(&sqlite::database_path(url))?;
        Ok(Self::Sqlite { pool, writer })
    }

    /// `chronos migrate`: applies what is pending; how many were applied.
    pub async fn migrate(settings: &Settings) -> Result<usize, OpenError> {
        let db = Self::connect(&sqlite::database_url(settings), &settings.storage).await?;
        let pending = db.pending_migrations().await?;
        db.run_migrations().await?;
        db.close().await;
        Ok(pending)
    }

    /// Brings the schema up to date (PostgreSQL: under an advisory lock,
    /// so replicas starting together migrate once).
    async fn run_migrations(&self) -> Result<(), OpenError> {
        match self {
            Self::Sqlite { pool, .. } => sqlite::MIGRATOR.run(pool).await?,
            Self::Postgres(pool) => postgres::MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    /// How many of this binary's migrations the database has not applied.
    async fn pending_migrations(&self) -> Result<usize, StoreError> {
        // Whether the migrations table exists: each engine's catalogue.
        const TABLE_SQLITE: &str =
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
        const TABLE_POSTGRES: &str = "SELECT COUNT(*) FROM pg_catalog.pg_tables
             WHERE tablename = '_sqlx_migrations' AND schemaname = current_schema()";
        let (table, migrator) = match self {
            Self::Sqlite { .. } => (TABLE_SQLITE, &sqlite::MIGRATOR),
            Self::Postgres(_) => (TABLE_POSTGRES, &postgres::MIGRATOR),
        };
        let applied: Vec<i64> = if self.read_one::<i64>(table, args![]).await? > 0 {
            self.read(
                "SELECT version FROM _sqlx_migrations WHERE success",
                args![],
            )
            .await?
        } else {
            Vec::new()
        };
        Ok(migrator
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .count())
    }

    /// Closes the pool (a command that is done with the database).
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
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
            let deleted = match self {
                // Not on a request's thread (the writer's note).
                Self::Sqlite { writer, .. } => {
                    let args = args![bound];
                    writer
                        .write_apart(move |c| SqliteConn(c).execute_now(delete, &args))
                        .await?
                }
                Self::Postgres(_) => self.write(delete, args![bound]).await?,
            };
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
            // Boxed: sqlx's futures are several KiB, and unboxed they would
            // make every caller's future (a refresh's, copied into its box on
            // every request) that large on SQLite too.
            Self::Postgres(pool) => {
                Box::pin(async move {
                    let mut tx = pool.begin().await?;
                    let output = work.run(&mut PgConn(&mut tx)).await?;
                    tx.commit().await?;
                    Ok(output)
                })
                .await
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
