//! The records a [`DeliveryQueue`](super::DeliveryQueue) takes and gives.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use http::StatusCode;

use crate::dispatcher::AttemptResult;
use crate::transport::{TransportError, TransportErrorKind};
use crate::webhook::{DeliveryId, EventId, OrgId, WebhookId};
use crate::EventType;

/// An emitted event to record, with its deliveries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewEvent {
    /// The event's id.
    pub id: EventId,
    /// Its organization.
    pub org: OrgId,
    /// Its project.
    pub project: String,
    /// Its type.
    pub event_type: EventType,
    /// The serialized event: the exact bytes every delivery sends.
    pub payload: Bytes,
    /// The host's key for "the same emit": at most one event per key and organization.
    pub idempotency_key: Option<String>,
    /// When it was emitted; its deliveries are due then.
    pub created_at: DateTime<Utc>,
    /// One per subscribed webhook.
    pub deliveries: Vec<NewDelivery>,
}

impl NewEvent {
    /// An event to record.
    pub fn new(
        org: OrgId,
        project: impl Into<String>,
        event_type: EventType,
        payload: Bytes,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: EventId::new(),
            org,
            project: project.into(),
            event_type,
            payload,
            idempotency_key: None,
            created_at,
            deliveries: Vec::new(),
        }
    }
}

/// One delivery to record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewDelivery {
    /// Its id, sent as `webhook-id` and `X-Aquarium-Delivery` on every attempt.
    pub id: DeliveryId,
    /// The webhook it goes to.
    pub webhook_id: WebhookId,
    /// The webhook's URL at emit time (for listings; attempts use the webhook's URL then).
    pub url: String,
}

impl NewDelivery {
    /// A delivery to `webhook_id` at `url`.
    pub fn new(id: DeliveryId, webhook_id: WebhookId, url: impl Into<String>) -> Self {
        Self {
            id,
            webhook_id,
            url: url.into(),
        }
    }
}

/// What [`enqueue`](super::DeliveryQueue::enqueue) did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Enqueued {
    /// The event and its deliveries were recorded.
    New,
    /// The idempotency key was used before: nothing was written; this is the first event.
    Duplicate {
        /// The first event's id.
        event_id: EventId,
        /// Its deliveries, as they stand now.
        deliveries: Vec<DeliveryRecord>,
    },
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Waiting for its next attempt, or being attempted.
    Pending,
    /// An endpoint answered 2xx.
    Succeeded,
    /// Its attempts are spent (or retrying cannot help); redeliver it to try again.
    Dead,
}

impl DeliveryStatus {
    /// `pending`, `succeeded` or `dead`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(Self::Pending),
            "succeeded" => Ok(Self::Succeeded),
            "dead" => Ok(Self::Dead),
            other => Err(format!("unknown delivery status `{other}`")),
        }
    }
}

/// A delivery as the queue holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryRecord {
    /// Its id.
    pub id: DeliveryId,
    /// Its event.
    pub event_id: EventId,
    /// The event's organization.
    pub org: OrgId,
    /// The event's type.
    pub event_type: EventType,
    /// The webhook.
    pub webhook_id: WebhookId,
    /// The webhook's URL at emit time.
    pub url: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is next due (for a delivery being attempted: when its lease ends); `None`
    /// once settled.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last attempt's error, for a failed or dead delivery.
    pub last_error: Option<String>,
    /// When it was emitted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Identifies one claim of a delivery; settling needs it, so a worker whose lease expired
/// cannot overwrite the state its successor set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

impl LeaseId {
    /// A random lease id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 8];
        // Uniqueness matters, not secrecy: a failing generator falls back to the clock.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
            bytes = nanos.to_le_bytes();
        }
        Self(i64::from_le_bytes(bytes))
    }
}

/// What a worker asks [`claim`](super::DeliveryQueue::claim) for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// The time: deliveries due at or before it are claimable.
    pub now: DateTime<Utc>,
    /// How long the claim holds.
    pub lease: Duration,
    /// At most this many.
    pub limit: usize,
    /// Webhooks to leave alone (those at their concurrency limit).
    pub skip: Vec<WebhookId>,
}

impl ClaimRequest {
    /// Up to `limit` deliveries due at `now`, leased for `lease`.
    pub fn new(now: DateTime<Utc>, lease: Duration, limit: usize) -> Self {
        Self {
            now,
            lease,
            limit,
            skip: Vec::new(),
        }
    }

    /// Leave `webhooks` alone.
    #[must_use]
    pub fn skip(mut self, webhooks: Vec<WebhookId>) -> Self {
        self.skip = webhooks;
        self
    }

    /// The end of the lease.
    pub fn lease_until(&self) -> DateTime<Utc> {
        self.now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX)
    }
}

/// A leased delivery and what an attempt needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Claim {
    /// The delivery (its `next_attempt_at` is the lease's end).
    pub delivery: DeliveryRecord,
    /// The event's project.
    pub project: String,
    /// The payload bytes.
    pub payload: Bytes,
    /// The claim, to settle it with.
    pub lease: LeaseId,
}

/// One attempt, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptLog {
    /// When it started.
    pub attempted_at: DateTime<Utc>,
    /// The endpoint's status, when it answered.
    pub status: Option<u16>,
    /// How long it took.
    pub duration: Duration,
    /// The start of the response body (capped by the transport). A backend that cannot
    /// store NUL characters (PostgreSQL) keeps each as U+FFFD.
    pub response: String,
    /// The error's kind (`timeout`, `connect`, ... as
    /// [`TransportErrorKind::as_str`](crate::transport::TransportErrorKind::as_str)), or
    /// `http_status` for a non-2xx answer; `None` on success.
    pub error_kind: Option<String>,
    /// The error in words (for a transport error, its message without the kind); `None` on
    /// success.
    pub error: Option<String>,
}

