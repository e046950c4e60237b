//! Checking what a provider signs: ID tokens (OpenID Connect Core §3.1.3.7)
//! and back-channel logout tokens (Back-Channel Logout 1.0 §2.6).

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::provider::{KeyError, Keys};
use crate::signin::provider_client::ProviderClient;

/// How far clocks may disagree (seconds).
pub const CLOCK_SKEW_SECONDS: u64 = 60;
/// A logout token older than this is refused (it is meant to be sent at once).
pub const LOGOUT_TOKEN_MAX_AGE: u64 = 600;
/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;

pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm {0} not accepted")]
    Algorithm(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("signature or standard claims invalid: {0}")]
    Invalid(String),
    #[error("{0}")]
    Claim(&'static str),
}

/// `aud` is a string or an array of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn len(&self) -> usize {
        match self {
            Audience::One(_) => 1,
            Audience::Many(all) => all.len(),
        }
    }
}

/// `email_verified` is a boolean, or (some providers) the string "true".
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    pub fn is_true(&self) -> bool {
        match self {
            Flag::Bool(b) => *b,
            Flag::Text(t) => t.eq_ignore_ascii_case("true"),
        }
    }
}

/// The claims of a Security Event Token that we read.
#[derive(Debug, Clone, Deserialize)]
pub struct SecurityEventClaims {
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub iat: Option<u64>,
    /// Event type URI → the event (its `subject`, `reason`, `state`...).
    #[serde(default)]
    pub events: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The claims of an ID token (and of a userinfo answer) that we read.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    /// The provider's session id (for back-channel logout).
    #[serde(default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<Flag>,
    /// Google's legacy spelling.
    #[serde(default)]
    pub verified_email: Option<Flag>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub picture: Option<String>,
    /// Google Workspace domain.
    #[serde(default)]
    pub hd: Option<String>,
}

impl IdClaims {
    pub fn email_is_verified(&self) -> bool {
        self.email_verified
            .as_ref()
            .or(self.verified_email.as_ref())
            .is_some_and(Flag::is_true)
    }
}

/// The claims of a back-channel logout token.
#[derive(Debug, Clone, Deserialize)]
pub struct LogoutClaims {
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub exp: Option<u64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub events: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub nonce: Option<serde_json::Value>,
}

/// Who may have issued the tokens, and for whom.
pub struct Verifier<'a> {
    pub http: &'a ProviderClient,
    pub keys: &'a Keys,
    pub algorithms: &'a [Algorithm],
    /// The configured issuer, and its accepted spellings.
    pub issuers: &'a [String],
    pub client_id: &'a str,
}

impl Verifier<'_> {
    /// Signature (an accepted algorithm, a key of the provider's), issuer,
    /// audience; `exp` when `require_exp`.
    async fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        require_exp: bool,
    ) -> Result<(jsonwebtoken::Header, T), TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        // `alg: none` and unknown algorithms fail to parse here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(
                super::provider::alg_name(header.alg).into(),
            ));
        }
        let key = self
            .keys
            .key(self.http, header.kid.as_deref(), header.alg)
            .await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = CLOCK_SKEW_SECONDS;
        validation.set_issuer(self.issuers);
        validation.set_audience(&[self.client_id]);
        validation.validate_exp = require_exp;
        validation.validate_nbf = true;
        let required: &[&str] = if require_exp {
            &["exp", "iss", "aud", "iat"]
        } else {
            &["iss", "aud", "iat"]
        };
        validation.set_required_spec_claims(required);
        let data = jsonwebtoken::decode::<T>(token, &key, &validation)
            .map_err(|e| TokenError::Invalid(format!("{:?}", e.kind())))?;
        Ok((data.header, data.claims))
    }

    /// An ID token issued for this client in answer to our `nonce`.
    pub async fn id_token(
        &self,
        token: &str,
        nonce: &str,
        now: u64,
    ) -> Result<IdClaims, TokenError> {
        let (_, claims) = self.verify::<IdClaims>(token, true).await?;
        // Several audiences: the token must say it was issued to us (azp);
        // an azp, when present, must be us.
        let many = claims.aud.as_ref().is_some_and(|a| a.len() > 1);
        match &claims.azp {
            Some(azp) if azp != self.client_id => {
                return Err(TokenError::Claim("azp is another client"));
            }
            None if many => return Err(TokenError::Claim("several audiences and no azp")),
            _ => {}
        }
        if claims.iat.is_none_or(|iat| iat > now + CLOCK_SKEW_SECONDS) {
            return Err(TokenError::Claim("iat is in the future"));
        }
        let nonce_ok = claims
            .nonce
            .as_deref()
            .is_some_and(|n| bool::from(n.as_bytes().ct_eq(nonce.as_bytes())));
        if !nonce_ok {
            return Err(TokenError::Claim("nonce does not match the flow"));
        }
        if claims.sub.is_empty() {
            return Err(TokenError::Claim("no sub"));
        }
        Ok(claims)
    }

    /// A back-channel logout token.
    pub async fn logout_token(&self, token: &str, now: u64) -> Result<LogoutClaims, TokenError> {
        let (header, claims) = self.verify::<LogoutClaims>(token, false).await?;
        // Explicitly typed tokens must be logout tokens (not ID tokens).
        if let Some(typ) = &header.typ {
            let typ = typ.to_ascii_lowercase();
            if typ != "logout+jwt" && typ != "application/logout+jwt" {
                return Err(TokenError::Claim("typ is not logout+jwt"));
            }
        }
        match claims.iat {
            Some(iat) if iat <= now + CLOCK_SKEW_SECONDS && iat + LOGOUT_TOKEN_MAX_AGE >= now => {}
            _ => {
                return Err(TokenError::Claim(
                    "iat is missing, in the future or too old",
                ));
            }
        }
        if claims.exp.is_some_and(|exp| exp + CLOCK_SKEW_SECONDS < now) {
            return Err(TokenError::Claim("expired"));
        }
        let event = claims
            .events
            .as_ref()
            .and_then(|events| events.get(BACKCHANNEL_EVENT));
        if !event.is_some_and(serde_json::Value::is_object) {
            return Err(TokenError::Claim("no back-channel logout event"));
        }
        if claims.sub.is_none() && claims.sid.is_none() {
            return Err(TokenError::Claim("neither sid nor sub"));
        }
        if claims.nonce.is_some() {
            return Err(TokenError::Claim("a logout token carries no nonce"));
        }
        if claims.jti.as_deref().is_none_or(str::is_empty) {
            return Err(TokenError::Claim("no jti"));
        }
        Ok(claims)
    }

    /// A Security Event Token (RFC 8417) for this client: signature,
    /// issuer, audience, `iat`, a `jti` and `events`.
    pub async fn security_event_token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<SecurityEventClaims, TokenError> {
        let (header, claims) = self.verify::<SecurityEventClaims>(token, false).await?;
        if let Some(typ) = &header.typ {
            let typ = typ.to_ascii_lowercase();
            if typ != "secevent+jwt" && typ != "application/secevent+jwt" {
                return Err(TokenError::Claim("typ is not secevent+jwt"));
            }
        }
        if claims.iat.is_none_or(|iat| iat > now + CLOCK_SKEW_SECONDS) {
            return Err(TokenError::Claim("iat is missing or in the future"));
        }
        if claims.jti.as_deref().is_none_or(str::is_empty) {
            return Err(TokenError::Claim("no jti"));
        }
        if claims.events.as_ref().is_none_or(serde_json::Map::is_empty) {
            return Err(TokenError::Claim("no events"));
        }
        Ok(claims)
    }
}
