//! Events written straight to a queue, for the backend tests.

use bytes::Bytes;
use chrono::Utc;
use dataops_webhooks::queue::{NewDelivery, NewEvent};
use dataops_webhooks::webhook::{DeliveryId, OrgId, WebhookId};
use dataops_webhooks::EventType;

/// Six events with one delivery each; with `taken`, the fourth reuses that delivery id.
pub(crate) fn six_events(taken: Option<DeliveryId>) -> Vec<NewEvent> {
    (0..6)
        .map(|i| {
            let mut event = NewEvent::new(
                OrgId::new("acme"),
                "p",
                EventType::DatasetComplete,
                Bytes::from_static(br#"{"event":"dataset-complete"}"#),
                Utc::now(),
            );
            let id = taken.filter(|_| i == 3).unwrap_or_default();
            event.deliveries = vec![NewDelivery::new(id, WebhookId::new(), "http://h/")];
            event
        })
        .collect()
}
