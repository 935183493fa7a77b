//! What an operator asks of the delivery log: how many deliveries wait, how many failed, how
//! fast endpoints answer ([`DeliveryStats`]), and how deep the queue is ([`QueueDepth`]).
//!
//! The types, the one definition of each figure, and the slow but correct computation the
//! [`DeliveryQueue`](super::DeliveryQueue) trait provides by default. Our backends compute the
//! same figures in one query each.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{AttemptLog, DeliveryQuery, DeliveryQueue, DeliveryStatus, QueueError};
use crate::webhook::WebhookId;

/// Which deliveries [`DeliveryQueue::statistics`] counts: those of `webhooks`, with their
/// attempts made in `since..=now`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsQuery {
    /// The webhooks (an organization's, or one project's): each gets its own figures, and
    /// [`DeliveryStats::overall`] sums them. Duplicates count once.
    pub webhooks: Vec<WebhookId>,
    /// Start of the attempt window.
    pub since: DateTime<Utc>,
    /// End of the attempt window, and the time pending ages are measured at.
    pub now: DateTime<Utc>,
}

impl StatsQuery {
    /// The deliveries of `webhooks`, with attempts made from `since` to `now`.
    pub fn new(webhooks: Vec<WebhookId>, since: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        let mut webhooks = webhooks;
        webhooks.sort_unstable();
        webhooks.dedup();
        Self {
            webhooks,
            since,
            now,
        }
    }

    /// Whether an attempt made at `at` falls in the window.
    pub fn in_window(&self, at: DateTime<Utc>) -> bool {
        self.since <= at && at <= self.now
    }
}

/// Figures for one webhook, or for all of a query's webhooks.
///
/// Counts by status are of the whole delivery log as it is now; attempt figures are of the
/// attempts made in the query's window. Percentiles are nearest-rank: the p-th percentile of
/// `n` durations is the `ceil(p × n)`-th smallest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookStats {
    /// Deliveries waiting for an attempt (due, scheduled for a retry, or in flight).
    pub pending: u64,
    /// Deliveries delivered.
    pub succeeded: u64,
    /// Deliveries whose attempts are spent (or that were abandoned).
    pub dead: u64,
    /// When the oldest pending delivery was emitted.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// Attempts made in the window.
    pub attempts: u64,
    /// Of those, the ones the endpoint answered with a 2xx.
    pub attempts_succeeded: u64,
    /// Median attempt duration in the window.
    pub p50_duration: Option<Duration>,
    /// 95th percentile attempt duration in the window.
    pub p95_duration: Option<Duration>,
}

impl WebhookStats {
    /// Figures from their parts, for queue implementations.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        (pending, succeeded, dead): (u64, u64, u64),
        oldest_pending: Option<DateTime<Utc>>,
        (attempts, attempts_succeeded): (u64, u64),
        (p50_duration, p95_duration): (Option<Duration>, Option<Duration>),
    ) -> Self {
        Self {
            pending,
            succeeded,
            dead,
            oldest_pending,
            attempts,
            attempts_succeeded,
            p50_duration,
            p95_duration,
        }
    }

    /// The share of the window's attempts that succeeded, from 0 to 1; `None` without
    /// attempts.
    pub fn success_rate(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)] // a ratio
        (self.attempts > 0).then(|| self.attempts_succeeded as f64 / self.attempts as f64)
    }

    /// How long the oldest pending delivery has waited at `now`.
    pub fn oldest_pending_age(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.oldest_pending
            .map(|at| (now - at).to_std().unwrap_or_default())
    }
}

/// The answer of [`DeliveryQueue::statistics`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryStats {
    /// All the query's webhooks together (percentiles over all their attempts).
    pub overall: WebhookStats,
    /// Each webhook of the query, also those without deliveries.
    pub webhooks: BTreeMap<WebhookId, WebhookStats>,
}

