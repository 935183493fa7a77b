//! The delivery queue (the outbox): where `emit` records deliveries before it returns, and
//! where workers claim them, record attempts and settle them.
//!
//! Life of a delivery:
//!
//! ```text
//! emit ──► pending ──claim (lease)──► attempt ──► succeeded
//!             ▲                          │
//!             └──── retry at t ◄─────────┤
//!                                        └──► dead ──redeliver──► pending
//! ```
//!
//! A claim takes a lease: the delivery is not handed out again until the lease expires. A
//! worker that crashes mid-attempt simply lets its lease expire, and the delivery is claimed
//! again (at-least-once; the delivery id stays the same, so receivers can drop duplicates).
//! Implementations make the "due" time and the lease one column: claiming moves a
//! delivery's `next_attempt_at` to the end of its lease.
//!
//! [`MemoryQueue`] keeps everything in the process; `SqliteStore` (feature `sqlite`) in a file;
//! `PostgresStore` (feature `postgres`) in a database that many processes share.
//! With the `test-util` feature,
//! [`delivery_queue_conformance!`](crate::delivery_queue_conformance) checks any
//! implementation, one test per behaviour.

mod manage;
mod memory;
mod retention;
mod room;
mod stats;
mod types;
#[cfg(test)]
pub(crate) use types::claim_of;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::webhook::{DeliveryId, EventId};

pub use manage::Deliveries;
pub use memory::{MemoryQueue, DEFAULT_FULL_WAIT, DEFAULT_KEEP_SETTLED, DEFAULT_MAX_UNSENT};
pub use retention::{PurgeReport, PurgeRequest, RetentionPolicy};
pub use stats::{percentile, DeliveryStats, QueueDepth, StatsQuery, WebhookStats};
pub use types::{
    AttemptErrorKind, AttemptLog, Claim, ClaimRequest, DeliveryPage, DeliveryQuery, DeliveryRecord,
    DeliveryStatus, Enqueued, Finish, FinishReport, Health, LastError, LeaseId, NewDelivery,
    NewEvent, Next, Selection, Transition,
};

/// The most deliveries one [`list_deliveries`](DeliveryQueue::list_deliveries) call returns.
pub const MAX_DELIVERY_PAGE: usize = 200;

/// Durable storage of deliveries, their payloads and their attempts.
///
/// Every method is atomic. Times are passed in (never read from a clock inside), so tests
/// can drive a queue through hours of schedule in no time.
///
/// A queue stores; the crate decides. A settle's effect is [`Finish::transition`]: persist it
/// as its docs say, and the retry, lease and health rules hold as in the built-in backends.
/// Every type a method returns has a public constructor ([`DeliveryRecord::new`],
/// [`Claim::new`], [`AttemptLog::new`], [`FinishReport::held`] and [`FinishReport::lost`],
/// [`DeliveryPage::new`]). `tests/host_queue.rs` in the repository is a complete queue over a
/// `Mutex<HashMap>` that passes the conformance suite. The shape of `finish`:
///
/// ```
/// use chrono::{DateTime, Utc};
/// use dataops_webhooks::queue::{DeliveryRecord, Finish, FinishReport, Health};
///
/// /// Applies a settle to a stored delivery; `held` says whether `lease` is still its own.
/// fn settle(record: &mut DeliveryRecord, held: bool, finish: &Finish, now: DateTime<Utc>) -> FinishReport {
///     let change = finish.transition(now);
///     if change.attempted {
///         record.attempts += 1; // and store `finish.attempt()` in the attempt log
///     }
///     if change.attempted || held {
///         record.last_error = change.last_error.apply(record.last_error.take());
///         record.updated_at = now;
///     }
///     if held {
///         record.status = change.status;
///         record.next_attempt_at = change.due; // and end the lease
///     }
///     // `change.health`: keep the webhook's failing-since time, and report it.
///     let report = if held { FinishReport::held() } else { FinishReport::lost() };
///     match change.health {
///         Health::Failing => report.health(Some(now), false),
///         _ => report,
///     }
/// }
/// # let _ = settle;
/// ```
///
/// Check an implementation with `delivery_queue_conformance!` (feature `test-util`).
#[async_trait]
pub trait DeliveryQueue: Send + Sync + fmt::Debug {
    /// Records an event's payload once and one pending delivery per entry of
    /// `event.deliveries`, due at `event.created_at`.
    ///
    /// With an idempotency key that the organization used before, nothing is written and the
    /// first emit's event and deliveries are returned as [`Enqueued::Duplicate`].
    async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError>;

