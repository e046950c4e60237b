//! CSRF tokens: `base64url(payload).base64url(HMAC-SHA256(key, base64url(payload)))`
//! where payload is `{"nonce": "<random>", "exp": <unix seconds>}`.
//!
//! The token travels twice (cookie and `X-CSRF-Token` header); the two are
//! compared in constant time, and the signature makes a token the attacker
//! planted in a cookie (e.g. from a sibling subdomain) worthless.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Tokens longer than this are rejected before any decoding.
const MAX_TOKEN_LEN: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("expired token")]
    Expired,
}

#[derive(Deserialize)]
struct Payload {
    #[allow(dead_code)]
    nonce: String,
    exp: u64,
}

/// Issues and verifies tokens with one key.
#[derive(Clone)]
pub struct CsrfTokens {
    /// HMAC state already keyed; cloned per use to skip re-keying.
    mac: Hmac<Sha256>,
    ttl: u64,
}

impl CsrfTokens {
    pub fn new(key: &[u8], ttl_seconds: u64) -> Self {
        // HMAC accepts keys of any length.
        let mac = match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        Self {
            mac,
            ttl: ttl_seconds,
        }
    }

    pub fn ttl(&self) -> u64 {
        self.ttl
    }

    /// A fresh token that expires `ttl` seconds after `now`.
    pub fn issue(&self, now: u64) -> String {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        // {"nonce":"<22 chars>","exp":<digits>}, built without format!.
        let mut payload = [0u8; 64];
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            payload[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        let mut nonce_text = [0u8; 24];
        let nonce_len = B64.encode_slice(nonce, &mut nonce_text).unwrap_or(0);
        let mut exp = itoa::Buffer::new();
        put(br#"{"nonce":""#);
        put(&nonce_text[..nonce_len]);
        put(br#"","exp":"#);
        put(exp.format(now.saturating_add(self.ttl)).as_bytes());
        put(b"}");
        let mut token = String::with_capacity(128);
        B64.encode_string(&payload[..len], &mut token);
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        token.push('.');
        B64.encode_string(mac.finalize().into_bytes(), &mut token);
        token
    }

    /// Checks signature first (constant time), then expiry.
    pub fn verify(&self, token: &str, now: u64) -> Result<(), CsrfError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(CsrfError::Malformed);
        }
        let (encoded, sig) = token.split_once('.').ok_or(CsrfError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| CsrfError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(encoded.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| CsrfError::BadSignature)?;
        let payload = B64.decode(encoded).map_err(|_| CsrfError::Malformed)?;
        let payload: Payload =
            serde_json::from_slice(&payload).map_err(|_| CsrfError::Malformed)?;
        if payload.exp <= now {
            return Err(CsrfError::Expired);
        }
        Ok(())
    }
}

/// Constant-time equality of the cookie and header copies.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn tokens() -> CsrfTokens {
        CsrfTokens::new(b"0123456789abcdef0123456789abcdef", 3600)
    }

    #[test]
    fn a_fresh_token_verifies() {
        let t = tokens();
        let token = t.issue(NOW);
        assert_eq!(t.verify(&token, NOW), Ok(()));
        assert_eq!(t.verify(&token, NOW + 3599), Ok(()));
    }

    #[test]
    fn tokens_are_unique() {
        let t = tokens();
        assert_ne!(t.issue(NOW), t.issue(NOW));
    }

    #[test]
    fn the_payload_has_a_nonce_and_exp() {
        let token = tokens().issue(NOW);
        let (payload, _) = token.split_once('.').unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        assert_eq!(json["exp"], NOW + 3600);
        assert!(json["nonce"].as_str().unwrap().len() >= 16);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let t = tokens();
        let token = t.issue(NOW);
        assert_eq!(t.verify(&token, NOW + 3600), Err(CsrfError::Expired));
    }

    #[test]
    fn a_forged_signature_is_refused() {
        let t = tokens();
        let token = t.issue(NOW);
        let (payload, sig) = token.split_once('.').unwrap();
        let mut sig = B64.decode(sig).unwrap();
        sig[0] ^= 1;
        let forged = format!("{payload}.{}", B64.encode(sig));
        assert_eq!(t.verify(&forged, NOW), Err(CsrfError::BadSignature));
        // A payload with a later exp but the old signature.
        let later = B64.encode(format!(r#"{{"nonce":"x","exp":{}}}"#, NOW + 999_999));
        let (_, sig) = token.split_once('.').unwrap();
        assert_eq!(
            t.verify(&format!("{later}.{sig}"), NOW),
            Err(CsrfError::BadSignature)
        );
    }

    #[test]
    fn a_token_from_another_secret_is_refused() {
        let other = CsrfTokens::new(b"another secret entirely, 32 bytes!", 3600);
        let token = other.issue(NOW);
        assert_eq!(tokens().verify(&token, NOW), Err(CsrfError::BadSignature));
    }

    #[test]
    fn truncated_tokens_are_refused() {
        let t = tokens();
        let token = t.issue(NOW);
        for cut in [
            0,
            1,
            token.len() / 2,
            token.find('.').unwrap(),
            token.len() - 1,
        ] {
            assert!(t.verify(&token[..cut], NOW).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn non_base64_is_refused() {
        let t = tokens();
        for bad in [
            "",
            ".",
            "a.b",
            "!!!.???",
            "eyJ.@@@",
            "no-dot-here",
            &"A".repeat(600),
        ] {
            assert!(t.verify(bad, NOW).is_err(), "{bad}");
        }
        // A correctly signed payload that is not JSON.
        let encoded = B64.encode(b"not json");
        let mut mac = t.mac.clone();
        mac.update(encoded.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        assert_eq!(
            t.verify(&format!("{encoded}.{sig}"), NOW),
            Err(CsrfError::Malformed)
        );
    }

    #[test]
    fn comparison_needs_equal_tokens() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
    }
}
