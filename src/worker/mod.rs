//! The background worker: claims due deliveries, attempts them, settles them by the retry
//! policy, and keeps endpoint health.
//!
//! A host starts one with [`WebhookDispatcher::start_worker`](crate::WebhookDispatcher::start_worker)
//! and stops it with [`WorkerHandle::shutdown`]: attempts in flight get a bounded time to
//! finish, the rest go back to the queue. Nothing is process-wide: each worker has its own
//! limits and tasks, and workers of different dispatchers never share state.
//!
//! What the host hears about: [`HostEvent`]s on [`WorkerHandle::events`] — a delivery
//! exhausted its attempts, a webhook was disabled, a webhook recovered, the queue failed.

mod attempt;
mod depth;
mod hold;
mod limit;
mod purge;
mod runner;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::delivery::retry::RetryPolicy;
use crate::delivery::{Sender, Waiters};
use crate::queue::{Claim, ClaimRequest, DeliveryQueue, Finish, LeaseId, RetentionPolicy};
use crate::store::ConfigStore;
use crate::webhook::{DeliveryId, IdMap, WebhookId};
use crate::EventType;
use hold::{Busy, Held};
use runner::Started;

/// How many times its [`per_endpoint`](WorkerOptions::per_endpoint) limit a webhook may have
/// claimed at once in one worker, in flight and waiting for a slot together.
pub const AHEAD_PER_ENDPOINT: usize = 8;

/// How a worker runs. Start from [`WorkerOptions::default`] and change what you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// Requests in flight at once (default 64). An attempt holds one of these from its start
    /// until the endpoint has answered; recording the outcome does not, so a slow queue does
    /// not keep endpoints waiting. Attempts being recorded still count toward the
    /// `concurrency + prefetch` claims a worker holds.
    pub concurrency: usize,
    /// Requests in flight at once to one webhook (default 8), so one slow endpoint cannot
    /// take every slot.
    pub per_endpoint: usize,
    /// Deliveries claimed per query (default 64).
    pub batch: usize,
    /// Claimed deliveries a worker may hold beyond `concurrency`, waiting for an
    /// endpoint slot or for one of the [`concurrency`](Self::concurrency) permits (default
    /// 256). Claiming ahead hides the queue's round trip: a busy endpoint's next deliveries
    /// are at hand the moment it answers. Each webhook holds at most
    /// [`AHEAD_PER_ENDPOINT`] × [`per_endpoint`](Self::per_endpoint) claims, in flight and
    /// waiting together, so one busy endpoint cannot fill the worker; a slow endpoint holds
    /// fewer: only as many as its slots start, at the pace its requests have been taking,
    /// within half the time a claim may wait (the lease less the request timeout). Waiting
    /// claims are leased like any other; one whose lease would end before its request could
    /// time out, and every one at shutdown, goes back to the queue at once.
    pub prefetch: usize,
    /// How long to sleep when nothing is due and nobody wakes the worker (default 1 s). An
    /// emit in the same process wakes it at once, and so does one in another process when
    /// the queue signals [arrivals](crate::DeliveryQueue::arrivals) (PostgreSQL does); a
    /// delivery whose retry falls due is seen within this time.
    pub poll_interval: Duration,
    /// How long a claim holds before another worker may take the delivery (default: the
    /// dispatcher's request timeout plus 30 s). Must exceed the request timeout.
    pub lease: Option<Duration>,
    /// When to retry.
    pub retry: RetryPolicy,
    /// A webhook whose deliveries have all failed for this long is disabled (default 5 days).
    pub health_window: Duration,
    /// How long [`WorkerHandle::shutdown`] lets attempts in flight finish (default 30 s).
    pub shutdown_grace: Duration,
    /// Adds a `webhook_id` label to the attempt metrics (default off): one time series per
    /// webhook, so only for a bounded number of webhooks. See [`crate::telemetry`].
    pub metrics_per_webhook: bool,
    /// What the worker purges from the delivery log, and how often (default
    /// [`RetentionPolicy::default`]: succeeded deliveries after 30 days, dead ones after 90,
    /// every hour, 1,000 per batch; `None`: never — the host calls
    /// [`Deliveries::purge`](crate::Deliveries::purge) itself). Several workers may purge the
    /// same queue: each batch is its own short transaction.
    pub retention: Option<RetentionPolicy>,
    /// How often the worker samples the [queue's depth](crate::DeliveryQueue::depth) into
    /// the `dataops_webhooks_queue_depth` gauges (default 15 s; `None`: never). A queue
    /// that does not report its depth is asked once.
    pub depth_interval: Option<Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 64,
            per_endpoint: 8,
            batch: 64,
            prefetch: 256,
            poll_interval: Duration::from_secs(1),
            lease: None,
            retry: RetryPolicy::default(),
            health_window: Duration::from_secs(5 * 86_400),
            shutdown_grace: Duration::from_secs(30),
            metrics_per_webhook: false,
            depth_interval: Some(Duration::from_secs(15)),
            retention: Some(RetentionPolicy::default()),
        }
    }
}

