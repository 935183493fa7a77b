//! A `DeliveryQueue` written from scratch outside the crate, as a host would write one over
//! its own storage (here a `Mutex<HashMap>`): it uses only the public API, passes the whole
//! conformance suite, and delivers end to end.

#[path = "common/flaky.rs"]
mod flaky;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use dataops_webhooks::event::{Dataset, Event};
use dataops_webhooks::queue::{
    AttemptLog, Claim, ClaimRequest, DeliveryPage, DeliveryQuery, DeliveryQueue, DeliveryRecord,
    DeliveryStatus, Enqueued, Finish, FinishReport, Health, LeaseId, NewEvent, QueueError,
    MAX_DELIVERY_PAGE,
};
use dataops_webhooks::testing::Harness;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{DeliveryId, EventId, NewWebhook, OrgId, Scope, WebhookId};
use dataops_webhooks::{Dispatcher, WebhookDispatcher, WorkerOptions};

/// The host's queue: every table a map behind one lock.
#[derive(Debug, Default)]
struct HostQueue {
    tables: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    payloads: HashMap<EventId, Bytes>,
    deliveries: HashMap<DeliveryId, (DeliveryRecord, Option<LeaseId>)>,
    by_event: HashMap<EventId, Vec<DeliveryId>>,
    keys: HashMap<(OrgId, String), EventId>,
    attempts: HashMap<DeliveryId, Vec<AttemptLog>>,
    failing_since: HashMap<WebhookId, DateTime<Utc>>,
}

