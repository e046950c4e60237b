//! The one writer of the SQLite database: the only writing connection of
//! this process, taken by whichever request writes (flat combining).
//! Writes that arrive together are committed together (group commit): one
//! `BEGIN IMMEDIATE ... COMMIT` for the batch, each write in a savepoint of
//! its own so that one failing write does not undo the others. A write is
//! answered once its batch has committed.
//!
//! No thread hand-off on the way: a request that finds the connection free
//! runs its write (and every write queued meanwhile) on its own thread and
//! has its answer at once; one that finds it taken queues its write for the
//! holder, which takes the queue before letting go (so batches form exactly
//! when writes contend). On one core a hand-off to a writer thread and back
//! costs two context switches per write (issue 23). A write is a few page
//! writes into the WAL without `fsync` (`synchronous=NORMAL`). What may
//! wait does not run on a request's thread, but on a blocking thread that
//! holds the connection meanwhile (and then commits what queued up): the
//! checkpoint every [`CHECKPOINT_COMMITS`] commits holding at least
//! [`CHECKPOINT_WRITES`] writes (it syncs the WAL and
//! the database file; run between batches, on the writing connection, it
//! completes, so the next write starts the WAL over and the file stays
//! small), a purge ([`Writer::write_apart`]) and a batch that finds the
//! file locked by another process (the operator's CLI).
//! Reads stay on the sqlx pool (WAL: readers never wait for the writer).

use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

use super::sql::StoreError;

/// Writes committed in one transaction at most.
const MAX_BATCH: usize = 256;
/// How long a batch waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// A checkpoint after this many commits (SQLite's own default, 1,000
/// pages of WAL, came every few dozen batches of refreshes)...
const CHECKPOINT_COMMITS: u64 = 64;
/// ...that hold this many writes: with few clients a commit holds one or
/// two, and a checkpoint every 64 of them came on one refresh in 100 (its
/// sync in the refresh p99 at 2 connections, BENCHMARKS.md).
const CHECKPOINT_WRITES: u64 = 512;
/// Batches a request commits on its own thread before the rest of the
/// queue moves to a blocking thread (its own answer waits meanwhile).
const INLINE_BATCHES: usize = 4;
/// A WAL this many frames long (about 100 MiB) that a checkpoint could not
/// copy back is worth a warning: a long read holds it.
const WAL_FRAMES_WARN: i64 = 25_000;

/// A write waiting for the writing connection.
trait Job: Send {
    /// Runs the write; `true` when it succeeded (its savepoint is kept).
    fn run(self: Box<Self>, conn: &Connection) -> (Box<dyn Answer>, bool);
    /// The batch could not even begin.
    fn fail(self: Box<Self>, why: &str);
}

/// A write's result, delivered once its batch has committed or failed.
trait Answer: Send {
    fn answer(self: Box<Self>, committed: Result<(), String>);
}

struct Pending<T, F> {
    write: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

struct Ran<T> {
    result: Result<T, StoreError>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (Box<dyn Answer>, bool) {
        let result = (self.write)(conn);
        let ok = result.is_ok();
        (
            Box::new(Ran {
                result,
                reply: self.reply,
            }),
            ok,
        )
    }

    fn fail(self: Box<Self>, why: &str) {
        let _ = self.reply.send(Err(StoreError::Commit(why.to_string())));
    }
}

impl<T: Send> Answer for Ran<T> {
    fn answer(self: Box<Self>, committed: Result<(), String>) {
        let _ = self.reply.send(match (committed, self.result) {
            (_, Err(e)) => Err(e),
            (Ok(()), Ok(value)) => Ok(value),
            (Err(e), Ok(_)) => Err(StoreError::Commit(e)),
        });
    }
}

/// The handle every store writes through; cloning shares the connection.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

struct Shared {
    conn: Arc<Mutex<Connection>>,
    /// Writes waiting for whoever holds `conn`.
    queue: StdMutex<Vec<Box<dyn Job>>>,
    /// Commits so far (the checkpoint's cue).
    commits: AtomicU64,
    /// Commits and writes since the last checkpoint.
    since_checkpoint: StdMutex<(u64, u64)>,
    /// A checkpoint completed: the next commit starts the WAL over, which
    /// syncs its header, so it does not run on a request's thread.
    wal_restarts: AtomicBool,
}

type Held = OwnedMutexGuard<Connection>;

impl Writer {
    /// Opens the writing connection to the database file (migrations have
    /// run already, through the pool).
    pub fn open(path: &Path) -> Result<Self, rusqlite::Error> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Checkpoints run off the requests' threads ([`CHECKPOINT_COMMITS`]).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // Only another process (the CLI) can hold the write lock; a batch
        // that finds it held moves to a blocking thread to wait.
        conn.busy_timeout(Duration::ZERO)?;
        // Statements are prepared once and kept (the hot ones use
        // `prepare_cached`, and so do BEGIN and COMMIT).
        conn.set_prepared_statement_cache_capacity(64);
        let shared = Arc::new(Shared {
            conn: Arc::new(Mutex::new(conn)),
            queue: StdMutex::new(Vec::with_capacity(MAX_BATCH)),
            commits: AtomicU64::new(0),
            since_checkpoint: StdMutex::new((0, 0)),
            wal_restarts: AtomicBool::new(false),
        });
        Ok(Self { shared })
    }

