//! One attempt of a claimed delivery, from loading its webhook to settling it.

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::{settle_span, BackendOperation, EndpointSlot, HostEvent, Worker};
use crate::delivery::{decide, AttemptResult, DeliveryOutcome, Sent};
use crate::queue::{failing_too_long, AttemptLog, Claim, Finish, Next};
use crate::store::StoreError;
use crate::telemetry::{self, Outcome};
use crate::webhook::{RateLimit, Webhook, WebhookStatus};

/// An attempt whose endpoint has answered, to be recorded.
pub(super) struct Answered {
    claim: Claim,
    webhook: Webhook,
    sent: Sent,
}

impl Worker {
    /// Makes the request of one claimed delivery: loads its webhook, waits for its turn under
    /// the webhook's rate limit, and sends. Returns what the endpoint answered, with `slot`
    /// for the caller to give back at once, or `None` when there is nothing to record: the
    /// delivery could not be attempted and is settled already, or a backend error was
    /// reported as a [`HostEvent`] and the claim's lease runs out, so the delivery is tried
    /// again then (a store that keeps failing is retried at the lease's pace, not in a loop).
    pub(super) async fn request(
        &self,
        claim: Claim,
        slot: EndpointSlot,
    ) -> Option<(Answered, EndpointSlot)> {
        let delivery = &claim.delivery;
        let found = match self
            .parts
            .store
            .webhook_with_keys(&delivery.webhook_id)
            .await
        {
            Ok(found) => found,
            Err(error) => {
                self.backend_failed(BackendOperation::LoadWebhook, Some(delivery.id), error);
                return None;
            }
        };
        let (webhook, keys) = match found {
            Some((w, keys)) if w.status.is_active() => (w, keys),
            other => {
                let reason = match other.map(|(w, _)| w.status) {
                    None => "the webhook was deleted before the delivery was due".to_owned(),
                    Some(status) => format!(
                        "the webhook was {} when the delivery was due; redeliver it after reactivating",
                        describe(&status)
                    ),
                };
                self.abandon(&claim, reason).await;
                return None;
            }
        };
        if let Some(limit) = webhook.rate_limit {
            if !self.wait_for_turn(&claim, &webhook, limit).await {
                return None;
            }
        }
        tracing::Span::current().record("url_host", webhook.url.host_str().unwrap_or_default());
        let sent = self
            .parts
            .sender
            .send(
                &webhook,
                keys.as_ref(),
                delivery.id,
                delivery.event_type,
                claim.payload.clone(),
            )
            .await;
        let answered = Answered {
            claim,
            webhook,
            sent,
        };
        Some((answered, slot))
    }

