//! The dispatcher: `emit` an event and every subscribed endpoint receives a signed POST.
//!
//! [`Dispatcher`] is the trait host code calls (and can replace in its own tests);
//! [`WebhookDispatcher`] is the crate's implementation, built with [`DispatcherBuilder`].
//!
//! Each emit serializes the event once and records it, with one pending delivery per
//! subscribed webhook, in the [delivery queue](crate::queue) before it returns. Workers
//! ([`WebhookDispatcher::start_worker`]) claim due deliveries, sign the same bytes for each
//! endpoint, send them, and retry by the [retry policy](crate::delivery::retry). A test send is the
//! exception: it is attempted at once, not queued, so its outcome can be shown at once.
//! Sends, test sends and previews all build their requests with [`crate::delivery`].

mod body;
mod receipt;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument;
use url::Url;

use crate::clock::now;
use crate::delivery::{
    self, DeliveryOutcome, DeliveryTicket, Preview, RequestError, Sender, Waiters,
};
use crate::queue::{
    Deliveries, DeliveryQueue, DeliveryRecord, Enqueued, MemoryQueue, NewDelivery, NewEvent,
    QueueError,
};
use crate::store::{ConfigStore, MemoryStore, StoreError, Webhooks};
use crate::transport::guard::AddressPolicy;
use crate::transport::{EgressProxy, HttpTransport, Transport, TransportError};
use crate::webhook::{
    validate, DeliveryId, OrgId, SigningKeys, UnstorableText, Webhook, WebhookId,
};
use crate::worker::{WorkerHandle, WorkerOptions, WorkerParts};
use crate::{Event, EventType};

pub use receipt::Receipt;

/// The default number of deliveries in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 64;
/// The default time one request may take, response included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The default largest payload accepted by `emit`.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

/// Sends events to the webhooks that subscribe to them.
///
/// ```no_run
/// use dataops_webhooks::{Dispatcher, Event, WebhookDispatcher};
///
/// # async fn run(dispatcher: WebhookDispatcher) -> Result<(), Box<dyn std::error::Error>> {
/// let receipt = dispatcher.emit(Event::test("traffic-signs")).await?;
/// if receipt.is_unhandled() {
///     println!("no webhook handles {}: create one", receipt.event_type);
/// }
/// for outcome in receipt.outcomes().await {
///     if let Some(error) = outcome.error_message() {
///         eprintln!("{}: {error}", outcome.url);
///     }
/// }
/// # Ok(()) }
/// ```
///
/// Host code takes `impl Dispatcher` (or `Arc<dyn Dispatcher>`) so its tests can pass
/// `testing::FakeDispatcher` (feature `test-util`). An implementation of its own, such as one
/// that mutes a project and passes everything else on:
///
/// ```
/// use async_trait::async_trait;
/// use dataops_webhooks::webhook::{EventId, OrgId, WebhookId};
/// use dataops_webhooks::{DeliveryOutcome, DispatchError, Dispatcher, Emit, Event, Preview, Receipt};
///
/// #[derive(Debug)]
/// struct Muted<D> {
///     inner: D,
///     project: String,
/// }
///
/// #[async_trait]
/// impl<D: Dispatcher> Dispatcher for Muted<D> {
///     async fn emit_with(&self, emit: Emit) -> Result<Receipt, DispatchError> {
///         if emit.event.project() == self.project {
///             let org = emit.org.clone().unwrap_or_default();
///             return Ok(Receipt::new(EventId::new(), emit.event.event_type(), org, self.project.clone(), Vec::new()));
///         }
///         self.inner.emit_with(emit).await
///     }
///
///     async fn send_test(&self, webhook: &WebhookId) -> Result<DeliveryOutcome, DispatchError> {
///         self.inner.send_test(webhook).await
///     }
///
///     async fn preview(&self, webhook: &WebhookId, event: &Event) -> Result<Preview, DispatchError> {
///         self.inner.preview(webhook, event).await
///     }
/// }
/// ```
#[async_trait]
pub trait Dispatcher: Send + Sync {
    /// Records an event for delivery to every active webhook subscribed to its type, in its
    /// project or organization-wide, and returns once the deliveries are in the queue (from
    /// then on they are delivered at least once, or end dead in the delivery log). Wait for
    /// their first attempts with [`Receipt::outcomes`].
    ///
    /// # Errors
    /// [`DispatchError`] when the event cannot be serialized or the store or queue fails;
    /// nothing is recorded then.
    async fn emit_with(&self, emit: Emit) -> Result<Receipt, DispatchError>;

