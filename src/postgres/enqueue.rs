//! Group emits (see `group`): the `enqueue` calls that arrive while a group is being written
//! share the next write, with one wake-up `NOTIFY` for all of them.
//!
//! A `NOTIFY` makes PostgreSQL serialize committing transactions on one database-wide lock,
//! so one per emit made concurrent emits queue behind each other; one per group costs that
//! lock once. The emits of a group without an idempotency key are written by one statement
//! (their events and deliveries as arrays, and the `NOTIFY`), so a group costs one round trip
//! and commits on its own; an emit with a key runs its own statement, whose answer depends
//! on what is stored. When the database refuses a group (a delivery id taken) nothing of it
//! was written and each emit runs again on its own: one bad emit never fails the others.

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
        let (plain, keyed): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|(event, _)| event.idempotency_key.is_none());
        let batch = if plain.len() > 1 {
            let events: Vec<&NewEvent> = plain.iter().map(|(e, _)| e).collect();
            match self.enqueue_flat(&events).await {
                Ok(()) => {
                    let results = plain.iter().map(|_| Ok(Enqueued::New)).collect();
                    group::answer(plain, results, error);
                    keyed
                }
                Err(failure) => match group::failed(plain, failure, error) {
                    Some(mut again) => {
                        again.extend(keyed);
                        again
                    }
                    None => keyed,
                },
            }
        } else {
            plain.into_iter().chain(keyed).collect()
        };
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

    /// Records events without idempotency keys, and notifies the workers, in one statement.
    async fn enqueue_flat(&self, events: &[&NewEvent]) -> Result<(), Failure> {
        let count: usize = events.iter().map(|e| e.deliveries.len()).sum();
        let mut ids = Vec::with_capacity(events.len());
        let mut orgs = Vec::with_capacity(events.len());
        let mut projects = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut payloads: Vec<&[u8]> = Vec::with_capacity(events.len());
        let mut times = Vec::with_capacity(events.len());
        let mut delivery_ids = Vec::with_capacity(count);
        let mut delivery_events = Vec::with_capacity(count);
        let mut webhooks = Vec::with_capacity(count);
        let mut urls = Vec::with_capacity(count);
        for event in events {
            let id = event.id.to_string();
            for d in &event.deliveries {
                delivery_ids.push(d.id.to_string());
                delivery_events.push(id.clone());
                webhooks.push(d.webhook_id.to_string());
                urls.push(d.url.as_str());
            }
            ids.push(id);
            orgs.push(event.org.to_string());
            projects.push(event.project.as_str());
            types.push(event.event_type.as_str());
            payloads.push(&event.payload[..]);
            times.push(event.created_at);
        }
        let client = self.client().await?;
        Conn::Pooled(&client)
            .query(
                &self.inner.sql.enqueue_flat,
                &[
                    &ids,
                    &orgs,
                    &projects,
                    &types,
                    &payloads,
                    &times,
                    &delivery_ids,
                    &delivery_events,
                    &webhooks,
                    &urls,
                ],
            )
            .await?;
        Ok(())
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
