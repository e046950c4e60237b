//! This server as an OpenID client of one provider: discovery (retried
//! until it succeeds, keys refetched for an unknown `kid`), client
//! authentication, and the provider's token, revocation and ID-token
//! checks. The sign-in uses it, and so does the token vault (connecting an
//! account, refreshing and revoking its tokens).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::provider::{KeyError, Keys, Metadata};
use super::tokens::{IdClaims, TokenError, Verifier};
use crate::authority::AuthError;
use crate::config::{ProviderClientSettings, Secret};
use crate::metrics::Metrics;
use crate::secrets::Sealer;
use crate::secrets::pkce_challenge;
use crate::signin::provider_client::{ProviderCallError, ProviderClient};
use crate::store::flows::{Flow, StartedFlow};
use crate::store::outbox::{Outbox, Pending};
use crate::unix_now;

/// What discovery found: endpoints, keys, accepted algorithms.
pub(super) struct Discovered {
    pub(super) metadata: Metadata,
    pub(super) keys: Keys,
    pub(super) algorithms: Vec<Algorithm>,
}

/// The token endpoint's answer (a code's or a refresh's).
#[derive(Deserialize)]
pub struct TokenAnswer {
    #[serde(default)]
    pub access_token: Option<String>,
    /// Present for a code; a refresh may omit it.
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Granted, space-separated (absent: as asked).
    #[serde(default)]
    pub scope: Option<String>,
}

/// An OAuth error answer (`{"error": "invalid_grant", ...}`).
#[derive(Deserialize)]
struct OAuthError {
    #[serde(default)]
    error: String,
}

/// Why the token endpoint gave no tokens for a refresh token.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// A definite, lasting refusal (`invalid_grant`, `unauthorized_client`):
    /// the person must grant access again.
    #[error("the provider refused the refresh token ({0})")]
    Refused(String),
    /// Anything that may pass: unreachable, a timeout, 429, 5xx, another
    /// 4xx (our own configuration, say).
    #[error("the provider did not refresh: {0}")]
    Failed(String),
}

/// Why a token-endpoint call gave no tokens.
enum TokenCall {
    /// A 4xx: its OAuth `error` code.
    Refused(String),
    Failed(String),
}

/// How a revocation went.
#[derive(Debug, PartialEq, Eq)]
pub enum Revoked {
    /// Revoked (or already invalid, RFC 7009 §2.2), or the provider has no
    /// revocation endpoint: nothing left to do.
    Done,
    /// Trying again will not help (the provider refused our request).
    Refused(String),
    /// Try again later.
    Retry,
}

pub(super) fn unavailable(what: &str, e: impl std::fmt::Display) -> AuthError {
    AuthError::Unavailable(anyhow::anyhow!("{what}: {e}"))
}

pub struct OidcClient {
    issuer: String,
    /// The issuer's accepted spellings (Google's has two).
    issuers: Vec<String>,
    client_id: String,
    client_secret: Option<Secret>,
    pub(super) http: ProviderClient,
    discovered: RwLock<Option<Arc<Discovered>>>,
    discovering: tokio::sync::Mutex<()>,
}