impl WorkerOptions {
    /// Sets [`concurrency`](Self::concurrency) (at least 1).
    #[must_use]
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// Sets [`per_endpoint`](Self::per_endpoint) (at least 1).
    #[must_use]
    pub fn per_endpoint(mut self, limit: usize) -> Self {
        self.per_endpoint = limit.max(1);
        self
    }

    /// Sets [`prefetch`](Self::prefetch) (0: claim only what can start at once).
    #[must_use]
    pub fn prefetch(mut self, claims: usize) -> Self {
        self.prefetch = claims;
        self
    }

    /// Sets [`poll_interval`](Self::poll_interval).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets [`lease`](Self::lease).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Sets the [retry policy](Self::retry).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sets [`health_window`](Self::health_window).
    #[must_use]
    pub fn health_window(mut self, window: Duration) -> Self {
        self.health_window = window;
        self
    }

    /// Sets [`shutdown_grace`](Self::shutdown_grace).
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets [`metrics_per_webhook`](Self::metrics_per_webhook).
    #[must_use]
    pub fn metrics_per_webhook(mut self, on: bool) -> Self {
        self.metrics_per_webhook = on;
        self
    }

    /// Sets [`retention`](Self::retention).
    #[must_use]
    pub fn retention(mut self, policy: Option<RetentionPolicy>) -> Self {
        self.retention = policy;
        self
    }

    /// Sets [`depth_interval`](Self::depth_interval).
    #[must_use]
    pub fn depth_interval(mut self, interval: Option<Duration>) -> Self {
        self.depth_interval = interval;
        self
    }
}

/// Something the host may want to tell its user about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostEvent {
    /// A delivery is dead: its attempts are spent (or the endpoint is gone). It stays in the
    /// delivery log and can be redelivered.
    DeliveryExhausted {
        /// The delivery.
        delivery_id: DeliveryId,
        /// Its webhook.
        webhook_id: WebhookId,
        /// Its event type.
        event_type: EventType,
        /// The last attempt's error.
        last_error: String,
    },
    /// The system disabled a webhook; the host can re-enable it with
    /// [`Webhooks::reactivate`](crate::Webhooks::reactivate).
    WebhookDisabled {
        /// The webhook.
        webhook_id: WebhookId,
        /// Why.
        reason: String,
    },
    /// A webhook's deliveries succeed again after failures.
    WebhookRecovered {
        /// The webhook.
        webhook_id: WebhookId,
    },
    /// An attempt panicked (a host's transport, store or queue, most likely). The worker
    /// carries on, and so do the other attempts; the delivery is claimed again when its lease
    /// ends.
    AttemptPanicked {
        /// The delivery.
        delivery_id: DeliveryId,
        /// Its webhook.
        webhook_id: WebhookId,
    },
    /// The queue or the config store failed; the worker keeps trying.
    BackendError(BackendFailure),
}