    /// Runs `write` inside a batch's transaction, on this thread when the
    /// connection is free; its result once that batch has committed.
    pub async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.shared.push(Box::new(Pending { write, reply }));
        if let Ok(held) = self.shared.conn.clone().try_lock_owned() {
            // Let this thread's other ready requests run first: those that
            // write queue their writes behind ours, and one commit serves
            // them all. When nothing else is ready this returns at once.
            // Held in a guard: a request dropped meanwhile (its client went
            // away) still serves the queue it holds.
            let holding = Holding(Some((self.shared.clone(), held)));
            tokio::task::yield_now().await;
            drop(holding);
        }
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// As [`Writer::write`], for a write that may take long (a purge of
    /// many rows): it runs on a blocking thread, never a request's.
    pub async fn write_apart<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut held = shared.conn.clone().blocking_lock_owned();
            let mut batch: Vec<Box<dyn Job>> = vec![Box::new(Pending { write, reply })];
            shared.commit_waiting(&mut held, &mut batch);
            shared.serve_waiting(held);
        });
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

/// The connection, held by a request across its yield; serves the queue
/// when dropped, whether the request went on or was dropped itself.
struct Holding(Option<(Arc<Shared>, Held)>);

impl Drop for Holding {
    fn drop(&mut self) {
        if let Some((shared, held)) = self.0.take() {
            shared.serve(held);
        }
    }
}

