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
pub mod provider;
pub mod tokens;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use tokio::sync::Notify;

use self::provider::{Keys, Metadata};
use self::tokens::{IdClaims, Verifier};
use super::{Callback, SignInMethod};
use crate::authority::local::LocalAuthority;
use crate::authority::{AuthError, ClientInfo, IssuedSession, SessionId};
use crate::config::OidcSettings;
use crate::secrets::{Sealer, pkce_challenge};
use crate::signin::provider_client::{ProviderCallError, ProviderClient};
use crate::store::accounts::{AccountError, Accounts, FederatedPerson};
use crate::store::database::Database;
use crate::store::flows::{Flow, StartedFlow};
use crate::store::nonces::{Nonces, OneTime};
use crate::store::outbox::{Outbox, Pending};
use crate::store::provider_sessions::{ProviderSession, ProviderSessions};
use crate::unix_now;

/// The outbox kind of a refresh-token revocation.
const REVOKE: &str = "oidc.revoke";
/// Revocations are given up after this many attempts (about a day).
const MAX_ATTEMPTS: i64 = 150;

/// What discovery found: endpoints, keys, accepted algorithms.
struct Discovered {
    metadata: Metadata,
    keys: Keys,
    algorithms: Vec<Algorithm>,
}

pub struct OidcSignIn {
    settings: OidcSettings,
    /// The issuer's accepted spellings (Google's has two).
    issuers: Vec<String>,
    http: ProviderClient,
    discovered: RwLock<Option<Arc<Discovered>>>,
    discovering: tokio::sync::Mutex<()>,
    accounts: Accounts,
    provider_sessions: ProviderSessions,
    nonces: Nonces,
    authority: Arc<LocalAuthority>,
    sealer: Sealer,
    outbox: Outbox,
    /// Wakes the delivery task when something was written to the outbox.
    wake: Notify,
    metrics: crate::metrics::Metrics,
}

/// The token endpoint's answer.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    id_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// An OAuth error answer (`{"error": "invalid_grant", ...}`).
#[derive(Deserialize)]
struct OAuthError {
    #[serde(default)]
    error: String,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> AuthError {
    AuthError::Unavailable(anyhow::anyhow!("{what}: {e}"))
}

impl OidcSignIn {
    pub fn new(
        settings: OidcSettings,
        db: Database,
        authority: Arc<LocalAuthority>,
        sealer: Sealer,
        metrics: crate::metrics::Metrics,
    ) -> Result<Self, ProviderCallError> {
        let mut issuers = vec![settings.issuer.clone()];
        // Google's ID tokens carry either spelling of its issuer.
        if settings.issuer == "https://accounts.google.com" {
            issuers.push("accounts.google.com".into());
        }
        Ok(Self {
            issuers,
            http: ProviderClient::new()?,
            discovered: RwLock::new(None),
            discovering: tokio::sync::Mutex::new(()),
            accounts: Accounts::new(db.clone()),
            outbox: Outbox::new(db.clone()),
            metrics,
            provider_sessions: ProviderSessions::new(db.clone()),
            nonces: Nonces::new(db),
            authority,
            sealer,
            settings,
            wake: Notify::new(),
        })
    }

    /// The provider's metadata and keys, discovering them now if the
    /// background task has not yet managed to.
    async fn provider(&self) -> Result<Arc<Discovered>, AuthError> {
        if let Some(found) = self.current() {
            return Ok(found);
        }
        let _one_at_a_time = self.discovering.lock().await;
        if let Some(found) = self.current() {
            return Ok(found);
        }
        let metadata = Metadata::discover(&self.http, &self.settings.issuer)
            .await
            .map_err(|e| unavailable("discovery", e))?;
        let keys = Keys::new(metadata.jwks_uri.clone());
        keys.load(&self.http)
            .await
            .map_err(|e| unavailable("keys", e))?;
        let found = Arc::new(Discovered {
            algorithms: metadata.accepted_algorithms(),
            metadata,
            keys,
        });
        if let Ok(mut slot) = self.discovered.write() {
            *slot = Some(found.clone());
        }
        tracing::info!(issuer = %self.settings.issuer, "identity provider discovered");
        Ok(found)
    }

