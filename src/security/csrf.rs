//! CSRF tokens: `base64url(payload).base64url(HMAC-SHA256(key, binding, base64url(payload)))`
//! where payload is `{"nonce": "<random>", "exp": <unix seconds>}`.
//!
//! The token travels twice (cookie and `X-CSRF-Token` header); the two are
//! compared in constant time, and the signature makes a token the attacker
//! planted in a cookie (e.g. from a sibling subdomain) worthless.
//!
//! The HMAC also covers what the token is for and where it was issued (the
//! signed double-submit variant OWASP recommends), without either showing
//! in the token: a [`Purpose`] (the API's header token, or the sign-in
//! form's) and a [`Binding`] (the session the request's cookies name, or
//! before sign-in the browser's flow). So a token only verifies for the
//! session it was minted in: not for another client, not after a logout
//! (the next session is another), not on the form if minted for the API.

use crate::store::ids::SessionId;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use rand::Rng;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::authority::SessionAuthority;
use crate::cookies::{CookieKind, CookiePolicy};
use crate::secrets::hash_token;

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
    nonce: String,
    exp: u64,
}

/// What a token is for; a token verifies only for the purpose it was
/// issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The API's double-submit token (`X-CSRF-Token` + the CSRF cookie).
    Api,
    /// The embedded sign-in form's hidden token (single-use).
    Form,
    /// The sign-in's second step, after a right password (single-use;
    /// bound to the flow and the account).
    SecondStep,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Purpose::Api => b"api",
            Purpose::Form => b"form",
            Purpose::SecondStep => b"second-step",
        }
    }
}

/// Where a token was issued: the session the cookies name, else the
/// sign-in flow the browser is in, else nowhere in particular.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    Session(SessionId),
    /// The hash of the flow cookie (or, for the form, the flow's challenge).
    Flow(String),
    Anonymous,
}

impl Binding {
    fn bytes(&self) -> (&'static [u8], &[u8]) {
        match self {
            Binding::Session(id) => (b"s", id.as_bytes()),
            Binding::Flow(id) => (b"f", id.as_bytes()),
            Binding::Anonymous => (b"-", b""),
        }
    }

    /// The binding of a request: the session its access token names (its
    /// signature checked, expired or not: the refresh of an expired token
    /// must still pass), else the session of its refresh token, else the
    /// flow it is signing in with.
    pub async fn of(
        authority: &dyn SessionAuthority,
        cookies: &CookiePolicy,
        headers: &HeaderMap,
    ) -> Self {
        if let Some(token) = cookies.read(headers, CookieKind::Session)
            && let Some(session) = authority.session_of_access_token(token).await
        {
            return Binding::Session(session.session_id);
        }
        if let Some(token) = cookies.read(headers, CookieKind::Refresh)
            && let Ok(Some(session)) = authority.session_of_refresh_token(token).await
        {
            return Binding::Session(session.session_id);
        }
        match cookies.read(headers, CookieKind::Flow) {
            Some(flow) => Binding::Flow(hash_token(flow)),
            None => Binding::Anonymous,
        }
    }
}