impl HostQueue {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl DeliveryQueue for HostQueue {
    async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError> {
        let mut t = self.tables();
        if let Some(key) = &event.idempotency_key {
            if let Some(first) = t.keys.get(&(event.org.clone(), key.clone())).copied() {
                let deliveries = t.by_event[&first]
                    .iter()
                    .map(|id| t.deliveries[id].0.clone())
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
            .find(|d| t.deliveries.contains_key(&d.id))
        {
            return Err(QueueError::Conflict(taken.id));
        }
        for new in &event.deliveries {
            let record = DeliveryRecord::new(
                new.id,
                event.id,
                event.org.clone(),
                event.event_type,
                new.webhook_id,
                new.url.clone(),
                event.created_at,
            );
            t.deliveries.insert(new.id, (record, None));
        }
        t.by_event
            .insert(event.id, event.deliveries.iter().map(|d| d.id).collect());
        t.payloads.insert(event.id, event.payload.clone());
        if let Some(key) = event.idempotency_key {
            t.keys.insert((event.org, key), event.id);
        }
        Ok(Enqueued::New)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claim>, QueueError> {
        let mut t = self.tables();
        let mut due: Vec<(DateTime<Utc>, DeliveryId, WebhookId)> = t
            .deliveries
            .values()
            .filter(|(r, _)| r.status == DeliveryStatus::Pending)
            .filter_map(|(r, _)| r.next_attempt_at.map(|at| (at, r.id, r.webhook_id)))
            .filter(|(at, _, _)| *at <= request.now)
            .collect();
        due.sort();
        // The request applies its own rules (skip, per-webhook room, limit) to the due list.
        let chosen = request.select(due.into_iter().map(|(_, id, webhook)| (webhook, id)));
        let lease = LeaseId::random();
        let mut claims = Vec::new();
        for id in chosen {
            let Some((record, held)) = t.deliveries.get_mut(&id) else {
                continue;
            };
            record.next_attempt_at = Some(request.lease_until());
            *held = Some(lease);
            let record = record.clone();
            let payload = t.payloads[&record.event_id].clone();
            claims.push(Claim::new(record, payload, lease));
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
        let mut t = self.tables();
        let Some((record, held_by)) = t.deliveries.get(delivery) else {
            return Ok(FinishReport::lost());
        };
        let webhook = record.webhook_id;
        let held = *held_by == Some(lease) && record.status == DeliveryStatus::Pending;
        // The crate says what the settle does; this queue only stores it.
        let change = finish.transition(now);
        let report = if held {
            FinishReport::held()
        } else {
            FinishReport::lost()
        };
        let report = match change.health {
            Health::Healthy => {
                let recovered = t.failing_since.remove(&webhook).is_some();
                report.health(None, recovered)
            }
            Health::Failing => {
                let since = *t.failing_since.entry(webhook).or_insert(now);
                report.health(Some(since), false)
            }
            _ => report,
        };
        if let Some(attempt) = finish.attempt() {
            t.attempts
                .entry(*delivery)
                .or_default()
                .push(attempt.clone());
        }
        if let Some((record, held_by)) = t.deliveries.get_mut(delivery) {
            if change.attempted {
                record.attempts += 1;
            }
            if change.attempted || held {
                record.last_error = change.last_error.apply(record.last_error.take());
                record.updated_at = now;
            }
            if held {
                record.status = change.status;
                record.next_attempt_at = change.due;
                *held_by = None;
            }
        }
        Ok(report)
    }

    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, QueueError> {
        Ok(self.tables().deliveries.get(id).map(|(r, _)| r.clone()))
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, QueueError> {
        let t = self.tables();
        let mut items: Vec<DeliveryRecord> = t
            .deliveries
            .values()
            .map(|(r, _)| r)
            .filter(|r| query.selects(r))
            .filter(|r| query.before.is_none_or(|before| r.id < before))
            .cloned()
            .collect();
        items.sort_by_key(|r| std::cmp::Reverse(r.id));
        let limit = query.limit.clamp(1, MAX_DELIVERY_PAGE);
        let next = (items.len() > limit).then(|| items[limit - 1].id);
        items.truncate(limit);
        Ok(DeliveryPage::new(items, next))
    }

    async fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptLog>, QueueError> {
        Ok(self.tables().attempts.get(id).cloned().unwrap_or_default())
    }

    async fn redeliver(&self, id: &DeliveryId, now: DateTime<Utc>) -> Result<bool, QueueError> {
        let mut t = self.tables();
        let Some((record, held_by)) = t.deliveries.get_mut(id) else {
            return Ok(false);
        };
        record.status = DeliveryStatus::Pending;
        record.next_attempt_at = Some(now);
        record.updated_at = now;
        *held_by = None;
        Ok(true)
    }
}

struct Host;

#[async_trait]
impl Harness for Host {
    type Backend = HostQueue;

    async fn setup(&self) -> HostQueue {
        HostQueue::default()
    }
}

mod conformance {
    dataops_webhooks::delivery_queue_conformance!(super::Host);
}

#[tokio::test]
async fn the_host_queue_delivers_end_to_end() {
    let server = flaky::Flaky::start().await;
    let queue = Arc::new(HostQueue::default());
    let d = WebhookDispatcher::builder()
        .queue(queue.clone())
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(Duration::from_secs(2))
        .build()
        .expect("dispatcher");
    let hook = d
        .webhooks()
        .create(NewWebhook::new(
            Scope::Project("p".into()),
            server.url("/first-fails"),
        ))
        .await
        .expect("create")
        .id;
    let worker = d.start_worker(
        WorkerOptions::default()
            .retry(
                dataops_webhooks::retry::RetryPolicy::new(vec![
                    Duration::ZERO,
                    Duration::from_millis(50),
                ])
                .jitter(0.0),
            )
            .poll_interval(Duration::from_millis(20)),
    );
    let receipt = d
        .emit(Event::dataset_complete("p", Dataset::default()))
        .await
        .expect("emit");
    let first = receipt.outcomes().await.remove(0);
    assert!(!first.is_success(), "the endpoint fails the first request");
    let id = receipt.deliveries[0].delivery_id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        let record = queue.get_delivery(&id).await.expect("get").expect("stored");
        if record.status == DeliveryStatus::Succeeded {
            break record;
        }
        assert!(tokio::time::Instant::now() < deadline, "{record:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record.attempts, 2);
    assert_eq!(record.last_error, None);
    let log = d.deliveries().attempts(&id).await.expect("attempts");
    assert_eq!(log.len(), 2);
    assert!(!log[0].is_success() && log[1].is_success());
    assert_eq!(server.requests("/first-fails").len(), 2);
    let page = d
        .deliveries()
        .list(&DeliveryQuery::new(hook))
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
    worker.shutdown().await;
}