    fn current(&self) -> Option<Arc<Discovered>> {
        self.discovered.read().ok().and_then(|d| d.clone())
    }

    fn verifier<'a>(&'a self, provider: &'a Discovered) -> Verifier<'a> {
        Verifier {
            http: &self.http,
            keys: &provider.keys,
            algorithms: &provider.algorithms,
            issuers: &self.issuers,
            client_id: &self.settings.client_id,
        }
    }

    /// Client authentication on a token-endpoint-style request: HTTP Basic
    /// (RFC 6749 §2.3.1) unless discovery offers only `client_secret_post`;
    /// a public client just names itself.
    fn client_auth(
        &self,
        metadata: &Metadata,
        request: reqwest::RequestBuilder,
        form: &mut Vec<(&'static str, String)>,
    ) -> reqwest::RequestBuilder {
        let Some(secret) = &self.settings.client_secret else {
            form.push(("client_id", self.settings.client_id.clone()));
            return request;
        };
        let secret = String::from_utf8_lossy(secret.expose()).to_string();
        let methods = metadata.token_endpoint_auth_methods_supported.as_deref();
        let basic = methods.is_none_or(|m| {
            m.iter().any(|x| x == "client_secret_basic")
                || !m.iter().any(|x| x == "client_secret_post")
        });
        if basic {
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request.basic_auth(encode(&self.settings.client_id), Some(encode(&secret)))
        } else {
            form.push(("client_id", self.settings.client_id.clone()));
            form.push(("client_secret", secret));
            request
        }
    }

    /// The code (with our verifier) for the provider's tokens.
    async fn exchange(
        &self,
        provider: &Discovered,
        code: &str,
        flow: &Flow,
    ) -> Result<TokenAnswer, AuthError> {
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", flow.redirect_uri.clone()),
            ("code_verifier", flow.code_verifier.clone()),
        ];
        let request = self.client_auth(
            &provider.metadata,
            self.http.post(&provider.metadata.token_endpoint),
            &mut form,
        );
        let answer = self
            .http
            .send(request.form(&form))
            .await
            .map_err(|e| unavailable("token endpoint", e))?;
        if answer.status.is_success() {
            return answer.json().map_err(|e| {
                tracing::warn!(error = %e, "token endpoint answer refused");
                AuthError::Rejected
            });
        }
        if answer.status.is_client_error() {
            let error = answer
                .json::<OAuthError>()
                .map(|e| e.error)
                .unwrap_or_default();
            tracing::info!(status = answer.status.as_u16(), error = %error, "token endpoint refused the code");
            return Err(AuthError::Rejected);
        }
        Err(unavailable("token endpoint", answer.status))
    }

