//! In-process stores for a single replica.

use std::num::NonZeroU32;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::RateLimitStore;
use crate::limits::{ClientKey, Exceeded, Limit};

/// GCRA counters in a sharded map (governor's keyed limiter), one map per
/// configured limit. A key costs its 16-byte id plus an 8-byte timestamp per
/// limit; [`prune`](RateLimitStore::prune) drops every key whose budget has
/// fully refilled and gives the memory back, so the map holds only clients
/// seen within roughly one emission interval plus the pruning period.
pub struct MemoryRateLimitStore {
    limiters: Vec<DefaultKeyedRateLimiter<ClientKey>>,
    clock: DefaultClock,
}

impl MemoryRateLimitStore {
    pub fn new(limits: &[Limit]) -> Self {
        let clock = DefaultClock::default();
        let limiters = limits
            .iter()
            .filter_map(|limit| {
                let count = NonZeroU32::new(limit.count)?;
                let quota = Quota::with_period(limit.period / limit.count)?.allow_burst(count);
                Some(RateLimiter::dashmap_with_clock(quota, clock.clone()))
            })
            .collect();
        Self { limiters, clock }
    }

    /// The synchronous check, for callers (and benchmarks) outside async code.
    pub fn check(&self, key: ClientKey) -> Result<(), Exceeded> {
        for (index, limiter) in self.limiters.iter().enumerate() {
            if let Err(not_until) = limiter.check_key(&key) {
                return Err(Exceeded {
                    limit: index,
                    retry_after: not_until.wait_time_from(self.clock.now()),
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl RateLimitStore for MemoryRateLimitStore {
    async fn hit(&self, key: ClientKey) -> Result<(), Exceeded> {
        self.check(key)
    }

    fn hit_now(&self, key: ClientKey) -> Option<Result<(), Exceeded>> {
        Some(self.check(key))
    }

    fn prune(&self) {
        for limiter in &self.limiters {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    fn tracked_keys(&self) -> usize {
        self.limiters.iter().map(|l| l.len()).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::parse_limits;

    #[test]
    fn the_burst_is_allowed_then_refused_with_a_wait() {
        let store = MemoryRateLimitStore::new(&parse_limits("3/minute").unwrap());
        let key = ClientKey(1);
        for _ in 0..3 {
            assert!(store.check(key).is_ok());
        }
        let exceeded = store.check(key).unwrap_err();
        assert_eq!(exceeded.limit, 0);
        assert!(exceeded.retry_after.as_secs() <= 20 && exceeded.retry_after.as_secs() >= 19);
        assert!(
            store.check(ClientKey(2)).is_ok(),
            "other keys are independent"
        );
    }

    #[test]
    fn every_limit_must_hold() {
        let store = MemoryRateLimitStore::new(&parse_limits("100/second;2/hour").unwrap());
        assert!(store.check(ClientKey(7)).is_ok());
        assert!(store.check(ClientKey(7)).is_ok());
        assert_eq!(store.check(ClientKey(7)).unwrap_err().limit, 1);
    }

    #[test]
    fn pruning_forgets_refilled_keys() {
        let store = MemoryRateLimitStore::new(&parse_limits("1000/second").unwrap());
        for k in 0..1000 {
            store.check(ClientKey(k)).unwrap();
        }
        assert_eq!(store.tracked_keys(), 1000);
        std::thread::sleep(std::time::Duration::from_millis(5));
        store.prune();
        assert_eq!(store.tracked_keys(), 0);
    }
}