    /// Leases up to `request.limit` pending deliveries due at `request.now` (oldest due first),
    /// skipping the webhooks in `request.skip`, and returns them with their payloads.
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claim>, QueueError>;

    /// Settles a claimed delivery: records the attempt and its next state, returns it to the
    /// queue untouched, or ends it without an attempt. A lease that is no longer held (it
    /// expired and another worker claimed the delivery) still records the attempt but leaves
    /// the state to the new holder, and says so in [`FinishReport::lease_lost`].
    ///
    /// Attempts also keep the webhook's health: a success clears its `failing_since`, a
    /// failure sets it if unset; the report carries the result.
    async fn finish(
        &self,
        delivery: &DeliveryId,
        lease: LeaseId,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<FinishReport, QueueError>;

    /// One delivery.
    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, QueueError>;

    /// One page of a webhook's deliveries, newest first, optionally of one status and created
    /// at or after a time.
    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, QueueError>;

    /// Every attempt of a delivery, oldest first.
    async fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptLog>, QueueError>;

    /// Makes a delivery due again at `now`, whatever its state, keeping its id and its
    /// attempts. `false` when there is no such delivery.
    async fn redeliver(&self, id: &DeliveryId, now: DateTime<Utc>) -> Result<bool, QueueError>;

    /// A signal the backend raises when deliveries become due that this process did not
    /// enqueue itself: another process emitted, or a host's transaction committed. Idle
    /// workers wait on it beside their poll interval. The default is `None`: workers poll.
    fn arrivals(&self) -> Option<Arc<Notify>> {
        None
    }

    /// Whether a [`claim`](Self::claim) that returns fewer deliveries than its limit, with
    /// no webhook given all its [room](ClaimRequest::room), took every delivery claimable at
    /// that moment. True of a queue whose claims see every due delivery, one claim at a time
    /// (the in-memory queue, SQLite); false of one whose claims pass over deliveries another
    /// claim in flight holds (PostgreSQL's `SKIP LOCKED`).
    ///
    /// When true, a worker whose claim came back short waits for new work (an emit, an
    /// [arrival](Self::arrivals), a freed slot, its poll interval) instead of claiming again
    /// at once, which would find nothing: a single emitter then costs one claim per
    /// delivery, not two. The default, `false`, always claims again at once.
    fn short_claims_take_everything(&self) -> bool {
        false
    }

    /// Per webhook and overall: deliveries by status, the oldest pending one, and the
    /// attempts of the window with their success rate and p50/p95 duration (see
    /// [`WebhookStats`] for the definitions).
    ///
    /// The default lists every delivery of every webhook and reads the attempts of those
    /// changed in the window: correct, and slow on a long log. Our backends answer in one
    /// query.
    async fn statistics(&self, query: &StatsQuery) -> Result<DeliveryStats, QueueError> {
        stats::statistics_by_listing(self, query).await
    }

    /// How many pending deliveries are due, scheduled and in flight at `now`. Workers sample
    /// it for the `dataops_webhooks_queue_depth` gauge.
    ///
    /// The default answers [`QueueError::Unsupported`], and workers then publish no depth.
    async fn depth(&self, now: DateTime<Utc>) -> Result<QueueDepth, QueueError> {
        let _ = now;
        Err(QueueError::Unsupported("depth"))
    }

    /// Every delivery of one event, across its webhooks, oldest first.
    ///
    /// The default answers [`QueueError::Unsupported`].
    async fn event_deliveries(&self, event: &EventId) -> Result<Vec<DeliveryRecord>, QueueError> {
        let _ = event;
        Err(QueueError::Unsupported("event_deliveries"))
    }

    /// Removes up to `request.limit` settled deliveries past their retention (see
    /// [`PurgeRequest`]) with their attempts, and the events none of whose deliveries is
    /// left; says whether more may be due. Each call is short: workers call it in a loop.
    /// Pending deliveries, and payloads a delivery still needs, are never removed.
    ///
    /// The default answers [`QueueError::Unsupported`], and nothing is ever removed.
    async fn purge(&self, request: &PurgeRequest) -> Result<PurgeReport, QueueError> {
        let _ = request;
        Err(QueueError::Unsupported("purge"))
    }

    /// Keeps a test send in the delivery log: `event` (the test event, with its one
    /// delivery) and the attempt made. The delivery is recorded settled — succeeded when
    /// the attempt succeeded, dead otherwise — with one attempt, and never claimed; the
    /// webhook's health is not touched. It reads back like any delivery (get, list,
    /// attempts) and can be redelivered.
    ///
    /// The default answers [`QueueError::Unsupported`], and test sends then leave no record.
    async fn record_test(&self, event: NewEvent, attempt: AttemptLog) -> Result<(), QueueError> {
        let _ = (event, attempt);
        Err(QueueError::Unsupported("record_test"))
    }
}

/// A queue operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The backend failed (database unreachable, disk full, corrupt row).
    #[error("the delivery queue failed: {message}")]
    Backend {
        /// What happened, for the operator.
        message: String,
        /// The backend's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A delivery id that is already queued.
    #[error("delivery {0} is already queued")]
    Conflict(DeliveryId),
    /// The queue does not implement this optional operation (a host's queue that keeps the
    /// trait's default).
    #[error(
        "this delivery queue does not support `{0}`; implement DeliveryQueue::{0} to enable it"
    )]
    Unsupported(&'static str),
    /// The queue holds as many deliveries not yet attempted as it may, and none left it in
    /// time: nothing of the event was accepted ([`MemoryQueue`]'s bound on its memory).
    #[error(
        "the delivery queue holds {limit} deliveries not yet attempted, its limit, and none \
         was attempted within {waited:?}; the event was not accepted — check that a worker \
         runs and its endpoints answer, emit again later, or raise MemoryQueue::max_unsent"
    )]
    Full {
        /// The queue's bound on unsent deliveries.
        limit: usize,
        /// How long the enqueue waited for room.
        waited: std::time::Duration,
    },
}

