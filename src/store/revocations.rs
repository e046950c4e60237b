//! Revoked sessions. Every place that accepts an access token asks
//! [`RevocationStore::is_revoked`], which answers from memory; the list is
//! persisted so it survives a restart, and other processes' revocations
//! (the CLI, other replicas) are picked up by [`RevocationStore::sync`].
//!
//! Following the table is gap-free: rows carry a sequence number, and a
//! process re-reads from the highest number below which it has seen every
//! row (its watermark), not from the highest it has seen. So a row another
//! writer committed with a lower number than one this process wrote itself
//! (the CLI's logout, then a local one before the next poll) is still
//! picked up, as is a row whose transaction committed after a later one
//! (PostgreSQL sequences). A number that stays missing for
//! [`GAP_GRACE`] belongs to a transaction that rolled back, and is skipped.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::database::Database;
use super::ids::{SessionId, UserId};
use super::sql::{Exec, StoreError, Work, args};
use crate::unix_now;

/// How long a missing sequence number is waited for before it is taken for
/// a rolled-back transaction. Rows above it are applied at once regardless;
/// the wait only keeps the re-read window open.
pub const GAP_GRACE: Duration = Duration::from_secs(30);

#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Records the sessions as revoked, here and for every other process.
    async fn revoke(&self, session_ids: &[SessionId]) -> anyhow::Result<()>;
    /// Applies a revocation row that another write of ours just committed
    /// (a refresh that detected reuse records its own row).
    fn recorded(&self, seq: i64, session_id: &SessionId);
    /// Applies a revocation another replica announced (Redis): the session
    /// is refused at once; the row itself is still read from the database.
    fn heard(&self, session_id: &str, revoked_at: u64);
    /// Refuses the sessions here, and on other replicas where they can be
    /// told (Redis), while the database cannot store their revocation yet.
    fn refuse_now(&self, session_ids: &[SessionId]) {
        for id in session_ids {
            self.heard(id, unix_now());
        }
    }
    /// Refuses, here and on other replicas where they can be told (Redis),
    /// every access token of the user issued at or before `at` and every
    /// refresh of a session of theirs begun by then, while the database
    /// cannot end their sessions yet (a global logout during an outage).
    fn refuse_user_now(&self, user_id: &UserId, at: u64) {
        self.heard_user(user_id, at);
    }
    /// Applies such a refusal of a user's sessions another replica announced.
    fn heard_user(&self, user_id: &str, at: u64);
    /// Whether the session has been ended (its tokens are refused). No I/O.
    fn is_revoked(&self, session_id: &str) -> bool;
    /// Whether a token of this session and user, issued (or a session begun)
    /// at `issued_at`, must be refused. No I/O: every request asks.
    fn refuses(&self, session_id: &str, user_id: &str, issued_at: u64) -> bool;
    /// Picks up revocations recorded by other processes.
    async fn sync(&self) -> anyhow::Result<()>;
    /// Forgets revocations older than the longest access-token lifetime
    /// (every token of theirs has expired by then).
    async fn prune(&self) -> anyhow::Result<()>;
    /// Forgets, in memory only, revocations whose tokens have all expired
    /// (cheap; run every minute so the set follows the recent logouts).
    fn forget_expired(&self);
    /// How many revocations are held in memory.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One row of the revocation log: sequence number, session id, revoked at.
pub type RevocationRow = (i64, String, i64);

/// The in-memory side of a revocation log: the revoked set, and where to
/// resume reading the log so that no row is ever skipped.
#[derive(Debug, Default)]
pub struct Follower {
    /// session id -> revoked_at (Unix seconds)
    sessions: HashMap<String, u64>,
    /// user id -> until when (Unix seconds) their tokens are refused: a
    /// global logout the database could not take yet.
    users: HashMap<String, u64>,
    /// Every sequence number up to here has been applied.
    watermark: i64,
    /// Numbers above the watermark already applied (out of order).
    ahead: BTreeSet<i64>,
    /// Since when the number right above the watermark has been missing.
    gap_since: Option<Instant>,
}

impl Follower {
    /// A follower that treats everything up to `watermark` as read.
    pub fn starting_at(watermark: i64) -> Self {
        Self {
            watermark,
            ..Self::default()
        }
    }

