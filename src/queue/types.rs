//! The records a [`DeliveryQueue`](super::DeliveryQueue) takes and gives.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

impl DeliveryRecord {
    /// A new pending delivery of event `event_id` to `webhook_id`, due at `created_at`, not
    /// yet attempted. For queue implementations; set the other fields as stored.
    pub fn new(
        id: DeliveryId,
        event_id: EventId,
        org: OrgId,
        event_type: EventType,
        webhook_id: WebhookId,
        url: impl Into<String>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            event_id,
            org,
            event_type,
            webhook_id,
            url: url.into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: Some(created_at),
            last_error: None,
            created_at,
            updated_at: created_at,
        }
    }
}

/// Identifies one claim of a delivery; settling needs it, so a worker whose lease expired
/// cannot overwrite the state its successor set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

impl LeaseId {
    /// A random lease id. Uniqueness matters, not secrecy: it comes from a per-thread
    /// sequence seeded by the operating system's generator, without a system call each.
    pub fn random() -> Self {
        Self(i64::from_ne_bytes(crate::random::next_u64().to_ne_bytes()))
    }
}

/// What a worker asks [`claim`](super::DeliveryQueue::claim) for.
///
/// Besides the total `limit`, a request may cap how many deliveries of one webhook the
/// caller can take ([`per_webhook`](Self::per_webhook)), counting the ones it already has in
/// flight ([`busy`](Self::busy)): a worker at an endpoint's concurrency limit then gets the
/// work it can start, not a batch it must hand back. [`ClaimRequest::select`] applies every
/// rule to candidates in due order, so a queue only has to list them.
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
    /// At most this many deliveries of any one webhook, counting its [`busy`](Self::busy)
    /// ones; `None`: no cap.
    pub per_webhook: Option<usize>,
    /// How many deliveries of each webhook the caller has in flight.
    pub busy: HashMap<WebhookId, usize>,
}

impl ClaimRequest {
    /// Up to `limit` deliveries due at `now`, leased for `lease`.
    pub fn new(now: DateTime<Utc>, lease: Duration, limit: usize) -> Self {
        Self {
            now,
            lease,
            limit,
            skip: Vec::new(),
            per_webhook: None,
            busy: HashMap::new(),
        }
    }

    /// Leave `webhooks` alone.
    #[must_use]
    pub fn skip(mut self, webhooks: Vec<WebhookId>) -> Self {
        self.skip = webhooks;
        self
    }

    /// At most `cap` deliveries of one webhook, counting the `busy` ones the caller has.
    /// Webhooks already at the cap are added to [`skip`](Self::skip).
    #[must_use]
    pub fn per_webhook(mut self, cap: usize, busy: HashMap<WebhookId, usize>) -> Self {
        for (webhook, n) in &busy {
            if *n >= cap && !self.skip.contains(webhook) {
                self.skip.push(*webhook);
            }
        }
        self.per_webhook = Some(cap);
        self.busy = busy;
        self
    }

    /// How many deliveries of `webhook` this request may still take.
    pub fn room(&self, webhook: &WebhookId) -> usize {
        if self.skip.contains(webhook) {
            return 0;
        }
        match self.per_webhook {
            Some(cap) => cap.saturating_sub(self.busy.get(webhook).copied().unwrap_or(0)),
            None => usize::MAX,
        }
    }

    /// How many due deliveries a queue should look at, oldest first, to fill this request:
    /// enough to pass over a few webhooks at their cap, bounded so a claim costs the same
    /// however long the queue is.
    pub fn window(&self) -> usize {
        self.limit.saturating_mul(4).max(64)
    }

    /// The claim itself: of `candidates` — due deliveries as `(webhook, item)`, oldest due
    /// first, usually the first [`window`](Self::window) of them — the items this request
    /// takes: none of a skipped webhook, at most [`room`](Self::room) of each, at most
    /// `limit` in all, in the candidates' order.
    pub fn select<T>(&self, candidates: impl IntoIterator<Item = (WebhookId, T)>) -> Vec<T> {
        let mut selection = self.selection();
        let mut chosen = Vec::new();
        for (webhook, item) in candidates {
            if selection.is_full() {
                break;
            }
            if selection.take(webhook) {
                chosen.push(item);
            }
        }
        chosen
    }

