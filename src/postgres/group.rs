//! Group commit for the hot writes (emits and settles): the calls that arrive while a group
//! is running share the next one, so a busy process pays one transaction — one commit, one
//! wake-up notification — for many writes, and an idle one waits for nobody.

use std::future::Future;
use std::mem;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::error::Failure;
use crate::queue::QueueError;

/// Where one write's result goes.
pub(super) type Reply<R> = oneshot::Sender<Result<R, QueueError>>;

/// The writes waiting for the next group, and whose turn it is to run one.
#[derive(Debug)]
pub(super) struct Group<T, R> {
    waiting: Mutex<Vec<(T, Reply<R>)>>,
    turn: tokio::sync::Mutex<()>,
}

impl<T, R> Default for Group<T, R> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Group<T, R> {
    fn waiting(&self) -> MutexGuard<'_, Vec<(T, Reply<R>)>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `item` to the next group and returns its result. Whoever gets the turn takes
    /// every write waiting and runs them with `run`, which must answer each; it runs as a task
    /// of its own, so a group finishes even if the caller that started it is dropped.
    /// `dropped` is the error for a write whose group ended without answering it.
    pub(super) async fn join<F, Fut>(
        &self,
        item: T,
        run: F,
        dropped: impl FnOnce() -> QueueError,
    ) -> Result<R, QueueError>
    where
        F: Fn(Vec<(T, Reply<R>)>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (reply, mut answer) = oneshot::channel();
        self.waiting().push((item, reply));
        loop {
            tokio::select! {
                biased;
                answer = &mut answer => return answer.unwrap_or_else(|_| Err(dropped())),
                _turn = self.turn.lock() => {
                    let batch = mem::take(&mut *self.waiting());
                    if !batch.is_empty() {
                        let _ = tokio::spawn(run(batch)).await;
                    }
                }
            }
        }
    }
}

/// Answers each write of a group with its own result, in order.
pub(super) fn answer<T, R>(
    batch: Vec<(T, Reply<R>)>,
    results: Vec<Result<R, Failure>>,
    error: impl Fn(Failure) -> QueueError,
) {
    for ((_, reply), result) in batch.into_iter().zip(results) {
        let _ = reply.send(result.map_err(&error));
    }
}

/// A group whose transaction failed. When the database refused it, it rolled back and nothing
/// was written: the batch comes back, for each write to run again on its own (one bad write
/// never fails the others). When there was no connection (nothing was sent; one by one, each
/// would wait for the pool again) or it was lost halfway (running them again could write some
/// twice), every caller hears why and `None` is returned.
pub(super) fn failed<T, R>(
    batch: Vec<(T, Reply<R>)>,
    failure: Failure,
    error: impl Fn(Failure) -> QueueError,
) -> Option<Vec<(T, Reply<R>)>> {
    if matches!(&failure, Failure::Db(e) if e.code().is_some()) {
        return Some(batch);
    }
    let sent = !matches!(failure, Failure::Pool(_));
    let message = crate::error::chain(&failure);
    for (_, reply) in batch {
        let failure = if sent {
            Failure::Interrupted(message.clone())
        } else {
            Failure::NoConnection(message.clone())
        };
        let _ = reply.send(Err(error(failure)));
    }
    None
}
