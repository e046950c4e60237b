//! Sign-in flows started by `GET /auth/google/login`: the browser gets a
//! flow cookie with a random id; the PKCE verifier, the OAuth `state`, the
//! OpenID `nonce` and the redirect target stay here (in the database, so
//! the code exchange works after a restart and on another replica).

use async_trait::async_trait;

use super::database::Database;
use super::ids::{SessionId, UserId};
use super::sql::args;
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
    /// A flow that connects an account to this signed-in person and
    /// session, rather than signing someone in.
    pub connect: Option<(UserId, SessionId)>,
}

#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Starts a flow that will return to `redirect_uri`.
    async fn start(&self, redirect_uri: &str) -> anyhow::Result<StartedFlow> {
        self.start_for(redirect_uri, None).await
    }
    /// Starts a flow; with `connect`, one that connects an account to that
    /// signed-in person and session.
    async fn start_for(
        &self,
        redirect_uri: &str,
        connect: Option<(&UserId, &SessionId)>,
    ) -> anyhow::Result<StartedFlow>;
    /// Takes (and deletes) an unexpired flow: each flow is used once.
    async fn take(&self, id: &str) -> anyhow::Result<Option<Flow>>;
    /// Deletes expired flows.
    async fn prune(&self) -> anyhow::Result<()>;
}

/// Flows in the database (a flow is written once and taken once: on
/// PostgreSQL the `DELETE ... RETURNING` hands a flow to one replica).
pub struct DatabaseFlows {
    db: Database,
}

impl DatabaseFlows {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl FlowStore for DatabaseFlows {
    async fn start_for(
        &self,
        redirect_uri: &str,
        connect: Option<(&UserId, &SessionId)>,
    ) -> anyhow::Result<StartedFlow> {
        let flow = StartedFlow {
            id: random_token(32),
            code_verifier: random_token(32),
            state: random_token(16),
            nonce: random_token(16),
        };
        const START: &str =
            "INSERT INTO auth_flows (id_hash, code_verifier, redirect_uri, state, nonce,
               expires_at, connect_user_id, connect_session_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        let expires_at = (unix_now() + FLOW_TTL_SECONDS) as i64;
        self.db
            .write(
                START,
                args![
                    hash_token(&flow.id),
                    &flow.code_verifier,
                    redirect_uri,
                    &flow.state,
                    &flow.nonce,
                    expires_at,
                    connect.map(|(user, _)| user.to_string()),
                    connect.map(|(_, session)| session.to_string())
                ],
            )
            .await?;
        Ok(flow)
    }

    async fn take(&self, id: &str) -> anyhow::Result<Option<Flow>> {
        const TAKE: &str = "DELETE FROM auth_flows WHERE id_hash = $1
             RETURNING code_verifier, redirect_uri, state, nonce, expires_at, connect_user_id,
                       connect_session_id";
        type Taken = (
            String,
            String,
            String,
            String,
            i64,
            Option<UserId>,
            Option<SessionId>,
        );
        let row: Option<Taken> = self
            .db
            .write_returning_one(TAKE, args![hash_token(id)])
            .await?;
        Ok(row
            .filter(|(_, _, _, _, expires_at, ..)| *expires_at > unix_now() as i64)
            .map(
                |(code_verifier, redirect_uri, state, nonce, _, user, session)| Flow {
                    code_verifier,
                    redirect_uri,
                    state,
                    nonce,
                    connect: user.zip(session),
                },
            ))
    }

    async fn prune(&self) -> anyhow::Result<()> {
        self.db
            .purge(
                "DELETE FROM auth_flows WHERE id_hash IN
                   (SELECT id_hash FROM auth_flows WHERE expires_at <= $1 LIMIT 1000)",
                unix_now() as i64,
            )
            .await?;
        Ok(())
    }
}
