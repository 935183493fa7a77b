//! [`MemoryQueue`]: the delivery queue in the process's memory.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::room::Room;
use super::stats::StatsBuilder;
use super::types::*;
use super::{
    page_limit, DeliveryQueue, DeliveryStats, PurgeReport, PurgeRequest, QueueDepth, QueueError,
    StatsQuery,
};
use crate::webhook::{DeliveryId, EventId, IdMap, OrgId, WebhookId};

/// A [`DeliveryQueue`] in memory: retries, leases and logs work as with any backend, but a
/// restart loses what is queued. The default of
/// [`DispatcherBuilder`](crate::DispatcherBuilder); use a durable backend where events must
/// survive the process.
///
/// Memory stays bounded, in two ways:
/// - **Unsent deliveries** (pending, never attempted yet): at most [`DEFAULT_MAX_UNSENT`]
///   ([`max_unsent`](Self::max_unsent)). When emits outrun the worker, an enqueue that would
///   pass the bound waits for deliveries to be attempted — backpressure on the emitting
///   tasks — for up to [`DEFAULT_FULL_WAIT`] ([`full_wait`](Self::full_wait)), then fails
///   with [`QueueError::Full`] and accepts nothing of the event. Waiting enqueues go in
///   first come, first served, so a wide event is not overtaken for ever by narrow ones.
///   While enqueues wait, the room that attempts free goes back in batches of a sixteenth
///   of the bound, or after 10 ms at the latest, so that each emitting task emits several
///   events per wake-up instead of one: under that load an emit may wait up to 10 ms
///   longer, and the sender spends less CPU per delivery.
///   Deliveries waiting for a retry do not count, so an endpoint that fails does not block
///   emits; an event with more deliveries than the bound goes in once the whole bound is
///   free; a redelivered delivery does not wait for room.
/// - **Settled deliveries** (succeeded or dead): only the most recent
///   [`DEFAULT_KEEP_SETTLED`] ([`keep_settled`](Self::keep_settled)). An older settled
///   delivery is dropped with its attempt log, and an event once none of its deliveries is
///   left (its idempotency key is then forgotten too).
///
/// ```
/// use std::time::Duration;
/// use dataops_webhooks::queue::MemoryQueue;
///
/// let queue = MemoryQueue::new()
///     .max_unsent(50_000)
///     .full_wait(Duration::from_secs(2))
///     .keep_settled(10_000);
/// # let _ = queue;
/// ```
#[derive(Debug)]
pub struct MemoryQueue {
    state: Mutex<State>,
    keep_settled: usize,
    max_unsent: usize,
    full_wait: Duration,
    /// Room for unsent deliveries: an enqueue takes a permit per delivery (at most
    /// `max_unsent`) and keeps it in the rows; a row frees it once attempted. Fair:
    /// enqueues waiting for room are served in order.
    room: Room,
}

/// How many settled deliveries a [`MemoryQueue`] keeps by default.
pub const DEFAULT_KEEP_SETTLED: usize = 1_000;

/// How many unsent deliveries a [`MemoryQueue`] holds by default before an enqueue waits.
pub const DEFAULT_MAX_UNSENT: usize = 4_096;

/// How long an enqueue waits by default for room in a full [`MemoryQueue`].
pub const DEFAULT_FULL_WAIT: Duration = Duration::from_secs(10);

impl Default for MemoryQueue {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            keep_settled: DEFAULT_KEEP_SETTLED,
            max_unsent: DEFAULT_MAX_UNSENT,
            full_wait: DEFAULT_FULL_WAIT,
            room: Room::new(DEFAULT_MAX_UNSENT),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    events: IdMap<EventId, EventRow>,
    deliveries: IdMap<DeliveryId, Row>,
    /// Pending deliveries by webhook, by due time (a leased one is due when its lease ends).
    due: IdMap<WebhookId, BTreeSet<(DateTime<Utc>, DeliveryId)>>,
    /// Each webhook's earliest due time: where a claim starts looking.
    heads: BTreeSet<(DateTime<Utc>, WebhookId)>,
    by_webhook: BTreeSet<(WebhookId, DeliveryId)>,
    attempts: IdMap<DeliveryId, Vec<AttemptLog>>,
    idempotency: HashMap<(OrgId, String), EventId>,
    failing_since: IdMap<WebhookId, DateTime<Utc>>,
    /// Settled deliveries, oldest settle first, with the settle's number (a delivery
    /// redelivered and settled again is listed again; only its latest entry counts).
    settled: VecDeque<(u64, DeliveryId)>,
    settles: u64,
}

