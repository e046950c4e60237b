//! What replicas share through Redis (`REDIS_URL`): the rate-limit counters,
//! so that a limit is one budget across every replica, and a channel on
//! which each revocation is announced, so that every replica refuses a
//! revoked session at once instead of at its next read of the database.
//!
//! Redis is a fast path, never the record: revocations are stored in the
//! database first and every replica still reads them from there, so a
//! replica that missed a message (restart, network blip) catches up by
//! itself. When Redis cannot be reached the limiter follows
//! `RATE_LIMIT_FAIL`, says so in the log once per [`LOG_EVERY`], and tries
//! Redis again after [`RETRY_AFTER`]; nothing waits longer than [`TIMEOUT`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::RateLimitStore;
use super::ids::{SessionId, UserId};
use super::revocations::RevocationStore;
use crate::config::FailMode;
use crate::limits::{ClientKey, Exceeded, Limit};

/// The longest a request waits for Redis.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, requests skip Redis (and follow the fail mode) this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// An unreachable Redis is logged at most once per this interval.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A connection to Redis shared by the limiter and the revocation feed;
/// cloning shares it. Connects lazily and reconnects by itself.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: Arc<str>,
    health: Arc<Health>,
}

/// When Redis last failed, and when that was last logged.
struct Health {
    started: Instant,
    /// Milliseconds since `started` of the last failure, 0 = none.
    failed_at: AtomicU64,
    logged_at: AtomicU64,
}

impl Health {
    fn millis(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    /// Whether a recent failure says not to try Redis now.
    fn resting(&self) -> bool {
        let failed = self.failed_at.load(Ordering::Relaxed);
        failed != 0 && self.millis() - failed < RETRY_AFTER.as_millis() as u64
    }

    fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        let now = self.millis();
        self.failed_at.store(now, Ordering::Relaxed);
        let logged = self.logged_at.load(Ordering::Relaxed);
        if (logged == 0 || now - logged >= LOG_EVERY.as_millis() as u64)
            && self
                .logged_at
                .compare_exchange(logged, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(error = %error, "redis unreachable: {what}");
        }
    }

    fn recovered(&self) {
        if self.failed_at.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!("redis reachable again");
        }
    }
}

impl Redis {
    /// Prepares the connection; nothing is sent until it is used, so a
    /// server starts while Redis is down (and the limiter follows its fail
    /// mode until Redis is back).
    pub fn new(url: &str, prefix: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.into(),
            health: Arc::new(Health {
                started: Instant::now(),
                failed_at: AtomicU64::new(0),
                logged_at: AtomicU64::new(0),
            }),
        })
    }

    /// Runs one command or script within [`TIMEOUT`]; `None` when Redis
    /// failed (logged, and skipped for [`RETRY_AFTER`]) or is resting.
    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &str,
        call: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if self.health.resting() {
            return None;
        }
        match tokio::time::timeout(TIMEOUT, call(self.conn.clone())).await {
            Ok(Ok(value)) => {
                self.health.recovered();
                Some(value)
            }
            Ok(Err(error)) => {
                self.health.failed(what, &error);
                None
            }
            Err(_) => {
                self.health.failed(what, &"timed out");
                None
            }
        }
    }

    fn channel(&self) -> String {
        format!("{}revocations", self.prefix)
    }
}

/// GCRA over every limit of a policy in one round trip, on Redis's clock
/// (replicas' clocks may differ). Per client one hash: field i holds limit
/// i's theoretical arrival time in microseconds. Limits are applied in
/// order, each counting the request until one refuses, as the in-process
/// store does; the key expires once every limit has refilled.
/// ARGV: how many emissions the caller would like to take at once (its
/// lease), how many of its last lease lapsed unused (given back first),
/// then per limit its emission interval and burst window (µs). Grants as
/// many as every limit can give now, up to the lease, at least one: with
/// one and nothing given back, exactly the per-request rule.
/// Returns {-1, granted} when allowed, else {limit index, wait in µs}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limits = (#ARGV - 2) / 2
local grant = tonumber(ARGV[1])
local refund = tonumber(ARGV[2])
for i = 1, limits do
  local interval = tonumber(ARGV[2 * i + 1])
  local window = tonumber(ARGV[2 * i + 2])
  local stored = redis.call('HGET', KEYS[1], i)
  local tat = tonumber(stored or now)
  if refund > 0 and stored then
    tat = tat - refund * interval
    redis.call('HSET', KEYS[1], i, tat)
  end
  if tat < now then tat = now end
  local free = math.floor((window - (tat - now)) / interval)
  if free < grant then grant = free end