/// What the worker was doing when the store or the queue failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendOperation {
    /// Claiming due deliveries.
    Claim,
    /// Reading a delivery's webhook and keys before an attempt (the claim is kept until its
    /// lease ends, then the delivery is claimed again).
    LoadWebhook,
    /// Recording an attempt's outcome (the attempt was made; the delivery is attempted
    /// again when its lease ends: at least once, never lost).
    Settle,
    /// Returning an unstarted claim to the queue (its lease ends on its own).
    Release,
    /// Disabling a failing webhook (the next failure tries again).
    DisableWebhook,
}

impl BackendOperation {
    /// A short name: `claim`, `load_webhook`, `settle`, `release`, `disable_webhook`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Claim => "claim",
            Self::LoadWebhook => "load_webhook",
            Self::Settle => "settle",
            Self::Release => "release",
            Self::DisableWebhook => "disable_webhook",
        }
    }
}

/// A failure of the store or the queue, as the worker met it: what it was doing, for which
/// delivery, whether trying again may help, and the backend's own error as the source.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} failed{}: {error}", .operation.as_str(), .delivery_id.map(|d| format!(" for delivery {d}")).unwrap_or_default())]
#[non_exhaustive]
pub struct BackendFailure {
    /// What the worker was doing.
    pub operation: BackendOperation,
    /// The delivery concerned, when there is one.
    pub delivery_id: Option<DeliveryId>,
    /// Whether the same operation may succeed later (a database that comes back); the
    /// worker retries either way.
    pub transient: bool,
    #[source]
    error: Arc<dyn std::error::Error + Send + Sync>,
}

impl BackendFailure {
    /// A failure of `operation` with the backend's `error`.
    pub fn new(
        operation: BackendOperation,
        delivery_id: Option<DeliveryId>,
        transient: bool,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            operation,
            delivery_id,
            transient,
            error: Arc::new(error),
        }
    }

    /// The backend's error.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }
}

/// A backend error that can say whether trying again may help.
pub(crate) trait Retryable: std::error::Error + Send + Sync + 'static {
    fn retryable(&self) -> bool;
}

impl Retryable for crate::store::StoreError {
    fn retryable(&self) -> bool {
        self.is_retryable()
    }
}

impl Retryable for crate::queue::QueueError {
    fn retryable(&self) -> bool {
        self.is_retryable()
    }
}

impl PartialEq for BackendFailure {
    fn eq(&self, other: &Self) -> bool {
        (self.operation, self.delivery_id, self.transient)
            == (other.operation, other.delivery_id, other.transient)
            && self.error.to_string() == other.error.to_string()
    }
}

impl Eq for BackendFailure {}

/// A running worker. Dropping it stops the worker as [`shutdown`](Self::shutdown) does,
/// without waiting.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    events: broadcast::Sender<HostEvent>,
    /// The receiver made with the channel, before the worker ran: the first caller of
    /// `events` gets it.
    first: Mutex<Option<broadcast::Receiver<HostEvent>>>,
}

impl WorkerHandle {
    /// A receiver of the worker's [`HostEvent`]s. The first call's receiver has every event
    /// since the worker started (one that the worker reported before the host asked is not
    /// lost); each later call's has the events from then on. A receiver that falls more than
    /// 1,024 events behind loses the oldest.
    pub fn events(&self) -> broadcast::Receiver<HostEvent> {
        self.first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| self.events.subscribe())
    }

    /// Stops claiming, lets attempts in flight finish within the shutdown grace, returns the
    /// rest to the queue, and waits for all of that.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One attempt in flight, from its start until its outcome is recorded. However the attempt
/// ends — settled, panicked, or cancelled by a hard stop — dropping this uncounts it and
/// forgets the claim, so a panic can never leave a claim held for ever.
struct InFlight<'a> {
    worker: &'a Worker,
    webhook: WebhookId,
    delivery: DeliveryId,
    /// The attempt settled its claim: nothing is left to return at a hard stop.
    settled: bool,
}