    /// [`select`](Self::select) one candidate at a time, for a queue that reads candidates
    /// from a cursor: it can stop reading once the selection [is full](Selection::is_full),
    /// and needs to decode only the candidates [taken](Selection::take).
    pub fn selection(&self) -> Selection<'_> {
        Selection {
            request: self,
            taken: HashMap::new(),
            count: 0,
        }
    }

    /// Whether `claims`, made for this request, gave some webhook all the room the request
    /// left it: the queue may then have more of that webhook's deliveries due.
    pub(crate) fn gave_a_webhook_all_its_room(&self, claims: &[Claim]) -> bool {
        let mut selection = self.selection();
        for claim in claims {
            selection.take(claim.delivery.webhook_id);
        }
        claims
            .iter()
            .any(|claim| selection.room(&claim.delivery.webhook_id) == 0)
    }

    /// The end of the lease.
    pub fn lease_until(&self) -> DateTime<Utc> {
        self.now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX)
    }
}

/// A [`ClaimRequest`] applied to candidates one at a time, in due order (see
/// [`ClaimRequest::selection`]).
///
/// ```
/// use std::time::Duration;
/// use dataops_webhooks::queue::ClaimRequest;
/// use dataops_webhooks::webhook::WebhookId;
///
/// let (a, b) = (WebhookId::new(), WebhookId::new());
/// // At most 4 in all, 2 per webhook; `a` already has one in flight.
/// let request = ClaimRequest::new(chrono::Utc::now(), Duration::from_secs(30), 4)
///     .per_webhook(2, [(a, 1)].into_iter().collect());
/// let mut selection = request.selection();
/// assert!(selection.take(a));
/// assert!(!selection.take(a)); // a is at its cap
/// assert!(selection.take(b) && selection.take(b) && !selection.take(b));
/// assert_eq!((selection.taken(&b), selection.room(&b)), (2, 0));
/// assert!(!selection.is_full()); // 3 of 4: a third webhook could still be taken
/// ```
#[derive(Debug)]
pub struct Selection<'a> {
    request: &'a ClaimRequest,
    taken: HashMap<WebhookId, usize>,
    count: usize,
}

impl Selection<'_> {
    /// Offers the next candidate, a delivery of `webhook`: `true` when the request takes it
    /// (and counts it), `false` when its webhook is skipped or has no room left, or the
    /// request is full.
    pub fn take(&mut self, webhook: WebhookId) -> bool {
        if self.is_full() {
            return false;
        }
        let count = self.taken.entry(webhook).or_insert(0);
        if *count < self.request.room(&webhook) {
            *count += 1;
            self.count += 1;
            true
        } else {
            false
        }
    }

    /// Whether the request has all it asked for ([`ClaimRequest::limit`]).
    pub fn is_full(&self) -> bool {
        self.count >= self.request.limit
    }

    /// How many deliveries of `webhook` were taken so far.
    pub fn taken(&self, webhook: &WebhookId) -> usize {
        self.taken.get(webhook).copied().unwrap_or(0)
    }

    /// How many more deliveries of `webhook` the request may take: its
    /// [room](ClaimRequest::room) less those taken, within what the limit leaves.
    pub fn room(&self, webhook: &WebhookId) -> usize {
        self.request
            .room(webhook)
            .saturating_sub(self.taken(webhook))
            .min(self.request.limit.saturating_sub(self.count))
    }
}

/// A leased delivery and what an attempt needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Claim {
    /// The delivery (its `next_attempt_at` is the lease's end).
    pub delivery: DeliveryRecord,
    /// The payload bytes.
    pub payload: Bytes,
    /// The claim, to settle it with.
    pub lease: LeaseId,
}

impl Claim {
    /// A claim of `delivery` under `lease`, with its event's payload.
    pub fn new(delivery: DeliveryRecord, payload: Bytes, lease: LeaseId) -> Self {
        Self {
            delivery,
            payload,
            lease,
        }
    }
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
    /// What kind of failure it was; `None` on success.
    pub error_kind: Option<AttemptErrorKind>,
    /// The error in words (for a transport error, its message without the kind); `None` on
    /// success.
    pub error: Option<String>,
}