#[derive(Debug)]
struct EventRow {
    payload: Bytes,
    deliveries: Vec<DeliveryId>,
    idempotency: Option<(OrgId, String)>,
}

#[derive(Debug)]
struct Row {
    record: DeliveryRecord,
    lease: Option<LeaseId>,
    /// The number of its latest settle, while settled.
    settled: Option<u64>,
    /// Holds one of the queue's permits of room until it is first attempted.
    holds_room: bool,
}

impl Row {
    /// Pending and never attempted.
    fn unsent(&self) -> bool {
        self.record.status == DeliveryStatus::Pending && self.record.attempts == 0
    }
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps at most `n` settled deliveries (default [`DEFAULT_KEEP_SETTLED`]), dropping the
    /// oldest settled first.
    #[must_use]
    pub fn keep_settled(mut self, n: usize) -> Self {
        self.keep_settled = n;
        self
    }

    /// Holds at most `n` unsent deliveries (default [`DEFAULT_MAX_UNSENT`]; at least 1): an
    /// enqueue that would pass it waits for room.
    #[must_use]
    pub fn max_unsent(mut self, n: usize) -> Self {
        let most = tokio::sync::Semaphore::MAX_PERMITS.min(u32::MAX as usize);
        self.max_unsent = n.clamp(1, most);
        self.room = Room::new(self.max_unsent);
        self
    }