    /// Where the next read of the log starts (exclusive).
    pub fn resume_after(&self) -> i64 {
        self.watermark
    }

    pub fn is_revoked(&self, session_id: &str) -> bool {
        self.sessions.contains_key(session_id)
    }

    /// Whether a token of this session and user issued at `issued_at` is
    /// refused: its session ended, or its user's sessions of that time.
    pub fn refuses(&self, session_id: &str, user_id: &str, issued_at: u64) -> bool {
        self.sessions.contains_key(session_id)
            || (!self.users.is_empty()
                && self.users.get(user_id).is_some_and(|at| issued_at <= *at))
    }

    /// Refuses the user's tokens issued at or before `at` (kept like a
    /// revocation: until every such token has expired).
    pub fn mark_user(&mut self, user_id: &str, at: u64, horizon: u64) {
        if at >= horizon {
            let until = self.users.entry(user_id.to_string()).or_insert(at);
            *until = (*until).max(at);
        }
    }

    /// Whether row `seq` has not been applied yet.
    pub fn is_new(&self, seq: i64) -> bool {
        seq > self.watermark && !self.ahead.contains(&seq)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Applies rows, in any order and any number of times; those revoked
    /// before `horizon` are counted as read but not kept (their tokens have
    /// expired).
    pub fn apply(
        &mut self,
        rows: impl IntoIterator<Item = RevocationRow>,
        horizon: u64,
        now: Instant,
    ) {
        for (seq, session_id, revoked_at) in rows {
            let revoked_at = u64::try_from(revoked_at).unwrap_or(0);
            if revoked_at >= horizon {
                let at = self.sessions.entry(session_id).or_insert(revoked_at);
                *at = (*at).max(revoked_at);
            }
            if seq > self.watermark {
                self.ahead.insert(seq);
            }
        }
        self.advance(now);
    }

    /// Moves the watermark over every contiguous number, and over a gap
    /// that has outlived [`GAP_GRACE`].
    fn advance(&mut self, now: Instant) {
        loop {
            while self.ahead.remove(&(self.watermark + 1)) {
                self.watermark += 1;
                self.gap_since = None;
            }
            let Some(&next) = self.ahead.first() else {
                self.gap_since = None;
                return;
            };
            match self.gap_since {
                None => {
                    self.gap_since = Some(now);
                    return;
                }
                Some(since) if now.duration_since(since) >= GAP_GRACE => {
                    // The missing numbers rolled back: skip them.
                    self.watermark = next - 1;
                    self.gap_since = None;
                }
                Some(_) => return,
            }
        }
    }

    /// Marks a session revoked without touching the watermark (the row
    /// will be read in its turn).
    pub fn mark(&mut self, session_id: &str, revoked_at: u64, horizon: u64) {
        if revoked_at >= horizon {
            let at = self
                .sessions
                .entry(session_id.to_string())
                .or_insert(revoked_at);
            *at = (*at).max(revoked_at);
        }
    }

    /// Forgets revocations older than `horizon`.
    pub fn prune(&mut self, horizon: u64) {
        self.sessions.retain(|_, at| *at >= horizon);
        self.sessions.shrink_to_fit();
        self.users.retain(|_, at| *at >= horizon);
    }
}

/// Records one session's revocation; its sequence number.
const RECORD: &str = "INSERT INTO revocations (session_id, revoked_at, by_operator)
     VALUES ($1, $2, $3) RETURNING seq";

/// Records a revocation inside the caller's transaction (a refresh that
/// detected reuse ends its session in the same transaction); its sequence
/// number.
pub(crate) async fn record_in<E: Exec>(
    tx: &mut E,
    session_id: &str,
    now: i64,
) -> Result<i64, StoreError> {
    tx.fetch_one(RECORD, args![session_id, now, false]).await
}

/// Records several sessions' revocations, all or none.
struct Record {
    ids: Vec<SessionId>,
    now: i64,
    by_operator: bool,
}

impl Work for Record {
    type Output = Vec<RevocationRow>;