    /// The person behind a checked ID token, with the userinfo endpoint's
    /// claims when the ID token lacks the email (providers may keep scope
    /// claims there).
    async fn person(
        &self,
        provider: &Discovered,
        id: IdClaims,
        access_token: Option<&str>,
    ) -> Result<FederatedPerson, AuthError> {
        let mut claims = id.clone();
        if claims.email.is_none()
            && let (Some(endpoint), Some(token)) =
                (&provider.metadata.userinfo_endpoint, access_token)
        {
            let answer = self
                .http
                .send(self.http.get(endpoint).bearer_auth(token))
                .await
                .map_err(|e| unavailable("userinfo", e))?;
            let info: IdClaims = answer.ok_json().map_err(|e| unavailable("userinfo", e))?;
            // OpenID Connect Core §5.3.2: the same person, or nothing.
            if info.sub != id.sub {
                tracing::warn!("userinfo sub differs from the ID token's; sign-in refused");
                return Err(AuthError::Rejected);
            }
            claims = IdClaims {
                sid: id.sid,
                ..info
            };
        }
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

    /// Tries a revocation again later; a retried call is a failed one
    /// (`chronos_provider_failures_total`).
    async fn retry(&self, pending: &Pending) -> anyhow::Result<()> {
        self.metrics.provider_failed("revoke");
        Ok(self.outbox.retry(pending).await?)
    }

    /// One pending revocation: done, or to be retried.
    async fn deliver(&self, pending: &Pending) -> anyhow::Result<()> {
        let give_up = |why: &str| {
            tracing::error!(
                attempts = pending.attempts,
                why,
                "provider token revocation given up"
            );
        };
        let Some(token) = self.sealer.open(&pending.payload) else {
            give_up("the sealed token does not open (DATA_DIR key changed?)");
            return Ok(self.outbox.done(pending.id).await?);
        };
        let provider = match self.provider().await {
            Ok(provider) => provider,
            Err(_) => return self.retry(pending).await,
        };
        let Some(endpoint) = &provider.metadata.revocation_endpoint else {
            return Ok(self.outbox.done(pending.id).await?);
        };
        let mut form = vec![
            ("token", String::from_utf8_lossy(&token).to_string()),
            ("token_type_hint", "refresh_token".to_string()),
        ];
        let request = self.client_auth(&provider.metadata, self.http.post(endpoint), &mut form);
        match self.http.send(request.form(&form)).await {
            Ok(answer) if answer.status.is_success() => {
                tracing::info!("provider refresh token revoked");
                Ok(self.outbox.done(pending.id).await?)
            }
            // RFC 7009 §2.2: an invalid token is answered 200; a 4xx means
            // trying again will not help (bad client credentials, say).
            Ok(answer) if answer.status.is_client_error() && answer.status.as_u16() != 429 => {
                give_up(&format!("the provider answered {}", answer.status));
                Ok(self.outbox.done(pending.id).await?)
            }
            _ if pending.attempts + 1 >= MAX_ATTEMPTS => {
                give_up("the provider stayed unreachable");
                Ok(self.outbox.done(pending.id).await?)
            }
            _ => self.retry(pending).await,
        }
    }

    /// Discovers the provider, retrying with backoff until it answers.
    async fn discover_until_found(&self) {
        let mut wait = Duration::from_secs(1);
        while let Err(error) = self.provider().await {
            tracing::warn!(error = %error_text(&error), retry_in_s = wait.as_secs(), "identity provider discovery failed");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }
}

fn error_text(error: &AuthError) -> String {
    match error {
        AuthError::Unavailable(e) | AuthError::Internal(e) => format!("{e:#}"),
        other => other.to_string(),
    }
}

#[async_trait]
impl SignInMethod for OidcSignIn {
    async fn authorize_url(
        &self,
        flow: &StartedFlow,
        redirect_uri: &str,
    ) -> Result<String, AuthError> {
        let provider = self.provider().await?;
        let mut url = url::Url::parse(&provider.metadata.authorization_endpoint)
            .map_err(|e| unavailable("authorization endpoint", e))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.settings.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &self.settings.scopes.join(" "))
                .append_pair("state", &flow.state)
                .append_pair("nonce", &flow.nonce)
                .append_pair("code_challenge", &pkce_challenge(&flow.code_verifier))
                .append_pair("code_challenge_method", "S256");
            for (name, value) in &self.settings.auth_params {
                query.append_pair(name, value);
            }
        }
        Ok(url.into())
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
        let provider = self.provider().await?;
        let tokens = self.exchange(&provider, callback.code, flow).await?;
        let claims = self
            .verifier(&provider)
            .id_token(&tokens.id_token, &flow.nonce, unix_now())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "ID token refused");
                match e {
                    tokens::TokenError::Key(provider::KeyError::Fetch(e)) => unavailable("keys", e),
                    _ => AuthError::Rejected,
                }
            })?;
        let provider_sid = claims.sid.clone();
        let person = self
            .person(&provider, claims, tokens.access_token.as_deref())
            .await?;
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
        let issued = self.authority.open(&user.id, client).await?;
        self.provider_sessions
            .record(ProviderSession {
                session_id: issued.session_id.clone(),
                issuer: self.settings.issuer.clone(),
                subject: person.subject,
                provider_sid,
                refresh_token: tokens
                    .refresh_token
                    .filter(|_| self.settings.revoke_on_logout)
                    .map(|t| self.sealer.seal(t.as_bytes())),
                created_at: unix_now() as i64,
            })
            .await?;
        Ok(issued)
    }

    fn routes(self: Arc<Self>) -> Option<Router> {
        Some(backchannel::router(self))
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
            self.discover_until_found(),
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
