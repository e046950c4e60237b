//! What can stop a database from opening, on either engine.

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Writer(#[from] rusqlite::Error),
    #[error("{0}")]
    Store(#[from] super::sql::StoreError),
    /// `DATABASE_MIGRATE=off` and the database is behind the binary.
    #[error("the database is {pending} migration(s) behind this version; run `chronos migrate`")]
    Pending { pending: usize },
}