    /// Sends the test event to one webhook, active or not, through the same pipeline, and
    /// returns its outcome: success, the endpoint's status and message, or the error.
    ///
    /// # Errors
    /// [`DispatchError::WebhookNotFound`]; [`DispatchError::Store`].
    async fn send_test(&self, webhook: &WebhookId) -> Result<DeliveryOutcome, DispatchError>;

    /// The exact request `webhook` would receive for `event`, without sending it.
    ///
    /// # Errors
    /// As [`send_test`](Self::send_test), and [`DispatchError::Serialize`].
    async fn preview(&self, webhook: &WebhookId, event: &Event) -> Result<Preview, DispatchError>;

    /// [`emit_with`](Self::emit_with) for the dispatcher's default organization.
    ///
    /// # Errors
    /// As [`emit_with`](Self::emit_with).
    async fn emit(&self, event: Event) -> Result<Receipt, DispatchError> {
        self.emit_with(Emit::new(event)).await
    }
}

/// An event to emit, with its options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Emit {
    /// The event.
    pub event: Event,
    /// Its organization; `None` is the dispatcher's default.
    pub org: Option<OrgId>,
    /// A key naming this emit: emitting the same key again (in the same organization)
    /// returns the first receipt and records nothing new.
    pub idempotency_key: Option<String>,
}

impl Emit {
    /// Emits `event` for the default organization.
    pub fn new(event: Event) -> Self {
        Self {
            event,
            org: None,
            idempotency_key: None,
        }
    }

    /// Makes the emit idempotent under `key` (1 to 255 bytes), such as the id of the host's
    /// own record that caused the event.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Emits for `org`.
    #[must_use]
    pub fn org(mut self, org: impl Into<OrgId>) -> Self {
        self.org = Some(org.into());
        self
    }
}

impl From<Event> for Emit {
    fn from(event: Event) -> Self {
        Self::new(event)
    }
}

