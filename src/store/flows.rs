//! Sign-in flows started by `GET /auth/google/login`: the browser gets a
//! flow cookie with a random id; the PKCE verifier, the OAuth `state`, the
//! OpenID `nonce` and the redirect target stay here (in the database, so
//! the code exchange works after a restart and on another replica).

use async_trait::async_trait;
use sqlx::SqlitePool;

use crate::secrets::{hash_token, random_token};
use crate::unix_now;

/// How long a started sign-in may take.
pub const FLOW_TTL_SECONDS: u64 = 600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedFlow {
    /// Goes into the flow cookie.
    pub id: String,
    pub code_verifier: String,
    pub state: String,
    pub nonce: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub code_verifier: String,
    pub redirect_uri: String,
    pub state: String,
    pub nonce: String,
}

#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Starts a flow that will return to `redirect_uri`.
    async fn start(&self, redirect_uri: &str) -> anyhow::Result<StartedFlow>;
    /// Takes (and deletes) an unexpired flow: each flow is used once.
    async fn take(&self, id: &str) -> anyhow::Result<Option<Flow>>;
    /// Deletes expired flows.
    async fn prune(&self) -> anyhow::Result<()>;
}

pub struct SqliteFlows {
    pool: SqlitePool,
}

impl SqliteFlows {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl FlowStore for SqliteFlows {
    async fn start(&self, redirect_uri: &str) -> anyhow::Result<StartedFlow> {
        let flow = StartedFlow {
            id: random_token(32),
            code_verifier: random_token(32),
            state: random_token(16),
            nonce: random_token(16),
        };
        sqlx::query(
            "INSERT INTO auth_flows (id_hash, code_verifier, redirect_uri, state, nonce, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(hash_token(&flow.id))
        .bind(&flow.code_verifier)
        .bind(redirect_uri)
        .bind(&flow.state)
        .bind(&flow.nonce)
        .bind((unix_now() + FLOW_TTL_SECONDS) as i64)
        .execute(&self.pool)
        .await?;
        Ok(flow)
    }

    async fn take(&self, id: &str) -> anyhow::Result<Option<Flow>> {
        let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
            "DELETE FROM auth_flows WHERE id_hash = ?
             RETURNING code_verifier, redirect_uri, state, nonce, expires_at",
        )
        .bind(hash_token(id))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .filter(|(.., expires_at)| *expires_at > unix_now() as i64)
            .map(|(code_verifier, redirect_uri, state, nonce, _)| Flow {
                code_verifier,
                redirect_uri,
                state,
                nonce,
            }))
    }

    async fn prune(&self) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM auth_flows WHERE expires_at <= ?")
            .bind(unix_now() as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