    /// Records what the endpoint answered: decides by the retry policy, settles the claim,
    /// tells the emit's ticket, and keeps the webhook's health. Never fails: a backend error
    /// is reported as a [`HostEvent`], and the delivery is attempted again when its lease
    /// runs out (at least once, never lost).
    pub(super) async fn record(&self, answered: Answered) {
        let Answered {
            claim,
            webhook,
            sent,
        } = answered;
        let delivery = &claim.delivery;
        let span = tracing::Span::current();
        let now = Utc::now();
        let decision = decide(
            &sent.result,
            sent.retry_after,
            delivery.attempts.saturating_add(1),
            &self.options.retry,
            now,
            crate::random::unit(),
        );
        let log = sent.log();
        if delivery.attempts == 0 {
            if let Ok(lag) = (sent.attempted_at - delivery.created_at).to_std() {
                telemetry::first_attempt_lag(delivery.event_type, lag);
            }
        }
        self.observe(&claim, &log, decision.next, &span);
        let last_error = log.error.clone().unwrap_or_default();
        let finish = Finish::Attempted {
            attempt: log,
            next: decision.next,
        };
        let report = match self
            .parts
            .queue
            .finish(&delivery.id, claim.lease, finish, now)
            .instrument(settle_span(delivery.id, "attempted"))
            .await
        {
            Ok(report) => report,
            Err(error) => {
                // The attempt was made but not recorded; the lease expires and the delivery
                // is attempted again (at least once, never lost).
                return self.backend_failed(BackendOperation::Settle, Some(delivery.id), error);
            }
        };
        self.parts
            .waiters
            .fulfil(sent.outcome(delivery.id, &webhook, decision.next_attempt_at()));
        if report.lease_lost {
            return;
        }
        if decision.next == Next::Dead {
            tracing::warn!(
                target: "dataops_webhooks",
                delivery_id = %delivery.id,
                webhook_id = %webhook.id,
                event_type = delivery.event_type.as_str(),
                attempts = delivery.attempts.saturating_add(1),
                last_error = %last_error,
                "delivery is dead: its attempts are spent or the endpoint is gone; redeliver it once the endpoint is fixed"
            );
            self.tell(HostEvent::DeliveryExhausted {
                delivery_id: delivery.id,
                webhook_id: webhook.id,
                event_type: delivery.event_type,
                last_error: last_error.clone(),
            });
        }
        if decision.disable_webhook {
            let reason = "the endpoint answered 410 Gone: it asked for no more deliveries".into();
            self.disable(&webhook, reason, "gone", now).await;
        } else if failing_too_long(
            report.failing_since,
            webhook.updated_at,
            chrono::Duration::from_std(self.options.health_window).unwrap_or(chrono::Duration::MAX),
            now,
        ) {
            let days = self.options.health_window.as_secs_f64() / 86_400.0;
            let reason =
                format!("every delivery failed for {days:.1} days; the last error: {last_error}");
            self.disable(&webhook, reason, "failing", now).await;
        }
        if report.recovered {
            tracing::info!(target: "dataops_webhooks", webhook_id = %webhook.id,
                "webhook recovered: its deliveries succeed again");
            self.tell(HostEvent::WebhookRecovered {
                webhook_id: webhook.id,
            });
        }
    }

    /// Waits for this request's turn under the webhook's rate limit. A turn further away than
    /// the claim's lease allows (the request must fit in it too) is given back: the claim
    /// returns to the queue and the webhook is left out of claims until then. `false` when
    /// the claim was returned.
    async fn wait_for_turn(&self, claim: &Claim, webhook: &Webhook, limit: RateLimit) -> bool {
        let now = std::time::Instant::now();
        let wait = self.limiter.reserve(webhook.id, limit, now);
        if wait.is_zero() {
            return true;
        }
        let lease_left = claim
            .delivery
            .next_attempt_at
            .and_then(|end| (end - Utc::now()).to_std().ok())
            .unwrap_or_default();
        if wait > lease_left.saturating_sub(self.parts.sender.request_timeout()) {
            self.limiter.give_back(webhook.id);
            let day = std::time::Duration::from_secs(86_400);
            let until = now.checked_add(wait.min(day)).unwrap_or(now);
            self.limiter.pause(webhook.id, until);
            self.release(claim.delivery.id, claim.lease).await;
            return false;
        }
        tokio::time::sleep(wait).await;
        true
    }

    /// Records an attempt in the span, a debug event and the metrics.
    fn observe(&self, claim: &Claim, log: &AttemptLog, next: Next, span: &tracing::Span) {
        let outcome = match next {
            Next::Succeeded => Outcome::Delivered,
            Next::RetryAt(at) => {
                span.record("retry_at", tracing::field::display(at));
                Outcome::Retried
            }
            Next::Dead => Outcome::Dead,
        };
        span.record("decision", outcome.as_str());
        if let Some(status) = log.status {
            span.record("status", status);
        }
        let millis = u64::try_from(log.duration.as_millis()).unwrap_or(u64::MAX);
        span.record("duration_ms", millis);
        let kind = log.error_kind.map(|k| k.as_str());
        if let Some(kind) = kind {
            span.record("error_kind", kind);
        }
        tracing::debug!(
            target: "dataops_webhooks",
            status = log.status,
            duration_ms = millis,
            error_kind = kind,
            outcome = outcome.as_str(),
            "delivery attempt"
        );
        let webhook = &claim.delivery.webhook_id;
        telemetry::attempted(
            claim.delivery.event_type,
            outcome,
            log.error_kind,
            Some(log.duration),
            self.options.metrics_per_webhook.then_some(webhook),
        );
    }