impl Shared {
    fn push(&self, job: Box<dyn Job>) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job);
    }

    /// Up to [`MAX_BATCH`] of the queued writes.
    fn take(&self, batch: &mut Vec<Box<dyn Job>>) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() <= MAX_BATCH {
            mem::swap(&mut *queue, batch);
        } else {
            batch.extend(queue.drain(..MAX_BATCH));
        }
    }

    fn queued(&self) -> bool {
        !self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Commits what is queued, batch after batch, on this (a request's)
    /// thread, for [`INLINE_BATCHES`] at most; what may wait (another
    /// process's lock, a checkpoint, the sync of a WAL that starts over)
    /// and what would keep this request waiting longer continue on a
    /// blocking thread.
    fn serve(self: Arc<Self>, mut held: Held) {
        let mut batch = Vec::new();
        let mut inline = 0;
        loop {
            if self.wal_restarts.load(Ordering::Relaxed) || inline == INLINE_BATCHES {
                self.continue_apart(held, |_, _| {});
                return;
            }
            let Some(again) = self.next_batch(held, &mut batch) else {
                return;
            };
            held = again;
            inline += 1;
            match self.commit(&mut held, &mut batch, false) {
                Err(Busy) => {
                    self.continue_apart(held, move |shared, held| {
                        shared.commit_waiting(held, &mut batch);
                    });
                    return;
                }
                Ok(Checkpoint::Due) => {
                    self.continue_apart(held, |shared, held| shared.checkpoint(held));
                    return;
                }
                Ok(Checkpoint::NotYet) => {}
            }
        }
    }

    /// Runs `first`, then serves the queue, on a blocking thread that
    /// holds the connection meanwhile (here, when the runtime is gone).
    fn continue_apart(
        self: &Arc<Self>,
        mut held: Held,
        first: impl FnOnce(&Shared, &mut Held) + Send + 'static,
    ) {
        let shared = self.clone();
        let run = move || {
            first(&shared, &mut held);
            shared.serve_waiting(held);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(run)),
            Err(_) => run(),
        }
    }

    /// Copies the WAL into the database file and syncs both (PASSIVE: it
    /// does not wait for readers; between batches nothing writes, so it
    /// completes unless a reader still uses old frames).
    fn checkpoint(&self, conn: &Connection) {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        }) {
            Ok((log, copied)) if log == copied => {
                self.wal_restarts.store(true, Ordering::Relaxed);
            }
            Ok((log, copied)) if log >= WAL_FRAMES_WARN => {
                tracing::warn!(
                    frames = log,
                    copied,
                    "the database's WAL cannot be checkpointed: a long read holds it"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "database checkpoint failed; retried after the next commits");
            }
        }
    }

    /// [`Shared::serve`] on a blocking thread: may wait for the lock.
    fn serve_waiting(&self, held: Held) {
        let mut batch = Vec::new();
        let mut next = Some(held);
        while let Some(mut held) = next.and_then(|held| self.next_batch(held, &mut batch)) {
            self.commit_waiting(&mut held, &mut batch);
            next = Some(held);
        }
    }

    /// Fills `batch` from the queue: the connection to commit it on, or
    /// `None` once the queue is empty and the connection let go. Letting
    /// go, it looks again: a write queued after the take, by a request
    /// that found the connection taken, is ours to run unless a new holder
    /// has it.
    fn next_batch(&self, mut held: Held, batch: &mut Vec<Box<dyn Job>>) -> Option<Held> {
        loop {
            self.take(batch);
            if !batch.is_empty() {
                return Some(held);
            }
            drop(held);
            if !self.queued() {
                return None;
            }
            held = self.conn.clone().try_lock_owned().ok()?;
        }
    }

    /// Commits `batch`, waiting up to [`BUSY_TIMEOUT`] for the lock (and
    /// checkpoints when due: this thread may wait).
    fn commit_waiting(&self, held: &mut Held, batch: &mut Vec<Box<dyn Job>>) {
        let _ = held.busy_timeout(BUSY_TIMEOUT);
        if let Ok(Checkpoint::Due) = self.commit(held, batch, true) {
            self.checkpoint(held);
        }
        let _ = held.busy_timeout(Duration::ZERO);
    }

    /// Runs a batch in one transaction, each job in a savepoint of its
    /// own, then answers every job with the commit's outcome. `Busy` (the
    /// batch untouched) when another process holds the write lock and
    /// `wait` is false; whether a checkpoint is due.
    fn commit(
        &self,
        conn: &mut Connection,
        batch: &mut Vec<Box<dyn Job>>,
        wait: bool,
    ) -> Result<Checkpoint, Busy> {
        if !conn.is_autocommit() {
            // A batch that failed half-way left its transaction open.
            let _ = conn.execute_batch("ROLLBACK");
        }
        match statement(conn, "BEGIN IMMEDIATE") {
            Ok(()) => {}
            Err(e) if !wait && is_busy(&e) => return Err(Busy),
            Err(e) => {
                let why = e.to_string();
                tracing::error!(error = %why, "database writer could not begin a transaction");
                for job in batch.drain(..) {
                    job.fail(&why);
                }
                return Ok(Checkpoint::NotYet);
            }
        }
        let written = batch.len() as u64;
        let mut answers = Vec::with_capacity(batch.len());
        let mut lost = None;
        let mut jobs = batch.drain(..);
        while let Some(job) = jobs.next() {
            if conn.is_autocommit() || statement(conn, "SAVEPOINT job").is_err() {
                // An error (disk full, I/O) rolled the whole transaction
                // back: nothing of the batch is kept, and the rest must not
                // run outside it, each committing alone.
                let why = "the batch's transaction was rolled back by an error";
                job.fail(why);
                for job in jobs.by_ref() {
                    job.fail(why);
                }
                lost = Some(why.to_string());
                break;
            }
            // A write that panics is a write that failed: its caller gets
            // `Stopped`, the others of the batch still commit.
            let ran = panic::catch_unwind(AssertUnwindSafe(|| job.run(conn)));
            let ok = matches!(ran, Ok((_, true)));
            let _ = if ok {
                statement(conn, "RELEASE job")
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")
            };
            if let Ok((answer, _)) = ran {
                answers.push(answer);
            }
        }
        drop(jobs);
        if lost.is_none() && conn.is_autocommit() {
            lost = Some("the batch's transaction was rolled back by an error".to_string());
        }
        let committed =
            match lost.map_or_else(|| statement(conn, "COMMIT").map_err(|e| e.to_string()), Err) {
                Ok(()) => {
                    self.wal_restarts.store(false, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => {
                    let why = e.to_string();
                    tracing::error!(error = %why, "database writer could not commit a batch");
                    // Nothing of the batch may stay pending in the connection.
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(why)
                }
            };
        for answer in answers {
            answer.answer(committed.clone());
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        let Ok(mut since) = self.since_checkpoint.lock() else {
            return Ok(Checkpoint::Due);
        };
        since.0 += 1;
        since.1 += written;
        Ok(
            if since.0 >= CHECKPOINT_COMMITS && since.1 >= CHECKPOINT_WRITES {
                *since = (0, 0);
                Checkpoint::Due
            } else {
                Checkpoint::NotYet
            },
        )
    }
}

/// Another process holds the database's write lock.
struct Busy;

/// Whether the WAL is due to be checkpointed after a commit.
enum Checkpoint {
    Due,
    NotYet,
}

fn is_busy(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

/// A statement without rows, prepared once per connection.
fn statement(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (Writer, tempfile::TempDir) {
        let dir = tempfile::TempDir::new().unwrap();
        let writer = Writer::open(&dir.path().join("w.db")).unwrap();
        (writer, dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_all_land_and_a_failing_one_undoes_only_itself() {
        let (writer, _dir) = writer();
        writer
            .write(|c| Ok(c.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")?))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..500)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .write(move |c| {
                            c.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                            if n % 100 == 7 {
                                // Half done, then failing: its insert must go.
                                c.execute("INSERT INTO missing_table VALUES (1)", [])?;
                            }
                            Ok(n)
                        })
                        .await
                })
            })
            .collect();
        let mut failed = 0;
        for task in tasks {
            if task.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 5);
        let count: i64 = writer
            .write(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(count, 495);
    }

    async fn table(writer: &Writer) {
        writer
            .write(|c| Ok(c.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, b BLOB)")?))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_batch_into_fewer_commits() {
        let (writer, _dir) = writer();
        table(&writer).await;
        let before = writer.shared.commits.load(Ordering::Relaxed);
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .write(move |c| Ok(c.execute("INSERT INTO t (n) VALUES (?1)", [n])?))
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let commits = writer.shared.commits.load(Ordering::Relaxed) - before;
        assert!(
            commits < 100,
            "200 concurrent writes took {commits} commits"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_panics_fails_alone_and_the_writer_goes_on() {
        let (writer, _dir) = writer();
        table(&writer).await;
        let tasks: Vec<_> = (0..50)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .write(move |c| {
                            c.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                            assert!(n != 13, "a bug in a write");
                            Ok(n)
                        })
                        .await
                })
            })
            .collect();
        let mut failed = Vec::new();
        for task in tasks {
            if let Err(e) = task.await.unwrap() {
                failed.push(e.to_string());
            }
        }
        assert_eq!(failed.len(), 1, "{failed:?}");
        let rows: i64 = writer
            .write(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 49);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_waits_for_another_process_lock_without_stopping_the_runtime() {
        let (writer, dir) = writer();
        table(&writer).await;
        // Another process (here: another connection) holds the write lock.
        let other = Connection::open(dir.path().join("w.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            released.recv().unwrap();
            other.execute_batch("COMMIT").unwrap();
        });
        let write = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(|c| Ok(c.execute("INSERT INTO t (n) VALUES (1)", [])?))
                    .await
            }
        });
        // The runtime's threads are free meanwhile: timers fire on time.
        for _ in 0..20 {
            let at = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(at.elapsed() < Duration::from_millis(200));
        }
        assert!(
            !write.is_finished(),
            "the write cannot land while the lock is held"
        );
        release.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(write.await.unwrap().unwrap(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_reaches_the_database_file_and_starts_over() {
        let (writer, dir) = writer();
        table(&writer).await;
        let file = dir.path().join("w.db");
        let wal = dir.path().join("w.db-wal");
        let start = std::fs::metadata(&file).unwrap().len();
        // Twenty checkpoints' worth of commits, each rewriting the same
        // 16 KiB row (a refresh rewrites its session's row).
        writer
            .write(|c| Ok(c.execute("INSERT INTO t (n, b) VALUES (1, zeroblob(16384))", [])?))
            .await
            .unwrap();
        for n in 0..(CHECKPOINT_COMMITS.max(CHECKPOINT_WRITES) as i64 * 20) {
            writer
                .write(move |c| {
                    Ok(c.execute("UPDATE t SET b = zeroblob(16384 - ?1 % 2) WHERE n = 1", [n])?)
                })
                .await
                .unwrap();
        }
        // wal_autocheckpoint is off on the writer: the pages reach the
        // file only through the writer's own checkpoints...
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(&file).unwrap().len() < start + 16 * 1024 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // ...and the WAL starts over after each: it holds a few
        // checkpoints' worth of frames at most, not all 10,240 commits'.
        let wal_len = std::fs::metadata(&wal).unwrap().len();
        assert!(
            wal_len < 3 * CHECKPOINT_COMMITS.max(CHECKPOINT_WRITES) * 6 * 4096,
            "the WAL grew to {wal_len} bytes"
        );
    }

    #[tokio::test]
    async fn with_one_write_per_commit_the_checkpoint_waits_for_enough_writes() {
        let (writer, dir) = writer();
        table(&writer).await;
        let file = dir.path().join("w.db");
        let start = std::fs::metadata(&file).unwrap().len();
        writer
            .write(|c| Ok(c.execute("INSERT INTO t (n, b) VALUES (1, zeroblob(16384))", [])?))
            .await
            .unwrap();
        let update = |n: i64| {
            move |c: &Connection| {
                Ok(c.execute("UPDATE t SET b = zeroblob(16384 - ?1 % 2) WHERE n = 1", [n])?)
            }
        };
        // Enough commits, too few writes: no checkpoint yet (a refresh at a
        // time would otherwise pay one in every 64).
        for n in 0..CHECKPOINT_COMMITS as i64 * 2 {
            writer.write(update(n)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            start,
            "checkpointed early"
        );
        for n in 0..CHECKPOINT_WRITES as i64 {
            writer.write(update(n)).await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(&file).unwrap().len() < start + 16 * 1024 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_runs_apart_and_the_queue_behind_it_still_lands() {
        let (writer, _dir) = writer();
        table(&writer).await;
        let apart = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write_apart(|c| {
                        std::thread::sleep(Duration::from_millis(100));
                        Ok(c.execute("INSERT INTO t (n) VALUES (0)", [])?)
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let tasks: Vec<_> = (1..20)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .write(move |c| Ok(c.execute("INSERT INTO t (n) VALUES (?1)", [n])?))
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        apart.await.unwrap().unwrap();
        let rows: i64 = writer
            .write(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_dropped_while_it_holds_the_connection_still_serves_the_queue() {
        use std::future::Future;
        use std::task::Poll;
        let (writer, _dir) = writer();
        table(&writer).await;
        let w = writer.clone();
        let mut holder = Box::pin(async move {
            w.write(|c| Ok(c.execute("INSERT INTO t (n) VALUES (1)", [])?))
                .await
        });
        // Polled once, it queues its write, takes the connection and yields.
        std::future::poll_fn(|cx| {
            assert!(holder.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        assert!(
            writer.shared.conn.try_lock().is_err(),
            "the holder has the connection"
        );
        let w = writer.clone();
        let other = tokio::spawn(async move {
            w.write(|c| Ok(c.execute("INSERT INTO t (n) VALUES (2)", [])?))
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Its client goes away: hyper drops the request's future.
        drop(holder);
        let done = tokio::time::timeout(Duration::from_secs(5), other).await;
        assert_eq!(
            done.expect("the queued write was stranded")
                .unwrap()
                .unwrap(),
            1
        );
        let rows: i64 = writer
            .write(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 2, "the dropped request's write is committed too");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_that_rolls_the_whole_batch_back_leaves_nothing_half_committed() {
        let (writer, _dir) = writer();
        table(&writer).await;
        writer
            .write(|c| Ok(c.execute("INSERT INTO t (n) VALUES (0)", [])?))
            .await
            .unwrap();
        // Four writes in one batch; the second ends the transaction (as
        // SQLITE_FULL or an I/O error would).
        let held = writer.shared.conn.clone().lock_owned().await;
        let mut tasks = Vec::new();
        for (i, sql) in [
            "INSERT INTO t (n) VALUES (1)",
            "INSERT OR ROLLBACK INTO t (n) VALUES (0)",
            "INSERT INTO t (n) VALUES (3)",
            "INSERT INTO t (n) VALUES (4)",
        ]
        .into_iter()
        .enumerate()
        {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                w.write(move |c| Ok(c.execute(sql, [])?)).await
            }));
            while writer.shared.queue.lock().unwrap().len() <= i {
                tokio::task::yield_now().await;
            }
        }
        writer.shared.clone().serve(held);
        for task in tasks {
            assert!(
                task.await.unwrap().is_err(),
                "no write of a lost batch is answered Ok"
            );
        }
        let rows: Vec<i64> = writer
            .write(|c| {
                let mut s = c.prepare("SELECT n FROM t ORDER BY n")?;
                let rows = s
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<i64>, _>>()?;
                Ok(rows)
            })
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![0],
            "nothing of the lost batch was committed on its own"
        );
    }
}