impl<'a> InFlight<'a> {
    /// Counts the attempt of `claim`, which [`Worker::begin`] listed, until it is recorded.
    fn new(worker: &'a Worker, claim: &Claim) -> Self {
        Self {
            worker,
            webhook: claim.delivery.webhook_id,
            delivery: claim.delivery.id,
            settled: false,
        }
    }

    /// The attempt settled its claim: nothing is left to return at a hard stop.
    fn settled(mut self) {
        self.settled = true;
    }

    /// The attempt panicked, and the panic was caught: its claim stays listed, so a hard
    /// stop returns it; otherwise the lease runs out and it is claimed again.
    fn panicked(self) {
        self.worker.tell(HostEvent::AttemptPanicked {
            delivery_id: self.delivery,
            webhook_id: self.webhook,
        });
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Its claim stays listed, so a hard stop returns it; otherwise the lease runs out.
            self.worker.tell(HostEvent::AttemptPanicked {
                delivery_id: self.delivery,
                webhook_id: self.webhook,
            });
        }
        let wants_room = {
            let mut busy = self.worker.busy();
            if self.settled {
                busy.claims.remove(&self.delivery);
            }
            busy.attempts = busy.attempts.saturating_sub(1);
            std::mem::take(&mut busy.wants_room)
        };
        if wants_room {
            // The loop waits for room to hold one more claim.
            self.worker.finished.notify_one();
        }
    }
}

