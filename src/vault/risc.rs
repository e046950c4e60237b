//! The provider's revocations, heard: Google's Cross-Account Protection
//! (RISC) pushes Security Event Tokens (RFC 8417, push delivery RFC 8935)
//! to `POST /auth/risc`. Each is verified against the transmitter's keys
//! (`RISC_ISSUER`'s `/.well-known/risc-configuration` names them), must be
//! addressed to our client id, and is acted on once (its `jti`):
//!
//! - `tokens-revoked`, `token-revoked`: the account's tokens are gone at
//!   the provider; it needs to be connected again;
//! - `sessions-revoked`, `account-disabled`: that too, and the sessions
//!   here signed in with that account end;
//! - `verification`: acknowledged.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

use crate::authority::{EndSessions, SessionAuthority};
use crate::secrets::hash_token;
use crate::signin::oidc::provider::Keys;
use crate::signin::oidc::tokens::{TokenError, Verifier};
use crate::signin::provider_client::ProviderClient;
use crate::store::nonces::{Nonces, OneTime};
use crate::store::provider_sessions::ProviderSessions;
use crate::unix_now;

const EVENTS: &str = "https://schemas.openid.net/secevent/";
/// How long a `jti` is remembered: Google retries deliveries for days.
const JTI_TTL_SECONDS: u64 = 30 * 86_400;

/// Why a token was not accepted (RFC 8935 §2.3 error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    InvalidRequest,
    InvalidKey,
    InvalidIssuer,
    InvalidAudience,
}

impl Refused {
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidKey => "invalid_key",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
        }
    }
}

/// What a delivery did.
#[derive(Debug, PartialEq, Eq)]
pub struct Heard {
    /// The events, by the last part of their type URI.
    pub events: Vec<&'static str>,
    /// Delivered before: acknowledged, not acted on again.
    pub repeated: bool,
}

#[derive(Deserialize)]
struct Configuration {
    issuer: String,
    jwks_uri: String,
}

/// Event types we know, by the last part of their URI.
const KNOWN: [&str; 7] = [
    "sessions-revoked",
    "tokens-revoked",
    "token-revoked",
    "account-disabled",
    "account-enabled",
    "account-credential-change-required",
    "verification",
];

pub struct Risc {
    issuer: String,
    audience: String,
    /// The provider accounts' issuer (subjects are `iss-sub` of it).
    provider_issuer: String,
    http: ProviderClient,
    keys: tokio::sync::OnceCell<Keys>,
    vault: Arc<super::Vault>,
    nonces: Nonces,
    provider_sessions: ProviderSessions,
    authority: Arc<dyn SessionAuthority>,
}

impl Risc {
    pub fn new(
        issuer: String,
        audience: String,
        provider_issuer: String,
        db: crate::store::database::Database,
        authority: Arc<dyn SessionAuthority>,
        vault: Arc<super::Vault>,
    ) -> Result<Self, crate::signin::provider_client::ProviderCallError> {
        Ok(Self {
            issuer,
            audience,
            provider_issuer,
            http: ProviderClient::new()?,
            keys: tokio::sync::OnceCell::new(),
            vault,
            nonces: Nonces::new(db.clone()),
            provider_sessions: ProviderSessions::new(db),
            authority,
        })
    }

