//! Group emits (see `group`): the `enqueue` calls that arrive while a group is being written
//! share the next transaction, with one wake-up `NOTIFY` for all of them.
//!
//! A `NOTIFY` makes PostgreSQL serialize committing transactions on one database-wide lock,
//! so one per emit made concurrent emits queue behind each other; one per group costs that
//! lock once. Each emit still runs its own statement with its own checks, and when the
//! database refuses a group (a delivery id taken) nothing of it was written and each emit
//! runs again in a transaction of its own: one bad emit never fails the others.

use super::error::Failure;
use super::group::{self, Group, Reply};
use super::queue::{enqueue_on, Conn};
use super::PostgresStore;
use crate::queue::{Enqueued, NewEvent, QueueError};

/// Emits waiting to share the next transaction.
pub(super) type EnqueueGroup = Group<NewEvent, Enqueued>;

impl PostgresStore {
    /// Records one event, together with whatever other emits are waiting.
    pub(super) async fn enqueue_grouped(&self, event: NewEvent) -> Result<Enqueued, QueueError> {
        let run = |batch| {
            let store = self.clone();
            async move { store.enqueue_batch(batch).await }
        };
        self.inner
            .emits
            .join(event, run, || self.queue_error(Failure::Cancelled))
            .await
    }

    async fn enqueue_batch(&self, batch: Vec<(NewEvent, Reply<Enqueued>)>) {
        let error = |f| self.queue_error(f);
        let batch = if batch.len() > 1 {
            let events: Vec<&NewEvent> = batch.iter().map(|(e, _)| e).collect();
            match self.enqueue_many(&events).await {
                Ok(results) => {
                    return group::answer(batch, results.into_iter().map(Ok).collect(), error);
                }
                Err(failure) => match group::failed(batch, failure, error) {
                    Some(batch) => batch,
                    None => return,
                },
            }
        } else {
            batch
        };
        for (event, reply) in batch {
            let result = self.enqueue_one(&event).await;
            let _ = reply.send(result.map_err(error));
        }
    }

    /// Records one event on its own, then notifies: the statement commits by itself, so a
    /// refusal can be looked into on the same connection (which delivery id is taken).
    async fn enqueue_one(&self, event: &NewEvent) -> Result<Enqueued, Failure> {
        let client = self.client().await?;
        let conn = Conn::Pooled(&client);
        let result = enqueue_on(&conn, &self.inner.sql, event).await?;
        if matches!(result, Enqueued::New) {
            // Recorded already: a lost notification only leaves the wake-up to the workers'
            // poll interval.
            let _ = conn.query(&self.inner.sql.notify, &[]).await;
        }
        Ok(result)
    }

    /// Records the events in one transaction that notifies the workers once.
    async fn enqueue_many(&self, events: &[&NewEvent]) -> Result<Vec<Enqueued>, Failure> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let conn = Conn::PooledTx(&tx);
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            results.push(enqueue_on(&conn, &self.inner.sql, event).await?);
        }
        if results.iter().any(|r| matches!(r, Enqueued::New)) {
            conn.query(&self.inner.sql.notify, &[]).await?;
        }
        tx.commit().await?;
        Ok(results)
    }
}