/// Why an emit, test send or preview could not go ahead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The event cannot be written as JSON (a NaN or infinite number, a metadata key that
    /// collides with a documented field).
    #[error("the event cannot be serialized: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The serialized event is larger than the dispatcher accepts.
    #[error("the event is {actual} bytes as JSON; the limit is {limit}: send large data by reference (a URL) instead")]
    PayloadTooLarge {
        /// Its size.
        actual: usize,
        /// The limit.
        limit: usize,
    },
    /// No webhook has this id.
    #[error("webhook {0} does not exist")]
    WebhookNotFound(WebhookId),
    /// The config store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The default transport could not be built.
    #[error("could not build the HTTP transport: {0}")]
    Transport(#[source] TransportError),
    /// The stored webhook cannot make a valid request (a custom store returned a header or
    /// secret the crate's validation refuses); fix it with [`Webhooks::update`].
    #[error("the request for this webhook cannot be built: {0}")]
    Request(#[source] RequestError),
    /// The delivery queue failed; the event was not recorded.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The idempotency key is empty or longer than 255 bytes.
    #[error("the idempotency key must be 1 to 255 bytes; it is {0} bytes")]
    BadIdempotencyKey(usize),
    /// The organization id, project or idempotency key holds text no backend can store;
    /// nothing was recorded.
    #[error(transparent)]
    UnstorableText(#[from] UnstorableText),
}

/// The crate's [`Dispatcher`]: a cheap-to-clone handle; clones share the store, transport
/// and concurrency limit.
#[derive(Debug, Clone)]
pub struct WebhookDispatcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ConfigStore>,
    queue: Arc<dyn DeliveryQueue>,
    sender: Sender,
    webhooks: Webhooks,
    deliveries: Deliveries,
    default_org: OrgId,
    permits: Semaphore,
    max_payload_bytes: usize,
    /// The size of the last body serialized, to size the next one's buffer.
    body_size: body::BodySize,
    waiters: Arc<Waiters>,
    /// Woken when deliveries become due now (emit, redeliver), so idle workers claim them.
    wake: Arc<Notify>,
    /// Workers of this dispatcher that are running.
    running: Arc<std::sync::atomic::AtomicUsize>,
    /// An emit found no running worker and said so; cleared when a worker starts.
    warned_idle: AtomicBool,
}

/// Builds a [`WebhookDispatcher`]. Setters never fail; [`build`](Self::build) may.
///
/// ```
/// use std::sync::Arc;
/// use dataops_webhooks::store::MemoryStore;
/// use dataops_webhooks::WebhookDispatcher;
///
/// let dispatcher = WebhookDispatcher::builder()
///     .store(Arc::new(MemoryStore::new()))
///     .concurrency(32)
///     .build()?;
/// # let _ = dispatcher;
/// # Ok::<(), dataops_webhooks::DispatchError>(())
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct DispatcherBuilder {
    store: Option<Arc<dyn ConfigStore>>,
    queue: Option<Arc<dyn DeliveryQueue>>,
    transport: Option<Arc<dyn Transport>>,
    policy: AddressPolicy,
    proxy: Option<EgressProxy>,
    default_org: OrgId,
    concurrency: Option<usize>,
    request_timeout: Option<Duration>,
    max_payload_bytes: Option<usize>,
}

impl DispatcherBuilder {
    /// Where configuration lives (default: a new [`MemoryStore`]).
    pub fn store(mut self, store: Arc<dyn ConfigStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Where deliveries wait (default: a new [`MemoryQueue`]). A durable backend keeps them
    /// across restarts, and usually serves as the [`store`](Self::store) too.
    pub fn queue(mut self, queue: Arc<dyn DeliveryQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// One backend as both the [`store`](Self::store) and the [`queue`](Self::queue), as
    /// `SqliteStore` and `PostgresStore` are.
    pub fn backend<B: ConfigStore + DeliveryQueue + 'static>(self, backend: Arc<B>) -> Self {
        self.store(backend.clone()).queue(backend)
    }

    /// How requests are sent (default: [`HttpTransport`] with this builder's address
    /// policy). A custom transport applies its own address rules at send time.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Which addresses webhooks may point at (default: public only). Checked when a webhook
    /// is configured and, by the default transport, at every send.
    pub fn address_policy(mut self, policy: AddressPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sends every request of the default transport through `proxy` (a static egress
    /// address customers can allow-list). Ignored when a [`transport`](Self::transport) is
    /// given.
    pub fn proxy(mut self, proxy: EgressProxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// The organization of `emit` and of new webhooks that name none (default `"default"`).
    pub fn default_org(mut self, org: impl Into<OrgId>) -> Self {
        self.default_org = org.into();
        self
    }

    /// Test sends in flight at once (default 64, at least 1). Queued deliveries are bounded
    /// by their worker's [`WorkerOptions`].
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = Some(limit.max(1));
        self
    }

    /// Time one request may take, response body included (default 15 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Largest serialized event accepted (default 16 MiB).
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = Some(limit);
        self
    }

    /// Builds the dispatcher.
    ///
    /// # Errors
    /// [`DispatchError::Transport`] when the default transport cannot be built.
    pub fn build(self) -> Result<WebhookDispatcher, DispatchError> {
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn ConfigStore>);
        let transport = match self.transport {
            Some(t) => t,
            None => {
                let builder = HttpTransport::builder().address_policy(self.policy.clone());
                let builder = match self.proxy {
                    Some(proxy) => builder.proxy(proxy),
                    None => builder,
                };
                Arc::new(builder.build().map_err(DispatchError::Transport)?)
            }
        };
        let webhooks = Webhooks::new(store.clone())
            .address_policy(self.policy)
            .default_org(self.default_org.clone());
        let queue = self
            .queue
            .unwrap_or_else(|| Arc::new(MemoryQueue::new()) as Arc<dyn DeliveryQueue>);
        let wake = Arc::new(Notify::new());
        Ok(WebhookDispatcher {
            inner: Arc::new(Inner {
                store,
                deliveries: Deliveries::new(queue.clone(), wake.clone()),
                queue,
                sender: Sender::new(
                    transport,
                    self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
                ),
                webhooks,
                waiters: Arc::default(),
                wake,
                running: Arc::default(),
                warned_idle: AtomicBool::new(false),
                default_org: self.default_org,
                permits: Semaphore::new(self.concurrency.unwrap_or(DEFAULT_CONCURRENCY)),
                max_payload_bytes: self.max_payload_bytes.unwrap_or(DEFAULT_MAX_PAYLOAD_BYTES),
                body_size: body::BodySize::default(),
            }),
        })
    }
}

impl WebhookDispatcher {
    /// A builder with the defaults.
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder::default()
    }

    /// Webhook and secret management over this dispatcher's store.
    pub fn webhooks(&self) -> &Webhooks {
        &self.inner.webhooks
    }

    /// Delivery logs, redelivery and recovery over this dispatcher's queue.
    pub fn deliveries(&self) -> &Deliveries {
        &self.inner.deliveries
    }

    /// Starts a worker on the current tokio runtime: it claims due deliveries from the queue
    /// and attempts them until [`WorkerHandle::shutdown`] (or until the handle is dropped).
    /// Several workers, in this process or in others sharing a durable queue, split the work.
    ///
    /// Nothing is sent without a worker: [`emit`](Dispatcher::emit) only records deliveries.
    /// [`running_workers`](Self::running_workers) tells whether this dispatcher has one.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    #[must_use = "dropping the handle stops the worker; keep it, and call shutdown() to stop"]
    pub fn start_worker(&self, options: WorkerOptions) -> WorkerHandle {
        let parts = WorkerParts {
            store: self.inner.store.clone(),
            queue: self.inner.queue.clone(),
            sender: self.inner.sender.clone(),
            waiters: self.inner.waiters.clone(),
            wake: self.inner.wake.clone(),
            running: self.inner.running.clone(),
        };
        self.inner.warned_idle.store(false, Ordering::Relaxed);
        crate::worker::start(parts, options)
    }

    /// How many workers started from this dispatcher (or its clones) are running now. Zero
    /// means emits are recorded but not sent from this process: start a worker here, or make
    /// sure another process works the same durable queue.
    pub fn running_workers(&self) -> usize {
        self.inner.running.load(Ordering::Relaxed)
    }

    /// Warns once (until a worker starts) that an emit was recorded with no worker running
    /// in this process.
    fn warn_if_idle(&self) {
        if self.running_workers() == 0 && !self.inner.warned_idle.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "dataops_webhooks",
                "an event was recorded but this dispatcher has no running worker: nothing is \
                 sent from this process; call start_worker, unless another process works this queue"
            );
        }
    }

    /// The active webhooks that would receive an event of `event_type` from `project`:
    /// empty means "prompt the user to create one".
    ///
    /// # Errors
    /// [`DispatchError::Store`].
    pub async fn subscribers(
        &self,
        org: Option<&OrgId>,
        project: &str,
        event_type: EventType,
    ) -> Result<Vec<Webhook>, DispatchError> {
        let org = org.unwrap_or(&self.inner.default_org);
        Ok(self
            .inner
            .store
            .subscribers(org, project, event_type)
            .await?)
    }

    fn serialize(&self, event: &Event) -> Result<Bytes, DispatchError> {
        let body = self
            .inner
            .body_size
            .serialize(event)
            .map_err(DispatchError::Serialize)?;
        let limit = self.inner.max_payload_bytes;
        if body.len() > limit {
            return Err(DispatchError::PayloadTooLarge {
                actual: body.len(),
                limit,
            });
        }
        Ok(Bytes::from(body))
    }

    /// The records an emit writes — the serialized event and one delivery per subscribed
    /// webhook — without writing them: for backends that record them in the host's own
    /// transaction (such as `PostgresStore::emit_in`, feature `postgres`).
    ///
    /// # Errors
    /// As [`Dispatcher::emit_with`]; nothing is recorded in any case.
    pub async fn prepare(&self, emit: Emit) -> Result<NewEvent, DispatchError> {
        Ok(self.plan(emit).await?.0)
    }

    /// The event to record for `emit`, and the URL of each delivery's webhook.
    async fn plan(&self, emit: Emit) -> Result<(NewEvent, Vec<Url>), DispatchError> {
        if let Some(key) = &emit.idempotency_key {
            if key.is_empty() || key.len() > 255 {
                return Err(DispatchError::BadIdempotencyKey(key.len()));
            }
            validate::storable("idempotency key", key)?;
        }
        let org = emit.org.unwrap_or_else(|| self.inner.default_org.clone());
        validate::storable("organization id", org.as_str())?;
        validate::storable("project name", emit.event.project())?;
        let event_type = emit.event.event_type();
        let project = emit.event.project().to_owned();
        let body = self.serialize(&emit.event)?;
        let webhooks = self
            .inner
            .store
            .subscribers(&org, &project, event_type)
            .await?;
        let mut event = NewEvent::new(org, project, event_type, body, now());
        event.idempotency_key = emit.idempotency_key;
        let mut urls = Vec::with_capacity(webhooks.len());
        for webhook in webhooks {
            event.deliveries.push(NewDelivery::new(
                DeliveryId::new(),
                webhook.id,
                webhook.url.as_str(),
            ));
            urls.push(webhook.url);
        }
        Ok((event, urls))
    }

    /// Tickets for the deliveries of an earlier emit with the same idempotency key: those
    /// attempted already carry the outcome of their first attempt.
    async fn tickets_of(
        &self,
        deliveries: Vec<DeliveryRecord>,
    ) -> Result<Vec<DeliveryTicket>, DispatchError> {
        let mut tickets = Vec::with_capacity(deliveries.len());
        for record in deliveries {
            let Ok(url) = Url::parse(&record.url) else {
                continue;
            };
            let ticket = self.inner.waiters.ticket(record.id, record.webhook_id, url);
            // Registered before reading the log, so an attempt finishing in between is seen.
            if let Some(first) = self.inner.queue.attempts(&record.id).await?.first() {
                self.inner.waiters.fulfil(DeliveryOutcome {
                    delivery_id: record.id,
                    webhook_id: record.webhook_id,
                    url: ticket.url.clone(),
                    attempted_at: first.attempted_at,
                    result: first.to_result(),
                    next_attempt_at: None,
                });
            }
            tickets.push(ticket);
        }
        Ok(tickets)
    }

    async fn load(&self, id: &WebhookId) -> Result<Webhook, DispatchError> {
        self.inner
            .store
            .get_webhook(id)
            .await?
            .ok_or(DispatchError::WebhookNotFound(*id))
    }
}