end
if grant < 1 then grant = 1 end
local verdict = {-1, grant}
local keep = 0
for i = 1, limits do
  local interval = tonumber(ARGV[2 * i + 1])
  local window = tonumber(ARGV[2 * i + 2])
  local tat = tonumber(redis.call('HGET', KEYS[1], i) or now)
  if tat < now then tat = now end
  local new = tat + interval * grant
  if new - now > window then
    verdict = {i - 1, new - window - now}
    if tat - now > keep then keep = tat - now end
    break
  end
  redis.call('HSET', KEYS[1], i, new)
  if new - now > keep then keep = new - now end
end
local ttl = math.ceil(keep / 1000) + 1
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return verdict
";

/// How long emissions taken ahead from Redis may be served here: a lease
/// covers at most this much of a limit's sustained rate, so leasing only
/// happens for limits of hundreds of requests a second or more.
pub const LEASE_SPAN: Duration = Duration::from_millis(10);
/// Emissions taken in one round trip at most.
const MAX_LEASE: u32 = 256;

/// Emissions of one client's budget this replica took from Redis ahead of
/// its requests, served until used or [`LEASE_SPAN`] is over.
struct Lease {
    left: AtomicU32,
    until: Instant,
    /// How many were asked for.
    size: u32,
    /// Emissions of replaced leases that lapsed, to give back next time.
    owed: AtomicU32,
    /// Held by the one request taking this client's next lease (passed
    /// on from lease to lease): the others that ran out wait for it rather
    /// than each taking a lease of their own.
    refill: Arc<tokio::sync::Mutex<()>>,
}

impl Lease {
    fn take(&self, now: Instant) -> bool {
        now < self.until
            && self
                .left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }

    /// After this lease (used up, or lapsed): the next one to ask for and
    /// how many of this one to give back. Twice as many when it was used
    /// up in time (the client keeps this pace); as many as were used when
    /// some lapsed; one when the client has been away. Lapsed emissions
    /// are taken out of the lease here, so none is both served and given
    /// back.
    fn next(&self, now: Instant, max: u32) -> (u32, u32) {
        let lapsed = if now >= self.until {
            self.left.swap(0, Ordering::Relaxed)
        } else {
            0
        };
        let owed = self.owed.swap(0, Ordering::Relaxed);
        let want = if lapsed > 0 {
            self.size.saturating_sub(lapsed).max(1)
        } else if now < self.until + LEASE_SPAN {
            self.size.saturating_mul(2).min(max)
        } else {
            1
        };
        (want, lapsed + owed)
    }

    /// What a lease replacing this one takes over: its unused emissions,
    /// served by the new one if still in time, else given back later.
    fn hand_over(&self, now: Instant, to: &Lease) {
        let left = self.left.swap(0, Ordering::Relaxed);
        let owed = self.owed.swap(0, Ordering::Relaxed);
        if now < self.until {
            to.left.fetch_add(left, Ordering::Relaxed);
            to.owed.fetch_add(owed, Ordering::Relaxed);
        } else {
            to.owed.fetch_add(left + owed, Ordering::Relaxed);
        }
    }
}

/// The largest lease a policy asks for: what its tightest limit emits in
/// [`LEASE_SPAN`], 1 (no lease) for anything under 200 requests a second.
pub fn lease_size(limits: &[Limit]) -> u32 {
    limits
        .iter()
        .map(|limit| {
            let per_span =
                u128::from(limit.count) * LEASE_SPAN.as_micros() / limit.period.as_micros().max(1);
            per_span.min(u128::from(MAX_LEASE)) as u32
        })
        .min()
        .unwrap_or(1)
        .max(1)
}