impl QueueError {
    /// Whether trying again may succeed: a backend failure may pass (a database that comes
    /// back), and so may a full queue (once the worker catches up); a conflict will not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Backend { .. } | Self::Full { .. })
    }

    /// A backend failure with its cause, for queue implementations.
    pub fn backend(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// A requested page size, clamped to 1..=[`MAX_DELIVERY_PAGE`].
pub(crate) fn page_limit(limit: usize) -> usize {
    limit.clamp(1, MAX_DELIVERY_PAGE)
}

/// Whether a webhook has been failing longer than `window`, counting from the later of when
/// it started failing and when its configuration last changed (re-enabling a webhook starts
/// a fresh window).
pub fn failing_too_long(
    failing_since: Option<DateTime<Utc>>,
    webhook_updated_at: DateTime<Utc>,
    window: chrono::Duration,
    now: DateTime<Utc>,
) -> bool {
    failing_since.is_some_and(|since| now - since.max(webhook_updated_at) >= window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_window_counts_from_the_last_change() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).expect("time");
        let window = chrono::Duration::seconds(100);
        assert!(!failing_too_long(None, t(0), window, t(1_000)));
        assert!(!failing_too_long(Some(t(950)), t(0), window, t(1_000)));
        assert!(failing_too_long(Some(t(900)), t(0), window, t(1_000)));
        // Re-enabled at 950: the window starts again.
        assert!(!failing_too_long(Some(t(0)), t(950), window, t(1_000)));
    }
}