    /// How long an enqueue waits for room before it fails with [`QueueError::Full`]
    /// (default [`DEFAULT_FULL_WAIT`]; zero fails at once).
    #[must_use]
    pub fn full_wait(mut self, wait: Duration) -> Self {
        self.full_wait = wait;
        self
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
    /// What an enqueue of `event` answers without writing: the first receipt of its
    /// idempotency key, or a conflict on a delivery id already queued.
    fn existing(&self, event: &NewEvent) -> Option<Result<Enqueued, QueueError>> {
        if let Some(key) = &event.idempotency_key {
            if let Some(first) = self.idempotency.get(&(event.org.clone(), key.clone())) {
                let first = *first;
                let deliveries = self
                    .events
                    .get(&first)
                    .map(|e| e.deliveries.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|id| self.deliveries.get(id).map(|r| r.record.clone()))
                    .collect();
                return Some(Ok(Enqueued::Duplicate {
                    event_id: first,
                    deliveries,
                }));
            }
        }
        let taken = event
            .deliveries
            .iter()
            .find(|d| self.deliveries.contains_key(&d.id))?;
        Some(Err(QueueError::Conflict(taken.id)))
    }

    /// Writes an event and its deliveries, pending and due at its creation; the first
    /// `room` of them hold a permit of room each.
    fn insert(&mut self, event: NewEvent, room: usize) {
        let ids = event.deliveries.iter().map(|d| d.id).collect();
        for (i, new) in event.deliveries.iter().enumerate() {
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
            self.deliveries.insert(
                new.id,
                Row {
                    record,
                    lease: None,
                    settled: None,
                    holds_room: i < room,
                },
            );
            self.set_due(new.id, Some(event.created_at));
            self.by_webhook.insert((new.webhook_id, new.id));
        }
        let idempotency = event.idempotency_key.map(|key| (event.org, key));
        if let Some(key) = &idempotency {
            self.idempotency.insert(key.clone(), event.id);
        }
        self.events.insert(
            event.id,
            EventRow {
                payload: event.payload,
                deliveries: ids,
                idempotency,
            },
        );
    }

    /// Moves a delivery's due time (or takes it out of the due index when settled).
    fn set_due(&mut self, id: DeliveryId, due: Option<DateTime<Utc>>) {
        let Some(row) = self.deliveries.get_mut(&id) else {
            return;
        };
        let webhook = row.record.webhook_id;
        let old = std::mem::replace(&mut row.record.next_attempt_at, due);
        let set = self.due.entry(webhook).or_default();
        let head_before = set.first().map(|(at, _)| *at);
        if let Some(old) = old {
            set.remove(&(old, id));
        }
        if let Some(new) = due {
            set.insert((new, id));
        }
        let head_after = set.first().map(|(at, _)| *at);
        if set.is_empty() {
            self.due.remove(&webhook);
        }
        if head_before != head_after {
            if let Some(at) = head_before {
                self.heads.remove(&(at, webhook));
            }
            if let Some(at) = head_after {
                self.heads.insert((at, webhook));
            }
        }
    }

    /// The deliveries `request` claims: oldest due first over the webhooks it may take from,
    /// merging each webhook's due index (a heap holds every eligible webhook's next one).
    /// Webhooks are visited by their earliest due time; once `limit` of them are in the heap,
    /// no later one can hold a delivery due earlier than those.
    fn due_for(&self, request: &ClaimRequest) -> Vec<DeliveryId> {
        type Next = Reverse<(DateTime<Utc>, DeliveryId, WebhookId)>;
        let mut heap: BinaryHeap<Next> = BinaryHeap::new();
        for (head, webhook) in &self.heads {
            if *head > request.now || heap.len() >= request.limit {
                break;
            }
            if request.room(webhook) == 0 {
                continue;
            }
            if let Some((at, id)) = self.due.get(webhook).and_then(BTreeSet::first) {
                heap.push(Reverse((*at, *id, *webhook)));
            }
        }
        let mut taken: IdMap<WebhookId, usize> = IdMap::default();
        let mut chosen = Vec::with_capacity(request.limit.min(heap.len() * 4));
        while chosen.len() < request.limit {
            let Some(Reverse((at, id, webhook))) = heap.pop() else {
                break;
            };
            if at > request.now {
                continue;
            }
            chosen.push(id);
            let count = taken.entry(webhook).or_insert(0);
            *count += 1;
            if *count >= request.room(&webhook) {
                continue;
            }
            let next = self.due.get(&webhook).and_then(|set| {
                set.range((Bound::Excluded((at, id)), Bound::Unbounded))
                    .next()
            });
            if let Some((at, id)) = next {
                heap.push(Reverse((*at, *id, webhook)));
            }
        }
        chosen
    }

    /// Marks a delivery settled, and takes out the oldest settled ones beyond `keep`. The
    /// one taken out (each settle adds one, so at most one goes) is returned for the caller
    /// to drop once it has let go of the lock.
    fn settled(&mut self, id: DeliveryId, keep: usize) -> Option<Forgotten> {
        self.settles += 1;
        let number = self.settles;
        if let Some(row) = self.deliveries.get_mut(&id) {
            row.settled = Some(number);
            self.settled.push_back((number, id));
        }
        let mut forgotten = None;
        while self.settled.len() > keep {
            let Some((number, old)) = self.settled.pop_front() else {
                break;
            };
            if self.deliveries.get(&old).and_then(|r| r.settled) == Some(number) {
                // A second one (never, as the list stays within `keep`) is dropped here.
                forgotten = self.forget(old).or(forgotten);
            }
        }
        forgotten
    }

    /// Takes a settled delivery out, with its log, and its event when no delivery of it is
    /// left.
    fn forget(&mut self, id: DeliveryId) -> Option<Forgotten> {
        let row = self.deliveries.remove(&id)?;
        let attempts = self.attempts.remove(&id);
        self.by_webhook.remove(&(row.record.webhook_id, id));
        let event_id = row.record.event_id;
        let gone = self.events.get_mut(&event_id).is_some_and(|event| {
            event.deliveries.retain(|d| *d != id);
            event.deliveries.is_empty()
        });
        let event = if gone {
            self.events.remove(&event_id)
        } else {
            None
        };
        if let Some(key) = event.as_ref().and_then(|e| e.idempotency.as_ref()) {
            self.idempotency.remove(key);
        }
        Some(Forgotten(row, attempts, event))
    }
}

/// What [`State::forget`] took out, freed after the queue's lock is released: the payload,
/// the record's strings and the attempt log are the larger part of a settle's work, and
/// emits and claims wait for the lock meanwhile.
#[expect(dead_code, reason = "held only to be dropped outside the lock")]
struct Forgotten(Row, Option<Vec<AttemptLog>>, Option<EventRow>);

#[async_trait]
impl DeliveryQueue for MemoryQueue {
    async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError> {
        if let Some(answer) = self.lock().existing(&event) {
            return answer;
        }
        let room = event.deliveries.len().min(self.max_unsent);
        let permits = if room == 0 {
            None
        } else {
            let wanted = u32::try_from(room).unwrap_or(u32::MAX);
            let Some(permits) = self.room.take(wanted, self.full_wait).await else {
                return Err(QueueError::Full {
                    limit: self.max_unsent,
                    waited: self.full_wait,
                });
            };
            Some(permits)
        };
        let mut s = self.lock();
        // Looked at again: the same key or id may have gone in while this one waited (its
        // permits then go back as they drop).
        if let Some(answer) = s.existing(&event) {
            return answer;
        }
        s.insert(event, room);
        if let Some(permits) = permits {
            // Held by the rows from now on, each freed once its delivery is attempted.
            permits.forget();
        }
        Ok(Enqueued::New)
    }