/// Clients refused recently, remembered locally at most.
const REFUSED_CACHE: usize = 65_536;

/// Rate-limit counters in Redis: one budget across replicas. A refusal is
/// also remembered here until the wait Redis named has passed, so a client
/// hammering past its limit costs no round trip (a budget only refills with
/// time, so the answer cannot change before then). For limits of hundreds
/// of requests a second or more, a replica takes several emissions of a
/// client's budget in one round trip and serves them for at most
/// [`LEASE_SPAN`] ([`lease_size`]): what Redis counted is always at least
/// what was admitted, so the budget is never exceeded; emissions left
/// unused lapse (admission can only be lower than exact). Leases follow
/// each client's pace on this replica: they start at one, double while
/// used up in time and halve when some lapse, so a client at a moderate
/// rate loses little and one hammering a replica costs a round trip per
/// [`MAX_LEASE`] requests.
pub struct RedisRateLimitStore {
    /// Client -> (limit index, refused until).
    refused: quick_cache::sync::Cache<u128, (usize, Instant)>,
    /// Client -> emissions taken ahead (only when `lease` > 1).
    leases: quick_cache::sync::Cache<u128, Arc<Lease>>,
    lease: u32,
    redis: Redis,
    script: redis::Script,
    /// `<prefix>rl:<policy>:`
    prefix: String,
    /// Per limit: emission interval and burst window, in microseconds.
    args: Vec<u64>,
    fail: FailMode,
}

impl RedisRateLimitStore {
    pub fn new(redis: Redis, policy: &str, limits: &[Limit], fail: FailMode) -> Self {
        let args = limits
            .iter()
            .flat_map(|limit| {
                let window = limit.period.as_micros() as u64;
                [window / u64::from(limit.count.max(1)), window]
            })
            .collect();
        Self {
            refused: quick_cache::sync::Cache::new(REFUSED_CACHE),
            leases: quick_cache::sync::Cache::new(REFUSED_CACHE),
            lease: lease_size(limits),
            prefix: format!("{}rl:{policy}:", redis.prefix),
            redis,
            script: redis::Script::new(GCRA),
            args,
            fail,
        }
    }

    /// The refusal remembered for `key`, while its wait lasts.
    fn refused(&self, key: ClientKey) -> Option<Exceeded> {
        let (limit, until) = self.refused.get(&key.0)?;
        let now = Instant::now();
        if until > now {
            return Some(Exceeded {
                limit,
                retry_after: until - now,
            });
        }
        self.refused.remove(&key.0);
        None
    }
}

