//! Supabase's access tokens, checked locally on every request: signature
//! (the project's JWKS, refetched on an unknown `kid` at most once a
//! minute; or the legacy HS256 secret when configured), `iss`
//! (`SUPABASE_URL/auth/v1`), `aud` (`authenticated`), `exp`, and an `iat`
//! that is not in the future. No round trip to Supabase.

use crate::store::ids::{SessionId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::authority::AccessClaims;
use crate::signin::oidc::provider::Keys;
use crate::signin::provider_client::ProviderClient;

pub const AUDIENCE: &str = "authenticated";
/// How far clocks may disagree (seconds).
const CLOCK_SKEW_SECONDS: u64 = 30;
/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The claims of a Supabase access token that we read.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub session_id: Option<SessionId>,
    pub exp: u64,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub user_metadata: Option<serde_json::Map<String, Value>>,
}

/// `name` and `avatar_url` from Supabase's `user_metadata` (what Google
/// sign-in puts there).
pub fn profile(
    metadata: Option<&serde_json::Map<String, Value>>,
) -> (Option<String>, Option<String>) {
    let text = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            metadata
                .and_then(|m| m.get(*k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
        })
    };
    (
        text(&["full_name", "name"]),
        text(&["avatar_url", "picture"]),
    )
}

impl Claims {
    /// Our claims shape; `created_at` is the account's, known elsewhere.
    pub fn to_access(&self, issuer: &str, created_at: String) -> AccessClaims {
        let (name, avatar_url) = profile(self.user_metadata.as_ref());
        AccessClaims {
            iss: issuer.to_string(),
            aud: AUDIENCE.to_string(),
            sub: self.sub.clone(),
            email: self.email.clone().unwrap_or_default(),
            sid: self.session_id.clone().unwrap_or_default(),
            jti: String::new(),
            iat: self.iat.unwrap_or(0),
            exp: self.exp,
            nbf: None,
            name,
            avatar_url,
            created_at,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not accepted")]
    Algorithm,
    #[error("no key for this token")]
    NoKey,
    #[error("expired")]
    Expired,
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Verifies a project's access tokens.
pub struct Verifier {
    issuer: String,
    keys: Keys,
    secret: Option<DecodingKey>,
}

const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Verifier {
    pub fn new(issuer: String, secret: Option<&[u8]>) -> Self {
        Self {
            keys: Keys::new(format!("{issuer}/.well-known/jwks.json")),
            secret: secret.map(DecodingKey::from_secret),
            issuer,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Signature, issuer, audience; expiry unless `ignore_expiry`.
    pub async fn verify(
        &self,
        http: &ProviderClient,
        token: &str,
        now: u64,
        ignore_expiry: bool,
    ) -> Result<Claims, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        let key = match header.alg {
            // The legacy shared secret, only when configured (an HS256
            // token "signed" with a public key is the classic forgery).
            Algorithm::HS256 => self.secret.clone().ok_or(JwtError::Algorithm)?,
            alg if ASYMMETRIC.contains(&alg) => self
                .keys
                .key(http, header.kid.as_deref(), alg)
                .await
                .map_err(|_| JwtError::NoKey)?,
            _ => return Err(JwtError::Algorithm),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = 0;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_exp = !ignore_expiry;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => JwtError::Expired,
                kind => JwtError::Invalid(format!("{kind:?}")),
            })?
            .claims;
        if !ignore_expiry && claims.exp <= now {
            return Err(JwtError::Expired);
        }
        if claims.iat.is_some_and(|iat| iat > now + CLOCK_SKEW_SECONDS) {
            return Err(JwtError::Invalid("iat in the future".into()));
        }
        Ok(claims)
    }
}
