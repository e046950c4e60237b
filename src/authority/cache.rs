//! Verified access tokens, remembered: a signature check costs ~40 µs, and
//! the same token comes back on every request of its session. Entries are
//! keyed by the token's signature (unique per token, no hashing of the
//! whole token) and hold a keyed digest of the signed part, so a token
//! that borrows a cached signature with another header or payload is a
//! miss (and then fails verification). Expiry is still checked on every
//! use, revocation is the caller's next step.
//!
//! The capacity is `TOKEN_CACHE_SIZE` tokens (default 1,048,576: a million
//! active sessions without a cliff); each entry costs a few hundred bytes
//! (measured in BENCHMARKS.md), and memory follows the tokens actually in
//! use, not the capacity.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use quick_cache::sync::Cache;

use super::AccessClaims;

/// The default capacity, in tokens.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

#[derive(Clone)]
struct Entry {
    /// A keyed digest of `header.payload`.
    signed: u64,
    claims: Arc<AccessClaims>,
}

pub struct VerifiedCache {
    entries: Option<Cache<Box<str>, Entry>>,
    digest: RandomState,
}

/// `(header.payload, signature)` of a compact JWT.
fn split(token: &str) -> Option<(&str, &str)> {
    token.rsplit_once('.').filter(|(_, sig)| !sig.is_empty())
}

impl VerifiedCache {
    /// A cache of `capacity` tokens (0: none).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: (capacity > 0).then(|| Cache::new(capacity)),
            digest: RandomState::new(),
        }
    }

    /// The claims of `token`, if it was verified before.
    pub fn get(&self, token: &str) -> Option<Arc<AccessClaims>> {
        let entries = self.entries.as_ref()?;
        let (signed, signature) = split(token)?;
        let entry = entries.get(signature)?;
        (entry.signed == self.digest.hash_one(signed)).then_some(entry.claims)
    }

    /// Remembers a token that just verified.
    pub fn insert(&self, token: &str, claims: Arc<AccessClaims>) {
        let (Some(entries), Some((signed, signature))) = (self.entries.as_ref(), split(token))
        else {
            return;
        };
        entries.insert(
            signature.into(),
            Entry {
                signed: self.digest.hash_one(signed),
                claims,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str) -> Arc<AccessClaims> {
        Arc::new(AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: sub.into(),
            email: "e".into(),
            sid: "s".into(),
            jti: "j".into(),
            iat: 1,
            exp: 2,
            nbf: None,
            name: None,
            avatar_url: None,
            created_at: "c".into(),
        })
    }

    #[test]
    fn a_borrowed_signature_on_another_payload_is_a_miss() {
        let cache = VerifiedCache::new(10);
        cache.insert("h.p1.SIG", claims("ann"));
        assert_eq!(cache.get("h.p1.SIG").unwrap().sub, "ann");
        assert!(cache.get("h.p2.SIG").is_none());
        assert!(cache.get("h.p1.OTHER").is_none());
        assert!(cache.get("garbage").is_none());
        assert!(cache.get("h.p1.").is_none());
    }

    #[test]
    fn a_zero_capacity_remembers_nothing() {
        let cache = VerifiedCache::new(0);
        cache.insert("h.p.s", claims("ann"));
        assert!(cache.get("h.p.s").is_none());
        assert!(cache.is_empty());
    }
}
