//! The one writer: a thread of its own owns the write connection and commits together the
//! writes that arrive together (group commit).
//!
//! Callers send a job and await its answer. The thread takes every job waiting and runs them
//! in one `BEGIN IMMEDIATE` transaction, answering each job only after the `COMMIT`
//! succeeded. A job that fails must not take the others down with it, yet a savepoint per
//! job costs a copy of every page the job touches; so a group first runs without them, and
//! only when one of its jobs fails is it rolled back and run again with a savepoint around
//! each job (a job is a function of the database alone, so running it again is running it
//! once). A lone job costs what it did before (one transaction); a busy store pays one
//! commit, one lock and one thread wake-up for a whole group, and no call waits on tokio's
//! blocking pool.
//!
//! Between groups the thread stays awake for a moment ([`SPIN`]) before it sleeps: the next
//! write most often follows an answer within microseconds (a task emitting in a loop, a
//! worker claiming what an emit just queued), and a thread that has to be woken from sleep
//! for it adds the wake-up to that write's latency, and the sleeping and waking cost more
//! CPU than the wait.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{schema, Failure, SqliteError};

/// The most jobs one transaction takes: a bound on how long the first of them waits.
const MAX_GROUP: usize = 512;

/// How long the thread looks for the next job after a group before it sleeps, on a machine
/// with two cores or more (on one core, the job it looks for could only come once it stops
/// looking). From a single task emitting in a loop, the throughput benchmark went from
/// about 5,700–6,000 to 8,000–8,400 deliveries/s, and the sending process's CPU per
/// delivery fell from 168.5–172.5 µs to 131–136 µs; 20 µs gained less, 100 and 200 µs no
/// more; yielding the core instead of spinning gained less and cost more CPU. An idle store
/// pays it once per group, not continuously.
const SPIN: Duration = Duration::from_micros(50);

/// A job as the thread sees it: run it (again, after a rollback), then tell it how the
/// group ended.
trait Job: Send {
    /// Runs the job, replacing the result of any earlier run; `false` when it failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: `committed` is the group's commit, or why it failed.
    fn answer(self: Box<Self>, committed: Result<(), String>);
}