    /// A claim reads every due delivery under one lock, so a short one took them all.
    fn short_claims_take_everything(&self) -> bool {
        true
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claim>, QueueError> {
        let mut s = self.lock();
        let due = s.due_for(request);
        let until = request.lease_until();
        // One lease per claim, as the database backends take: it tells this claim from any
        // other of the same delivery, which is all a settle checks.
        let lease = LeaseId::random();
        let mut claims = Vec::with_capacity(due.len());
        for id in due {
            s.set_due(id, Some(until));
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
        let mut sent = false;
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
            // Attempted, or ended without an attempt: its room goes back.
            sent = !row.unsent() && std::mem::take(&mut row.holds_room);
        }
        let forgotten = if held && change.status != DeliveryStatus::Pending {
            s.settled(*delivery, self.keep_settled)
        } else {
            None
        };
        drop(s);
        drop(forgotten);
        if sent {
            self.room.free_one();
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
            row.settled = None;
            row.record.status = DeliveryStatus::Pending;
            row.record.updated_at = now;
        }
        Ok(true)
    }

    async fn statistics(&self, query: &StatsQuery) -> Result<DeliveryStats, QueueError> {
        let s = self.lock();
        let mut stats = StatsBuilder::new(query);
        for webhook in &stats.webhooks() {
            let low = (*webhook, DeliveryId::from_uuid(uuid::Uuid::nil()));
            let high = (*webhook, DeliveryId::from_uuid(uuid::Uuid::max()));
            for (_, id) in s.by_webhook.range(low..=high) {
                let Some(row) = s.deliveries.get(id) else {
                    continue;
                };
                stats.delivery(webhook, row.record.status, row.record.created_at);
                for attempt in s.attempts.get(id).into_iter().flatten() {
                    if query.in_window(attempt.attempted_at) {
                        stats.attempt(webhook, attempt);
                    }
                }
            }
        }
        Ok(stats.finish())
    }

    async fn depth(&self, now: DateTime<Utc>) -> Result<QueueDepth, QueueError> {
        let s = self.lock();
        let mut depth = QueueDepth::default();
        for (at, id) in s.due.values().flatten() {
            if *at <= now {
                depth.due += 1;
                depth.oldest_due = Some(depth.oldest_due.map_or(*at, |t| t.min(*at)));
            } else if s.deliveries.get(id).is_some_and(|r| r.lease.is_some()) {
                depth.in_flight += 1;
            } else {
                depth.scheduled += 1;
            }
        }
        Ok(depth)
    }

    async fn purge(&self, request: &PurgeRequest) -> Result<PurgeReport, QueueError> {
        let mut s = self.lock();
        let mut chosen: Vec<DeliveryId> = s
            .settled
            .iter()
            .filter_map(|(number, id)| {
                let row = s.deliveries.get(id)?;
                (row.settled == Some(*number)
                    && request.selects(row.record.status, row.record.updated_at))
                .then_some(*id)
            })
            .take(request.limit.saturating_add(1))
            .collect();
        let more = chosen.len() > request.limit;
        chosen.truncate(request.limit);
        let mut report = PurgeReport::default();
        let mut forgotten = Vec::with_capacity(chosen.len());
        for id in chosen {
            let Some(gone) = s.forget(id) else {
                continue;
            };
            let Forgotten(_, attempts, event) = &gone;
            report.deliveries += 1;
            let attempts = attempts.as_ref().map_or(0, Vec::len);
            report.attempts += u64::try_from(attempts).unwrap_or(u64::MAX);
            report.events += u64::from(event.is_some());
            forgotten.push(gone);
        }
        drop(s);
        drop(forgotten);
        report.more = more;
        Ok(report)
    }

    async fn event_deliveries(&self, event: &EventId) -> Result<Vec<DeliveryRecord>, QueueError> {
        let s = self.lock();
        let mut records: Vec<DeliveryRecord> = s
            .events
            .get(event)
            .map(|e| e.deliveries.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|id| s.deliveries.get(id).map(|r| r.record.clone()))
            .collect();
        records.sort_by_key(|r| r.id);
        Ok(records)
    }

    async fn record_test(&self, event: NewEvent, attempt: AttemptLog) -> Result<(), QueueError> {
        let mut s = self.lock();
        if let Some(taken) = event
            .deliveries
            .iter()
            .find(|d| s.deliveries.contains_key(&d.id))
        {
            return Err(QueueError::Conflict(taken.id));
        }
        let ids: Vec<DeliveryId> = event.deliveries.iter().map(|d| d.id).collect();
        let mut forgotten = Vec::new();
        let mut event = event;
        event.idempotency_key = None;
        s.insert(event, 0);
        for id in ids {
            s.set_due(id, None);
            if let Some(row) = s.deliveries.get_mut(&id) {
                row.record.status = if attempt.is_success() {
                    DeliveryStatus::Succeeded
                } else {
                    DeliveryStatus::Dead
                };
                row.record.attempts = 1;
                row.record.last_error.clone_from(&attempt.error);
                row.record.updated_at = attempt.attempted_at;
            }
            s.attempts.insert(id, vec![attempt.clone()]);
            forgotten.extend(s.settled(id, self.keep_settled));
        }
        drop(s);
        drop(forgotten);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::EventType;

    fn event(at: DateTime<Utc>, webhook: WebhookId, key: Option<&str>) -> NewEvent {
        let mut event = NewEvent::new(
            OrgId::new("acme"),
            "p",
            EventType::DatasetComplete,
            Bytes::from_static(b"{}"),
            at,
        );
        event.idempotency_key = key.map(str::to_owned);
        event.deliveries = vec![NewDelivery::new(DeliveryId::new(), webhook, "http://h/")];
        event
    }

    async fn deliver(queue: &MemoryQueue, now: DateTime<Utc>) -> DeliveryId {
        let request = ClaimRequest::new(now, Duration::from_secs(60), 1);
        let claim = queue.claim(&request).await.expect("claim").remove(0);
        let finish = Finish::Attempted {
            attempt: AttemptLog::new(now, Some(204)),
            next: Next::Succeeded,
        };
        queue
            .finish(&claim.delivery.id, claim.lease, finish, now)
            .await
            .expect("finish");
        claim.delivery.id
    }

    #[tokio::test]
    async fn only_the_most_recent_settled_deliveries_are_kept() {
        let queue = MemoryQueue::new().keep_settled(2);
        let (now, hook) = (Utc::now(), WebhookId::new());
        for i in 0..3 {
            let key = format!("k{i}");
            queue
                .enqueue(event(now, hook, Some(&key)))
                .await
                .expect("enqueue");
        }
        // A pending one is never dropped, however many settle.
        queue
            .enqueue(event(now + chrono::Duration::hours(1), hook, None))
            .await
            .expect("enqueue");
        let oldest = deliver(&queue, now).await;
        let middle = deliver(&queue, now).await;
        let newest = deliver(&queue, now).await;
        assert!(queue.get_delivery(&oldest).await.expect("get").is_none());
        assert!(queue.attempts(&oldest).await.expect("log").is_empty());
        for kept in [middle, newest] {
            assert!(queue.get_delivery(&kept).await.expect("get").is_some());
            assert_eq!(queue.attempts(&kept).await.expect("log").len(), 1);
        }
        let state = queue.lock();
        assert_eq!(
            state.events.len(),
            3,
            "the oldest event went with its delivery"
        );
        assert_eq!(state.idempotency.len(), 2, "and so did its key");
        assert_eq!(state.deliveries.len(), 3);
    }

    #[tokio::test]
    async fn a_redelivered_delivery_counts_from_its_latest_settle() {
        let queue = MemoryQueue::new().keep_settled(1);
        let (now, hook) = (Utc::now(), WebhookId::new());
        queue
            .enqueue(event(now, hook, None))
            .await
            .expect("enqueue");
        let a = deliver(&queue, now).await;
        assert!(queue.redeliver(&a, now).await.expect("redeliver"));
        queue
            .enqueue(event(now - chrono::Duration::seconds(1), hook, None))
            .await
            .expect("enqueue");
        let b = deliver(&queue, now).await;
        let pending = queue.get_delivery(&a).await.expect("get");
        assert_eq!(
            pending.map(|r| r.status),
            Some(DeliveryStatus::Pending),
            "pending again, so not dropped for its earlier settle"
        );
        assert!(queue.get_delivery(&b).await.expect("get").is_some());
        assert_eq!(deliver(&queue, now).await, a);
        assert!(queue.get_delivery(&b).await.expect("get").is_none());
        assert!(queue.get_delivery(&a).await.expect("get").is_some());
    }

    /// Pending deliveries never attempted.
    fn unsent(queue: &MemoryQueue) -> usize {
        queue
            .lock()
            .deliveries
            .values()
            .filter(|r| r.unsent())
            .count()
    }

    fn attempted(now: DateTime<Utc>, next: Next) -> Finish {
        Finish::Attempted {
            attempt: AttemptLog::new(now, Some(500)),
            next,
        }
    }

    #[tokio::test]
    async fn a_full_queue_makes_an_enqueue_wait_then_fail_with_nothing_written() {
        let queue = MemoryQueue::new()
            .max_unsent(2)
            .full_wait(Duration::from_millis(50));
        let (now, hook) = (Utc::now(), WebhookId::new());
        for key in ["a", "b"] {
            queue
                .enqueue(event(now, hook, Some(key)))
                .await
                .expect("room");
        }
        let error = queue
            .enqueue(event(now, hook, Some("c")))
            .await
            .expect_err("full");
        assert!(
            matches!(error, QueueError::Full { limit: 2, waited } if waited == Duration::from_millis(50)),
            "{error:?}"
        );
        assert!(error.is_retryable());
        assert!(
            error.to_string().contains("MemoryQueue::max_unsent"),
            "{error}"
        );
        {
            let state = queue.lock();
            assert_eq!((state.events.len(), state.deliveries.len()), (2, 2));
            let refused = (OrgId::new("acme"), "c".to_owned());
            assert!(!state.idempotency.contains_key(&refused));
        }
        // A duplicate adds nothing, so it is answered even when the queue is full.
        let duplicate = queue
            .enqueue(event(now, hook, Some("a")))
            .await
            .expect("duplicate");
        assert!(matches!(duplicate, Enqueued::Duplicate { .. }));
    }

    /// An enqueue of one event to `hook`, spawned.
    fn spawn_enqueue(
        queue: &std::sync::Arc<MemoryQueue>,
        now: DateTime<Utc>,
        hook: WebhookId,
    ) -> tokio::task::JoinHandle<Result<Enqueued, QueueError>> {
        let queue = queue.clone();
        tokio::spawn(async move { queue.enqueue(event(now, hook, None)).await })
    }

    /// Claims the first due delivery.
    async fn claim_one(queue: &MemoryQueue, now: DateTime<Utc>) -> Claim {
        queue
            .claim(&ClaimRequest::new(now, Duration::from_secs(60), 1))
            .await
            .expect("claim")
            .remove(0)
    }

    /// Waits for a spawned enqueue to be let in.
    async fn admitted(waiting: tokio::task::JoinHandle<Result<Enqueued, QueueError>>) {
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert!(matches!(answer, Ok(Enqueued::New)), "{answer:?}");
    }

    #[tokio::test]
    async fn an_attempt_makes_room_for_a_waiting_enqueue() {
        let queue = std::sync::Arc::new(
            MemoryQueue::new()
                .max_unsent(1)
                .full_wait(Duration::from_secs(30)),
        );
        let (now, hook) = (Utc::now(), WebhookId::new());
        queue.enqueue(event(now, hook, None)).await.expect("room");
        let waiting = spawn_enqueue(&queue, now, hook);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the second enqueue waits for room");
        // A claim alone makes no room: the delivery is not attempted yet.
        let claim = claim_one(&queue, now).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        // A failed attempt waiting for its retry no longer counts.
        let retry = Next::RetryAt(now + chrono::Duration::hours(1));
        queue
            .finish(&claim.delivery.id, claim.lease, attempted(now, retry), now)
            .await
            .expect("finish");
        admitted(waiting).await;
        assert_eq!(unsent(&queue), 1);
    }

    #[tokio::test]
    async fn room_freed_while_enqueues_wait_reaches_them_though_no_batch_fills() {
        // A bound of 64 gives room back in batches of four while enqueues wait; one attempt
        // alone still lets a waiting enqueue in, shortly.
        let queue = std::sync::Arc::new(
            MemoryQueue::new()
                .max_unsent(64)
                .full_wait(Duration::from_secs(30)),
        );
        let (now, hook) = (Utc::now(), WebhookId::new());
        for _ in 0..64 {
            queue.enqueue(event(now, hook, None)).await.expect("room");
        }
        let waiting = spawn_enqueue(&queue, now, hook);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the queue is full");
        let claim = claim_one(&queue, now).await;
        let done = attempted(now, Next::Succeeded);
        queue
            .finish(&claim.delivery.id, claim.lease, done, now)
            .await
            .expect("finish");
        admitted(waiting).await;
        assert_eq!(unsent(&queue), 64);
    }

    #[tokio::test]
    async fn an_event_larger_than_the_bound_goes_in_once_nothing_else_is_unsent() {
        let queue = MemoryQueue::new()
            .max_unsent(2)
            .full_wait(Duration::from_millis(20));
        let (now, hook) = (Utc::now(), WebhookId::new());
        let mut wide = event(now, hook, None);
        wide.deliveries = (0..5)
            .map(|_| NewDelivery::new(DeliveryId::new(), WebhookId::new(), "http://h/"))
            .collect();
        let mut second = event(now, hook, None);
        second.deliveries = wide
            .deliveries
            .iter()
            .map(|d| NewDelivery::new(DeliveryId::new(), d.webhook_id, "http://h/"))
            .collect();
        queue.enqueue(wide).await.expect("an empty queue takes it");
        assert_eq!(unsent(&queue), 5);
        assert!(matches!(
            queue.enqueue(second).await,
            Err(QueueError::Full { .. })
        ));
    }

    #[tokio::test]
    async fn redelivering_an_abandoned_delivery_counts_it_as_unsent_again() {
        let queue = MemoryQueue::new();
        let (now, hook) = (Utc::now(), WebhookId::new());
        queue.enqueue(event(now, hook, None)).await.expect("room");
        let claim = queue
            .claim(&ClaimRequest::new(now, Duration::from_secs(60), 1))
            .await
            .expect("claim")
            .remove(0);
        let gone = Finish::Abandoned {
            reason: "the webhook is gone".into(),
        };
        queue
            .finish(&claim.delivery.id, claim.lease, gone, now)
            .await
            .expect("finish");
        assert_eq!(unsent(&queue), 0);
        assert!(queue
            .redeliver(&claim.delivery.id, now)
            .await
            .expect("redeliver"));
        assert_eq!(unsent(&queue), 1);
        deliver(&queue, now).await;
        assert_eq!(unsent(&queue), 0);
    }

    #[tokio::test]
    async fn waiting_enqueues_get_room_in_order_so_a_wide_event_is_not_overtaken() {
        let queue = std::sync::Arc::new(
            MemoryQueue::new()
                .max_unsent(2)
                .full_wait(Duration::from_secs(30)),
        );
        let (now, hook) = (Utc::now(), WebhookId::new());
        for _ in 0..2 {
            queue.enqueue(event(now, hook, None)).await.expect("room");
        }
        let mut wide = event(now, hook, None);
        wide.deliveries
            .push(NewDelivery::new(DeliveryId::new(), hook, "http://h/"));
        let spawn = |event: NewEvent| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.enqueue(event).await })
        };
        let wide = spawn(wide);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // One slot frees; a narrow event arriving now would fit, but the wide one is first.
        deliver(&queue, now).await;
        let narrow = spawn(event(now, hook, None));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !narrow.is_finished() && !wide.is_finished(),
            "the narrow event may not pass the wide one waiting before it"
        );
        deliver(&queue, now).await;
        let answer = tokio::time::timeout(Duration::from_secs(5), wide)
            .await
            .expect("the wide event goes in")
            .expect("task");
        assert!(matches!(answer, Ok(Enqueued::New)), "{answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !narrow.is_finished(),
            "no room is left for the narrow one yet"
        );
        deliver(&queue, now).await;
        let answer = tokio::time::timeout(Duration::from_secs(5), narrow)
            .await
            .expect("then the narrow one")
            .expect("task");
        assert!(matches!(answer, Ok(Enqueued::New)), "{answer:?}");
    }
}