impl AttemptLog {
    /// A successful attempt made at `attempted_at` that got `status` (no duration, no
    /// response yet: set them with [`duration`](Self::duration) and
    /// [`response`](Self::response); mark a failure with [`failed`](Self::failed)).
    /// For queue implementations reading their own records.
    pub fn new(attempted_at: DateTime<Utc>, status: Option<u16>) -> Self {
        Self {
            attempted_at,
            status,
            duration: Duration::ZERO,
            response: String::new(),
            error_kind: None,
            error: None,
        }
    }

    /// The same entry, with how long the attempt took.
    #[must_use]
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// The same entry, with the start of the response body.
    #[must_use]
    pub fn response(mut self, text: impl Into<String>) -> Self {
        self.response = text.into();
        self
    }

    /// The same entry, failed with an error of `kind` saying `message`.
    #[must_use]
    pub fn failed(mut self, kind: AttemptErrorKind, message: impl Into<String>) -> Self {
        self.error_kind = Some(kind);
        self.error = Some(message.into());
        self
    }

    /// Whether the endpoint answered 2xx.
    pub fn is_success(&self) -> bool {
        self.error_kind.is_none()
    }
}

/// What kind of failure an attempt was, as the delivery log stores it.
///
/// Stored as its [`as_str`](Self::as_str) name; a name this version does not know (written by
/// a newer one) reads as [`Other`](Self::Other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttemptErrorKind {
    /// The endpoint answered with a status other than 2xx.
    HttpStatus,
    /// No complete answer within the request timeout.
    Timeout,
    /// The connection could not be made, or was reset or closed before an answer.
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake failed.
    Tls,
    /// The address guard refused the destination.
    BlockedAddress,
    /// The answer's body was over the size limit.
    ResponseTooLarge,
    /// The transport could not make the request.
    InvalidRequest,
    /// The stored webhook cannot make a valid request (a header or secret the crate refuses):
    /// nothing was sent.
    Misconfigured,
    /// Not attempted: the webhook was deleted, or inactive, when the delivery was due.
    NotAttempted,
    /// Anything else.
    Other,
}

impl AttemptErrorKind {
    /// The stored name: `http_status`, `timeout`, `connect`, `dns`, `tls`,
    /// `blocked_address`, `response_too_large`, `invalid_request`, `misconfigured`,
    /// `not_attempted`, `other`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HttpStatus => "http_status",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::BlockedAddress => "blocked_address",
            Self::ResponseTooLarge => "response_too_large",
            Self::InvalidRequest => "invalid_request",
            Self::Misconfigured => "misconfigured",
            Self::NotAttempted => "not_attempted",
            Self::Other => "other",
        }
    }

    /// Every kind, in the order of this enum.
    pub const ALL: [AttemptErrorKind; 11] = [
        AttemptErrorKind::HttpStatus,
        AttemptErrorKind::Timeout,
        AttemptErrorKind::Connect,
        AttemptErrorKind::Dns,
        AttemptErrorKind::Tls,
        AttemptErrorKind::BlockedAddress,
        AttemptErrorKind::ResponseTooLarge,
        AttemptErrorKind::InvalidRequest,
        AttemptErrorKind::Misconfigured,
        AttemptErrorKind::NotAttempted,
        AttemptErrorKind::Other,
    ];

    /// The kind stored as `name`; an unknown name is [`Other`](Self::Other).
    pub fn from_name(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .unwrap_or(Self::Other)
    }
}

impl fmt::Display for AttemptErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
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

