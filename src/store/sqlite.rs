//! The SQLite database under `DATA_DIR`: opened in WAL mode so that the
//! CLI (`chronos user ...`) can write while a server reads. Migrations run
//! on open (`DATABASE_MIGRATE=auto`), or only through `chronos migrate`
//! (`off`: an open then checks that none is pending). This pool reads;
//! writes go through the one writer ([`super::writer`]).

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::open::OpenError;
use crate::config::Settings;

/// `DATABASE_URL`, or the default file in `DATA_DIR`.
pub fn database_url(settings: &Settings) -> String {
    settings.storage.database_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            settings.server.data_dir.join("chronos.db").display()
        )
    })
}

/// The database file a `sqlite:` URL names (what the writer opens).
pub fn database_path(url: &str) -> std::path::PathBuf {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    std::path::PathBuf::from(rest.split('?').next().unwrap_or(rest))
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Opens the pool; with `migrate`, brings the schema up to date first,
/// otherwise refuses a database with pending migrations.
pub async fn open(url: &str, migrate: bool) -> Result<SqlitePool, OpenError> {
    let pool = connect(url).await?;
    if migrate {
        MIGRATOR.run(&pool).await?;
    } else {
        let pending = pending(&pool).await?;
        if pending > 0 {
            return Err(OpenError::Pending { pending });
        }
    }
    Ok(pool)
}

/// `chronos migrate`: applies what is pending; how many were applied.
pub async fn migrate(url: &str) -> Result<usize, OpenError> {
    let pool = connect(url).await?;
    let pending = pending(&pool).await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(pending)
}

async fn connect(url: &str) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(8)
        .min_connections(1)
        .connect_with(options)
        .await
}

/// How many of this binary's migrations the database has not applied.
async fn pending(pool: &SqlitePool) -> Result<usize, sqlx::Error> {
    let table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await?;
    let applied: Vec<i64> = match table {
        Some(_) => {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(pool)
                .await?
        }
        None => Vec::new(),
    };
    Ok(MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .count())
}