impl Inner {
    /// The organization's keys, fetched only when the webhook signs with them.
    pub(crate) async fn keys_for(
        &self,
        webhook: &Webhook,
    ) -> Result<Option<SigningKeys>, StoreError> {
        if webhook.secret.is_some() {
            return Ok(None);
        }
        self.store.signing_keys(&webhook.org).await
    }
}

#[async_trait]
impl Dispatcher for WebhookDispatcher {
    async fn emit_with(&self, emit: Emit) -> Result<Receipt, DispatchError> {
        let span = tracing::info_span!(
            target: "dataops_webhooks",
            "emit",
            event_type = emit.event.event_type().as_str(),
            project = emit.event.project(),
            org = %emit.org.as_ref().unwrap_or(&self.inner.default_org),
            event_id = tracing::field::Empty,
            deliveries = tracing::field::Empty,
        );
        // Unwrapped when nobody listens: no subscriber, no cost.
        if span.is_disabled() {
            return self.emit_in_span(emit, &span).await;
        }
        self.emit_in_span(emit, &span)
            .instrument(span.clone())
            .await
    }

    async fn send_test(&self, webhook_id: &WebhookId) -> Result<DeliveryOutcome, DispatchError> {
        let span = tracing::info_span!(
            target: "dataops_webhooks",
            "send_test",
            webhook_id = %webhook_id,
            url_host = tracing::field::Empty,
            delivery_id = tracing::field::Empty,
            status = tracing::field::Empty,
            error_kind = tracing::field::Empty,
        );
        self.send_test_in_span(webhook_id, &span)
            .instrument(span.clone())
            .await
    }