impl Finish {
    /// What settling this way does to a delivery: the one rule every backend persists
    /// (ours and a host's), so none has to work it out again.
    ///
    /// | finish | attempts | last error | status, due (only while the lease holds) | health |
    /// |---|---|---|---|---|
    /// | attempted, delivered | +1 | cleared | succeeded, none | healthy |
    /// | attempted, failed, retry at `t` | +1 | the attempt's error | pending, `t` | failing |
    /// | attempted, failed, no retry | +1 | the attempt's error | dead, none | failing |
    /// | released | — | kept | pending, `now` | — |
    /// | abandoned | — | the reason (only while the lease holds) | dead, none | — |
    ///
    /// An attempt counts, and sets the last error and the webhook's health, even when the
    /// lease was lost (the attempt was made); the status and due time are then left to the
    /// delivery's new holder.
    pub fn transition(&self, now: DateTime<Utc>) -> Transition {
        match self {
            Self::Attempted { attempt, next } => {
                let (status, due) = match next {
                    Next::Succeeded => (DeliveryStatus::Succeeded, None),
                    Next::RetryAt(at) => (DeliveryStatus::Pending, Some(*at)),
                    Next::Dead => (DeliveryStatus::Dead, None),
                };
                Transition {
                    attempted: true,
                    status,
                    due,
                    last_error: match &attempt.error {
                        Some(error) => LastError::Set(error.clone()),
                        None => LastError::Clear,
                    },
                    health: if attempt.is_success() {
                        Health::Healthy
                    } else {
                        Health::Failing
                    },
                }
            }
            Self::Released => Transition {
                attempted: false,
                status: DeliveryStatus::Pending,
                due: Some(now),
                last_error: LastError::Keep,
                health: Health::Unchanged,
            },
            Self::Abandoned { reason } => Transition {
                attempted: false,
                status: DeliveryStatus::Dead,
                due: None,
                last_error: LastError::Set(reason.clone()),
                health: Health::Unchanged,
            },
        }
    }

    /// The attempt this settle records, if one was made.
    pub fn attempt(&self) -> Option<&AttemptLog> {
        match self {
            Self::Attempted { attempt, .. } => Some(attempt),
            _ => None,
        }
    }
}

/// What a settle does to a delivery: made by [`Finish::transition`], persisted by a backend.
///
/// A backend applies it in one atomic step: when `attempted`, it records the attempt, counts
/// it and applies `health`; when `attempted` or the lease is held, it applies `last_error`;
/// when the lease is held, it sets `status` and `due` and ends the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// An attempt was made: count it.
    pub attempted: bool,
    /// The delivery's status, while the lease holds.
    pub status: DeliveryStatus,
    /// When it is next due, while the lease holds; `None` once settled.
    pub due: Option<DateTime<Utc>>,
    /// What becomes of the delivery's last error.
    pub last_error: LastError,
    /// What becomes of the webhook's health.
    pub health: Health,
}

/// What becomes of a delivery's last error on a settle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LastError {
    /// It stays as it is.
    Keep,
    /// It is removed (a success).
    Clear,
    /// It becomes this.
    Set(String),
}

impl LastError {
    /// The last error after this change, given the one before.
    pub fn apply(&self, before: Option<String>) -> Option<String> {
        match self {
            Self::Keep => before,
            Self::Clear => None,
            Self::Set(text) => Some(text.clone()),
        }
    }
}

/// What an attempt tells of its webhook's health (see
/// [`FinishReport::failing_since`] and [`FinishReport::recovered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// No attempt: nothing changes.
    Unchanged,
    /// It succeeded: the webhook is healthy; its failing-since time is cleared (it
    /// recovered if it had one).
    Healthy,
    /// It failed: the webhook is failing since now, unless it already was.
    Failing,
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

impl FinishReport {
    /// The report of a settle whose lease held, with no change of health.
    pub fn held() -> Self {
        Self::default()
    }

    /// The report of a settle whose lease was lost (or whose delivery is gone).
    pub fn lost() -> Self {
        Self {
            lease_lost: true,
            ..Self::default()
        }
    }

    /// The same report, with the webhook's health after the attempt: failing since `since`,
    /// or (`None`) healthy, `recovered` when it was failing before.
    #[must_use]
    pub fn health(mut self, failing_since: Option<DateTime<Utc>>, recovered: bool) -> Self {
        self.failing_since = failing_since;
        self.recovered = recovered;
        self
    }
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
    /// Only deliveries created before this time.
    pub until: Option<DateTime<Utc>>,
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
            until: None,
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

