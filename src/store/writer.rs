//! The one writer of the SQLite database: a thread that owns the only
//! writing connection of this process and runs every write, fed by a queue.
//! Writes that arrive together are committed together (group commit): one
//! `BEGIN IMMEDIATE ... COMMIT` for the batch, each write in a savepoint of
//! its own so that one failing write does not undo the others. A write is
//! answered once its batch has committed.
//!
//! Nothing on a request's path waits in SQLite's busy handler: there is no
//! second writer in this process to wait for (another process, the
//! operator's CLI, may hold the lock for a moment; the writer waits then).
//! Writes run as closures over a `rusqlite::Connection` on the writer
//! thread, without a thread hop per statement; reads stay on the sqlx pool
//! (WAL: readers never wait for the writer).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::sql::StoreError;

/// Writes committed in one transaction at most.
const MAX_BATCH: usize = 256;
/// Writes waiting at most; beyond, callers wait for room (backpressure).
const QUEUE: usize = 8192;

/// A write waiting for the writer thread.
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

/// The handle every store writes through; cloning shares the writer. The
/// thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Opens the writing connection to the database file and starts the
    /// writer thread (migrations have run already, through the pool).
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
        // Only another process (the CLI) can hold the write lock.
        conn.busy_timeout(Duration::from_secs(5))?;
        // Statements are prepared once and kept (the hot ones use
        // `prepare_cached`).
        conn.set_prepared_statement_cache_capacity(64);
        let (jobs, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, queue))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Self { jobs })
    }

    /// Runs `write` on the writer thread, inside the batch's transaction;
    /// its result once that has committed.
    pub async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(Pending { write, reply }))
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

/// The writer thread: a batch at a time, until every handle is dropped.
fn run(mut conn: Connection, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        // Give the request threads a moment to add theirs: under load the
        // batch (and the commit's cost per write) grows; when idle this
        // returns at once.
        std::thread::yield_now();
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit(&mut conn, &mut batch);
    }
}

/// Runs a batch in one transaction, each job in a savepoint of its own,
/// then answers every job with the commit's outcome.
fn commit(conn: &mut Connection, batch: &mut Vec<Box<dyn Job>>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let why = e.to_string();
            tracing::error!(error = %why, "database writer could not begin a transaction");
            for job in batch.drain(..) {
                job.fail(&why);
            }
            return;
        }
    };
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        if tx
            .prepare_cached("SAVEPOINT job")
            .and_then(|mut s| s.execute([]))
            .is_err()
        {
            job.fail("no savepoint");
            continue;
        }
        let (answer, ok) = job.run(&tx);
        let _ = if ok {
            tx.prepare_cached("RELEASE job")
                .and_then(|mut s| s.execute([]))
        } else {
            tx.execute_batch("ROLLBACK TO job; RELEASE job").map(|()| 0)
        };
        answers.push(answer);
    }
    let committed = tx.commit().map_err(|e| e.to_string());
    if let Err(why) = &committed {
        tracing::error!(error = %why, "database writer could not commit a batch");
    }
    for answer in answers {
        answer.answer(committed.clone());
    }
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
}
