//! Transactional emit: record an event inside the host's own PostgreSQL transaction, so it
//! exists if and only if the host's data does.

use super::queue::{enqueue_on, Conn};
use super::PostgresStore;
use crate::queue::Enqueued;
use crate::webhook::{DeliveryId, EventId};
use crate::{DispatchError, Emit, EventType, WebhookDispatcher};

/// What [`PostgresStore::emit_in`] recorded in the host's transaction. Nothing is delivered
/// before that transaction commits; a rollback discards it all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmittedInTransaction {
    /// The event's id (with a repeated idempotency key: the first emit's).
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// One delivery per subscribed webhook; empty when no webhook handles the event (the
    /// host can prompt its user to create one).
    pub deliveries: Vec<DeliveryId>,
    /// The idempotency key was used before: nothing new was recorded.
    pub repeated: bool,
}

impl PostgresStore {
    /// Emits inside the host's transaction `tx`: the event and its deliveries are written
    /// with the host's own rows and become visible, and are delivered, only when `tx`
    /// commits. `dispatcher` finds the subscribers and serializes the event (its queue should
    /// be this store, so its workers deliver what commits). The transaction may be on any
    /// connection to the same database, such as one from [`pool`](Self::pool).
    ///
    /// ```no_run
    /// use dataops_webhooks::event::{Dataset, Event};
    /// use dataops_webhooks::postgres::PostgresStore;
    /// use dataops_webhooks::{Emit, WebhookDispatcher};
    ///
    /// # async fn run(store: PostgresStore, dispatcher: WebhookDispatcher, dataset: Dataset)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// let mut client = store.pool().get().await?;
    /// let tx = client.transaction().await?;
    /// tx.execute("UPDATE datasets SET state = 'complete' WHERE id = $1", &[&dataset.id])
    ///     .await?;
    /// let event = Event::dataset_complete("traffic-signs", dataset);
    /// store.emit_in(&tx, &dispatcher, Emit::new(event)).await?;
    /// tx.commit().await?; // now, and only now, the webhooks fire
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Dispatcher::emit_with`](crate::Dispatcher::emit_with). A database error leaves
    /// the transaction aborted: roll it back.
    pub async fn emit_in(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        dispatcher: &WebhookDispatcher,
        emit: Emit,
    ) -> Result<EmittedInTransaction, DispatchError> {
        let event = dispatcher.prepare(emit).await?;
        let mut emitted = EmittedInTransaction {
            event_id: event.id,
            event_type: event.event_type,
            deliveries: event.deliveries.iter().map(|d| d.id).collect(),
            repeated: false,
        };
        // An unhandled event is not recorded, unless its key must be remembered.
        if emitted.deliveries.is_empty() && event.idempotency_key.is_none() {
            return Ok(emitted);
        }
        let conn = Conn::Host(tx);
        let enqueued = async {
            let enqueued = enqueue_on(&conn, &self.inner.sql, &event).await?;
            // Workers in every process hear of it when the host's transaction commits.
            conn.query(&self.inner.sql.notify, &[]).await?;
            Ok(enqueued)
        }
        .await
        .map_err(|f: super::error::Failure| f.into_queue_error(self.schema()))?;
        if let Enqueued::Duplicate {
            event_id,
            deliveries,
        } = enqueued
        {
            emitted.event_id = event_id;
            emitted.deliveries = deliveries.iter().map(|d| d.id).collect();
            emitted.repeated = true;
        } else {
            crate::telemetry::emitted(emitted.event_type, emitted.deliveries.len());
        }
        Ok(emitted)
    }
}