    /// Only deliveries created before `until`.
    #[must_use]
    pub fn until(mut self, until: DateTime<Utc>) -> Self {
        self.until = Some(until);
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
            && self.until.is_none_or(|t| record.created_at < t)
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

/// A claim of one new delivery to `webhook`, for unit tests.
#[cfg(test)]
pub(crate) fn claim_of(webhook: WebhookId) -> Claim {
    let record = DeliveryRecord::new(
        DeliveryId::new(),
        EventId::new(),
        OrgId::new("o"),
        EventType::DatasetComplete,
        webhook,
        "http://127.0.0.1/",
        Utc::now(),
    );
    Claim::new(record, Bytes::new(), LeaseId::random())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    fn attempt(error: Option<&str>) -> AttemptLog {
        let log = AttemptLog::new(at(0), Some(if error.is_some() { 500 } else { 204 }));
        match error {
            Some(message) => log.failed(AttemptErrorKind::HttpStatus, message),
            None => log,
        }
    }

    /// A claim gave a webhook all its room when it took as many of its deliveries as the
    /// cap left (counting those busy) or as the limit left; not when every webhook it took
    /// still had room.
    #[test]
    fn a_claim_gave_a_webhook_all_its_room_when_its_cap_or_the_limit_is_reached() {
        let (a, b) = (WebhookId::new(), WebhookId::new());
        let request = ClaimRequest::new(at(0), Duration::from_secs(30), 10)
            .per_webhook(3, [(a, 1)].into_iter().collect());
        let short = [claim_of(a), claim_of(b), claim_of(b)];
        assert!(
            !request.gave_a_webhook_all_its_room(&short),
            "a 1 of 2, b 2 of 3"
        );
        let capped = [claim_of(a), claim_of(a), claim_of(b)];
        assert!(request.gave_a_webhook_all_its_room(&capped), "a 2 of 2");
        assert!(!request.gave_a_webhook_all_its_room(&[]), "nothing taken");
        let uncapped = ClaimRequest::new(at(0), Duration::from_secs(30), 2);
        assert!(
            uncapped.gave_a_webhook_all_its_room(&[claim_of(a), claim_of(b)]),
            "the limit reached leaves no webhook room"
        );
        assert!(!uncapped.gave_a_webhook_all_its_room(&[claim_of(a)]));
    }

    #[test]
    fn every_row_of_the_transition_table() {
        let now = at(10);
        let delivered = Finish::Attempted {
            attempt: attempt(None),
            next: Next::Succeeded,
        };
        let t = delivered.transition(now);
        assert_eq!(
            (t.attempted, t.status, t.due, &t.last_error, t.health),
            (
                true,
                DeliveryStatus::Succeeded,
                None,
                &LastError::Clear,
                Health::Healthy
            )
        );
        let retry = Finish::Attempted {
            attempt: attempt(Some("boom")),
            next: Next::RetryAt(at(60)),
        };
        let t = retry.transition(now);
        assert_eq!(
            (t.attempted, t.status, t.due, &t.last_error, t.health),
            (
                true,
                DeliveryStatus::Pending,
                Some(at(60)),
                &LastError::Set("boom".into()),
                Health::Failing
            )
        );
        let dead = Finish::Attempted {
            attempt: attempt(Some("boom")),
            next: Next::Dead,
        };
        let t = dead.transition(now);
        assert_eq!(
            (t.status, t.due, t.health),
            (DeliveryStatus::Dead, None, Health::Failing)
        );
        let t = Finish::Released.transition(now);
        assert_eq!(
            (t.attempted, t.status, t.due, &t.last_error, t.health),
            (
                false,
                DeliveryStatus::Pending,
                Some(now),
                &LastError::Keep,
                Health::Unchanged
            )
        );
        let t = Finish::Abandoned {
            reason: "deleted".into(),
        }
        .transition(now);
        assert_eq!(
            (t.attempted, t.status, t.due, &t.last_error, t.health),
            (
                false,
                DeliveryStatus::Dead,
                None,
                &LastError::Set("deleted".into()),
                Health::Unchanged
            )
        );
    }

    #[test]
    fn error_kinds_read_back_by_name() {
        for name in [
            "http_status",
            "timeout",
            "connect",
            "dns",
            "tls",
            "blocked_address",
            "response_too_large",
            "invalid_request",
            "misconfigured",
            "not_attempted",
            "other",
        ] {
            assert_eq!(AttemptErrorKind::from_name(name).as_str(), name);
        }
        assert_eq!(
            AttemptErrorKind::from_name("from_the_future"),
            AttemptErrorKind::Other
        );
    }

    #[test]
    fn last_error_changes_apply() {
        let before = Some("old".to_owned());
        assert_eq!(LastError::Keep.apply(before.clone()), before);
        assert_eq!(LastError::Clear.apply(before.clone()), None);
        assert_eq!(
            LastError::Set("new".into()).apply(before),
            Some("new".into())
        );
    }
}
