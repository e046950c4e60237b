//! Argon2id password hashing, off the async threads and bounded. An unknown
//! account is checked against a dummy hash so that "no such user" and
//! "wrong password" take the same time.
//!
//! Each hash holds about 19 MiB (argon2's default `m = 19456 KiB`) and a
//! whole core for ~15 ms, so how many run at once is bounded: one per core,
//! with a short queue in front. A sign-in that finds the queue full, or
//! waits longer than [`MAX_WAIT`], is answered "busy" (503 with
//! `Retry-After`) instead of piling up threads and memory: memory stays
//! under `cores × 19 MiB` whatever the number of concurrent sign-ins.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

/// Passwords longer than this are refused before hashing (argon2 would
/// happily hash megabytes; the form body limit is the outer bound).
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MIN_PASSWORD_LEN: usize = 8;
/// Queued hashes per running one.
const QUEUE_PER_PERMIT: usize = 4;
/// The longest a sign-in waits for its turn to hash.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// What an unknown account is checked against: a hash made with the same
/// parameters as real ones (a test keeps them equal to `Argon2::default()`),
/// written down rather than computed at every start-up.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$j9bOnrW6ZR5CovtaFOSHvA$AjfFSh7i157N1iD1L2kTRgTJ2xLyI3KC7z0rBQ9m2pU";

/// Too many passwords are being hashed right now; try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sign-ins at once; try again in a moment")]
pub struct Busy;

#[derive(Clone)]
pub struct Passwords {
    gate: Arc<Gate>,
}

/// The bound: `permits` hashes run, at most `queue` wait.
struct Gate {
    permits: Semaphore,
    waiting: AtomicUsize,
    queue: usize,
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    /// One hash at a time per core.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::with_concurrency(cores)
    }

    pub fn with_concurrency(permits: usize) -> Self {
        let permits = permits.max(1);
        Self {
            gate: Arc::new(Gate {
                permits: Semaphore::new(permits),
                waiting: AtomicUsize::new(0),
                queue: permits * QUEUE_PER_PERMIT,
            }),
        }
    }

    /// Runs `work` on a blocking thread once a permit is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let gate = &self.gate;
        let permit = match gate.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                if gate.waiting.fetch_add(1, Ordering::AcqRel) >= gate.queue {
                    gate.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Busy);
                }
                let acquired = tokio::time::timeout(MAX_WAIT, gate.permits.acquire()).await;
                gate.waiting.fetch_sub(1, Ordering::AcqRel);
                match acquired {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(Busy),
                }
            }
        };
        let result = tokio::task::spawn_blocking(work).await;
        drop(permit);
        result.map_err(|_| Busy)
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<Result<String, Busy>> {
        match self.run(move || hash_blocking(&password)).await {
            Ok(hashed) => hashed.map(Ok),
            Err(busy) => Ok(Err(busy)),
        }
    }

    /// Verifies against `stored`, or against the dummy hash when there is
    /// no account (always `false` then), in the same time.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        let exists = stored.is_some();
        let hash = stored.unwrap_or_else(|| DUMMY_HASH.to_string());
        let ok = self
            .run(move || {
                PasswordHash::new(&hash).is_ok_and(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await?;
        Ok(ok && exists)
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
        let hash = p.hash("correct horse".into()).await.unwrap().unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(
            p.verify("correct horse".into(), Some(hash.clone())).await,
            Ok(true)
        );
        assert_eq!(p.verify("wrong horse".into(), Some(hash)).await, Ok(false));
        assert_eq!(
            p.verify("chronos-dummy-password-for-timing".into(), None)
                .await,
            Ok(false)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_running_and_queued_hashes_the_answer_is_busy() {
        let p = Passwords::with_concurrency(1);
        let attempts = 1 + QUEUE_PER_PERMIT + 10;
        let results = futures_join(
            (0..attempts)
                .map(|_| {
                    let p = p.clone();
                    tokio::spawn(async move { p.verify("x".repeat(12), None).await })
                })
                .collect(),
        )
        .await;
        let busy = results.iter().filter(|r| **r == Err(Busy)).count();
        let done = results.iter().filter(|r| **r == Ok(false)).count();
        assert!(done > QUEUE_PER_PERMIT, "{results:?}");
        assert!(busy >= 1, "some were turned away: {results:?}");
        assert_eq!(busy + done, attempts);
        // And once the burst is over, hashing works again.
        assert_eq!(p.verify("x".repeat(12), None).await, Ok(false));
    }

    async fn futures_join(
        handles: Vec<tokio::task::JoinHandle<Result<bool, Busy>>>,
    ) -> Vec<Result<bool, Busy>> {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
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
