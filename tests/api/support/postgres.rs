//! A PostgreSQL schema per test, on the machine's shared server.

/// A PostgreSQL schema of one test's own, dropped with everything in it
/// when the test ends, so tests run in parallel on one database.
pub struct PgSchema {
    base: String,
    pub name: String,
}

impl PgSchema {
    pub async fn create(base: &str) -> Self {
        let name = format!("chronos_test_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(base)
            .await
            .expect("POSTGRES_URL answers");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        Self {
            base: base.to_string(),
            name,
        }
    }

    /// `DATABASE_URL` for a server whose tables live in this schema.
    pub fn url(&self) -> String {
        let join = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{join}options=-csearch_path%3D{}", self.base, self.name)
    }

    /// Runs one statement in the schema (what a test checks directly).
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url()).await.unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
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
                    pool.close().await;
                }
            });
        })
        .join();
    }
}