/// A request to one endpoint in flight, counted against the endpoint's limit and holding one
/// of the worker's `concurrency` permits. The attempt drops it as soon as the endpoint has
/// answered — recording the outcome is the queue's work, not the endpoint's, and needs no
/// request slot — and a panic or a hard stop drops it too.
struct EndpointSlot {
    busy: Arc<Mutex<Busy>>,
    finished: Arc<Notify>,
    webhook: WebhookId,
    taken: std::time::Instant,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for EndpointSlot {
    fn drop(&mut self) {
        // Without its permit, the slot was passed on already.
        let Some(permit) = self.permit.take() else {
            return;
        };
        let limited = {
            let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
            busy.free_slot(self.webhook, self.taken.elapsed());
            // Freed under the lock, before the loop is woken: a claim the loop admits
            // meanwhile either finds the permit or is waiting when `limited` is read.
            drop(permit);
            busy.limited
        };
        if limited {
            // Some webhook was left out of the last claim for being at its limit, or a
            // claim waits for a permit.
            self.finished.notify_one();
        }
    }
}

/// The span of one settle: `kind` is `attempted`, `abandoned` or `released`.
fn settle_span(delivery: DeliveryId, kind: &'static str) -> tracing::Span {
    tracing::debug_span!(target: "dataops_webhooks", "settle", delivery_id = %delivery, kind)
}

/// Resolves when the queue signals arrivals from elsewhere; never, for a queue without.
async fn arrived(signal: Option<&Notify>) {
    match signal {
        Some(signal) => signal.notified().await,
        None => std::future::pending().await,
    }
}

/// What a worker works with, handed over by the dispatcher that starts it.
#[derive(Debug, Clone)]
pub(crate) struct WorkerParts {
    pub(crate) store: Arc<dyn ConfigStore>,
    pub(crate) queue: Arc<dyn DeliveryQueue>,
    pub(crate) sender: Sender,
    /// Tickets of this process's emits, told each delivery's first outcome.
    pub(crate) waiters: Arc<Waiters>,
    /// Raised when deliveries become due now in this process (emit, redeliver).
    pub(crate) wake: Arc<Notify>,
    /// How many workers of the dispatcher are running: this one counts itself while it runs.
    pub(crate) running: Arc<AtomicUsize>,
}

/// Counts a worker as running for as long as it lives.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts a worker over `parts`.
pub(crate) fn start(parts: WorkerParts, options: WorkerOptions) -> WorkerHandle {
    let (stop, stopped) = watch::channel(false);
    let (events, first) = broadcast::channel(1024);
    let lease = options
        .lease
        .unwrap_or(parts.sender.request_timeout() + Duration::from_secs(30));
    let worker = Worker {
        parts,
        lease,
        permits: Arc::new(Semaphore::new(options.concurrency.max(1))),
        busy: Arc::new(Mutex::new(Busy::default())),
        finished: Arc::new(Notify::new()),
        events: events.clone(),
        options: Arc::new(options),
        limiter: Arc::default(),
    };
    // Counted from the start, not from the task's first poll: a caller that checks right
    // after starting sees it.
    let running = Running::new(&worker.parts.running);
    crate::telemetry::describe();
    if let Some(interval) = worker.options.depth_interval {
        tokio::spawn(depth::sample(
            worker.parts.queue.clone(),
            interval,
            stopped.clone(),
        ));
    }
    if let Some(policy) = worker.options.retention {
        tokio::spawn(purge::run(
            worker.parts.queue.clone(),
            policy,
            stopped.clone(),
        ));
    }
    let task = tokio::spawn(worker.run(stopped, running));
    WorkerHandle {
        stop,
        task: Some(task),
        events,
        first: Mutex::new(Some(first)),
    }
}

/// What became of a claim the worker was given.
enum Placed {
    /// Its attempt may start.
    Started(Started),
    /// It waits for a slot or a permit.
    Waiting,
    /// The worker may not hold it: it goes back to the queue.
    Refused(Claim),
}

#[derive(Clone)]
struct Worker {
    parts: WorkerParts,
    options: Arc<WorkerOptions>,
    lease: Duration,
    permits: Arc<Semaphore>,
    busy: Arc<Mutex<Busy>>,
    /// Woken when an attempt ends while some webhook is at its limit, so it is claimed for
    /// again.
    finished: Arc<Notify>,
    events: broadcast::Sender<HostEvent>,
    /// Per-webhook request rates.
    limiter: Arc<limit::Limiter>,
}

impl Worker {
    fn busy(&self) -> std::sync::MutexGuard<'_, Busy> {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn tell(&self, event: HostEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    /// Tells the host that `operation` failed in the store or queue.
    fn backend_failed(
        &self,
        operation: BackendOperation,
        delivery_id: Option<DeliveryId>,
        error: impl Retryable,
    ) {
        let transient = error.retryable();
        crate::telemetry::backend_error(operation.as_str());
        tracing::warn!(
            target: "dataops_webhooks",
            operation = operation.as_str(),
            delivery_id = delivery_id.map(tracing::field::display),
            transient,
            error = %crate::telemetry::chain(&error),
            "the delivery queue or config store failed; the worker keeps trying"
        );
        self.tell(HostEvent::BackendError(BackendFailure::new(
            operation,
            delivery_id,
            transient,
            error,
        )));
    }