#[async_trait]
impl RateLimitStore for RedisRateLimitStore {
    async fn hit(&self, key: ClientKey) -> Result<(), Exceeded> {
        if let Some(refused) = self.refused(key) {
            return Err(refused);
        }
        let (mut want, mut refund) = (1, 0);
        let mut gate = None;
        let mut _refilling = None;
        if self.lease > 1
            && let Some(mut lease) = self.leases.get(&key.0)
        {
            if lease.take(Instant::now()) {
                return Ok(());
            }
            // One round trip per run-out: whoever finds the lease empty
            // first takes the next one; the others wait for it and serve
            // from it (a herd of replacements would each cost Redis a
            // round trip, ~16 requests per trip at 32 connections).
            let refill = lease.refill.clone();
            _refilling = match refill.clone().try_lock_owned() {
                Ok(guard) => Some(guard),
                Err(_) => {
                    let guard = refill.clone().lock_owned().await;
                    if let Some(refused) = self.refused(key) {
                        return Err(refused);
                    }
                    match self.leases.get(&key.0) {
                        Some(current) if !Arc::ptr_eq(&current, &lease) => {
                            if current.take(Instant::now()) {
                                return Ok(());
                            }
                            lease = current;
                            Some(guard)
                        }
                        // The refill before this one failed (Redis down):
                        // ask alone, without holding up the others.
                        _ => None,
                    }
                }
            };
            (want, refund) = lease.next(Instant::now(), self.lease);
            gate = Some(refill);
        }
        let redis_key = format!("{}{:032x}", self.prefix, key.0);
        let verdict: Option<(i64, i64)> = self
            .redis
            .run("rate limiter", async |mut conn| {
                let mut call = self.script.key(&redis_key);
                call.arg(want).arg(refund);
                for arg in &self.args {
                    call.arg(*arg);
                }
                call.invoke_async(&mut conn).await
            })
            .await;
        match verdict {
            Some((index, granted)) if index < 0 => {
                if self.lease > 1 {
                    // Even a lease of one: how fast it was used sizes the next.
                    let now = Instant::now();
                    let lease = Lease {
                        left: AtomicU32::new((granted.max(1) - 1) as u32),
                        until: now + LEASE_SPAN,
                        size: want,
                        owed: AtomicU32::new(0),
                        refill: gate.unwrap_or_default(),
                    };
                    // Requests that ran out together before any lease
                    // (or while Redis failed) each bring one: the one
                    // replaced is not lost.
                    if let Some(replaced) = self.leases.get(&key.0) {
                        replaced.hand_over(now, &lease);
                    }
                    self.leases.insert(key.0, Arc::new(lease));
                }
                Ok(())
            }
            Some((index, wait)) => {
                let retry_after = Duration::from_micros(wait.max(0) as u64);
                self.refused
                    .insert(key.0, (index as usize, Instant::now() + retry_after));
                Err(Exceeded {
                    limit: index as usize,
                    retry_after,
                })
            }
            None => match self.fail {
                FailMode::Open => Ok(()),
                FailMode::Closed => Err(Exceeded {
                    limit: 0,
                    retry_after: RETRY_AFTER,
                }),
            },
        }
    }

    /// Keys expire in Redis by themselves; forgets refusals and leases
    /// that are over.
    fn prune(&self) {
        let now = Instant::now();
        self.refused.retain(|_, (_, until)| *until > now);
        self.leases.retain(|_, lease| lease.until > now);
    }

    /// Refused clients remembered here (the counters live in Redis).
    fn tracked_keys(&self) -> usize {
        self.refused.len()
    }
}

/// Announces revocations on the channel (after the database has them) and
/// applies what other replicas announce.
pub struct RevocationFeed {
    redis: Redis,
}

impl RevocationFeed {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    /// Tells every replica (best effort: a replica that misses this reads
    /// the revocation from the database within a second).
    /// Announces revoked sessions (their ids), or users (`u:` + id).
    pub async fn announce<W: AsRef<str>>(&self, session_ids: &[W], revoked_at: u64) {
        if session_ids.is_empty() {
            return;
        }
        let message = announcement(session_ids, revoked_at);
        let channel = self.redis.channel();
        let _: Option<i64> = self
            .redis
            .run("revocation announcement", async |mut conn| {
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&message)
                    .query_async(&mut conn)
                    .await
            })
            .await;
    }

    /// Listens until the process ends: each announcement is applied to
    /// `store`; after every (re)connection the store re-reads the database,
    /// so nothing announced while away is missed.
    pub async fn listen(&self, store: Arc<dyn RevocationStore>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.redis.client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(self.redis.channel()).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        if let Err(error) = store.sync().await {
                            tracing::warn!(error = format!("{error:#}"), "revocation sync failed");
                        }
                        let mut messages = pubsub.into_on_message();
                        while let Some(message) = messages.next().await {
                            if let Some((ids, at)) = parse_announcement(message.get_payload_bytes())
                            {
                                for id in ids {
                                    match id.strip_prefix(USER_PREFIX) {
                                        Some(user_id) => store.heard_user(user_id, at),
                                        None => store.heard(id, at),
                                    }
                                }
                            }
                        }
                    }
                    Err(error) => self.redis.health.failed("revocation channel", &error),
                },
                Err(error) => self.redis.health.failed("revocation channel", &error),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// A revocation store whose revocations are also announced to the other
