//! Sign-in through any OpenID Connect provider (Google, Keycloak, Auth0,
//! Entra ID, Okta...): the authorization code flow with PKCE (S256),
//! `state` and `nonce`, the ID token checked as OpenID Connect Core
//! §3.1.3.7 says, then a local account keyed by the provider's
//! `(issuer, sub)` and our own session from the local authority.
//!
//! The provider's tokens stay here: its refresh token is sealed in the
//! database, revoked at logout (RFC 7009) through the outbox, off the
//! response path. Back-Channel Logout 1.0 tokens the provider posts to
//! `/auth/backchannel-logout` end the matching sessions at once.
//!
//! Discovery runs in the background until it succeeds: the server starts
//! (and serves existing sessions) while the provider is unreachable, and a
//! sign-in meanwhile answers 502.

mod backchannel;
pub mod client;
pub mod provider;
pub mod tokens;

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use tokio::sync::Notify;

use self::client::OidcClient;
use self::tokens::IdClaims;
use super::{Callback, SignInMethod};
use crate::authority::local::LocalAuthority;
use crate::authority::{AuthError, ClientInfo, IssuedSession, ProviderGrant, SessionId};
use crate::config::OidcSettings;
use crate::secrets::Sealer;
use crate::store::accounts::{AccountError, Accounts, FederatedPerson};
use crate::store::database::Database;
use crate::store::flows::{Flow, StartedFlow};
use crate::store::nonces::{Nonces, OneTime};
use crate::store::outbox::{Outbox, Pending};
use crate::store::provider_sessions::{ProviderSession, ProviderSessions};
use crate::unix_now;

/// The outbox kind of a refresh-token revocation.
const REVOKE: &str = "oidc.revoke";

pub struct OidcSignIn {
    settings: OidcSettings,
    /// The provider, as an OpenID client.
    client: Arc<OidcClient>,
    accounts: Accounts,
    provider_sessions: ProviderSessions,
    nonces: Nonces,
    authority: Arc<LocalAuthority>,
    sealer: Sealer,
    outbox: Outbox,
    /// Wakes the delivery task when something was written to the outbox.
    wake: Notify,
    metrics: crate::metrics::Metrics,
    /// `PROVIDER_TOKENS=keep`: the provider's tokens go to the person's
    /// connected account (the vault), not to the session.
    keep_tokens: bool,
}

impl OidcSignIn {
    /// `client` is the provider's (shared with the vault); `keep_tokens`
    /// is `PROVIDER_TOKENS=keep`.
    pub fn new(
        settings: OidcSettings,
        client: Arc<OidcClient>,
        db: Database,
        authority: Arc<LocalAuthority>,
        sealer: Sealer,
        metrics: crate::metrics::Metrics,
        keep_tokens: bool,
    ) -> Self {
        Self {
            client,
            keep_tokens,
            accounts: Accounts::new(db.clone()),
            outbox: Outbox::new(db.clone()),
            metrics,
            provider_sessions: ProviderSessions::new(db.clone()),
            nonces: Nonces::new(db),
            authority,
            sealer,
            settings,
            wake: Notify::new(),
        }
    }

    /// The person behind a checked ID token (the userinfo endpoint's
    /// claims when it lacks the email), if the sign-in policy admits them.
    async fn person(
        &self,
        id: IdClaims,
        access_token: Option<&str>,
    ) -> Result<FederatedPerson, AuthError> {
        let claims = self.client.with_userinfo(id, access_token).await?;
        let email = claims.email.clone().ok_or_else(|| {
            tracing::info!("the provider gave no email; sign-in refused");
            AuthError::Rejected
        })?;
        let verified = claims.email_is_verified();
        if self.settings.require_verified_email && !verified {
            tracing::info!("the provider has not verified the email; sign-in refused");
            return Err(AuthError::Rejected);
        }
        let domains = &self.settings.allowed_email_domains;
        if !domains.is_empty() {
            let domain = email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
            let email_ok = domain.is_some_and(|d| domains.contains(&d));
            let hd_ok = claims
                .hd
                .as_deref()
                .is_none_or(|hd| domains.contains(&hd.to_ascii_lowercase()));
            if !email_ok || !hd_ok {
                tracing::info!("email domain not allowed; sign-in refused");
                return Err(AuthError::Rejected);
            }
        }
        Ok(FederatedPerson {
            issuer: self.settings.issuer.clone(),
            subject: claims.sub,
            email,
            email_verified: verified,
            name: claims.name,
            avatar_url: claims.picture,
        })
    }