impl OidcClient {
    pub fn new(settings: &ProviderClientSettings) -> Result<Self, ProviderCallError> {
        let mut issuers = vec![settings.issuer.clone()];
        // Google's ID tokens carry either spelling of its issuer.
        if settings.issuer == "https://accounts.google.com" {
            issuers.push("accounts.google.com".into());
        }
        Ok(Self {
            issuer: settings.issuer.clone(),
            issuers,
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            http: ProviderClient::new()?,
            discovered: RwLock::new(None),
            discovering: tokio::sync::Mutex::new(()),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Google (whose consent screen takes `access_type`,
    /// `include_granted_scopes`).
    pub fn is_google(&self) -> bool {
        self.issuer == "https://accounts.google.com"
    }

    /// The provider's metadata and keys, discovering them now if the
    /// background task has not yet managed to.
    pub(super) async fn provider(&self) -> Result<Arc<Discovered>, AuthError> {
        if let Some(found) = self.current() {
            return Ok(found);
        }
        let _one_at_a_time = self.discovering.lock().await;
        if let Some(found) = self.current() {
            return Ok(found);
        }
        let metadata = Metadata::discover(&self.http, &self.issuer)
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
        tracing::info!(issuer = %self.issuer, "identity provider discovered");
        Ok(found)
    }

    fn current(&self) -> Option<Arc<Discovered>> {
        self.discovered.read().ok().and_then(|d| d.clone())
    }

    /// Discovers the provider, retrying with backoff until it answers.
    pub async fn discover_until_found(&self) {
        let mut wait = Duration::from_secs(1);
        while let Err(error) = self.provider().await {
            tracing::warn!(error = %error_text(&error), retry_in_s = wait.as_secs(), "identity provider discovery failed");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    pub(super) fn verifier<'a>(&'a self, provider: &'a Discovered) -> Verifier<'a> {
        Verifier {
            http: &self.http,
            keys: &provider.keys,
            algorithms: &provider.algorithms,
            issuers: &self.issuers,
            client_id: &self.client_id,
        }
    }

    /// Client authentication on a token-endpoint-style request: HTTP Basic
    /// (RFC 6749 §2.3.1) unless discovery offers only `client_secret_post`;
    /// a public client just names itself.
    pub(super) fn client_auth(
        &self,
        metadata: &Metadata,
        request: reqwest::RequestBuilder,
        form: &mut Vec<(&'static str, String)>,
    ) -> reqwest::RequestBuilder {
        let Some(secret) = &self.client_secret else {
            form.push(("client_id", self.client_id.clone()));
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
            request.basic_auth(encode(&self.client_id), Some(encode(&secret)))
        } else {
            form.push(("client_id", self.client_id.clone()));
            form.push(("client_secret", secret));
            request
        }
    }

    /// The authorization URL for this flow: code flow, PKCE (S256), state,
    /// nonce, these scopes and extra parameters.
    pub async fn authorize_url(
        &self,
        flow: &StartedFlow,
        redirect_uri: &str,
        scopes: &str,
        params: &[(String, String)],
    ) -> Result<String, AuthError> {
        let provider = self.provider().await?;
        let mut url = url::Url::parse(&provider.metadata.authorization_endpoint)
            .map_err(|e| unavailable("authorization endpoint", e))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", scopes)
                .append_pair("state", &flow.state)
                .append_pair("nonce", &flow.nonce)
                .append_pair("code_challenge", &pkce_challenge(&flow.code_verifier))
                .append_pair("code_challenge_method", "S256");
            for (name, value) in params {
                query.append_pair(name, value);
            }
        }
        Ok(url.into())
    }

    /// The code (with the flow's verifier) for the provider's tokens, the
    /// ID token checked (signature, issuer, audience, dates, the flow's
    /// nonce): the tokens and the ID token's claims.
    pub async fn exchange_code(
        &self,
        code: &str,
        flow: &Flow,
    ) -> Result<(TokenAnswer, IdClaims), AuthError> {
        let provider = self.provider().await?;
        let form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", flow.redirect_uri.clone()),
            ("code_verifier", flow.code_verifier.clone()),
        ];
        let answer = match self.token_request(&provider, form).await {
            Ok(answer) => answer,
            Err(TokenCall::Refused(error)) => {
                tracing::info!(error = %error, "token endpoint refused the code");
                return Err(AuthError::Rejected);
            }
            Err(TokenCall::Failed(e)) => return Err(unavailable("token endpoint", e)),
        };
        let id_token = answer.id_token.as_deref().ok_or_else(|| {
            tracing::warn!("the token endpoint's answer has no ID token");
            AuthError::Rejected
        })?;
        let claims = self
            .verifier(&provider)
            .id_token(id_token, &flow.nonce, unix_now())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "ID token refused");
                match e {
                    TokenError::Key(KeyError::Fetch(e)) => unavailable("keys", e),
                    _ => AuthError::Rejected,
                }
            })?;
        Ok((answer, claims))
    }

    /// The ID token's claims, completed from the userinfo endpoint when
    /// they lack the email (providers may keep scope claims there).
    pub async fn with_userinfo(
        &self,
        id: IdClaims,
        access_token: Option<&str>,
    ) -> Result<IdClaims, AuthError> {
        if id.email.is_some() {
            return Ok(id);
        }
        let provider = self.provider().await?;
        let (Some(endpoint), Some(token)) = (&provider.metadata.userinfo_endpoint, access_token)
        else {
            return Ok(id);
        };
        let answer = self
            .http
            .send(self.http.get(endpoint).bearer_auth(token))
            .await
            .map_err(|e| unavailable("userinfo", e))?;
        let info: IdClaims = answer.ok_json().map_err(|e| unavailable("userinfo", e))?;
        // OpenID Connect Core §5.3.2: the same person, or nothing.
        if info.sub != id.sub {
            tracing::warn!("userinfo sub differs from the ID token's; refused");
            return Err(AuthError::Rejected);
        }
        Ok(IdClaims {
            sid: id.sid,
            ..info
        })
    }

    /// A refresh token for new tokens.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenAnswer, RefreshError> {
        let provider = self
            .provider()
            .await
            .map_err(|e| RefreshError::Failed(error_text(&e)))?;
        let form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.to_string()),
        ];
        match self.token_request(&provider, form).await {
            Ok(answer) => Ok(answer),
            // Only these mean the grant is gone; another 4xx (our client's
            // credentials, say) may pass.
            Err(TokenCall::Refused(error))
                if matches!(error.as_str(), "invalid_grant" | "unauthorized_client") =>
            {
                Err(RefreshError::Refused(error))
            }
            Err(TokenCall::Refused(error)) => Err(RefreshError::Failed(error)),
            Err(TokenCall::Failed(e)) => Err(RefreshError::Failed(e)),
        }
    }

    /// One call to the token endpoint: a refusal (a 4xx, with its OAuth
    /// error) told apart from a failure (unreachable, 5xx, a bad answer).
    async fn token_request(
        &self,
        provider: &Discovered,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<TokenAnswer, TokenCall> {
        let request = self.client_auth(
            &provider.metadata,
            self.http.post(&provider.metadata.token_endpoint),
            &mut form,
        );
        let answer = self
            .http
            .send(request.form(&form))
            .await
            .map_err(|e| TokenCall::Failed(e.to_string()))?;
        if answer.status.is_success() {
            return answer.json().map_err(|e| TokenCall::Failed(e.to_string()));
        }
        let error = answer
            .json::<OAuthError>()
            .map(|e| e.error)
            .unwrap_or_default();
        if answer.status.is_client_error() && answer.status.as_u16() != 429 {
            return Err(TokenCall::Refused(error));
        }
        Err(TokenCall::Failed(format!(
            "{} {error}",
            answer.status.as_u16()
        )))
    }

    /// Revokes a token at the provider (RFC 7009).
    pub async fn revoke(&self, token: &str, hint: &str) -> Revoked {
        let Ok(provider) = self.provider().await else {
            return Revoked::Retry;
        };
        let Some(endpoint) = &provider.metadata.revocation_endpoint else {
            return Revoked::Done;
        };
        let mut form = vec![
            ("token", token.to_string()),
            ("token_type_hint", hint.to_string()),
        ];
        let request = self.client_auth(&provider.metadata, self.http.post(endpoint), &mut form);
        match self.http.send(request.form(&form)).await {
            Ok(answer) if answer.status.is_success() => Revoked::Done,
            // RFC 7009 §2.2: an invalid token is answered 200; a 4xx means
            // trying again will not help (bad client credentials, say).
            Ok(answer) if answer.status.is_client_error() && answer.status.as_u16() != 429 => {
                Revoked::Refused(format!("the provider answered {}", answer.status))
            }
            _ => Revoked::Retry,
        }
    }
}