/// A caller's function, its result once run, and where the answer goes.
struct Call<T, F> {
    work: F,
    result: Option<Result<T, Failure>>,
    reply: oneshot::Sender<Result<T, Failure>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: Fn(&Connection) -> Result<T, Failure> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = catch_unwind(AssertUnwindSafe(|| (self.work)(conn)))
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
    /// `work` may run more than once (each time after the last run was rolled back), so it
    /// must act on the database alone.
    pub(super) async fn call<T, F>(&self, work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, Failure> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Call {
            work,
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
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let spin = if cores > 1 { SPIN } else { Duration::ZERO };
    while let Some(first) = next_job(queue, spin) {
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

/// The next job: looked for without sleeping for up to `spin`, then waited for asleep.
/// `None` once every handle is gone and no job is left.
fn next_job(queue: &mpsc::Receiver<Box<dyn Job>>, spin: Duration) -> Option<Box<dyn Job>> {
    if !spin.is_zero() {
        let start = Instant::now();
        loop {
            match queue.try_recv() {
                Ok(job) => return Some(job),
                Err(mpsc::TryRecvError::Disconnected) => return None,
                Err(mpsc::TryRecvError::Empty) if start.elapsed() < spin => {
                    std::hint::spin_loop();
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
    }
    queue.recv().ok()
}

/// Runs a group in one transaction; `Err` says why nothing of it was committed.
fn run_group(conn: &Connection, group: &mut [Box<dyn Job>]) -> Result<(), String> {
    begin(conn)?;
    let mut failed = false;
    for job in group.iter_mut() {
        if !job.run(conn) {
            failed = true;
            break;
        }
    }
    if failed {
        rollback(conn);
        if group.len() == 1 {
            // Its own failure is its answer, and nothing else was in the transaction.
            return Ok(());
        }
        begin(conn)?;
        for job in group.iter_mut() {
            isolated(conn, job.as_mut())?;
        }
    }
    statement(conn, "COMMIT").map_err(|e| {
        rollback(conn);
        format!("the write was not committed: {e}")
    })
}

/// Runs `job` inside a savepoint of its own, rolled back alone if the job fails.
fn isolated(conn: &Connection, job: &mut dyn Job) -> Result<(), String> {
    if let Err(e) = statement(conn, "SAVEPOINT job") {
        rollback(conn);
        return Err(format!("cannot start a write: {e}"));
    }
    let ended = if job.run(conn) {
        statement(conn, "RELEASE job")
    } else {
        statement(conn, "ROLLBACK TO job").and_then(|()| statement(conn, "RELEASE job"))
    };
    ended.map_err(|e| {
        rollback(conn);
        format!("a write could not be completed: {e}")
    })
}

fn begin(conn: &Connection) -> Result<(), String> {
    statement(conn, "BEGIN IMMEDIATE").map_err(|e| format!("cannot start a write: {e}"))
}

fn rollback(conn: &Connection) {
    // Fails only when no transaction is open: nothing to undo then.
    let _ = statement(conn, "ROLLBACK");
}

fn statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(drop)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A job that only answers.
    fn noop() -> (Box<dyn Job>, oneshot::Receiver<Result<(), Failure>>) {
        let (reply, answer) = oneshot::channel();
        let job = Call {
            work: |_: &Connection| Ok(()),
            result: None,
            reply,
        };
        (Box::new(job), answer)
    }

    /// Sends a job that only answers, `delay` from now, from a thread of its own.
    fn send_after(
        jobs: &mpsc::Sender<Box<dyn Job>>,
        delay: Duration,
    ) -> std::thread::JoinHandle<()> {
        let jobs = jobs.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let (job, _) = noop();
            jobs.send(job).expect("send");
        })
    }

    /// The next job is found while the thread looks without sleeping, and after it has gone
    /// to sleep; once every sender is gone, the jobs still queued are served and then there
    /// is none.
    #[test]
    fn the_next_job_is_found_awake_or_asleep_until_the_senders_are_gone() {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let (first, _) = noop();
        jobs.send(first).expect("send");
        assert!(next_job(&queue, SPIN).is_some(), "a job already queued");

        // Sent while the thread looks (a long look, so the send lands within it).
        let during = send_after(&jobs, Duration::from_millis(1));
        assert!(
            next_job(&queue, Duration::from_secs(10)).is_some(),
            "sent while looking"
        );
        during.join().expect("thread");

        // Sent after the look ended: found by the sleeping wait.
        let after = send_after(&jobs, Duration::from_millis(20));
        assert!(
            next_job(&queue, Duration::from_micros(1)).is_some(),
            "sent after looking"
        );
        after.join().expect("thread");

        let (last, _) = noop();
        jobs.send(last).expect("send");
        drop(jobs);
        assert!(
            next_job(&queue, SPIN).is_some(),
            "queued before the senders went"
        );
        assert!(
            next_job(&queue, SPIN).is_none(),
            "no sender and nothing queued"
        );
        assert!(next_job(&queue, Duration::ZERO).is_none());
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap_or(-1)
    }

    /// A group whose middle job fails is rolled back and run again job by job: the others
    /// commit (each having run twice), the failed one leaves nothing behind and gets its own
    /// error, and a lone failing job is answered with its error too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_rolls_back_alone_after_its_group_runs_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("writer.db");
        let writer = Arc::new(Writer::start(path.clone()).await.expect("start"));
        writer
            .call(|conn| Ok(conn.execute_batch("CREATE TABLE t (v INTEGER)")?))
            .await
            .expect("create");
        // Hold the thread in a job of its own until the group is queued behind it.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Mutex::new(wait);
        let blocker = {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .call(move |_| {
                        let _ = wait.lock().map(|w| w.recv());
                        Ok(())
                    })
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let runs = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..3)
            .map(|i| {
                let (writer, runs) = (writer.clone(), runs.clone());
                let job = tokio::spawn(async move {
                    writer
                        .call(move |conn| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            conn.execute("INSERT INTO t (v) VALUES (?1)", [i])?;
                            if i == 1 {
                                return Err(Failure::Task("refused".into()));
                            }
                            Ok(i)
                        })
                        .await
                });
                std::thread::sleep(std::time::Duration::from_millis(20));
                job
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        go.send(()).expect("release the thread");
        blocker.await.expect("task").expect("blocker");
        let mut answers = Vec::new();
        for job in jobs {
            answers.push(job.await.expect("task"));
        }
        assert!(matches!(answers[0], Ok(0)), "{:?}", answers[0]);
        assert!(
            matches!(&answers[1], Err(Failure::Task(why)) if why == "refused"),
            "{:?}",
            answers[1]
        );
        assert!(matches!(answers[2], Ok(2)), "{:?}", answers[2]);
        // First pass: jobs 0 and 1 ran; then all three once more, each in a savepoint.
        assert_eq!(runs.load(Ordering::SeqCst), 5);
        let values: Vec<i64> = writer
            .call(|conn| {
                let mut s = conn.prepare("SELECT v FROM t ORDER BY v")?;
                let rows = s.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .expect("read");
        assert_eq!(values, vec![0, 2]);

        let lone = writer
            .call(|conn| {
                conn.execute("INSERT INTO t (v) VALUES (9)", [])?;
                Err::<(), _>(Failure::Task("alone".into()))
            })
            .await;
        assert!(matches!(lone, Err(Failure::Task(why)) if why == "alone"));
        let left = writer.call(|conn| Ok(count(conn))).await.expect("count");
        assert_eq!(left, 2, "the lone failed job's insert was rolled back");
    }
}
