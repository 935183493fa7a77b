//! [`Deliveries`]: what a "Webhooks" page needs — delivery logs, redelivery, recovery.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::{
    AttemptLog, DeliveryPage, DeliveryQuery, DeliveryQueue, DeliveryRecord, DeliveryStats,
    DeliveryStatus, PurgeReport, QueueDepth, QueueError, RetentionPolicy, StatsQuery,
    MAX_DELIVERY_PAGE,
};
use crate::webhook::{DeliveryId, EventId, WebhookId};

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
/// let resent = deliveries.recover(&webhook, Utc::now() - Duration::days(1), None).await?;
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

    /// Every delivery of one event, across its webhooks, oldest first: "where did this event
    /// go?". Test sends are found too (each is an event of its own).
    ///
    /// # Errors
    /// [`QueueError`] when the queue fails; [`QueueError::Unsupported`] from a host's queue
    /// that does not implement the look-up.
    pub async fn of_event(&self, event: &EventId) -> Result<Vec<DeliveryRecord>, QueueError> {
        self.queue.event_deliveries(event).await
    }

    /// Statistics of `webhooks` (per webhook and overall): deliveries by status, the oldest
    /// pending one, and the attempts made in the last `window` with their success rate and
    /// p50/p95 duration. See [`WebhookStats`](super::WebhookStats) for the definitions.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use dataops_webhooks::store::WebhookQuery;
    /// # async fn run(dispatcher: dataops_webhooks::WebhookDispatcher) -> Result<(), Box<dyn std::error::Error>> {
    /// let page = dispatcher.webhooks().list(&WebhookQuery::new("acme")).await?;
    /// let ids = page.items.iter().map(|w| w.id).collect();
    /// let stats = dispatcher.deliveries().statistics(ids, Duration::from_secs(3600)).await?;
    /// println!(
    ///     "{} waiting (oldest emitted {:?}), {} of {} attempts failed in the last hour, p95 {:?}",
    ///     stats.overall.pending,
    ///     stats.overall.oldest_pending,
    ///     stats.overall.attempts - stats.overall.attempts_succeeded,
    ///     stats.overall.attempts,
    ///     stats.overall.p95_duration,
    /// );
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`QueueError`] when the queue fails.
    pub async fn statistics(
        &self,
        webhooks: Vec<WebhookId>,
        window: std::time::Duration,
    ) -> Result<DeliveryStats, QueueError> {
        let now = Utc::now();
        let since = chrono::Duration::from_std(window)
            .ok()
            .and_then(|w| now.checked_sub_signed(w))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.queue
            .statistics(&StatsQuery::new(webhooks, since, now))
            .await
    }

    /// Purges what `policy` no longer keeps, batch after batch until nothing is left to
    /// purge, and returns the totals. For hosts that schedule purges themselves (workers
    /// purge on their own; see [`WorkerOptions::retention`](crate::WorkerOptions::retention)).
    ///
    /// # Errors
    /// [`QueueError`] when the queue fails (batches already purged stay purged);
    /// [`QueueError::Unsupported`] from a host's queue that does not purge.
    pub async fn purge(&self, policy: &RetentionPolicy) -> Result<PurgeReport, QueueError> {
        let mut total = PurgeReport::default();
        loop {
            let report = self.queue.purge(&policy.request(Utc::now())).await?;
            total.deliveries += report.deliveries;
            total.attempts += report.attempts;
            total.events += report.events;
            if !report.more || report.deliveries == 0 {
                return Ok(total);
            }
        }
    }

    /// How many pending deliveries are due, scheduled and in flight now, across the queue.
    ///
    /// # Errors
    /// [`QueueError`] when the queue fails; [`QueueError::Unsupported`] from a host's queue
    /// that does not report its depth.
    pub async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.queue.depth(Utc::now()).await
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

    /// Redelivers every dead delivery of `webhook` emitted from `since` up to `until` (before
    /// it; `None`: up to now); returns how many. Use it after fixing an endpoint, or after
    /// re-enabling a disabled webhook.
    ///
    /// # Errors
    /// [`QueueError`] when the queue fails; deliveries already requeued stay requeued.
    pub async fn recover(
        &self,
        webhook: &WebhookId,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Result<usize, QueueError> {
        let mut query = DeliveryQuery::new(*webhook)
            .status(DeliveryStatus::Dead)
            .since(since);
        query.until = until;
        self.redeliver_matching(&query).await
    }

    /// Redelivers every delivery `query` selects (its webhook, status and time filters; the
    /// cursor and page size are ignored), in one call; returns how many. Pending deliveries
    /// it selects are made due now.
    ///
    /// # Errors
    /// [`QueueError`] when the queue fails; deliveries already requeued stay requeued.
    pub async fn redeliver_matching(&self, query: &DeliveryQuery) -> Result<usize, QueueError> {
        let now = Utc::now();
        let mut query = query.clone().limit(MAX_DELIVERY_PAGE);
        query.before = None;
        let mut selected = Vec::new();
        loop {
            let page = self.queue.list_deliveries(&query).await?;
            selected.extend(page.items.into_iter().map(|d| d.id));
            match page.next {
                Some(cursor) => query.before = Some(cursor),
                None => break,
            }
        }
        // Listed first, then requeued: a delivery requeued and settled again meanwhile is not
        // picked up twice.
        let mut count = 0;
        for id in selected {
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
