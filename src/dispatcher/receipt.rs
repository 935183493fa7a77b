//! The [`Receipt`] of an emit.

use crate::delivery::{DeliveryOutcome, DeliveryTicket};
use crate::webhook::{EventId, OrgId};
use crate::EventType;

/// What `emit` did with an event: one delivery per subscribed webhook, or none.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Receipt {
    /// The event's id.
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// The organization it was emitted for.
    pub org: OrgId,
    /// Its project.
    pub project: String,
    /// One per webhook that receives it; empty when none does.
    pub deliveries: Vec<DeliveryTicket>,
}

impl Receipt {
    /// A receipt for event `event_id` with these deliveries (empty: no webhook handles it).
    /// For test doubles; [`Dispatcher::emit`](crate::Dispatcher::emit) makes the real ones.
    pub fn new(
        event_id: EventId,
        event_type: EventType,
        org: OrgId,
        project: impl Into<String>,
        deliveries: Vec<DeliveryTicket>,
    ) -> Self {
        Self {
            event_id,
            event_type,
            org,
            project: project.into(),
            deliveries,
        }
    }

    /// Whether no webhook receives the event: the host can prompt its user to create one (the
    /// platform's "Export to labeling" does).
    pub fn is_unhandled(&self) -> bool {
        self.deliveries.is_empty()
    }

    /// Waits until every delivery has an outcome, and returns them in delivery order.
    pub async fn outcomes(&self) -> Vec<DeliveryOutcome> {
        let mut all = Vec::with_capacity(self.deliveries.len());
        for ticket in &self.deliveries {
            all.push(ticket.outcome().await);
        }
        all
    }
}