    async fn run<E: Exec>(self, tx: &mut E) -> Result<Vec<RevocationRow>, StoreError> {
        let mut rows = Vec::with_capacity(self.ids.len());
        for id in self.ids {
            let seq: i64 = tx
                .fetch_one(RECORD, args![&id, self.now, self.by_operator])
                .await?;
            rows.push((seq, id.into_string(), self.now));
        }
        Ok(rows)
    }
}

/// Revocations in the database, mirrored in a [`Follower`].
pub struct DatabaseRevocations {
    db: Database,
    /// The longest access-token lifetime, seconds.
    window: u64,
    follower: RwLock<Follower>,
    /// Told how many sessions the operator's commands ended, as they are
    /// read (the metrics' `sessions_ended{reason="operator"}`).
    on_operator_ends: OperatorEnds,
    /// This process is an operator command: its revocations say so.
    by_operator: bool,
}

/// What is told of sessions ended by the operator's commands.
pub type OperatorEnds = Box<dyn Fn(usize) + Send + Sync>;

impl DatabaseRevocations {
    /// Loads the revocations that can still matter: those younger than the
    /// access-token lifetime (older ones name only expired tokens), so
    /// start-up does not grow with the table's history.
    pub async fn load(
        db: Database,
        window: u64,
        by_operator: bool,
        on_operator_ends: OperatorEnds,
    ) -> anyhow::Result<Self> {
        let horizon = unix_now().saturating_sub(window);
        const RECENT: &str = "SELECT seq, session_id, revoked_at FROM revocations WHERE revoked_at >= $1 ORDER BY seq";
        const LAST: &str = "SELECT COALESCE(MAX(seq), 0) FROM revocations";
        let rows: Vec<RevocationRow> = db.read(RECENT, args![horizon as i64]).await?;
        let start = match rows.first() {
            Some((first, ..)) => first - 1,
            None => db.read_one(LAST, args![]).await?,
        };
        let mut follower = Follower::starting_at(start);
        follower.apply(rows, horizon, Instant::now());
        Ok(Self {
            db,
            window,
            follower: RwLock::new(follower),
            on_operator_ends,
            by_operator,
        })
    }

    fn horizon(&self) -> u64 {
        unix_now().saturating_sub(self.window)
    }

    fn apply(&self, rows: Vec<RevocationRow>) {
        if rows.is_empty() {
            return;
        }
        let horizon = self.horizon();
        if let Ok(mut follower) = self.follower.write() {
            follower.apply(rows, horizon, Instant::now());
        }
    }
}

#[async_trait]
impl RevocationStore for DatabaseRevocations {
    async fn revoke(&self, session_ids: &[SessionId]) -> anyhow::Result<()> {
        let now = unix_now() as i64;
        let rows: Vec<RevocationRow> = match session_ids {
            [] => return Ok(()),
            // One session (a logout): one statement, no transaction.
            [id] => {
                let seq: i64 = self
                    .db
                    .write_returning_one(RECORD, args![id, now, self.by_operator])
                    .await?
                    .ok_or_else(|| StoreError::Statement("no seq returned".into()))?;
                vec![(seq, id.to_string(), now)]
            }
            ids => {
                let work = Record {
                    ids: ids.to_vec(),
                    now,
                    by_operator: self.by_operator,
                };
                self.db.transaction(work).await?
            }
        };
        self.apply(rows);
        Ok(())
    }

    fn recorded(&self, seq: i64, session_id: &SessionId) {
        self.apply(vec![(seq, session_id.to_string(), unix_now() as i64)]);
    }

    fn heard(&self, session_id: &str, revoked_at: u64) {
        let horizon = self.horizon();
        if let Ok(mut follower) = self.follower.write() {
            follower.mark(session_id, revoked_at, horizon);
        }
    }

    fn heard_user(&self, user_id: &str, at: u64) {
        let horizon = self.horizon();
        if let Ok(mut follower) = self.follower.write() {
            follower.mark_user(user_id, at, horizon);
        }
    }

    fn is_revoked(&self, session_id: &str) -> bool {
        self.follower
            .read()
            .map_or(true, |f| f.is_revoked(session_id))
    }

    fn refuses(&self, session_id: &str, user_id: &str, issued_at: u64) -> bool {
        self.follower
            .read()
            .map_or(true, |f| f.refuses(session_id, user_id, issued_at))
    }

