//! The one writer: a thread of its own owns the write connection and commits together the
//! writes that arrive together (group commit).
//!
//! Callers send a job and await its answer. The thread takes every job waiting, runs them in
//! one `BEGIN IMMEDIATE` transaction — each inside a savepoint of its own, so a job that
//! fails is rolled back alone and the others still commit — and answers each job only after
//! the `COMMIT` succeeded. A lone job costs what it did before (one transaction); a busy
//! store pays one commit, one lock and one thread wake-up for a whole group, and no call
//! waits on tokio's blocking pool.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{schema, Failure, SqliteError};

/// The most jobs one transaction takes: a bound on how long the first of them waits.
const MAX_GROUP: usize = 512;

/// A job as the thread sees it: run it, then tell it how the group ended.
trait Job: Send {
    /// Runs inside the job's savepoint; `false` when it failed (the savepoint is rolled
    /// back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: `committed` is the group's commit, or why it failed.
    fn answer(self: Box<Self>, committed: Result<(), String>);
}

/// A caller's closure, its result once run, and where the answer goes.
struct Call<T, F> {
    work: Option<F>,
    result: Option<Result<T, Failure>>,
    reply: oneshot::Sender<Result<T, Failure>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, Failure> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = catch_unwind(AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|_| Err(Failure::Task("a SQLite write panicked".into())));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, committed: Result<(), String>) {
        let answer = match (self.result, committed) {
            (Some(Err(failure)), _) => Err(failure),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(why)) | (None, Err(why)) => Err(Failure::Write(why)),
            (None, Ok(())) => Err(Failure::Task("the write did not run".into())),
        };
        // A caller that went away no longer needs the answer; the write stands.
        let _ = self.reply.send(answer);
    }
}

/// The handle callers hold; the thread ends when the last one is dropped.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Opens (creating and migrating) the file on a new thread that then serves writes.
    pub(super) async fn start(path: PathBuf) -> Result<Self, SqliteError> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let (opened, open_result) = oneshot::channel();
        std::thread::Builder::new()
            .name("dataops-webhooks-sqlite-writer".into())
            .spawn(move || match schema::open(&path) {
                Ok(conn) => {
                    let _ = opened.send(Ok(()));
                    serve(&conn, &queue);
                }
                Err(error) => {
                    let _ = opened.send(Err(error));
                }
            })
            .map_err(|e| SqliteError::Task(format!("cannot start the writer thread: {e}")))?;
        open_result
            .await
            .map_err(|_| SqliteError::Task("the writer thread ended while opening".into()))??;
        Ok(Self { jobs })
    }

    /// Runs `work` in the next group and returns its result once the group committed.
    pub(super) async fn call<T, F>(&self, work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Failure> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Call {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| Failure::Task("the SQLite writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| Failure::Task("the SQLite writer thread has stopped".into()))?
    }
}

/// Serves groups until every handle is gone.
fn serve(conn: &Connection, queue: &mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let committed = run_group(conn, &mut group);
        for job in group {
            job.answer(committed.clone());
        }
    }
}

/// Runs a group in one transaction; `Err` says why nothing of it was committed.
fn run_group(conn: &Connection, group: &mut [Box<dyn Job>]) -> Result<(), String> {
    let sql = |statement: &str| {
        conn.prepare_cached(statement)
            .and_then(|mut s| s.execute([]))
            .map(drop)
    };
    sql("BEGIN IMMEDIATE").map_err(|e| format!("cannot start a write: {e}"))?;
    for job in group.iter_mut() {
        if let Err(e) = sql("SAVEPOINT job") {
            let _ = sql("ROLLBACK");
            return Err(format!("cannot start a write: {e}"));
        }
        let ok = job.run(conn);
        let ended = if ok {
            sql("RELEASE job")
        } else {
            sql("ROLLBACK TO job").and_then(|()| sql("RELEASE job"))
        };
        if let Err(e) = ended {
            let _ = sql("ROLLBACK");
            return Err(format!("a write could not be completed: {e}"));
        }
    }
    sql("COMMIT").map_err(|e| {
        let _ = sql("ROLLBACK");
        format!("the write was not committed: {e}")
    })
}
