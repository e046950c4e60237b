//! The SQLite database under `DATA_DIR`: opened in WAL mode so that the
//! CLI (`chronos user ...`) can write while a server reads. Migrations run
//! on open (`DATABASE_MIGRATE=auto`), or only through `chronos migrate`
//! (`off`: an open then checks that none is pending). This pool reads;
//! writes go through the one writer ([`super::writer`]).

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

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

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The read pool (WAL, so readers never wait for the writer).
pub async fn connect(url: &str) -> Result<SqlitePool, sqlx::Error> {
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
