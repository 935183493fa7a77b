//! What became of an attempt: [`AttemptResult`] (judged by [`judge`]), the
//! [`DeliveryOutcome`] a caller sees, and the tickets that wait for one.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::StatusCode;
use tokio::sync::Notify;
use url::Url;

use crate::transport::{TransportError, TransportResponse};
use crate::webhook::{DeliveryId, IdMap, WebhookId};

/// How one attempt ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AttemptResult {
    /// The endpoint answered 2xx.
    Delivered {
        /// The status.
        status: StatusCode,
        /// The start of the response body.
        body: String,
        /// How long the exchange took.
        duration: Duration,
    },
    /// The endpoint answered, with anything but 2xx (3xx included: redirects are not
    /// followed).
    Rejected {
        /// The status.
        status: StatusCode,
        /// The start of the response body: usually the endpoint's error message.
        body: String,
        /// How long the exchange took.
        duration: Duration,
    },
    /// No answer: timeout, refused connection, DNS, TLS, blocked address, ...
    Failed(TransportError),
    /// Nothing was sent: the stored webhook cannot make a valid request (a header or
    /// secret the crate's validation refuses). Fix it with
    /// [`Webhooks::update`](crate::Webhooks::update); retrying cannot help.
    Misconfigured {
        /// What is wrong, for the user.
        message: String,
    },
    /// Nothing was sent: the webhook was deleted, or inactive, when the delivery was due.
    NotAttempted {
        /// Why, for the user.
        reason: String,
    },
}

/// Judges a transport's result: only a 2xx is a delivery.
pub fn judge(result: Result<TransportResponse, TransportError>) -> AttemptResult {
    match result {
        Ok(response) if response.status.is_success() => AttemptResult::Delivered {
            status: response.status,
            body: response.body_text(),
            duration: response.duration,
        },
        Ok(response) => AttemptResult::Rejected {
            status: response.status,
            body: response.body_text(),
            duration: response.duration,
        },
        Err(error) => AttemptResult::Failed(error),
    }
}

/// The outcome of one delivery.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeliveryOutcome {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The webhook it went to.
    pub webhook_id: WebhookId,
    /// The URL it went to.
    pub url: Url,
    /// When the attempt started.
    pub attempted_at: DateTime<Utc>,
    /// How it ended.
    pub result: AttemptResult,
    /// When the next attempt is due, if this one failed and the delivery will be retried.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl DeliveryOutcome {
    /// The outcome of an attempt of `delivery_id` to `webhook_id` at `url`, made at
    /// `attempted_at`, with no further attempt due (set one with
    /// [`next_attempt_at`](Self::next_attempt_at)). For test doubles and host transports.
    pub fn new(
        delivery_id: DeliveryId,
        webhook_id: WebhookId,
        url: Url,
        attempted_at: DateTime<Utc>,
        result: AttemptResult,
    ) -> Self {
        Self {
            delivery_id,
            webhook_id,
            url,
            attempted_at,
            result,
            next_attempt_at: None,
        }
    }

    /// The same outcome, with the next attempt due at `at`.
    #[must_use]
    pub fn next_attempt_at(mut self, at: DateTime<Utc>) -> Self {
        self.next_attempt_at = Some(at);
        self
    }

    /// Whether the endpoint accepted it (2xx).
    pub fn is_success(&self) -> bool {
        matches!(self.result, AttemptResult::Delivered { .. })
    }

    /// The endpoint's status, when it answered (also when the exchange failed after the
    /// status line, as with a body over the size limit).
    pub fn status(&self) -> Option<StatusCode> {
        match &self.result {
            AttemptResult::Delivered { status, .. } | AttemptResult::Rejected { status, .. } => {
                Some(*status)
            }
            AttemptResult::Failed(error) => error.status(),
            AttemptResult::Misconfigured { .. } | AttemptResult::NotAttempted { .. } => None,
        }
    }

    /// A message for the user when it failed, such as "the endpoint answered 500 Internal
    /// Server Error: database is down" or "timeout error: ..."; `None` on success. This is
    /// what the "Export to labeling" dialog shows.
    pub fn error_message(&self) -> Option<String> {
        match &self.result {
            AttemptResult::Delivered { .. } => None,
            AttemptResult::Rejected { status, body, .. } if body.trim().is_empty() => {
                Some(format!("the endpoint answered {status}"))
            }
            AttemptResult::Rejected { status, body, .. } => {
                Some(format!("the endpoint answered {status}: {}", body.trim()))
            }
            AttemptResult::Failed(error) => Some(error.to_string()),
            AttemptResult::Misconfigured { message } => {
                Some(format!("the request could not be built: {message}"))
            }
            AttemptResult::NotAttempted { reason } => Some(reason.clone()),
        }
    }
}

/// One delivery of an emitted event, and a way to wait for the outcome of its first attempt
/// (made by a worker started from the same dispatcher, in this process).
#[derive(Clone)]
#[non_exhaustive]
pub struct DeliveryTicket {
    /// The delivery's id (`webhook-id`, `X-Aquarium-Delivery`).
    pub delivery_id: DeliveryId,
    /// The webhook.
    pub webhook_id: WebhookId,
    /// Its URL.
    pub url: Url,
    slot: Arc<OutcomeSlot>,
}

/// Where a worker leaves a delivery's first outcome for every ticket waiting on it.
#[derive(Default)]
pub(crate) struct OutcomeSlot {
    outcome: OnceLock<DeliveryOutcome>,
    ready: Notify,
}

impl OutcomeSlot {
    fn fill(&self, outcome: DeliveryOutcome) {
        if self.outcome.set(outcome).is_ok() {
            self.ready.notify_waiters();
        }
    }
}