/// The error kind of an attempt the endpoint answered with a status other than 2xx.
const HTTP_STATUS: &str = "http_status";

impl AttemptLog {
    /// The log entry of an attempt that started at `attempted_at`.
    pub fn of(result: &AttemptResult, attempted_at: DateTime<Utc>) -> Self {
        match result {
            AttemptResult::Delivered {
                status,
                body,
                duration,
            } => Self {
                attempted_at,
                status: Some(status.as_u16()),
                duration: *duration,
                response: body.clone(),
                error_kind: None,
                error: None,
            },
            AttemptResult::Rejected {
                status,
                body,
                duration,
            } => Self {
                attempted_at,
                status: Some(status.as_u16()),
                duration: *duration,
                response: body.clone(),
                error_kind: Some(HTTP_STATUS.into()),
                error: Some(format!("the endpoint answered {status}")),
            },
            AttemptResult::Failed(error) => Self {
                attempted_at,
                status: error.status().map(|s| s.as_u16()),
                duration: error.duration().unwrap_or_default(),
                response: String::new(),
                error_kind: Some(error.kind().as_str().into()),
                error: Some(error.message().to_owned()),
            },
        }
    }

    /// The attempt's result, rebuilt from the log (for receipts of an idempotent re-emit).
    pub fn to_result(&self) -> AttemptResult {
        let status = self.status.and_then(|s| StatusCode::from_u16(s).ok());
        match (status, self.error_kind.as_deref()) {
            (Some(status), None) => AttemptResult::Delivered {
                status,
                body: self.response.clone(),
                duration: self.duration,
            },
            (Some(status), Some(HTTP_STATUS)) => AttemptResult::Rejected {
                status,
                body: self.response.clone(),
                duration: self.duration,
            },
            (status, kind) => {
                let error = TransportError::new(
                    TransportErrorKind::from_name(kind.unwrap_or_default()),
                    self.error.clone().unwrap_or_default(),
                )
                .with_duration(self.duration);
                AttemptResult::Failed(match status {
                    Some(status) => error.with_status(status),
                    None => error,
                })
            }
        }
    }

    /// Whether the endpoint answered 2xx.
    pub fn is_success(&self) -> bool {
        self.error_kind.is_none()
    }
}

/// The state a delivery moves to after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Next {
    /// Delivered.
    Succeeded,
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// No more attempts.
    Dead,
}

/// How a worker settles a claim.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Finish {
    /// An attempt was made.
    Attempted {
        /// What happened.
        attempt: AttemptLog,
        /// What next.
        next: Next,
    },
    /// Not attempted: back to the queue, due now, attempts unchanged (the worker is shutting
    /// down, or the endpoint is at its concurrency limit).
    Released,
    /// Not attempted, and never will be: the webhook was deleted or switched off. The
    /// delivery is dead with `reason` as its error; it can be redelivered.
    Abandoned {
        /// Why, for the delivery log.
        reason: String,
    },
}

/// What [`finish`](super::DeliveryQueue::finish) did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FinishReport {
    /// The lease had expired and someone else holds the delivery: the attempt was recorded,
    /// the state left alone.
    pub lease_lost: bool,
    /// The webhook's first failure since its last success, after this attempt.
    pub failing_since: Option<DateTime<Utc>>,
    /// This attempt succeeded after failures: the endpoint is healthy again.
    pub recovered: bool,
}

/// A listing request over one webhook's deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryQuery {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only deliveries created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Continue after this delivery (the previous page's [`DeliveryPage::next`]).
    pub before: Option<DeliveryId>,
    /// Page size, 1 to [`MAX_DELIVERY_PAGE`](super::MAX_DELIVERY_PAGE).
    pub limit: usize,
}

impl DeliveryQuery {
    /// The newest 50 deliveries of `webhook_id`.
    pub fn new(webhook_id: WebhookId) -> Self {
        Self {
            webhook_id,
            status: None,
            since: None,
            before: None,
            limit: 50,
        }
    }

    /// Only deliveries in `status`.
    #[must_use]
    pub fn status(mut self, status: DeliveryStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only deliveries created at or after `since`.
    #[must_use]
    pub fn since(mut self, since: DateTime<Utc>) -> Self {
        self.since = Some(since);
        self
    }

    /// The page after the one that ended with `cursor`.
    #[must_use]
    pub fn before(mut self, cursor: DeliveryId) -> Self {
        self.before = Some(cursor);
        self
    }

    /// Page size, clamped.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = super::page_limit(limit);
        self
    }

    /// Whether `record` belongs in this listing (ignoring the cursor).
    pub fn selects(&self, record: &DeliveryRecord) -> bool {
        record.webhook_id == self.webhook_id
            && self.status.is_none_or(|s| s == record.status)
            && self.since.is_none_or(|t| record.created_at >= t)
    }
}

/// One page of deliveries, newest first.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeliveryPage {
    /// The deliveries.
    pub items: Vec<DeliveryRecord>,
    /// The cursor of the next (older) page; `None` on the last.
    pub next: Option<DeliveryId>,
}

impl DeliveryPage {
    /// A page.
    pub fn new(items: Vec<DeliveryRecord>, next: Option<DeliveryId>) -> Self {
        Self { items, next }
    }
}