    /// Ends a delivery that cannot be attempted, and tells its ticket why.
    async fn abandon(&self, claim: &Claim, reason: String) {
        let span = tracing::Span::current();
        span.record("decision", Outcome::Abandoned.as_str());
        telemetry::attempted(
            claim.delivery.event_type,
            Outcome::Abandoned,
            None,
            None,
            self.options
                .metrics_per_webhook
                .then_some(&claim.delivery.webhook_id),
        );
        if let Ok(url) = url::Url::parse(&claim.delivery.url) {
            self.parts.waiters.fulfil(DeliveryOutcome::new(
                claim.delivery.id,
                claim.delivery.webhook_id,
                url,
                Utc::now(),
                AttemptResult::NotAttempted {
                    reason: reason.clone(),
                },
            ));
        }
        let finish = Finish::Abandoned {
            reason: reason.clone(),
        };
        match self
            .parts
            .queue
            .finish(&claim.delivery.id, claim.lease, finish, Utc::now())
            .instrument(settle_span(claim.delivery.id, "abandoned"))
            .await
        {
            Ok(report) if !report.lease_lost => {
                tracing::warn!(
                    target: "dataops_webhooks",
                    delivery_id = %claim.delivery.id,
                    webhook_id = %claim.delivery.webhook_id,
                    event_type = claim.delivery.event_type.as_str(),
                    reason = %reason,
                    "delivery is dead without an attempt; redeliver it after reactivating the webhook"
                );
                self.tell(HostEvent::DeliveryExhausted {
                    delivery_id: claim.delivery.id,
                    webhook_id: claim.delivery.webhook_id,
                    event_type: claim.delivery.event_type,
                    last_error: reason,
                });
            }
            Ok(_) => {}
            Err(error) => {
                self.backend_failed(BackendOperation::Settle, Some(claim.delivery.id), error);
            }
        }
    }

    /// Disables the webhook this attempt was made with, and says so once.
    ///
    /// The write is conditional on the webhook being as the attempt read it: when it changed
    /// meanwhile (a concurrent attempt disabled it, a user edited, deleted or re-enabled it),
    /// this decision was made on an outdated configuration and is dropped; the next failure
    /// decides again. So concurrent failures disable a webhook once, and a worker never undoes
    /// a user's change.
    async fn disable(&self, seen: &Webhook, reason: String, why: &'static str, now: DateTime<Utc>) {
        let mut webhook = seen.clone();
        webhook.status = WebhookStatus::Disabled {
            reason: reason.clone(),
            since: now,
        };
        webhook.updated_at = now;
        webhook.revision = seen.revision.saturating_add(1);
        match self
            .parts
            .store
            .update_webhook(&webhook, seen.revision)
            .await
        {
            Ok(()) => {
                tracing::Span::current().record("disabled", true);
                telemetry::disabled(why);
                tracing::warn!(
                    target: "dataops_webhooks",
                    webhook_id = %seen.id,
                    reason = %reason,
                    "webhook disabled; re-enable it with Webhooks::reactivate once the endpoint is fixed"
                );
                self.tell(HostEvent::WebhookDisabled {
                    webhook_id: seen.id,
                    reason,
                });
            }
            Err(StoreError::Stale(_) | StoreError::NotFound(_)) => {}
            Err(error) => {
                self.backend_failed(BackendOperation::DisableWebhook, None, error);
            }
        }
    }
}

fn describe(status: &WebhookStatus) -> String {
    match status {
        WebhookStatus::Active => "active".into(),
        WebhookStatus::Inactive => "inactive".into(),
        WebhookStatus::Disabled { reason, .. } => format!("disabled ({reason})"),
    }
}
