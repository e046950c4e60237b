//! Argon2id password hashing, off the async threads. An unknown account is
//! checked against a dummy hash so that "no such user" and "wrong password"
//! take the same time.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Passwords longer than this are refused before hashing (argon2 would
/// happily hash megabytes; the form body limit is the outer bound).
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MIN_PASSWORD_LEN: usize = 8;

/// What an unknown account is checked against: a hash made with the same
/// parameters as real ones (a test keeps them equal to `Argon2::default()`),
/// written down rather than computed at every start-up.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$j9bOnrW6ZR5CovtaFOSHvA$AjfFSh7i157N1iD1L2kTRgTJ2xLyI3KC7z0rBQ9m2pU";

#[derive(Clone, Default)]
pub struct Passwords;

impl Passwords {
    pub fn new() -> Self {
        Self
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
    }

    /// Verifies against `stored`, or against the dummy hash when there is
    /// no account (always `false` then), in the same time.
    pub async fn verify(&self, password: String, stored: Option<String>) -> bool {
        let exists = stored.is_some();
        let hash = stored.unwrap_or_else(|| DUMMY_HASH.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        ok && exists
    }
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let p = Passwords::new();
        let hash = p.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(p.verify("correct horse".into(), Some(hash.clone())).await);
        assert!(!p.verify("wrong horse".into(), Some(hash)).await);
        assert!(
            !p.verify("chronos-dummy-password-for-timing".into(), None)
                .await
        );
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real_hash = hash_blocking("anything at all").unwrap();
        let real = PasswordHash::new(&real_hash).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert!(
            Argon2::default()
                .verify_password(b"chronos-dummy-password-for-timing", &dummy)
                .is_ok()
        );
    }
}
