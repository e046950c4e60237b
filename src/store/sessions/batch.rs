//! Refreshes on PostgreSQL, batched: refreshes that arrive together go to
//! the database as one statement (one round trip, one commit), the way the
//! SQLite writer groups its writes. On a small machine the database's cost
//! per transaction, not per row, bounds refresh throughput; a batch pays it
//! once. This is the one statement of the sessions written for PostgreSQL
//! alone: it passes the batch as arrays, which SQLite does not have.
//!
//! The statement is [`super::Rotate`]'s conditional `UPDATE`, applied to
//! the batch's sessions (`id = ANY($1)`, each row's counter, user agent and
//! address found by its position in the arrays), so each row follows
//! exactly the one-process rules; the revocation of a reused token is
//! written by the same statement. It is not an `UPDATE ... FROM UNNEST(..)`
//! join on purpose: after five runs PostgreSQL keeps a generic plan that
//! guesses ten array elements, and for a table of a few hundred sessions
//! that plan is a nested loop comparing every session with every input
//! (BENCHMARKS.md, "Refresh on PostgreSQL"). A batch holds a session at
//! most once: a second refresh of the same session waits for the next
//! statement, which then sees the first one's counter, as a second replica
//! would. One batch is in flight per process (more batches in flight were
//! measured slower, BENCHMARKS.md). Replicas' batches may still touch the
//! same sessions in a different order and deadlock; PostgreSQL breaks that
//! by failing one, retried here.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Pair, Refresh, Refreshed, Rules, SessionId};
use crate::store::accounts::{User, rfc3339};
use crate::store::sql::StoreError;

/// Refreshes in one statement at most.
const MAX_BATCH: usize = 128;
/// Refreshes waiting at most; beyond, callers wait for room.
const QUEUE: usize = 8192;
/// How often a batch chosen as a deadlock victim is tried again.
const DEADLOCK_RETRIES: usize = 3;

struct Job {
    refresh: Refresh,
    reply: oneshot::Sender<Result<Refreshed, StoreError>>,
}

#[derive(Clone)]
pub struct RefreshBatcher {
    jobs: mpsc::Sender<Job>,
}

impl RefreshBatcher {
    /// Starts `workers` tasks, each running one batch at a time (the
    /// server uses one).
    pub(super) fn start(pool: PgPool, rules: Rules, workers: usize) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..workers.max(1) {
            let (pool, queue) = (pool.clone(), queue.clone());
            tokio::spawn(async move { work(pool, rules, queue).await });
        }
        Self { jobs }
    }

    pub(super) async fn refresh(&self, refresh: Refresh) -> Result<Refreshed, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { refresh, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

async fn work(pool: PgPool, rules: Rules, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        {
            let mut queue = queue.lock().await;
            match queue.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        // Run in rounds: each round holds every session once.
        while !batch.is_empty() {
            let mut seen = HashSet::with_capacity(batch.len());
            let (round, later): (Vec<Job>, Vec<Job>) = batch
                .into_iter()
                .partition(|job| seen.insert(job.refresh.session_id.clone()));
            run(&pool, rules, round).await;
            batch = later;
        }
    }
}

/// One statement for the round; every job answered.
async fn run(pool: &PgPool, rules: Rules, round: Vec<Job>) {
    let mut attempt = 0;
    let rows = loop {
        attempt += 1;
        match statement(pool, rules, &round).await {
            Err(e)
                if attempt <= DEADLOCK_RETRIES
                    && e.as_database_error()
                        .and_then(|d| d.code())
                        .is_some_and(|code| code == "40P01") => {}
            other => break other,
        }
    };
    match rows {
        Ok(rows) => {
            let mut rows: std::collections::HashMap<String, Row> =
                rows.into_iter().map(|row| (row.0.clone(), row)).collect();
            for job in round {
                let found = rows.remove(job.refresh.session_id.as_str());
                let _ = job.reply.send(Ok(outcome(job.refresh.session_id, found)));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for job in round {
                let _ = job.reply.send(Err(StoreError::Shared(e.clone())));
            }
        }
    }
}

type Row = (
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
);

async fn statement(pool: &PgPool, rules: Rules, round: &[Job]) -> Result<Vec<Row>, sqlx::Error> {
    let now = crate::unix_now() as i64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut ids = Vec::with_capacity(round.len());
    let mut counters = Vec::with_capacity(round.len());
    let mut agents = Vec::with_capacity(round.len());
    let mut ips = Vec::with_capacity(round.len());
    for job in round {
        ids.push(job.refresh.session_id.as_str());
        counters.push(job.refresh.counter);
        agents.push(job.refresh.user_agent.as_deref());
        ips.push(job.refresh.ip.as_str());
    }
    sqlx::query_as(
        "WITH s AS (
           UPDATE sessions SET
             refresh_counter = CASE WHEN refresh_counter = ($2)[array_position($1, id)]
               THEN refresh_counter + 1 ELSE refresh_counter END,
             refresh_issued_at = CASE WHEN refresh_counter = ($2)[array_position($1, id)]
               THEN $5 ELSE refresh_issued_at END,
             rotated_at_ms = CASE WHEN refresh_counter = ($2)[array_position($1, id)]
               THEN $6 ELSE rotated_at_ms END,
             revoked_at = CASE
               WHEN refresh_counter = ($2)[array_position($1, id)] THEN NULL
               WHEN refresh_counter = ($2)[array_position($1, id)] + 1
                 AND $6 - rotated_at_ms < $7 THEN NULL
               ELSE $5 END,
             last_used_at = CASE WHEN $5 - last_used_at >= 60 THEN $5 ELSE last_used_at END,
             user_agent = COALESCE(($3)[array_position($1, id)], user_agent),
             ip = ($4)[array_position($1, id)]
           WHERE id = ANY($1) AND revoked_at IS NULL AND refresh_issued_at > $8
           RETURNING id, refresh_counter, refresh_issued_at, revoked_at, user_id, created_at),
         v AS (
           INSERT INTO revocations (session_id, revoked_at)
           SELECT id, $5 FROM s WHERE s.revoked_at IS NOT NULL
           RETURNING session_id, seq)
         SELECT s.id, s.refresh_counter, s.refresh_issued_at, s.revoked_at, v.seq,
                u.id, u.email, u.name, u.avatar_url, u.created_at, s.created_at
         FROM s LEFT JOIN v ON v.session_id = s.id LEFT JOIN users u ON u.id = s.user_id",
    )
    .bind(&ids)
    .bind(&counters)
    .bind(&agents)
    .bind(&ips)
    .bind(now)
    .bind(now_ms)
    .bind(rules.reuse_interval_ms)
    .bind(now - rules.refresh_ttl)
    .fetch_all(pool)
    .await
}

fn outcome(session_id: SessionId, row: Option<Row>) -> Refreshed {
    let Some((
        _,
        current,
        issued_at,
        revoked_at,
        seq,
        id,
        email,
        name,
        avatar_url,
        created_at,
        begun_at,
    )) = row
    else {
        return Refreshed::Rejected;
    };
    if revoked_at.is_some() {
        return Refreshed::Reused {
            session_id,
            seq: seq.unwrap_or_default(),
        };
    }
    let (Some(id), Some(email), Some(created_at)) = (id, email, created_at) else {
        return Refreshed::Rejected;
    };
    Refreshed::Pair(Pair {
        session_id,
        counter: current as u64,
        issued_at: issued_at as u64,
        begun_at: begun_at as u64,
        user: User {
            id: id.into(),
            email,
            name,
            avatar_url,
            created_at: rfc3339(created_at),
        },
    })
}