/// replicas, once the database has them.
pub struct AnnouncedRevocations {
    inner: Arc<dyn RevocationStore>,
    feed: Arc<RevocationFeed>,
}

impl AnnouncedRevocations {
    pub fn new(inner: Arc<dyn RevocationStore>, feed: Arc<RevocationFeed>) -> Self {
        Self { inner, feed }
    }
}

#[async_trait]
impl RevocationStore for AnnouncedRevocations {
    async fn revoke(&self, session_ids: &[SessionId]) -> anyhow::Result<()> {
        self.inner.revoke(session_ids).await?;
        self.feed.announce(session_ids, crate::unix_now()).await;
        Ok(())
    }

    fn recorded(&self, seq: i64, session_id: &SessionId) {
        self.inner.recorded(seq, session_id);
        let feed = self.feed.clone();
        let ids = [session_id.clone()];
        tokio::spawn(async move { feed.announce(&ids, crate::unix_now()).await });
    }

    fn heard(&self, session_id: &str, revoked_at: u64) {
        self.inner.heard(session_id, revoked_at);
    }

    fn refuse_now(&self, session_ids: &[SessionId]) {
        if session_ids.is_empty() {
            return;
        }
        self.inner.refuse_now(session_ids);
        let feed = self.feed.clone();
        let ids = session_ids.to_vec();
        tokio::spawn(async move { feed.announce(&ids, crate::unix_now()).await });
    }

    fn refuse_user_now(&self, user_id: &UserId, at: u64) {
        self.inner.refuse_user_now(user_id, at);
        let feed = self.feed.clone();
        let word = [format!("{USER_PREFIX}{user_id}")];
        tokio::spawn(async move { feed.announce(&word, at).await });
    }

    fn heard_user(&self, user_id: &str, at: u64) {
        self.inner.heard_user(user_id, at);
    }

    fn is_revoked(&self, session_id: &str) -> bool {
        self.inner.is_revoked(session_id)
    }

    fn refuses(&self, session_id: &str, user_id: &str, issued_at: u64) -> bool {
        self.inner.refuses(session_id, user_id, issued_at)
    }

    async fn sync(&self) -> anyhow::Result<()> {
        self.inner.sync().await
    }

    async fn prune(&self) -> anyhow::Result<()> {
        self.inner.prune().await
    }

    fn forget_expired(&self) {
        self.inner.forget_expired();
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// `revoked_at session_id session_id ...`
/// Marks a word of an announcement as a user whose tokens until then are
/// refused (the others are session ids).
const USER_PREFIX: &str = "u:";

fn announcement<W: AsRef<str>>(session_ids: &[W], revoked_at: u64) -> String {
    let mut message = revoked_at.to_string();
    for id in session_ids {
        message.push(' ');
        message.push_str(id.as_ref());
    }
    message
}

fn parse_announcement(payload: &[u8]) -> Option<(impl Iterator<Item = &str>, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut words = text.split(' ');
    let at = words.next()?.parse().ok()?;
    Some((words.filter(|id| !id.is_empty() && id.len() <= 64), at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_limits_of_hundreds_a_second_lease() {
        let lease = |spec: &str| lease_size(&crate::limits::parse_limits(spec).unwrap());
        assert_eq!(lease("5/minute"), 1);
        assert_eq!(lease("100/second"), 1);
        assert_eq!(lease("1000/second"), 10);
        assert_eq!(
            lease("1000/second, 10/minute"),
            1,
            "the tightest limit decides"
        );
        assert_eq!(lease("1000000000/second"), MAX_LEASE);
    }

    #[test]
    fn an_announcement_reads_back() {
        let ids = vec!["a-1".to_string(), "b-2".to_string()];
        let message = announcement(&ids, 1_700_000_000);
        let (read, at) = parse_announcement(message.as_bytes()).unwrap();
        assert_eq!(at, 1_700_000_000);
        assert_eq!(read.collect::<Vec<_>>(), ["a-1", "b-2"]);
        assert!(parse_announcement(b"not-a-number a").is_none());
        assert!(parse_announcement(&[0xff, 0xfe]).is_none());
    }
}
