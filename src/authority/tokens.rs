//! Access tokens: EdDSA-signed JWTs with a key generated into `DATA_DIR` on
//! first start, published as a JWKS so other services can verify them.
//!
//! Signature verification costs tens of microseconds, and the same token is
//! presented on every request of a session, so verified claims are kept in
//! a bounded cache keyed by the whole token. Expiry is still checked on
//! every use, and revocation is the caller's next step.

use crate::store::ids::{SessionId, UserId};
use std::io;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cache::VerifiedCache;
use crate::secrets;

/// Audience of every access token this server issues.
pub const AUDIENCE: &str = "chronos";
/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// How far in the future `iat` and `nbf` may lie (clocks of replicas and
/// other issuers drift a little); beyond it a token is refused (RFC 7519
/// §4.1.5: not before; a token "issued" later than now is not genuine).
pub const CLOCK_SKEW_SECONDS: u64 = 30;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// User id.
    pub sub: UserId,
    pub email: String,
    /// Session id: what logout and revocation act on.
    pub sid: SessionId,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    /// Not before (we never set it; honoured when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Profile fields carried so that `/auth/session` needs no lookup.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token")]
    Invalid,
    #[error("expired token")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
}

/// The time checks of a verified token at `now`: expired, or dated in the
/// future beyond the clock skew.
fn check_times(claims: &AccessClaims, now: u64) -> Result<(), TokenError> {
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    let latest = now.saturating_add(CLOCK_SKEW_SECONDS);
    if claims.iat > latest || claims.nbf.is_some_and(|nbf| nbf > latest) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

pub struct AccessTokens {
    /// The signing key pair, expanded once (jsonwebtoken's own encoder
    /// derives it again on every call), in AWS-LC (already in the build
    /// through rustls): its Ed25519 signs in about half the time of
    /// ed25519-dalek's (BENCHMARKS.md, micro-benchmarks), the largest cost of a
    /// refresh.
    signing: Ed25519KeyPair,
    /// `base64url({"typ":"JWT","alg":"EdDSA","kid":...})`, encoded once.
    header: String,
    decoding: DecodingKey,
    jwks: Arc<str>,
    validation: Validation,
    /// The same checks minus expiry (a token naming its session).
    ignoring_expiry: Validation,
    issuer: String,
    ttl: u64,
    verified: VerifiedCache,
}

impl AccessTokens {
    /// Loads the signing key from `dir` (creating it on first start).
    pub fn load_or_generate(
        dir: &Path,
        issuer: &str,
        ttl: u64,
        cache_capacity: usize,
    ) -> io::Result<Self> {
        let seed = secrets::load_or_generate(dir, "jwt_ed25519_seed", 32)?;
        let seed: [u8; 32] = seed[..32]
            .try_into()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad signing key"))?;
        Self::from_seed(&seed, issuer, ttl, cache_capacity)
    }

    pub fn from_seed(
        seed: &[u8; 32],
        issuer: &str,
        ttl: u64,
        cache_capacity: usize,
    ) -> io::Result<Self> {
        let signing = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad signing key"))?;
        let public = signing.public_key().as_ref().to_vec();
        let x = B64.encode(&public);
        // RFC 7638 thumbprint: members in lexicographic order, no spaces.
        let thumbprint = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = B64.encode(Sha256::digest(thumbprint.as_bytes()));
        let jwks = serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": x,
                "kid": kid,
                "use": "sig",
                "alg": "EdDSA",
            }]
        })
        .to_string();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let mut ignoring_expiry = validation.clone();
        ignoring_expiry.validate_exp = false;
        let header = serde_json::json!({"typ": "JWT", "alg": "EdDSA", "kid": kid}).to_string();
        Ok(Self {
            signing,
            header: B64.encode(header),
            decoding: DecodingKey::from_ed_der(&public),
            jwks: jwks.into(),
            validation,
            ignoring_expiry,
            issuer: issuer.to_string(),
            ttl,
            verified: VerifiedCache::new(cache_capacity),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn ttl(&self) -> u64 {
        self.ttl
    }

    /// The JWKS document, rendered once.
    pub fn jwks(&self) -> Arc<str> {
        self.jwks.clone()
    }

    /// A compact JWS: `header.payload.signature`, Ed25519 over the first two.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, jsonwebtoken::errors::Error> {
        let payload = serde_json::to_vec(claims)?;
        let mut token = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 92);
        token.push_str(&self.header);
        token.push('.');
        B64.encode_string(&payload, &mut token);
        let signature = self.signing.sign(token.as_bytes());
        token.push('.');
        B64.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// Signs and remembers the token as verified: the client presents it
    /// next (a refresh's CSRF binding, every session check), and checking
    /// our own fresh signature again would cost a signature check for nothing.
    pub fn issue(&self, claims: AccessClaims) -> Result<String, jsonwebtoken::errors::Error> {
        let token = self.sign(&claims)?;
        self.verified.insert(&token, claims);
        Ok(token)
    }

    /// The full check without the cache: signature, algorithm, issuer,
    /// audience, expiry (against the system clock).
    pub fn verify_signature(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }

    /// Forgets a token its session replaced (see [`VerifiedCache::forget`]).
    pub fn forget(&self, token: &str) {
        self.verified.forget(token);
    }

    /// Drops expired tokens from the cache.
    pub fn sweep(&self, now: u64) {
        self.verified.sweep(now);
    }

    /// The claims of a token this key signed, expired or not (from the
    /// cache when it is still valid).
    pub fn verify_ignoring_expiry(&self, token: &str) -> Option<Arc<AccessClaims>> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        if let Some(claims) = self.verified.get(token) {
            return Some(claims);
        }
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.ignoring_expiry)
            .ok()
            .map(|data| Arc::new(data.claims))
    }

    /// Signature, issuer, audience and expiry, at `now` (Unix seconds).
    /// The claims come back without `iss`, `aud` and `jti`: checked here,
    /// read nowhere after, and not worth keeping in the cache.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<AccessClaims>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let claims = match self.verified.get(token) {
            Some(claims) => claims,
            None => {
                let data =
                    jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
                        .map_err(|e| match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                        _ => TokenError::Invalid,
                    })?;
                check_times(&data.claims, now)?;
                self.verified.insert(token, data.claims)
            }
        };
        check_times(&claims, now)?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn claims(exp: u64) -> AccessClaims {
        AccessClaims {
            iss: "http://issuer".into(),
            aud: AUDIENCE.into(),
            sub: "user-1".into(),
            email: "a@example.com".into(),
            sid: "session-1".into(),
            jti: "j".into(),
            iat: NOW,
            exp,
            nbf: None,
            name: Some("A".into()),
            avatar_url: None,
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn tokens(seed: u8) -> AccessTokens {
        AccessTokens::from_seed(&[seed; 32], "http://issuer", 3600, 100).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_and_carries_its_claims() {
        let t = tokens(1);
        let token = t.sign(&claims(NOW + 60)).unwrap();
        // All but what verification consumed (issuer, audience, token id:
        // checked, then not kept).
        let expected = AccessClaims {
            iss: String::new(),
            aud: String::new(),
            jti: String::new(),
            ..claims(NOW + 60)
        };
        assert_eq!(*t.verify(&token, NOW).unwrap(), expected);
        // Again, from the cache.
        assert_eq!(t.verify(&token, NOW).unwrap().sid, "session-1");
    }

    #[test]
    fn expiry_is_checked_on_every_use_even_when_cached() {
        let t = tokens(1);
        let token = t.sign(&claims(NOW + 60)).unwrap();
        assert!(t.verify(&token, NOW).is_ok());
        assert_eq!(t.verify(&token, NOW + 60), Err(TokenError::Expired));
    }

    #[test]
    fn tokens_dated_in_the_future_are_refused() {
        let t = tokens(1);
        let mut future = claims(NOW + 7200);
        future.iat = NOW + 3600;
        let token = t.sign(&future).unwrap();
        assert_eq!(t.verify(&token, NOW), Err(TokenError::NotYetValid));
        let mut not_before = claims(NOW + 7200);
        not_before.nbf = Some(NOW + 600);
        let token = t.sign(&not_before).unwrap();
        assert_eq!(t.verify(&token, NOW), Err(TokenError::NotYetValid));
        // Within the skew (a replica's clock a little ahead) they pass.
        let mut skewed = claims(NOW + 7200);
        skewed.iat = NOW + CLOCK_SKEW_SECONDS;
        skewed.nbf = Some(NOW + CLOCK_SKEW_SECONDS);
        assert!(t.verify(&t.sign(&skewed).unwrap(), NOW).is_ok());
    }

    #[test]
    fn an_expired_token_still_names_its_session_but_a_forged_one_does_not() {
        let t = tokens(1);
        let token = t.sign(&claims(NOW - 60)).unwrap();
        assert_eq!(t.verify(&token, NOW), Err(TokenError::Expired));
        assert_eq!(t.verify_ignoring_expiry(&token).unwrap().sid, "session-1");
        assert!(tokens(2).verify_ignoring_expiry(&token).is_none());
        assert!(t.verify_ignoring_expiry("a.b.c").is_none());
    }

    #[test]
    fn another_key_or_a_tampered_token_is_refused() {
        let token = tokens(1).sign(&claims(NOW + 60)).unwrap();
        assert_eq!(tokens(2).verify(&token, NOW), Err(TokenError::Invalid));
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut evil = claims(NOW + 60);
        evil.sub = "admin".into();
        parts[1] = B64.encode(serde_json::to_vec(&evil).unwrap());
        assert_eq!(
            tokens(1).verify(&parts.join("."), NOW),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn unsigned_and_symmetric_algorithms_are_refused() {
        let t = tokens(1);
        let body = B64.encode(serde_json::to_vec(&claims(NOW + 60)).unwrap());
        let none = format!("{}.{body}.", B64.encode(br#"{"alg":"none","typ":"JWT"}"#));
        assert!(t.verify(&none, NOW).is_err());
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims(NOW + 60),
            &jsonwebtoken::EncodingKey::from_secret(t.jwks.as_bytes()),
        )
        .unwrap();
        assert!(t.verify(&hs, NOW).is_err());
        for garbage in ["", "a.b.c", "not a token", &"x".repeat(10_000)] {
            assert!(t.verify(garbage, NOW).is_err());
        }
    }

    #[test]
    fn the_jwks_publishes_the_verifying_key() {
        let t = tokens(3);
        let token = t.sign(&claims(NOW + 60)).unwrap();
        let jwks: serde_json::Value = serde_json::from_str(&t.jwks()).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), key["kid"].as_str());
        let decoding = DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_exp = false;
        assert!(jsonwebtoken::decode::<AccessClaims>(&token, &decoding, &validation).is_ok());
    }
}