    /// Revokes, off the request path, the provider refresh tokens held for
    /// these ended sessions.
    async fn queue_revocations(&self, session_ids: &[SessionId]) -> anyhow::Result<()> {
        self.provider_sessions
            .take_for_revocation(session_ids, REVOKE)
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// One pending revocation: done, or to be retried.
    async fn deliver(&self, pending: &Pending) -> anyhow::Result<()> {
        self.client
            .deliver_revocation(
                &self.outbox,
                &self.metrics,
                &self.sealer,
                pending,
                ("refresh_token", &pending.payload),
            )
            .await
    }
}

#[async_trait]
impl SignInMethod for OidcSignIn {
    async fn authorize_url(
        &self,
        flow: &StartedFlow,
        redirect_uri: &str,
    ) -> Result<String, AuthError> {
        self.client
            .authorize_url(
                flow,
                redirect_uri,
                &self.settings.scopes.join(" "),
                &self.settings.auth_params,
            )
            .await
    }

    async fn complete(
        &self,
        callback: Callback<'_>,
        flow: &Flow,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        if let Some(state) = callback.state
            && state != flow.state
        {
            return Err(AuthError::Rejected);
        }
        let (tokens, claims) = self.client.exchange_code(callback.code, flow).await?;
        let provider_sid = claims.sid.clone();
        let person = self.person(claims, tokens.access_token.as_deref()).await?;
        let user = self
            .accounts
            .federated(&person)
            .await
            .map_err(|e| match e {
                AccountError::Internal(e) => AuthError::Internal(e),
                other => {
                    tracing::info!(error = %other, "no account for this person; sign-in refused");
                    AuthError::Rejected
                }
            })?;
        let mut issued = self.authority.open(&user.id, client).await?;
        // Kept tokens belong to the connected account (the vault stores
        // them), not to this session: nothing to revoke at its logout.
        let revoke_at_logout = self.settings.revoke_on_logout && !self.keep_tokens;
        self.provider_sessions
            .record(ProviderSession {
                session_id: issued.session_id.clone(),
                issuer: self.settings.issuer.clone(),
                subject: person.subject.clone(),
                provider_sid,
                refresh_token: tokens
                    .refresh_token
                    .as_ref()
                    .filter(|_| revoke_at_logout)
                    .map(|t| self.sealer.seal(t.as_bytes())),
                id_token: tokens
                    .id_token
                    .as_ref()
                    .map(|t| self.sealer.seal(t.as_bytes())),
                created_at: unix_now() as i64,
            })
            .await?;
        if self.keep_tokens
            && let Some(access_token) = tokens.access_token
        {
            issued.provider_grant = Some(ProviderGrant {
                issuer: person.issuer,
                subject: person.subject,
                email: Some(person.email),
                name: person.name,
                access_token,
                expires_in: tokens.expires_in,
                refresh_token: tokens.refresh_token,
                scope: tokens
                    .scope
                    .or_else(|| Some(self.settings.scopes.join(" "))),
            });
        }
        Ok(issued)
    }

    fn routes(self: Arc<Self>) -> Option<Router> {
        Some(backchannel::router(self))
    }

    async fn end_session_url(
        &self,
        session_id: &SessionId,
        post_logout_redirect_uri: &str,
    ) -> Option<String> {
        let provider = self.client.provider().await.ok()?;
        let endpoint = provider.metadata.end_session_endpoint.as_deref()?;
        let mut url = url::Url::parse(endpoint).ok()?;
        // The hint names the person and session to end; without one (not
        // kept, or unreadable) the provider asks the person.
        let hint = self
            .provider_sessions
            .id_token_of(session_id)
            .await
            .ok()
            .flatten()
            .and_then(|sealed| self.sealer.open(&sealed))
            .and_then(|plain| String::from_utf8(plain).ok());
        {
            let mut query = url.query_pairs_mut();
            if let Some(hint) = &hint {
                query.append_pair("id_token_hint", hint);
            }
            query.append_pair("client_id", self.client.client_id());
            query.append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
        }
        Some(url.into())
    }

    async fn sessions_ended(&self, session_ids: &[SessionId]) {
        if !self.settings.revoke_on_logout || session_ids.is_empty() {
            return;
        }
        if let Err(error) = self.queue_revocations(session_ids).await {
            tracing::error!(
                error = format!("{error:#}"),
                "could not queue provider token revocations"
            );
        }
    }

    async fn run(&self) {
        tokio::join!(
            self.client.discover_until_found(),
            self.outbox.deliver_forever(
                REVOKE,
                &self.wake,
                |p| async move { self.deliver(&p).await }
            )
        );
    }

    async fn prune(&self) -> anyhow::Result<()> {
        self.nonces
            .purge(OneTime::LogoutToken, unix_now() as i64)
            .await?;
        Ok(())
    }
}
