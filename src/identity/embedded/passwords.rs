//! Argon2id password hashing, off the async threads. An unknown account is
//! checked against a dummy hash so that "no such user" and "wrong password"
//! take the same time.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Passwords longer than this are refused before hashing (argon2 would
/// happily hash megabytes; the form body limit is the outer bound).
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MIN_PASSWORD_LEN: usize = 8;

#[derive(Clone)]
pub struct Passwords {
    dummy_hash: Arc<str>,
}

impl Passwords {
    pub fn new() -> anyhow::Result<Self> {
        let dummy_hash = hash_blocking("chronos-dummy-password-for-timing")?;
        Ok(Self {
            dummy_hash: dummy_hash.into(),
        })
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
    }

    /// Verifies against `stored`, or against the dummy hash when there is
    /// no account (always `false` then), in the same time.
    pub async fn verify(&self, password: String, stored: Option<String>) -> bool {
        let exists = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
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
        let p = Passwords::new().unwrap();
        let hash = p.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(p.verify("correct horse".into(), Some(hash.clone())).await);
        assert!(!p.verify("wrong horse".into(), Some(hash)).await);
        assert!(
            !p.verify("chronos-dummy-password-for-timing".into(), None)
                .await
        );
    }
}
