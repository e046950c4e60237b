//! Argon2id password hashing, off the async threads and bounded. An unknown
//! account is checked against a dummy hash so that "no such user" and
//! "wrong password" take the same time.
//!
//! Each hash holds about 19 MiB (argon2's default `m = 19456 KiB`) and a
//! whole core for ~15 ms, so hashes run on a pool of their own: one thread
//! per core, with a short queue in front (four per core). A sign-in that
//! finds the queue full, or waits longer than [`MAX_WAIT`], is answered
//! "busy" (503 with `Retry-After`) instead of piling up threads and memory:
//! hashing holds at most `cores × 19 MiB` whatever the number of concurrent
//! sign-ins. On Linux the pool's threads run at nice 10, so session checks
//! and page loads on the async workers come first when the CPU is
//! contended, and hashing has the CPU to itself when it is not.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::oneshot;

/// Passwords longer than this are refused before hashing (argon2 would
/// happily hash megabytes; the form body limit is the outer bound).
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MIN_PASSWORD_LEN: usize = 8;
/// Queued hashes per hashing thread.
const QUEUE_PER_THREAD: usize = 4;
/// The longest a sign-in waits for its hash, queue included.
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// The hashing threads' niceness (0 is the default, 19 the lowest).
const NICENESS: i32 = 10;

/// What an unknown account is checked against: a hash made with the same
/// parameters as real ones (a test keeps them equal to `Argon2::default()`),
/// written down rather than computed at every start-up.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$j9bOnrW6ZR5CovtaFOSHvA$AjfFSh7i157N1iD1L2kTRgTJ2xLyI3KC7z0rBQ9m2pU";

/// Too many passwords are being hashed right now; try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sign-ins at once; try again in a moment")]
pub struct Busy;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing pool; cloning shares it. Its threads end when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Passwords {
    jobs: SyncSender<Job>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    /// One hashing thread per core.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::with_threads(cores)
    }

    pub fn with_threads(threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = sync_channel::<Job>(threads * QUEUE_PER_THREAD);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            let _ = std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || work(&queue));
        }
        Self { jobs }
    }

    /// Runs `work` on the pool; `Busy` when the queue is full or the answer
    /// does not come within [`MAX_WAIT`].
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            // Whoever asked may have given up while this waited in the queue.
            if !reply.is_closed() {
                let _ = reply.send(work());
            }
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return Err(Busy),
        }
        match tokio::time::timeout(MAX_WAIT, answer).await {
            Ok(Ok(value)) => Ok(value),
            _ => Err(Busy),
        }
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

/// A hashing thread: lower its priority, then run jobs until the pool is
/// dropped.
fn work(queue: &Mutex<Receiver<Job>>) {
    #[cfg(target_os = "linux")]
    {
        // Per thread on Linux: PRIO_PROCESS with a thread id.
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICENESS);
    }
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
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
        let p = Passwords::with_threads(1);
        let attempts = 1 + QUEUE_PER_THREAD + 10;
        let handles: Vec<_> = (0..attempts)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.verify("x".repeat(12), None).await })
            })
            .collect();
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await.unwrap());
        }
        let busy = results.iter().filter(|r| **r == Err(Busy)).count();
        let done = results.iter().filter(|r| **r == Ok(false)).count();
        assert!(done >= QUEUE_PER_THREAD, "{results:?}");
        assert!(busy >= 1, "some were turned away: {results:?}");
        assert_eq!(busy + done, attempts);
        // And once the burst is over, hashing works again.
        assert_eq!(p.verify("x".repeat(12), None).await, Ok(false));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn hashing_threads_run_at_a_lower_priority() {
        let p = Passwords::with_threads(1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let niceness = runtime
            .block_on(
                p.run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid()))),
            )
            .unwrap()
            .unwrap();
        assert_eq!(niceness, NICENESS);
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