    async fn run(self, mut stopped: watch::Receiver<bool>, _running: Running) {
        let mut tasks = JoinSet::new();
        let arrivals = self.parts.queue.arrivals();
        let short_claims_take_everything = self.parts.queue.short_claims_take_everything();
        loop {
            while tasks.try_join_next().is_some() {}
            self.start_waiting(&mut tasks);
            let room = self.room();
            if room == 0 {
                // Every claim the worker may hold is in flight or waiting: an attempt that
                // is recorded makes room, and wakes the loop.
                tokio::select! {
                    _ = self.finished.notified() => {}
                    _ = stopped.changed() => break,
                }
                continue;
            }
            let request = self.claim_request(room);
            let span = tracing::debug_span!(target: "dataops_webhooks", "claim",
                limit = request.limit, claimed = tracing::field::Empty);
            // While the claim is out, attempts that end free slots and permits: claims
            // already waiting for them start at once, not when the claim returns.
            let mut freed = false;
            let claimed = {
                let claimed = self.parts.queue.claim(&request).instrument(span.clone());
                tokio::pin!(claimed);
                loop {
                    tokio::select! {
                        claimed = &mut claimed => break claimed,
                        _ = self.finished.notified() => {
                            freed = true;
                            while tasks.try_join_next().is_some() {}
                            self.start_waiting(&mut tasks);
                        }
                    }
                }
            };
            let claims = match claimed {
                Ok(claims) => claims,
                Err(error) => {
                    self.backend_failed(BackendOperation::Claim, None, error);
                    Vec::new()
                }
            };
            span.record("claimed", claims.len());
            let full = claims.len() >= request.limit;
            let found = !claims.is_empty();
            // A short claim that gave no webhook all its room took every delivery due, where
            // the queue says so: a claim made again at once would find nothing.
            let took_everything = found
                && !full
                && short_claims_take_everything
                && !request.gave_a_webhook_all_its_room(&claims);
            for claim in claims {
                self.admit(claim, request.lease_until(), &mut tasks).await;
            }
            if found && !took_everything {
                continue;
            }
            // What the claim left out, and whether it came back full: when a slot frees and
            // neither changed, a claim could find nothing new, and is not made.
            let skipped = request.skip;
            if freed && (full || skipped != self.claim_request(1).skip) {
                // A slot freed while the claim was out, and its notice was taken then.
                continue;
            }
            // Nothing (more) to claim: wait for new work, a freed slot that changes what a claim
            // may take, the poll interval, or the stop.
            loop {
                tokio::select! {
                    _ = self.parts.wake.notified() => break,
                    _ = arrived(arrivals.as_deref()) => break,
                    _ = tokio::time::sleep(self.options.poll_interval) => break,
                    _ = stopped.changed() => {
                        return self.stop(tasks).await;
                    }
                    _ = self.finished.notified() => {
                        while tasks.try_join_next().is_some() {}
                        self.start_waiting(&mut tasks);
                        let skip = self.claim_request(1).skip;
                        if full || skipped != skip {
                            break;
                        }
                    }
                }
            }
        }
        self.stop(tasks).await;
    }

    /// How many more deliveries the worker may claim now: its batch, within
    /// `concurrency + prefetch` held in all (attempts not yet recorded, and waiting claims).
    /// When none, the next attempt recorded wakes the loop.
    fn room(&self) -> usize {
        let concurrency = self.options.concurrency.max(1);
        let mut busy = self.busy();
        let room = concurrency
            .saturating_add(self.options.prefetch)
            .saturating_sub(busy.attempts.saturating_add(busy.waiting.len))
            .min(self.options.batch.max(1));
        busy.wants_room = room == 0;
        room
    }

    /// Most claims one webhook may have in this worker, in flight and waiting.
    fn per_webhook_cap(&self) -> usize {
        let per_endpoint = self.options.per_endpoint.max(1);
        per_endpoint
            .saturating_mul(AHEAD_PER_ENDPOINT)
            .min(per_endpoint.saturating_add(self.options.prefetch))
    }

    /// Most claims a webhook whose requests hold their slot for `pace` may have: no more
    /// than its slots start within half the time a waiting claim may wait (its lease less
    /// the request timeout), so a slow endpoint's claims start before their lease runs
    /// short instead of going back to the queue.
    fn paced_cap(&self, pace: Duration) -> usize {
        let per_endpoint = self.options.per_endpoint.max(1);
        let may_wait = self
            .lease
            .saturating_sub(self.parts.sender.request_timeout())
            / 2;
        let rounds = may_wait
            .as_nanos()
            .checked_div(pace.as_nanos())
            .map_or(usize::MAX, |r| usize::try_from(r).unwrap_or(usize::MAX));
        per_endpoint
            .saturating_mul(rounds.saturating_add(1))
            .min(self.per_webhook_cap())
    }

    /// Most claims `webhook` may have now: the cap, or less for a slow endpoint.
    fn cap_of(&self, busy: &Busy, webhook: &WebhookId) -> usize {
        busy.pace
            .get(webhook)
            .map_or_else(|| self.per_webhook_cap(), |pace| self.paced_cap(*pace))
    }

