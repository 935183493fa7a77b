//! One attempt of a delivery, from a claimed delivery to what happens next.
//!
//! Every request the crate sends — queued deliveries and test sends alike — goes through one
//! pipeline, and previews are built by the same code:
//!
//! | step | where |
//! |---|---|
//! | build the signed request for (webhook, keys, delivery id, event type, body) | [`request`](self) (`Preview` shows it without sending) |
//! | send it through the [`Transport`], timed | `Sender` (internal) |
//! | judge the answer: only a 2xx is a delivery | [`judge`], [`AttemptResult`] |
//! | decide what happens next, as a pure function | [`decide`], [`Decision`], by the [`retry`] policy |
//! | the attempt as the delivery log keeps it | [`AttemptLog::of`](crate::queue::AttemptLog::of) |
//!
//! The worker wires these together (load → attempt → settle → tell); storage persists the
//! result ([`Finish::transition`](crate::queue::Finish::transition)).

mod decide;
mod log;
mod outcome;
mod request;
pub mod retry;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::clock::now;
use crate::queue::AttemptLog;
use crate::transport::{Transport, TransportRequest};
use crate::webhook::{DeliveryId, IdSet, SigningKeys, Webhook, WebhookId};
use crate::EventType;

pub use decide::{decide, Decision};
pub(crate) use outcome::Waiters;
pub use outcome::{judge, AttemptResult, DeliveryOutcome, DeliveryTicket};
pub(crate) use request::headers;
pub use request::{Preview, RequestError};

/// Signs and sends attempts through a [`Transport`]: the one way a request leaves the crate.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    transport: Arc<dyn Transport>,
    request_timeout: Duration,
    /// Webhooks already warned about for being sent unsigned (bounded: see `warn_unsigned`).
    unsigned: Arc<Mutex<IdSet<WebhookId>>>,
}

/// How many unsigned webhooks a sender remembers having warned about; past that it starts
/// over (and warns again), so the set never grows without bound.
const UNSIGNED_REMEMBERED: usize = 4_096;

/// One attempt that was made (or could not be built), judged.
#[derive(Debug)]
pub(crate) struct Sent {
    /// When it started.
    pub(crate) attempted_at: DateTime<Utc>,
    /// How it ended.
    pub(crate) result: AttemptResult,
    /// The endpoint's `Retry-After`, read from a non-2xx answer.
    pub(crate) retry_after: Option<Duration>,
}

impl Sender {
    pub(crate) fn new(transport: Arc<dyn Transport>, request_timeout: Duration) -> Self {
        Self {
            transport,
            request_timeout,
            unsigned: Arc::default(),
        }
    }

    /// Warns, once per webhook, that it is sent requests without a signature (it has no
    /// secret of its own and its organization has none).
    fn warn_unsigned(&self, webhook: &Webhook) {
        let mut warned = self.unsigned.lock().unwrap_or_else(PoisonError::into_inner);
        if warned.len() >= UNSIGNED_REMEMBERED {
            warned.clear();
        }
        if warned.insert(webhook.id) {
            tracing::warn!(
                target: "dataops_webhooks",
                webhook_id = %webhook.id,
                org = %webhook.org,
                "webhook sent unsigned: neither it nor its organization has a secret; \
                 create one with Webhooks::create_org_secret so receivers can verify requests"
            );
        }
    }

    /// How long one request may take.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Signs and sends one attempt of delivery `delivery_id` to `webhook`, and judges it.
    pub(crate) async fn send(
        &self,
        webhook: &Webhook,
        org_keys: Option<&SigningKeys>,
        delivery_id: DeliveryId,
        event_type: EventType,
        body: Bytes,
    ) -> Sent {
        let attempted_at = now();
        if request::secrets_for(webhook, org_keys, attempted_at).is_none() {
            self.warn_unsigned(webhook);
        }
        let headers = match headers(
            webhook,
            org_keys,
            delivery_id,
            event_type,
            attempted_at,
            &body,
        ) {
            Ok(headers) => headers,
            Err(error) => {
                return Sent {
                    attempted_at,
                    result: AttemptResult::Misconfigured {
                        message: error.to_string(),
                    },
                    retry_after: None,
                }
            }
        };
        let request =
            TransportRequest::new(webhook.url.clone(), headers, body, self.request_timeout);
        let started = Instant::now();
        let response = self
            .transport
            .send(request)
            .await
            .map_err(|error| match error.duration() {
                Some(_) => error,
                None => error.with_duration(started.elapsed()),
            });
        let retry_after = match &response {
            Ok(r) if !r.status.is_success() => r
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, Utc::now())),
            _ => None,
        };
        Sent {
            attempted_at,
            result: judge(response),
            retry_after,
        }
    }
}

impl Sent {
    /// The attempt as the delivery log keeps it.
    pub(crate) fn log(&self) -> AttemptLog {
        AttemptLog::of(&self.result, self.attempted_at)
    }

    /// The outcome a ticket or a test send reports.
    pub(crate) fn outcome(
        self,
        delivery_id: DeliveryId,
        webhook: &Webhook,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> DeliveryOutcome {
        DeliveryOutcome {
            delivery_id,
            webhook_id: webhook.id,
            url: webhook.url.clone(),
            attempted_at: self.attempted_at,
            result: self.result,
            next_attempt_at,
        }
    }
}