    /// The transmitter's keys, from its RISC configuration (loaded once;
    /// an unknown `kid` refetches them, bounded).
    async fn keys(&self) -> Result<&Keys, Refused> {
        self.keys
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/risc-configuration", self.issuer);
                let config: Configuration = self
                    .http
                    .send(self.http.get(&url))
                    .await
                    .and_then(|answer| answer.ok_json())
                    .map_err(|e| {
                        tracing::warn!(error = %e, "RISC configuration not loaded");
                        Refused::InvalidKey
                    })?;
                if config.issuer.trim_end_matches('/') != self.issuer {
                    tracing::warn!(issuer = %config.issuer, "RISC configuration names another issuer");
                    return Err(Refused::InvalidKey);
                }
                let keys = Keys::new(config.jwks_uri);
                keys.load(&self.http).await.map_err(|e| {
                    tracing::warn!(error = %e, "RISC keys not loaded");
                    Refused::InvalidKey
                })?;
                Ok(keys)
            })
            .await
    }

    /// Verifies and acts on one Security Event Token.
    pub async fn receive(&self, token: &str) -> Result<Heard, Refused> {
        let keys = self.keys().await?;
        let issuers = [self.issuer.clone()];
        let verifier = Verifier {
            http: &self.http,
            keys,
            algorithms: &[Algorithm::RS256, Algorithm::ES256],
            issuers: &issuers,
            client_id: &self.audience,
        };
        let now = unix_now();
        let claims = verifier
            .security_event_token(token, now)
            .await
            .map_err(|e| {
                tracing::info!(error = %e, "security event token refused");
                match &e {
                    TokenError::Key(_) | TokenError::Algorithm(_) => Refused::InvalidKey,
                    TokenError::Invalid(kind) if kind.contains("InvalidIssuer") => {
                        Refused::InvalidIssuer
                    }
                    TokenError::Invalid(kind) if kind.contains("InvalidAudience") => {
                        Refused::InvalidAudience
                    }
                    TokenError::Invalid(kind) if kind.contains("InvalidSignature") => {
                        Refused::InvalidKey
                    }
                    _ => Refused::InvalidRequest,
                }
            })?;
        let events = claims.events.unwrap_or_default();
        let kinds: Vec<&'static str> = events.keys().map(|uri| kind_of(uri)).collect();
        let jti = claims.jti.unwrap_or_default();
        let fresh = self
            .nonces
            .first_use(
                OneTime::SecurityEvent,
                hash_token(&format!("{}\n{jti}", self.issuer)),
                (now + JTI_TTL_SECONDS) as i64,
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot record a security event");
                Refused::InvalidRequest
            })?;
        if !fresh {
            return Ok(Heard {
                events: kinds,
                repeated: true,
            });
        }
        for (uri, event) in &events {
            if let Err(e) = self.act(kind_of(uri), event).await {
                tracing::error!(error = %e, event = %uri, "could not act on a security event");
            }
        }
        Ok(Heard {
            events: kinds,
            repeated: false,
        })
    }

    async fn act(&self, kind: &'static str, event: &Value) -> anyhow::Result<()> {
        let subject = event.get("subject");
        let iss_sub = subject
            .filter(|s| s.get("subject_type").and_then(Value::as_str) == Some("iss-sub"))
            .and_then(|s| Some((s.get("iss")?.as_str()?, s.get("sub")?.as_str()?)));
        match kind {
            "verification" => {
                let state = event.get("state").and_then(Value::as_str).unwrap_or("");
                tracing::info!(state = %state, "RISC verification event received");
            }
            "tokens-revoked" | "token-revoked" | "sessions-revoked" | "account-disabled" => {
                let Some((issuer, sub)) = iss_sub else {
                    tracing::info!(
                        event = kind,
                        "security event without an iss-sub subject; nothing matched"
                    );
                    return Ok(());
                };
                let issuer = if issuer == "accounts.google.com" {
                    "https://accounts.google.com"
                } else {
                    issuer
                };
                let marked = self
                    .vault
                    .accounts()
                    .revoked_at_provider(issuer, sub)
                    .await?;
                self.vault.forget_snapshots();
                let mut ended = 0;
                if matches!(kind, "sessions-revoked" | "account-disabled")
                    && issuer == self.provider_issuer
                {
                    for session_id in self.provider_sessions.of_subject(issuer, sub).await? {
                        ended += self
                            .authority
                            .end_sessions(EndSessions::Any { session_id })
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?
                            .len();
                    }
                }
                tracing::info!(
                    event = kind,
                    accounts = marked,
                    sessions = ended,
                    "security event acted on"
                );
            }
            other => tracing::info!(event = other, "security event acknowledged"),
        }
        Ok(())
    }
}

/// The last part of a known event type's URI, or `other`.
pub fn kind_of(uri: &str) -> &'static str {
    let last = uri
        .strip_prefix(EVENTS)
        .and_then(|rest| rest.rsplit('/').next())
        .unwrap_or("");
    KNOWN
        .iter()
        .find(|k| **k == last)
        .copied()
        .unwrap_or("other")
}