/// Revocations are given up after this many attempts (about a day).
const MAX_REVOKE_ATTEMPTS: i64 = 150;

impl OidcClient {
    /// Delivers one outbox call that revokes a sealed token: done, given up
    /// (it can never work), or retried later, which counts as a failed call
    /// (`chronos_provider_failures_total{operation="revoke"}`).
    pub async fn deliver_revocation(
        &self,
        outbox: &Outbox,
        metrics: &Metrics,
        sealer: &Sealer,
        pending: &Pending,
        (hint, sealed): (&str, &str),
    ) -> anyhow::Result<()> {
        let give_up = |why: &str| {
            tracing::error!(
                attempts = pending.attempts,
                why,
                "provider token revocation given up"
            );
        };
        let Some(token) = sealer.open(sealed).and_then(|t| String::from_utf8(t).ok()) else {
            give_up("the sealed token does not open (DATA_DIR key changed?)");
            return Ok(outbox.done(pending.id).await?);
        };
        match self.revoke(&token, hint).await {
            Revoked::Done => {
                tracing::info!(hint, "provider token revoked");
                Ok(outbox.done(pending.id).await?)
            }
            Revoked::Refused(why) => {
                give_up(&why);
                Ok(outbox.done(pending.id).await?)
            }
            Revoked::Retry if pending.attempts + 1 >= MAX_REVOKE_ATTEMPTS => {
                give_up("the provider stayed unreachable");
                Ok(outbox.done(pending.id).await?)
            }
            Revoked::Retry => {
                metrics.provider_failed("revoke");
                Ok(outbox.retry(pending).await?)
            }
        }
    }
}

pub(super) fn error_text(error: &AuthError) -> String {
    match error {
        AuthError::Unavailable(e) | AuthError::Internal(e) => format!("{e:#}"),
        other => other.to_string(),
    }
}
