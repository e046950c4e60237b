//! What an OpenID provider told us about one of our sessions
//! (`provider_sessions`): the provider's subject and session id (its
//! back-channel logouts name them) and its refresh token, sealed, to be
//! revoked at the provider when our session ends, and the sign-in's ID
//! token, sealed, for RP-initiated logout.

use super::database::Database;
use super::ids::SessionId;
use super::outbox::push_in;
use super::sql::{Exec, StoreError, Work, args};

/// A session begun with a provider.
pub struct ProviderSession {
    pub session_id: SessionId,
    pub issuer: String,
    pub subject: String,
    pub provider_sid: Option<String>,
    /// Sealed; `None` when it is not kept.
    pub refresh_token: Option<String>,
    /// The ID token of the sign-in, sealed (RP-initiated logout's hint).
    pub id_token: Option<String>,
    pub created_at: i64,
}

/// Takes the ended sessions' refresh tokens and writes their revocations
/// down in the outbox, in one transaction: a token is revoked once, by one
/// replica (the conditional `UPDATE` lets one of two concurrent takers
/// through).
struct TakeForRevocation {
    session_ids: Vec<SessionId>,
    kind: &'static str,
}

impl Work for TakeForRevocation {
    /// How many revocations were written down.
    type Output = usize;

    async fn run<E: Exec>(self, tx: &mut E) -> Result<usize, StoreError> {
        const TOKEN: &str = "SELECT refresh_token FROM provider_sessions
             WHERE session_id = $1 AND refresh_token IS NOT NULL";
        const TAKE: &str = "UPDATE provider_sessions SET refresh_token = NULL
             WHERE session_id = $1 AND refresh_token IS NOT NULL";
        let mut queued = 0;
        for session_id in self.session_ids {
            let sealed: Option<String> = tx.fetch_optional(TOKEN, args![&session_id]).await?;
            let Some(sealed) = sealed else { continue };
            if tx.execute(TAKE, args![&session_id]).await? == 1 {
                push_in(tx, self.kind, &sealed).await?;
                queued += 1;
            }
        }
        Ok(queued)
    }
}

#[derive(Clone)]
pub struct ProviderSessions {
    db: Database,
}

impl ProviderSessions {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub async fn record(&self, session: ProviderSession) -> Result<(), StoreError> {
        const RECORD: &str = "INSERT INTO provider_sessions (session_id, issuer, subject, provider_sid, refresh_token, created_at, id_token)
             VALUES ($1, $2, $3, $4, $5, $6, $7)";
        self.db
            .write(
                RECORD,
                args![
                    session.session_id,
                    session.issuer,
                    session.subject,
                    session.provider_sid,
                    session.refresh_token,
                    session.created_at,
                    session.id_token
                ],
            )
            .await?;
        Ok(())
    }

    /// Moves the refresh tokens of these sessions into the outbox as calls
    /// of `kind`; how many.
    pub async fn take_for_revocation(
        &self,
        session_ids: &[SessionId],
        kind: &'static str,
    ) -> Result<usize, StoreError> {
        let work = TakeForRevocation {
            session_ids: session_ids.to_vec(),
            kind,
        };
        self.db.transaction(work).await
    }

    /// The sealed ID token the session's sign-in brought, if kept.
    pub async fn id_token_of(&self, session_id: &str) -> Result<Option<String>, StoreError> {
        const ID_TOKEN: &str = "SELECT id_token FROM provider_sessions
             WHERE session_id = $1 AND id_token IS NOT NULL";
        self.db.read_optional(ID_TOKEN, args![session_id]).await
    }

    /// Our sessions begun by signing in as the provider's `subject`.
    pub async fn of_subject(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Vec<SessionId>, StoreError> {
        const OF_SUBJECT: &str =
            "SELECT session_id FROM provider_sessions WHERE issuer = $1 AND subject = $2";
        self.db.read(OF_SUBJECT, args![issuer, subject]).await
    }

    /// Our sessions begun under the provider's session `provider_sid`
    /// (of `subject`, when the provider names one).
    pub async fn by_provider_sid(
        &self,
        issuer: &str,
        provider_sid: &str,
        subject: Option<&str>,
    ) -> Result<Vec<SessionId>, StoreError> {
        const BY_SID: &str = "SELECT session_id FROM provider_sessions
             WHERE issuer = $1 AND provider_sid = $2 AND (CAST($3 AS TEXT) IS NULL OR subject = $3)";
        self.db
            .read(BY_SID, args![issuer, provider_sid, subject])
            .await
    }
}