    async fn preview(
        &self,
        webhook_id: &WebhookId,
        event: &Event,
    ) -> Result<Preview, DispatchError> {
        let webhook = self.load(webhook_id).await?;
        let body = self.serialize(event)?;
        let keys = self.inner.keys_for(&webhook).await?;
        let delivery_id = DeliveryId::new();
        let headers = delivery::headers(
            &webhook,
            keys.as_ref(),
            delivery_id,
            event.event_type(),
            now(),
            &body,
        )
        .map_err(DispatchError::Request)?;
        Ok(Preview {
            webhook_id: webhook.id,
            url: webhook.url,
            delivery_id,
            headers,
            body,
        })
    }
}

impl WebhookDispatcher {
    /// [`Dispatcher::emit_with`], recording what it did in `span`.
    async fn emit_in_span(
        &self,
        emit: Emit,
        span: &tracing::Span,
    ) -> Result<Receipt, DispatchError> {
        let (event, urls) = self.plan(emit).await?;
        span.record("event_id", tracing::field::display(event.id));
        span.record("deliveries", event.deliveries.len());
        // Registered before the deliveries exist, so no worker can finish one unseen.
        let tickets: Vec<DeliveryTicket> = event
            .deliveries
            .iter()
            .zip(urls)
            .map(|(d, url)| self.inner.waiters.ticket(d.id, d.webhook_id, url))
            .collect();
        let mut receipt = Receipt {
            event_id: event.id,
            event_type: event.event_type,
            org: event.org.clone(),
            project: event.project.clone(),
            deliveries: Vec::new(),
        };
        // An unhandled event is not recorded, unless its key must be remembered.
        if tickets.is_empty() && event.idempotency_key.is_none() {
            return Ok(receipt);
        }
        let (event_type, count) = (event.event_type, event.deliveries.len());
        match self.inner.queue.enqueue(event).await? {
            Enqueued::New => {
                crate::telemetry::emitted(event_type, count);
                receipt.deliveries = tickets;
                self.inner.wake.notify_one();
                if count > 0 {
                    self.warn_if_idle();
                }
            }
            Enqueued::Duplicate {
                event_id,
                deliveries,
            } => {
                receipt.event_id = event_id;
                receipt.deliveries = self.tickets_of(deliveries).await?;
            }
        }
        Ok(receipt)
    }