/// A token that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its random nonce (what a single-use check records).
    pub nonce: String,
    pub exp: u64,
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

    /// The keyed MAC over purpose, binding and the encoded payload. Each
    /// part is length-prefixed, so no two inputs run together.
    fn mac(&self, purpose: Purpose, binding: &Binding, encoded: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        let (kind, value) = binding.bytes();
        for part in [purpose.tag(), kind, value] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac.update(encoded);
        mac
    }

    /// A fresh token for `purpose` in `binding`, expiring `ttl` seconds
    /// after `now`.
    pub fn issue(&self, purpose: Purpose, binding: &Binding, now: u64) -> String {
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
        let mac = self.mac(purpose, binding, token.as_bytes());
        token.push('.');
        B64.encode_string(mac.finalize().into_bytes(), &mut token);
        token
    }

    /// Checks the signature for this purpose and binding first (constant
    /// time), then expiry.
    pub fn verify(
        &self,
        purpose: Purpose,
        binding: &Binding,
        token: &str,
        now: u64,
    ) -> Result<Verified, CsrfError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(CsrfError::Malformed);
        }
        let (encoded, sig) = token.split_once('.').ok_or(CsrfError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| CsrfError::Malformed)?;
        self.mac(purpose, binding, encoded.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| CsrfError::BadSignature)?;
        let payload = B64.decode(encoded).map_err(|_| CsrfError::Malformed)?;
        let payload: Payload =
            serde_json::from_slice(&payload).map_err(|_| CsrfError::Malformed)?;
        if payload.exp <= now {
            return Err(CsrfError::Expired);
        }
        Ok(Verified {
            nonce: payload.nonce,
            exp: payload.exp,
        })
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
    const API: Purpose = Purpose::Api;

    fn tokens() -> CsrfTokens {
        CsrfTokens::new(b"0123456789abcdef0123456789abcdef", 3600)
    }

    fn session(id: &str) -> Binding {
        Binding::Session(id.into())
    }

    #[test]
    fn a_fresh_token_verifies_where_it_was_issued() {
        let t = tokens();
        let token = t.issue(API, &session("s1"), NOW);
        assert!(t.verify(API, &session("s1"), &token, NOW).is_ok());
        assert!(t.verify(API, &session("s1"), &token, NOW + 3599).is_ok());
    }

    #[test]
    fn a_token_works_only_in_its_own_session_and_for_its_purpose() {
        let t = tokens();
        let token = t.issue(API, &session("s1"), NOW);
        for (purpose, binding) in [
            (API, session("s2")),
            (API, Binding::Anonymous),
            (API, Binding::Flow("s1".into())),
            (Purpose::Form, session("s1")),
        ] {
            assert_eq!(
                t.verify(purpose, &binding, &token, NOW),
                Err(CsrfError::BadSignature),
                "{purpose:?} {binding:?}"
            );
        }
        let anonymous = t.issue(API, &Binding::Anonymous, NOW);
        assert!(t.verify(API, &Binding::Anonymous, &anonymous, NOW).is_ok());
        assert!(t.verify(API, &session(""), &anonymous, NOW).is_err());
    }

    #[test]
    fn tokens_are_unique_and_carry_their_nonce() {
        let t = tokens();
        let a = t.issue(API, &Binding::Anonymous, NOW);
        let b = t.issue(API, &Binding::Anonymous, NOW);
        assert_ne!(a, b);
        let va = t.verify(API, &Binding::Anonymous, &a, NOW).unwrap();
        let vb = t.verify(API, &Binding::Anonymous, &b, NOW).unwrap();
        assert_ne!(va.nonce, vb.nonce);
        assert_eq!(va.exp, NOW + 3600);
    }

    #[test]
    fn the_payload_has_a_nonce_and_exp() {
        let token = tokens().issue(API, &Binding::Anonymous, NOW);
        let (payload, _) = token.split_once('.').unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        assert_eq!(json["exp"], NOW + 3600);
        assert!(json["nonce"].as_str().unwrap().len() >= 16);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let t = tokens();
        let token = t.issue(API, &session("s"), NOW);
        assert_eq!(
            t.verify(API, &session("s"), &token, NOW + 3600),
            Err(CsrfError::Expired)
        );
    }

    #[test]
    fn a_forged_signature_is_refused() {
        let t = tokens();
        let b = session("s");
        let token = t.issue(API, &b, NOW);
        let (payload, sig) = token.split_once('.').unwrap();
        let mut sig = B64.decode(sig).unwrap();
        sig[0] ^= 1;
        let forged = format!("{payload}.{}", B64.encode(sig));
        assert_eq!(
            t.verify(API, &b, &forged, NOW),
            Err(CsrfError::BadSignature)
        );
        // A payload with a later exp but the old signature.
        let later = B64.encode(format!(r#"{{"nonce":"x","exp":{}}}"#, NOW + 999_999));
        let (_, sig) = token.split_once('.').unwrap();
        assert_eq!(
            t.verify(API, &b, &format!("{later}.{sig}"), NOW),
            Err(CsrfError::BadSignature)
        );
    }

    #[test]
    fn a_token_from_another_secret_is_refused() {
        let other = CsrfTokens::new(b"another secret entirely, 32 bytes!", 3600);
        let token = other.issue(API, &Binding::Anonymous, NOW);
        assert_eq!(
            tokens().verify(API, &Binding::Anonymous, &token, NOW),
            Err(CsrfError::BadSignature)
        );
    }

    #[test]
    fn truncated_tokens_are_refused() {
        let t = tokens();
        let token = t.issue(API, &Binding::Anonymous, NOW);
        for cut in [
            0,
            1,
            token.len() / 2,
            token.find('.').unwrap(),
            token.len() - 1,
        ] {
            assert!(
                t.verify(API, &Binding::Anonymous, &token[..cut], NOW)
                    .is_err(),
                "cut at {cut}"
            );
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
            assert!(
                t.verify(API, &Binding::Anonymous, bad, NOW).is_err(),
                "{bad}"
            );
        }
        // A correctly signed payload that is not JSON.
        let encoded = B64.encode(b"not json");
        let sig = B64.encode(
            t.mac(API, &Binding::Anonymous, encoded.as_bytes())
                .finalize()
                .into_bytes(),
        );
        assert_eq!(
            t.verify(API, &Binding::Anonymous, &format!("{encoded}.{sig}"), NOW),
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
