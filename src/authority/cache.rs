//! Verified access tokens, remembered: a signature check costs far more
//! than the lookup that replaces it (BENCHMARKS.md, micro-benchmarks), and
//! the same token comes back on every request of its session. An entry is
//! found by a keyed digest of the token's signature and holds a keyed
//! digest of the signed part (128 secret-keyed bits in all, and no copy of
//! the token), so a token that borrows a cached signature with another
//! header or payload is a miss (and then fails verification). Expiry is
//! still checked on every use, revocation is the caller's next step.
//!
//! The capacity is `TOKEN_CACHE_SIZE` tokens (default 1,048,576: a million
//! active sessions without a cliff). Memory follows the tokens in use, not
//! the capacity: a refresh forgets the token it replaces, and expired
//! tokens are swept out every minute. The bytes per entry are measured in
//! the tests below and stated in README.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use quick_cache::OptionsBuilder;
use quick_cache::sync::Cache;

use super::AccessClaims;

#[derive(Clone)]
struct Entry {
    /// A keyed digest of `header.payload`.
    signed: u64,
    claims: Arc<AccessClaims>,
}

pub struct VerifiedCache {
    /// By a keyed digest of the signature.
    entries: Option<Cache<u64, Entry>>,
    key: RandomState,
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
            // Many shards: the minute's sweep holds one at a time, each
            // ~1 ms at a million entries. (Building only fails without
            // both capacities.)
            entries: OptionsBuilder::new()
                .estimated_items_capacity(capacity)
                .weight_capacity(capacity as u64)
                .shards(256)
                .build()
                .ok()
                .filter(|_| capacity > 0)
                .map(|options| {
                    Cache::with_options(
                        options,
                        Default::default(),
                        Default::default(),
                        Default::default(),
                    )
                }),
            key: RandomState::new(),
            digest: RandomState::new(),
        }
    }

    /// The claims of `token`, if it was verified before.
    pub fn get(&self, token: &str) -> Option<Arc<AccessClaims>> {
        let entries = self.entries.as_ref()?;
        let (signed, signature) = split(token)?;
        let entry = entries.get(&self.key.hash_one(signature))?;
        (entry.signed == self.digest.hash_one(signed)).then_some(entry.claims)
    }

    /// Remembers a token that just verified (or was just signed). The
    /// issuer, audience and token id were checked and are never read
    /// again, so they are not kept: a sixth of an entry.
    pub fn insert(&self, token: &str, mut claims: AccessClaims) -> Arc<AccessClaims> {
        for checked in [&mut claims.iss, &mut claims.aud, &mut claims.jti] {
            *checked = String::new();
        }
        let claims = Arc::new(claims);
        if let (Some(entries), Some((signed, signature))) = (self.entries.as_ref(), split(token)) {
            entries.insert(
                self.key.hash_one(signature),
                Entry {
                    signed: self.digest.hash_one(signed),
                    claims: claims.clone(),
                },
            );
        }
        claims
    }

    /// Drops a token that was replaced (its session refreshed): the next
    /// use, if any, verifies it again.
    pub fn forget(&self, token: &str) {
        if let (Some(entries), Some((_, signature))) = (self.entries.as_ref(), split(token)) {
            entries.remove(&self.key.hash_one(signature));
        }
    }

    /// Drops every token expired at `now`.
    pub fn sweep(&self, now: u64) {
        if let Some(entries) = &self.entries {
            entries.retain(|_, entry| entry.claims.exp > now);
        }
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

    fn claims(sub: &str, exp: u64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: sub.into(),
            email: "e".into(),
            sid: "s".into(),
            jti: "j".into(),
            iat: 1,
            exp,
            nbf: None,
            name: None,
            avatar_url: None,
            created_at: "c".into(),
        }
    }

    #[test]
    fn a_borrowed_signature_on_another_payload_is_a_miss() {
        let cache = VerifiedCache::new(10);
        cache.insert("h.p1.SIG", claims("ann", 2));
        assert_eq!(cache.get("h.p1.SIG").unwrap().sub, "ann");
        assert!(cache.get("h.p2.SIG").is_none());
        assert!(cache.get("h.p1.OTHER").is_none());
        assert!(cache.get("garbage").is_none());
        assert!(cache.get("h.p1.").is_none());
    }

    #[test]
    fn a_zero_capacity_remembers_nothing() {
        let cache = VerifiedCache::new(0);
        cache.insert("h.p.s", claims("ann", 2));
        assert!(cache.get("h.p.s").is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_replaced_token_is_forgotten_and_expired_ones_are_swept() {
        let cache = VerifiedCache::new(10);
        cache.insert("h.old.A", claims("ann", 100));
        cache.insert("h.new.B", claims("ann", 200));
        cache.insert("h.bob.C", claims("bob", 300));
        cache.forget("h.old.A");
        assert!(cache.get("h.old.A").is_none());
        assert_eq!(cache.len(), 2);
        cache.sweep(200);
        assert!(cache.get("h.new.B").is_none(), "expired at 200");
        assert_eq!(cache.get("h.bob.C").unwrap().sub, "bob");
        assert_eq!(cache.len(), 1);
    }
}