    async fn sync(&self) -> anyhow::Result<()> {
        let after = self.follower.read().map_or(0, |f| f.resume_after());
        const AFTER: &str = "SELECT seq, session_id, revoked_at, by_operator FROM revocations
             WHERE seq > $1 ORDER BY seq";
        let rows: Vec<(i64, String, i64, bool)> = self.db.read(AFTER, args![after]).await?;
        if let Ok(follower) = self.follower.read() {
            let operator = rows
                .iter()
                .filter(|(seq, .., by_operator)| *by_operator && follower.is_new(*seq))
                .count();
            if operator > 0 {
                (self.on_operator_ends)(operator);
            }
        }
        self.apply(
            rows.into_iter()
                .map(|(seq, id, at, _)| (seq, id, at))
                .collect(),
        );
        Ok(())
    }

    async fn prune(&self) -> anyhow::Result<()> {
        let horizon = self.horizon();
        if let Ok(mut follower) = self.follower.write() {
            follower.prune(horizon);
        }
        self.db
            .purge(
                "DELETE FROM revocations WHERE seq IN
                   (SELECT seq FROM revocations WHERE revoked_at < $1 LIMIT 1000)",
                horizon as i64,
            )
            .await?;
        Ok(())
    }

    fn forget_expired(&self) {
        let horizon = self.horizon();
        if let Ok(mut follower) = self.follower.write() {
            follower.prune(horizon);
        }
    }

    fn len(&self) -> usize {
        self.follower.read().map_or(0, |f| f.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, session: &str) -> RevocationRow {
        (seq, session.to_string(), 1_000)
    }

    #[test]
    fn a_row_written_elsewhere_below_our_own_is_still_read() {
        let t0 = Instant::now();
        let mut f = Follower::default();
        f.apply([row(1, "a")], 0, t0);
        assert_eq!(f.resume_after(), 1);
        // We write seq 3 ourselves; seq 2 (the CLI's) is not read yet.
        f.apply([row(3, "ours")], 0, t0);
        assert_eq!(f.resume_after(), 1, "the next read still covers seq 2");
        f.apply([row(2, "cli"), row(3, "ours")], 0, t0);
        assert!(f.is_revoked("cli") && f.is_revoked("ours"));
        assert_eq!(f.resume_after(), 3);
    }

    #[test]
    fn rows_in_any_order_end_at_the_same_watermark() {
        let t0 = Instant::now();
        let mut f = Follower::default();
        for seq in [5, 2, 4, 1, 3] {
            f.apply([row(seq, &format!("s{seq}"))], 0, t0);
        }
        assert_eq!(f.resume_after(), 5);
        assert_eq!(f.len(), 5);
    }

    #[test]
    fn a_gap_that_never_fills_is_skipped_after_the_grace() {
        let t0 = Instant::now();
        let mut f = Follower::default();
        f.apply([row(1, "a"), row(3, "c")], 0, t0);
        assert!(f.is_revoked("c"), "rows above a gap apply at once");
        assert_eq!(f.resume_after(), 1);
        f.apply([], 0, t0 + GAP_GRACE / 2);
        assert_eq!(f.resume_after(), 1);
        f.apply([], 0, t0 + GAP_GRACE);
        assert_eq!(f.resume_after(), 3);
        // And a late row 2 is still applied.
        f.apply([row(2, "late")], 0, t0 + GAP_GRACE * 2);
        assert!(f.is_revoked("late"));
    }

    #[test]
    fn a_refused_user_loses_the_tokens_issued_until_then_and_keeps_later_ones() {
        let mut f = Follower::default();
        f.mark_user("ann", 100, 50);
        assert!(f.refuses("s1", "ann", 99) && f.refuses("s1", "ann", 100));
        assert!(
            !f.refuses("s2", "ann", 101),
            "a token issued after is not refused"
        );
        assert!(!f.refuses("s1", "bob", 99), "nor another user's");
        f.prune(101);
        assert!(
            !f.refuses("s1", "ann", 99),
            "forgotten once its tokens expired"
        );
    }

    #[test]
    fn revocations_older_than_the_horizon_are_read_but_not_kept() {
        let mut f = Follower::default();
        f.apply(
            [(1, "old".to_string(), 10), (2, "new".to_string(), 100)],
            50,
            Instant::now(),
        );
        assert!(!f.is_revoked("old") && f.is_revoked("new"));
        assert_eq!(f.resume_after(), 2);
    }
}
