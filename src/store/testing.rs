//! Databases for the store's own tests: a SQLite file in a temporary
//! directory, and, when `POSTGRES_URL` is set, a PostgreSQL schema of the
//! test's own (dropped afterwards).

use std::time::Duration;

use super::accounts::{Accounts, User};
use super::database::Database;
use crate::config::StorageSettings;

fn storage() -> StorageSettings {
    StorageSettings {
        database_url: None,
        connect_timeout: Duration::from_secs(5),
        max_connections: 4,
        migrate_at_start: true,
        redis_url: None,
        redis_prefix: "chronos:".into(),
        revocation_poll: Duration::from_millis(250),
    }
}

/// A database the test owns; gone when dropped.
pub struct TestDb {
    pub db: Database,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::TempDir::new().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let db = Database::open_url(&url, &storage()).await.unwrap();
        Self {
            db,
            _dir: Some(dir),
            schema: None,
        }
    }

    /// `None` (and a line saying so) without `POSTGRES_URL`.
    pub async fn postgres() -> Option<Self> {
        let Ok(base) = std::env::var("POSTGRES_URL") else {
            eprintln!("SKIPPED the PostgreSQL half: POSTGRES_URL is not set");
            return None;
        };
        let name = format!("chronos_unit_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(&base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let join = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{join}options=-csearch_path%3D{name}");
        let db = Database::open_url(&url, &storage()).await.unwrap();
        Some(Self {
            db,
            _dir: None,
            schema: Some((base, name)),
        })
    }

    /// Both engines (PostgreSQL only with `POSTGRES_URL`).
    pub async fn both() -> Vec<Self> {
        let mut dbs = vec![Self::sqlite().await];
        dbs.extend(Self::postgres().await);
        dbs
    }

    pub fn engine(&self) -> &'static str {
        if self.db.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    pub async fn user(&self, email: &str) -> User {
        Accounts::new(self.db.clone())
            .create(email, Some("Test"))
            .await
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, name)) = self.schema.take() else {
            return;
        };
        // Drop may run inside the test's runtime: a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&base).await {
                    let drop = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
                }
            });
        })
        .join();
    }
}
