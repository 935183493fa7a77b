//! [`MemoryQueue`]: the delivery queue in the process's memory.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::types::*;
use super::{page_limit, DeliveryQueue, QueueError};
use crate::webhook::{DeliveryId, EventId, OrgId, WebhookId};

/// A [`DeliveryQueue`] in memory: retries, leases and logs work as with any backend, but a
/// restart loses what is queued. The default of
/// [`DispatcherBuilder`](crate::DispatcherBuilder); use a durable backend where events must
/// survive the process.
///
/// Settled deliveries and their logs stay until the queue is dropped.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    events: HashMap<EventId, Arc<EventRow>>,
    deliveries: HashMap<DeliveryId, Row>,
    /// Pending deliveries by due time (a leased one is due when its lease ends).
    due: BTreeSet<(DateTime<Utc>, DeliveryId)>,
    by_webhook: BTreeSet<(WebhookId, DeliveryId)>,
    attempts: HashMap<DeliveryId, Vec<AttemptLog>>,
    idempotency: HashMap<(OrgId, String), EventId>,
    failing_since: HashMap<WebhookId, DateTime<Utc>>,
}

#[derive(Debug)]
struct EventRow {
    payload: Bytes,
    deliveries: Vec<DeliveryId>,
}

#[derive(Debug)]
struct Row {
    record: DeliveryRecord,
    lease: Option<LeaseId>,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock cannot leave a half-made change: every change below is
        // computed first and applied without fallible steps.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    /// Moves a delivery's due time (or takes it out of the due index when settled).
    fn set_due(&mut self, id: DeliveryId, due: Option<DateTime<Utc>>) {
        let Some(row) = self.deliveries.get_mut(&id) else {
            return;
        };
        if let Some(old) = row.record.next_attempt_at {
            self.due.remove(&(old, id));
        }
        row.record.next_attempt_at = due;
        if let Some(new) = due {
            self.due.insert((new, id));
        }
    }
}

#[async_trait]
impl DeliveryQueue for MemoryQueue {
    async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError> {
        let mut s = self.lock();
        if let Some(key) = &event.idempotency_key {
            if let Some(first) = s.idempotency.get(&(event.org.clone(), key.clone())) {
                let first = *first;
                let deliveries = s
                    .events
                    .get(&first)
                    .map(|e| e.deliveries.clone())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|id| s.deliveries.get(id).map(|r| r.record.clone()))
                    .collect();
                return Ok(Enqueued::Duplicate {
                    event_id: first,
                    deliveries,
                });
            }
        }
        if let Some(taken) = event
            .deliveries
            .iter()
            .find(|d| s.deliveries.contains_key(&d.id))
        {
            return Err(QueueError::Conflict(taken.id));
        }
        let ids = event.deliveries.iter().map(|d| d.id).collect();
        for new in &event.deliveries {
            let record = DeliveryRecord {
                id: new.id,
                event_id: event.id,
                org: event.org.clone(),
                event_type: event.event_type,
                webhook_id: new.webhook_id,
                url: new.url.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_at: None,
                last_error: None,
                created_at: event.created_at,
                updated_at: event.created_at,
            };
            s.deliveries.insert(
                new.id,
                Row {
                    record,
                    lease: None,
                },
            );
            s.set_due(new.id, Some(event.created_at));
            s.by_webhook.insert((new.webhook_id, new.id));
        }
        if let Some(key) = event.idempotency_key {
            s.idempotency.insert((event.org, key), event.id);
        }
        s.events.insert(
            event.id,
            Arc::new(EventRow {
                payload: event.payload,
                deliveries: ids,
            }),
        );
        Ok(Enqueued::New)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claim>, QueueError> {
        let mut s = self.lock();
        let due: Vec<DeliveryId> = s
            .due
            .iter()
            .take_while(|(at, _)| *at <= request.now)
            .filter(|(_, id)| {
                s.deliveries
                    .get(id)
                    .is_some_and(|r| !request.skip.contains(&r.record.webhook_id))
            })
            .take(request.limit)
            .map(|(_, id)| *id)
            .collect();
        let until = request.lease_until();
        let mut claims = Vec::with_capacity(due.len());
        for id in due {
            s.set_due(id, Some(until));
            let lease = LeaseId::random();
            let Some(row) = s.deliveries.get_mut(&id) else {
                continue;
            };
            row.lease = Some(lease);
            let record = row.record.clone();
            let Some(event) = s.events.get(&record.event_id) else {
                continue;
            };
            claims.push(Claim::new(record, event.payload.clone(), lease));
        }
        Ok(claims)
    }

    async fn finish(
        &self,
        delivery: &DeliveryId,
        lease: LeaseId,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<FinishReport, QueueError> {
        let mut s = self.lock();
        let Some(row) = s.deliveries.get(delivery) else {
            return Ok(FinishReport::lost());
        };
        let webhook = row.record.webhook_id;
        let held = row.lease == Some(lease) && row.record.status == DeliveryStatus::Pending;
        let change = finish.transition(now);
        let mut report = if held {
            FinishReport::held()
        } else {
            FinishReport::lost()
        };
        report = match change.health {
            Health::Unchanged => report,
            Health::Healthy => {
                let recovered = s.failing_since.remove(&webhook).is_some();
                report.health(None, recovered)
            }
            Health::Failing => {
                let since = *s.failing_since.entry(webhook).or_insert(now);
                report.health(Some(since), false)
            }
        };
        if let Finish::Attempted { attempt, .. } = finish {
            s.attempts.entry(*delivery).or_default().push(attempt);
        }
        if held {
            s.set_due(*delivery, change.due);
        }
        if let Some(row) = s.deliveries.get_mut(delivery) {
            if change.attempted {
                row.record.attempts = row.record.attempts.saturating_add(1);
            }
            if change.attempted || held {
                row.record.last_error = change.last_error.apply(row.record.last_error.take());
                row.record.updated_at = now;
            }
            if held {
                row.lease = None;
                row.record.status = change.status;
            }
        }
        Ok(report)
    }

    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, QueueError> {
        Ok(self.lock().deliveries.get(id).map(|r| r.record.clone()))
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, QueueError> {
        let s = self.lock();
        let limit = page_limit(query.limit);
        let low = (query.webhook_id, DeliveryId::from_uuid(uuid::Uuid::nil()));
        let high = (query.webhook_id, DeliveryId::from_uuid(uuid::Uuid::max()));
        let mut items: Vec<DeliveryRecord> = s
            .by_webhook
            .range(low..=high)
            .rev()
            .filter(|(_, id)| query.before.is_none_or(|b| *id < b))
            .filter_map(|(_, id)| s.deliveries.get(id))
            .map(|r| &r.record)
            .filter(|r| query.selects(r))
            .take(limit + 1)
            .cloned()
            .collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|r| r.id)
        } else {
            None
        };
        Ok(DeliveryPage::new(items, next))
    }

    async fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptLog>, QueueError> {
        Ok(self.lock().attempts.get(id).cloned().unwrap_or_default())
    }

    async fn redeliver(&self, id: &DeliveryId, now: DateTime<Utc>) -> Result<bool, QueueError> {
        let mut s = self.lock();
        if !s.deliveries.contains_key(id) {
            return Ok(false);
        }
        s.set_due(*id, Some(now));
        if let Some(row) = s.deliveries.get_mut(id) {
            row.lease = None;
            row.record.status = DeliveryStatus::Pending;
            row.record.updated_at = now;
        }
        Ok(true)
    }
}