impl DeliveryTicket {
    /// A ticket whose outcome is already known: what a test double's receipt holds.
    pub fn resolved(outcome: DeliveryOutcome) -> Self {
        let slot = Arc::new(OutcomeSlot::default());
        let ticket = Self {
            delivery_id: outcome.delivery_id,
            webhook_id: outcome.webhook_id,
            url: outcome.url.clone(),
            slot: slot.clone(),
        };
        slot.fill(outcome);
        ticket
    }

    /// Waits for the outcome of the delivery's first attempt from now: success, or the
    /// failure (with [`next_attempt_at`](DeliveryOutcome::next_attempt_at) when it will be
    /// retried).
    ///
    /// The outcome comes from a worker of this process. When the deliveries are worked by
    /// other processes only, it never comes: bound the wait with `tokio::time::timeout`, or
    /// read the delivery log ([`Deliveries`](crate::queue::Deliveries)) instead.
    pub async fn outcome(&self) -> DeliveryOutcome {
        loop {
            // Registered before the check, so a result set in between still wakes it.
            let ready = self.slot.ready.notified();
            if let Some(done) = self.slot.outcome.get() {
                return done.clone();
            }
            ready.await;
        }
    }

    /// The outcome if it is already known.
    pub fn try_outcome(&self) -> Option<DeliveryOutcome> {
        self.slot.outcome.get().cloned()
    }
}

/// The tickets waiting on deliveries, by delivery id. Entries are weak: a ticket nobody
/// holds any more costs nothing but its entry, which is pruned as the map grows.
#[derive(Default)]
pub(crate) struct Waiters {
    map: Mutex<WaiterMap>,
}

#[derive(Default)]
struct WaiterMap {
    slots: IdMap<DeliveryId, Weak<OutcomeSlot>>,
    prune_at: usize,
}

impl Waiters {
    /// A ticket for a delivery, registered to receive its outcome.
    pub(crate) fn ticket(
        &self,
        delivery_id: DeliveryId,
        webhook_id: WebhookId,
        url: Url,
    ) -> DeliveryTicket {
        let slot = Arc::new(OutcomeSlot::default());
        let mut map = self.lock();
        map.slots.insert(delivery_id, Arc::downgrade(&slot));
        if map.slots.len() > map.prune_at {
            map.slots.retain(|_, slot| slot.strong_count() > 0);
            map.prune_at = (map.slots.len() * 2).max(1024);
        }
        DeliveryTicket {
            delivery_id,
            webhook_id,
            url,
            slot,
        }
    }

    /// Hands an outcome to the tickets waiting on its delivery, if any.
    pub(crate) fn fulfil(&self, outcome: DeliveryOutcome) {
        let slot = self.lock().slots.remove(&outcome.delivery_id);
        if let Some(slot) = slot.and_then(|s| s.upgrade()) {
            slot.fill(outcome);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WaiterMap> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for Waiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiters")
            .field("waiting", &self.lock().slots.len())
            .finish()
    }
}

impl fmt::Debug for DeliveryTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryTicket")
            .field("delivery_id", &self.delivery_id)
            .field("webhook_id", &self.webhook_id)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportErrorKind;
    use bytes::Bytes;
    use http::HeaderMap;

    #[tokio::test]
    async fn a_ticket_gets_the_outcome_fulfilled_for_its_delivery() {
        let url = Url::parse("https://hooks.example.com/").expect("url");
        let waiters = Waiters::default();
        let ticket = waiters.ticket(DeliveryId::new(), WebhookId::new(), url.clone());
        let other = waiters.ticket(DeliveryId::new(), WebhookId::new(), url.clone());
        let waiting = tokio::spawn({
            let ticket = ticket.clone();
            async move { ticket.outcome().await }
        });
        tokio::task::yield_now().await;
        waiters.fulfil(DeliveryOutcome {
            delivery_id: ticket.delivery_id,
            webhook_id: ticket.webhook_id,
            url: url.clone(),
            attempted_at: Utc::now(),
            result: judge(response(204, "")),
            next_attempt_at: None,
        });
        assert!(waiting.await.expect("join").is_success());
        assert!(
            ticket.outcome().await.is_success(),
            "a later wait sees it too"
        );
        assert!(other.try_outcome().is_none(), "only its own delivery");
        // A second outcome (a later retry) does not replace the first.
        waiters.fulfil(DeliveryOutcome {
            delivery_id: ticket.delivery_id,
            webhook_id: ticket.webhook_id,
            url,
            attempted_at: Utc::now(),
            result: judge(response(500, "")),
            next_attempt_at: None,
        });
        assert!(ticket.try_outcome().is_some_and(|o| o.is_success()));
    }

    fn response(status: u16, body: &'static str) -> Result<TransportResponse, TransportError> {
        Ok(TransportResponse::new(
            StatusCode::from_u16(status).expect("status"),
            HeaderMap::new(),
            Bytes::from_static(body.as_bytes()),
            Duration::from_millis(3),
        ))
    }

    #[test]
    fn only_2xx_is_delivered() {
        assert!(matches!(
            judge(response(200, "")),
            AttemptResult::Delivered { .. }
        ));
        assert!(matches!(
            judge(response(204, "")),
            AttemptResult::Delivered { .. }
        ));
        for status in [301, 302, 400, 404, 410, 429, 500, 503] {
            assert!(
                matches!(judge(response(status, "")), AttemptResult::Rejected { .. }),
                "{status}"
            );
        }
        let failed = judge(Err(TransportError::new(
            TransportErrorKind::Timeout,
            "slow",
        )));
        assert!(matches!(failed, AttemptResult::Failed(e) if e.is_timeout()));
    }
}