    /// [`Dispatcher::send_test`], recording what it did in `span`, and keeping the send in
    /// the delivery log where the queue can.
    async fn send_test_in_span(
        &self,
        webhook_id: &WebhookId,
        span: &tracing::Span,
    ) -> Result<DeliveryOutcome, DispatchError> {
        let webhook = self.load(webhook_id).await?;
        span.record("url_host", webhook.url.host_str().unwrap_or_default());
        let event = Event::test(webhook.scope.project().unwrap_or_default());
        let body = self.serialize(&event)?;
        let keys = self.inner.keys_for(&webhook).await?;
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.inner.permits.acquire().await.ok();
        let delivery_id = DeliveryId::new();
        span.record("delivery_id", tracing::field::display(delivery_id));
        let sent = self
            .inner
            .sender
            .send(
                &webhook,
                keys.as_ref(),
                delivery_id,
                EventType::Test,
                body.clone(),
            )
            .await;
        let log = sent.log();
        if let Some(status) = log.status {
            span.record("status", status);
        }
        if let Some(kind) = log.error_kind {
            span.record("error_kind", kind.as_str());
        }
        crate::telemetry::test_sent(log.is_success());
        let mut record = NewEvent::new(
            webhook.org.clone(),
            event.project(),
            EventType::Test,
            body,
            sent.attempted_at,
        );
        record.deliveries.push(NewDelivery::new(
            delivery_id,
            webhook.id,
            webhook.url.as_str(),
        ));
        match self.inner.queue.record_test(record, log).await {
            Ok(()) | Err(QueueError::Unsupported(_)) => {}
            Err(error) => {
                // The send happened and its outcome is returned; only its record is missing.
                tracing::warn!(
                    target: "dataops_webhooks",
                    delivery_id = %delivery_id,
                    error = %crate::telemetry::chain(&error),
                    "a test send could not be kept in the delivery log"
                );
            }
        }
        Ok(sent.outcome(delivery_id, &webhook, None))
    }
}