impl DeliveryStats {
    /// Statistics from the per-webhook figures and the overall attempt figures (which cannot
    /// be summed: percentiles). Counts and the oldest pending time are combined here.
    pub fn new(
        webhooks: BTreeMap<WebhookId, WebhookStats>,
        overall_attempts: (u64, u64),
        overall_durations: (Option<Duration>, Option<Duration>),
    ) -> Self {
        let mut overall = WebhookStats::default();
        for stats in webhooks.values() {
            overall.pending = overall.pending.saturating_add(stats.pending);
            overall.succeeded = overall.succeeded.saturating_add(stats.succeeded);
            overall.dead = overall.dead.saturating_add(stats.dead);
            overall.oldest_pending = match (overall.oldest_pending, stats.oldest_pending) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        (overall.attempts, overall.attempts_succeeded) = overall_attempts;
        (overall.p50_duration, overall.p95_duration) = overall_durations;
        Self { overall, webhooks }
    }
}

/// The nearest-rank percentile `p` (0–100) of ascending `sorted` values.
pub fn percentile<T: Copy>(sorted: &[T], p: usize) -> Option<T> {
    let rank = sorted.len().saturating_mul(p.min(100)).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Gathers deliveries and attempts one by one, and computes [`DeliveryStats`] by their
/// definitions: the in-memory queue and the trait's default use it.
#[derive(Debug, Default)]
pub(crate) struct StatsBuilder {
    webhooks: BTreeMap<WebhookId, (WebhookStats, Vec<Duration>)>,
}

impl StatsBuilder {
    pub(crate) fn new(query: &StatsQuery) -> Self {
        Self {
            webhooks: query
                .webhooks
                .iter()
                .map(|w| (*w, (WebhookStats::default(), Vec::new())))
                .collect(),
        }
    }

    /// The listed webhooks, each once.
    pub(crate) fn webhooks(&self) -> Vec<WebhookId> {
        self.webhooks.keys().copied().collect()
    }

    /// Counts a delivery of a listed webhook (others are ignored).
    pub(crate) fn delivery(
        &mut self,
        webhook: &WebhookId,
        status: DeliveryStatus,
        created_at: DateTime<Utc>,
    ) {
        let Some((stats, _)) = self.webhooks.get_mut(webhook) else {
            return;
        };
        match status {
            DeliveryStatus::Pending => {
                stats.pending += 1;
                stats.oldest_pending = Some(
                    stats
                        .oldest_pending
                        .map_or(created_at, |t| t.min(created_at)),
                );
            }
            DeliveryStatus::Succeeded => stats.succeeded += 1,
            DeliveryStatus::Dead => stats.dead += 1,
        }
    }

    /// Counts an attempt of a listed webhook's delivery made in the window.
    pub(crate) fn attempt(&mut self, webhook: &WebhookId, attempt: &AttemptLog) {
        let Some((stats, durations)) = self.webhooks.get_mut(webhook) else {
            return;
        };
        stats.attempts += 1;
        if attempt.is_success() {
            stats.attempts_succeeded += 1;
        }
        durations.push(attempt.duration);
    }

    pub(crate) fn finish(self) -> DeliveryStats {
        let mut all = Vec::new();
        let (mut attempts, mut succeeded) = (0_u64, 0_u64);
        let webhooks = self
            .webhooks
            .into_iter()
            .map(|(webhook, (mut stats, mut durations))| {
                durations.sort_unstable();
                stats.p50_duration = percentile(&durations, 50);
                stats.p95_duration = percentile(&durations, 95);
                attempts += stats.attempts;
                succeeded += stats.attempts_succeeded;
                all.extend(durations);
                (webhook, stats)
            })
            .collect();
        all.sort_unstable();
        DeliveryStats::new(
            webhooks,
            (attempts, succeeded),
            (percentile(&all, 50), percentile(&all, 95)),
        )
    }
}

/// The trait's default [`statistics`](DeliveryQueue::statistics): every delivery of every
/// webhook through [`list_deliveries`](DeliveryQueue::list_deliveries), and the attempts of
/// those changed in the window.
pub(crate) async fn statistics_by_listing<Q: DeliveryQueue + ?Sized>(
    queue: &Q,
    query: &StatsQuery,
) -> Result<DeliveryStats, QueueError> {
    let mut stats = StatsBuilder::new(query);
    for webhook in &stats.webhooks() {
        let mut page_query = DeliveryQuery::new(*webhook).limit(super::MAX_DELIVERY_PAGE);
        loop {
            let page = queue.list_deliveries(&page_query).await?;
            for record in &page.items {
                stats.delivery(webhook, record.status, record.created_at);
                // An attempt in the window updated its delivery in the window or later.
                if record.attempts > 0 && record.updated_at >= query.since {
                    for attempt in queue.attempts(&record.id).await? {
                        if query.in_window(attempt.attempted_at) {
                            stats.attempt(webhook, &attempt);
                        }
                    }
                }
            }
            match page.next {
                Some(cursor) => page_query.before = Some(cursor),
                None => break,
            }
        }
    }
    Ok(stats.finish())
}

/// How many deliveries wait, and in what state: a sample of
/// [`DeliveryQueue::depth`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueDepth {
    /// Pending and due now, waiting for a worker (also those whose lease ran out).
    pub due: u64,
    /// Pending and due later: retries waiting for their time.
    pub scheduled: u64,
    /// Claimed by a worker whose lease still holds.
    pub in_flight: u64,
    /// The earliest due time among the due ones.
    pub oldest_due: Option<DateTime<Utc>>,
}

impl QueueDepth {
    /// A depth from its parts, for queue implementations.
    pub fn new(
        due: u64,
        scheduled: u64,
        in_flight: u64,
        oldest_due: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            due,
            scheduled,
            in_flight,
            oldest_due,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=20).collect();
        assert_eq!(percentile(&v, 50), Some(10));
        assert_eq!(percentile(&v, 95), Some(19));
        assert_eq!(percentile(&v, 100), Some(20));
        assert_eq!(percentile(&[7_u32], 95), Some(7));
        assert_eq!(percentile(&[1_u32, 2, 3], 50), Some(2));
        assert_eq!(percentile::<u32>(&[], 50), None);
    }
}
