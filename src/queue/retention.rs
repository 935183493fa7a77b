//! How long the delivery log keeps what it holds: [`RetentionPolicy`], and the purge it asks
//! of a queue ([`PurgeRequest`], [`PurgeReport`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long settled deliveries, their attempts and their payloads are kept. Workers purge by
/// it every [`interval`](Self::interval), in batches of [`batch`](Self::batch) deliveries
/// (see [`WorkerOptions::retention`](crate::WorkerOptions::retention)); a host that schedules
/// purges itself calls [`Deliveries::purge`](crate::Deliveries::purge).
///
/// A delivery's age counts from when it settled (its last attempt, or its redelivery's). A
/// payload (the event) goes with its last delivery, so it is kept as long as any of them is;
/// an idempotency key goes with its event. Pending deliveries are never purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// How long a succeeded delivery and its attempts are kept (default 30 days).
    pub succeeded: Duration,
    /// How long a dead delivery and its attempts are kept (default 90 days), so failures can
    /// still be recovered after a long outage.
    pub dead: Duration,
    /// Deliveries removed per purge call (default 1,000): each call is one short
    /// transaction.
    pub batch: usize,
    /// How often a worker purges (default every hour).
    pub interval: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            succeeded: Duration::from_secs(30 * 86_400),
            dead: Duration::from_secs(90 * 86_400),
            batch: 1_000,
            interval: Duration::from_secs(3_600),
        }
    }
}

impl RetentionPolicy {
    /// Sets [`succeeded`](Self::succeeded).
    #[must_use]
    pub fn succeeded(mut self, keep: Duration) -> Self {
        self.succeeded = keep;
        self
    }

    /// Sets [`dead`](Self::dead).
    #[must_use]
    pub fn dead(mut self, keep: Duration) -> Self {
        self.dead = keep;
        self
    }

    /// Sets [`batch`](Self::batch) (at least 1).
    #[must_use]
    pub fn batch(mut self, deliveries: usize) -> Self {
        self.batch = deliveries.max(1);
        self
    }

    /// Sets [`interval`](Self::interval).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The purge this policy asks for at `now`.
    pub fn request(&self, now: DateTime<Utc>) -> PurgeRequest {
        let before = |keep: Duration| {
            chrono::Duration::from_std(keep)
                .ok()
                .and_then(|keep| now.checked_sub_signed(keep))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        PurgeRequest {
            succeeded_before: before(self.succeeded),
            dead_before: before(self.dead),
            limit: self.batch.max(1),
        }
    }
}

/// One purge: remove up to `limit` settled deliveries — succeeded ones that settled before
/// `succeeded_before`, dead ones before `dead_before` — with their attempts, and the events
/// (payloads) none of whose deliveries is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeRequest {
    /// Succeeded deliveries last updated before this time go.
    pub succeeded_before: DateTime<Utc>,
    /// Dead deliveries last updated before this time go.
    pub dead_before: DateTime<Utc>,
    /// At most this many deliveries.
    pub limit: usize,
}

impl PurgeRequest {
    /// A purge of deliveries settled before the given times, `limit` at most.
    pub fn new(succeeded_before: DateTime<Utc>, dead_before: DateTime<Utc>, limit: usize) -> Self {
        Self {
            succeeded_before,
            dead_before,
            limit: limit.max(1),
        }
    }

    /// Whether a delivery in `status`, last updated at `updated_at`, is purged.
    pub fn selects(&self, status: super::DeliveryStatus, updated_at: DateTime<Utc>) -> bool {
        match status {
            super::DeliveryStatus::Succeeded => updated_at < self.succeeded_before,
            super::DeliveryStatus::Dead => updated_at < self.dead_before,
            super::DeliveryStatus::Pending => false,
        }
    }
}

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeReport {
    /// Deliveries removed.
    pub deliveries: u64,
    /// Attempts removed with them.
    pub attempts: u64,
    /// Events (payloads) removed: none of their deliveries is left.
    pub events: u64,
    /// The limit was reached: more may be due; call again.
    pub more: bool,
}

impl PurgeReport {
    /// A report, for queue implementations.
    pub fn new(deliveries: u64, attempts: u64, events: u64, more: bool) -> Self {
        Self {
            deliveries,
            attempts,
            events,
            more,
        }
    }
}
