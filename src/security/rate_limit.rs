//! Per-client rate limiting: the limiter that turns a store's verdict into
//! a 429 (the grammar and the key live in [`crate::limits`]).

use std::sync::Arc;

use bytes::Bytes;

use crate::limits::{ClientKey, Limit};
use crate::store::RateLimitStore;

/// A request that went over a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// The 429 body, `{"detail": "Rate limit exceeded: 5 per 1 minute"}`,
    /// rendered once per limit: a refusal must cost no more than a 200.
    pub body: Bytes,
    /// Whole seconds until a request would be allowed (at least 1).
    pub retry_after: u64,
}

/// One named policy (auth, verify): its limits and the store that counts.
#[derive(Clone)]
pub struct RateLimiter {
    bodies: Arc<[Bytes]>,
    store: Arc<dyn RateLimitStore>,
}

impl RateLimiter {
    pub fn new(limits: Vec<Limit>, store: Arc<dyn RateLimitStore>) -> Self {
        let bodies = limits
            .iter()
            .map(|limit| {
                let detail =
                    serde_json::json!({ "detail": format!("Rate limit exceeded: {limit}") });
                Bytes::from(detail.to_string())
            })
            .collect();
        Self { bodies, store }
    }

    /// Counts one request from `key`.
    pub async fn check(&self, key: ClientKey) -> Result<(), RateLimited> {
        let verdict = match self.store.hit_now(key) {
            Some(verdict) => verdict,
            None => self.store.hit(key).await,
        };
        match verdict {
            Ok(()) => Ok(()),
            Err(exceeded) => {
                let body =
                    self.bodies.get(exceeded.limit).cloned().unwrap_or_else(|| {
                        Bytes::from_static(br#"{"detail":"Rate limit exceeded"}"#)
                    });
                let wait = exceeded.retry_after;
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(RateLimited {
                    body,
                    retry_after: retry_after.max(1),
                })
            }
        }
    }

    pub fn store(&self) -> &Arc<dyn RateLimitStore> {
        &self.store
    }
}
