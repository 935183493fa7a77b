//! [`Deliveries`]: what a "Webhooks" page needs — delivery logs, redelivery, recovery.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::{
    AttemptLog, DeliveryPage, DeliveryQuery, DeliveryQueue, DeliveryRecord, DeliveryStatus,
    QueueError, MAX_DELIVERY_PAGE,
};
use crate::webhook::{DeliveryId, WebhookId};

/// Delivery logs and replay over a dispatcher's queue. Get it from
/// [`WebhookDispatcher::deliveries`](crate::WebhookDispatcher::deliveries).
///
/// ```no_run
/// use chrono::{Duration, Utc};
/// use dataops_webhooks::queue::{DeliveryQuery, DeliveryStatus};
/// # async fn run(dispatcher: dataops_webhooks::WebhookDispatcher, webhook: dataops_webhooks::webhook::WebhookId) -> Result<(), Box<dyn std::error::Error>> {
/// let deliveries = dispatcher.deliveries();
/// let dead = deliveries.list(&DeliveryQuery::new(webhook).status(DeliveryStatus::Dead)).await?;
/// for delivery in &dead.items {
///     for attempt in deliveries.attempts(&delivery.id).await? {
///         println!("{} {:?} {:?}", attempt.attempted_at, attempt.status, attempt.error);
///     }
/// }
/// // The endpoint is fixed: send again everything that failed in the last day.
/// let resent = deliveries.recover(&webhook, Utc::now() - Duration::days(1)).await?;
/// println!("{resent} deliveries queued again");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Deliveries {
    queue: Arc<dyn DeliveryQueue>,
    wake: Arc<Notify>,
}

impl Deliveries {
    pub(crate) fn new(queue: Arc<dyn DeliveryQueue>, wake: Arc<Notify>) -> Self {
        Self { queue, wake }
    }

    /// One delivery.
    ///
    /// # Errors
    /// [`QueueError`] when the queue fails.
    pub async fn get(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, QueueError> {
        self.queue.get_delivery(id).await
    }

    /// One page of a webhook's deliveries, newest first.
    ///
    /// # Errors
    /// [`QueueError`] when the queue fails.
    pub async fn list(&self, query: &DeliveryQuery) -> Result<DeliveryPage, QueueError> {
        self.queue.list_deliveries(query).await
    }

    /// Every attempt of a delivery, oldest first: time, status, duration, response excerpt,
    /// error.
    ///
    /// # Errors
    /// [`QueueError`] when the queue fails.
    pub async fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptLog>, QueueError> {
        self.queue.attempts(id).await
    }

    /// Sends a delivery again now: one new attempt with the same delivery id (and the same
    /// bytes). A redelivered delivery that fails is dead again once its attempts are spent;
    /// it is not given a fresh schedule. `false` when there is no such delivery.
    ///
    /// # Errors
    /// [`QueueError`] when the queue fails.
    pub async fn redeliver(&self, id: &DeliveryId) -> Result<bool, QueueError> {
        let found = self.queue.redeliver(id, Utc::now()).await?;
        if found {
            self.wake.notify_one();
        }
        Ok(found)
    }

    /// Redelivers every dead delivery of `webhook` emitted at or after `since`; returns how
    /// many. Use it after fixing an endpoint, or after re-enabling a disabled webhook.
    ///
    /// # Errors
    /// [`QueueError`] when the queue fails; deliveries already requeued stay requeued.
    pub async fn recover(
        &self,
        webhook: &WebhookId,
        since: DateTime<Utc>,
    ) -> Result<usize, QueueError> {
        let now = Utc::now();
        let mut query = DeliveryQuery::new(*webhook)
            .status(DeliveryStatus::Dead)
            .since(since)
            .limit(MAX_DELIVERY_PAGE);
        let mut dead = Vec::new();
        loop {
            let page = self.queue.list_deliveries(&query).await?;
            dead.extend(page.items.into_iter().map(|d| d.id));
            match page.next {
                Some(cursor) => query.before = Some(cursor),
                None => break,
            }
        }
        // Listed first, then requeued: a delivery requeued and dead again meanwhile is not
        // picked up twice.
        let mut count = 0;
        for id in dead {
            if self.queue.redeliver(&id, now).await? {
                count += 1;
            }
        }
        if count > 0 {
            self.wake.notify_one();
        }
        Ok(count)
    }
}