    /// What the next claim asks for: up to `limit`, each webhook up to its cap counting what
    /// is in flight and waiting, and none for a webhook within half its endpoint limit of
    /// the cap (so a busy endpoint is claimed for in batches, not one by one).
    fn claim_request(&self, limit: usize) -> ClaimRequest {
        let per_endpoint = self.options.per_endpoint.max(1);
        let cap = self.per_webhook_cap();
        let refill_at = cap.saturating_sub(per_endpoint.div_ceil(2));
        let mut busy = self.busy();
        let mut held: HashMap<WebhookId, usize> =
            busy.per_webhook.iter().map(|(w, n)| (*w, *n)).collect();
        for (webhook, queue) in &busy.waiting.claims {
            *held.entry(*webhook).or_insert(0) += queue.len();
        }
        // A slow endpoint's smaller cap, as claims it already holds.
        for (webhook, pace) in &busy.pace {
            let short = cap.saturating_sub(self.paced_cap(*pace));
            if short > 0 {
                *held.entry(*webhook).or_insert(0) += short;
            }
        }
        let mut skip: Vec<WebhookId> = held
            .iter()
            .filter(|(_, n)| **n > refill_at)
            .map(|(w, _)| *w)
            .collect();
        // When each may be claimed for again, in claims it holds itself: an endpoint that
        // answers and passes its permit on wakes the loop then.
        let refill: IdMap<WebhookId, usize> = skip
            .iter()
            .map(|webhook| {
                let own = busy.held_by(webhook);
                let over = held.get(webhook).map_or(0, |n| n.saturating_sub(refill_at));
                (*webhook, own.saturating_sub(over))
            })
            .collect();
        busy.refill = refill;
        // Webhooks over their request rate wait in the queue until their turn.
        skip.extend(self.limiter.paused(std::time::Instant::now()));
        skip.sort_unstable();
        skip.dedup();
        busy.limited = !skip.is_empty() || !busy.waiting.claims.is_empty();
        ClaimRequest::new(Utc::now(), self.lease, limit)
            .skip(skip)
            .per_webhook(cap, held)
    }

    /// Starts a claim if its endpoint has a free slot and the worker a free permit, keeps it
    /// waiting if the worker may hold it, and returns it to the queue otherwise.
    async fn admit(&self, claim: Claim, lease_until: DateTime<Utc>, tasks: &mut JoinSet<()>) {
        match self.place(claim, lease_until) {
            Placed::Started(started) => self.spawn_runner(started, tasks),
            Placed::Waiting => {}
            Placed::Refused(claim) => self.release(claim.delivery.id, claim.lease).await,
        }
    }

    /// Where [`admit`](Self::admit) puts `claim`: started, waiting, or refused.
    fn place(&self, claim: Claim, lease_until: DateTime<Utc>) -> Placed {
        let webhook = claim.delivery.webhook_id;
        let mut busy = self.busy();
        let queued = busy.waiting.of(&webhook);
        if queued == 0 {
            if let Some(permit) = self.start_permit(&mut busy, webhook) {
                return Placed::Started(self.begin(&mut busy, claim, permit));
            }
        }
        let per_endpoint = self.options.per_endpoint.max(1);
        let cap = self.cap_of(&busy, &webhook);
        if busy.waiting.len < self.options.prefetch
            && queued < cap.saturating_sub(per_endpoint).max(1)
        {
            // A slot or a permit freeing up must start it, or wake the loop to.
            busy.limited = true;
            busy.waiting.push(claim, lease_until);
            return Placed::Waiting;
        }
        Placed::Refused(claim)
    }

    /// A permit and one of `webhook`'s endpoint slots, if both are free.
    fn start_permit(&self, busy: &mut Busy, webhook: WebhookId) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        self.take_slot(busy, webhook).then_some(permit)
    }

    /// Starts waiting claims, the longest waiting first, while their endpoints have free
    /// slots and the worker free permits. A claim whose lease would run out before its
    /// request could time out goes back to the queue instead. Claims are made in order under
    /// the same lease, so once a claim is not expiring none made after it is.
    fn start_waiting(&self, tasks: &mut JoinSet<()>) {
        let margin = self.expiry_margin();
        let now = Utc::now();
        let mut starts = Vec::new();
        let mut releases = Vec::new();
        {
            let mut busy = self.busy();
            let mut after = None;
            let mut expiring = true;
            'fronts: while let Some((order, webhook)) = busy.waiting.next_front(after) {
                while let Some(front) = busy.waiting.front(&webhook) {
                    expiring = expiring && front.lease_until.signed_duration_since(now) <= margin;
                    let permit = if expiring {
                        None
                    } else if self.permits.available_permits() == 0 {
                        // Nothing more can start, and nothing later is expiring.
                        break 'fronts;
                    } else {
                        match self.start_permit(&mut busy, webhook) {
                            Some(permit) => Some(permit),
                            None => break,
                        }
                    };
                    let Some(held) = busy.waiting.pop(&webhook) else {
                        break;
                    };
                    match permit {
                        Some(permit) => starts.push(self.begin(&mut busy, held.claim, permit)),
                        None => releases.push((held.claim.delivery.id, held.claim.lease)),
                    }
                }
                after = Some(order);
            }
        }
        for started in starts {
            self.spawn_runner(started, tasks);
        }
        for (id, lease) in releases {
            let worker = self.clone();
            tasks.spawn(async move { worker.release(id, lease).await });
        }
    }

    /// How long a waiting claim's lease must still run for its request to start: the
    /// request timeout.
    fn expiry_margin(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.parts.sender.request_timeout())
            .unwrap_or(chrono::Duration::MAX)
    }

    /// Takes one of `webhook`'s endpoint slots if one is free.
    fn take_slot(&self, busy: &mut Busy, webhook: WebhookId) -> bool {
        let n = busy.per_webhook.entry(webhook).or_insert(0);
        if *n < self.options.per_endpoint.max(1) {
            *n += 1;
            true
        } else {
            false
        }
    }

    /// Lists `claim` as in flight, its endpoint slot taken and `permit` held: from here until
    /// it is recorded, a hard stop returns it to the queue.
    fn begin(&self, busy: &mut Busy, claim: Claim, permit: OwnedSemaphorePermit) -> Started {
        busy.claims.insert(claim.delivery.id, claim.lease);
        busy.attempts = busy.attempts.saturating_add(1);
        let slot = EndpointSlot {
            busy: self.busy.clone(),
            finished: self.finished.clone(),
            webhook: claim.delivery.webhook_id,
            taken: std::time::Instant::now(),
            permit: Some(permit),
        };
        Started { claim, slot }
    }

    async fn release(&self, id: DeliveryId, lease: LeaseId) {
        let span = settle_span(id, "released");
        if let Err(error) = self
            .parts
            .queue
            .finish(&id, lease, Finish::Released, Utc::now())
            .instrument(span)
            .await
        {
            // The lease expires on its own; the delivery is claimed again then.
            self.backend_failed(BackendOperation::Release, Some(id), error);
        }
    }

    /// Returns the claims still waiting for a slot, lets attempts in flight finish within the
    /// grace, then cancels the rest and returns their deliveries to the queue.
    async fn stop(&self, mut tasks: JoinSet<()>) {
        let waiting: Vec<Held> = self.busy().waiting.drain().collect();
        for held in waiting {
            self.release(held.claim.delivery.id, held.claim.lease).await;
        }
        let grace = self.options.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_ok() {
            return;
        }
        tasks.shutdown().await;
        let left: Vec<(DeliveryId, LeaseId)> = self.busy().claims.drain().collect();
        for (id, lease) in left {
            self.release(id, lease).await;
        }
    }
}
