//! # dataops-webhooks
//!
//! A webhook engine for data-operations platforms for ML datasets. A host application
//! describes what happened as a typed [`Event`] and calls `dispatcher.emit(event)`; every
//! webhook subscribed to that event receives a signed JSON POST, at least once: deliveries are
//! recorded in a queue before `emit` returns and a worker retries them until they succeed or
//! their schedule runs out. Receivers use the same crate to verify the signature and read the
//! event back.
//!
//! - [`event`]: the five platform events and the test event, written and read to the byte.
//! - [`webhook`] and [`Webhooks`]: configuration (scope, URL, events, status, headers,
//!   secrets) and its management; [`store`]: where it lives ([`ConfigStore`]).
//! - [`signing`]: shared-secret header, Standard Webhooks v1 (HMAC) and v1a (ed25519), hub
//!   signatures, and header profiles ([`signing::HeaderProfile`]) for receivers written for
//!   Labelbox, GitHub or Standard Webhooks.
//! - [`transport`]: the [`Transport`] trait, the reqwest transport, the address guard.
//! - [`Dispatcher`] / [`WebhookDispatcher`]: emit, send a test, preview.
//! - [`queue`] ([`DeliveryQueue`]): the outbox, attempt logs and replay ([`Deliveries`]);
//!   [`delivery`]: one attempt, from request to decision, and the [`retry`] policy;
//!   [`worker`]: the background worker that claims and attempts deliveries.
//! - `sqlite` (feature `sqlite`): configuration and queue in one SQLite file.
//! - `postgres` (feature `postgres`): configuration and queue in a PostgreSQL schema that many
//!   processes share; transactional emit.
//! - [`telemetry`]: the spans, events and metrics the crate emits through `tracing` and
//!   `metrics` (never a subscriber or recorder of its own).
//! - [`receiver`]: verify and parse on the receiving side.
//! - [`labeling`]: hand-off of exported issues to labeling services — helpers on the exported
//!   issue, and a receiver that routes `issue-exported` to a handler (axum: feature `axum`).
//! - `management` (feature `management`): the Webhooks tab — a JSON API (OpenAPI 3.1, problem
//!   details, scoped by the host's `Authorizer`) and its embedded page, as an axum router to
//!   nest.
//! - `testing` (feature `test-util`): conformance suites for a host's own store and queue, and
//!   a [`Dispatcher`] test double.
//!
//! ## Emitting
//!
//! ```no_run
//! use dataops_webhooks::event::{Dataset, Event};
//! use dataops_webhooks::webhook::{EventFilter, NewWebhook, Scope};
//! use dataops_webhooks::{Dispatcher, EventType, WebhookDispatcher, WorkerOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let dispatcher = WebhookDispatcher::builder().build()?; // in memory, public targets only
//! let worker = dispatcher.start_worker(WorkerOptions::default()); // sends what emit records
//! let org = Default::default();
//! let secret = dispatcher.webhooks().create_org_secret(&org).await?;
//! println!("write this down, it is shown once: {}", secret.expose());
//! dispatcher
//!     .webhooks()
//!     .create(
//!         NewWebhook::new(Scope::Project("traffic-signs".into()), "https://hooks.example.com/aq")
//!             .events(EventFilter::only([EventType::DatasetComplete])),
//!     )
//!     .await?;
//!
//! let event = Event::dataset_complete("traffic-signs", Dataset { id: "v3".into(), ..Default::default() });
//! let receipt = dispatcher.emit(event).await?;
//! for outcome in receipt.outcomes().await {
//!     println!("{} -> {:?}", outcome.url, outcome.status());
//! }
//! worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Receiving
//!
//! A receiver verifies the signature over the raw body, then reads the event:
//!
//! ```
//! use dataops_webhooks::receiver::Verifier;
//! use dataops_webhooks::secret::Secret;
//! use dataops_webhooks::{Event, EventType};
//!
//! fn handle(secret: &Secret, headers: &http::HeaderMap, body: &[u8]) -> Result<EventType, Box<dyn std::error::Error>> {
//!     let received = Verifier::new(secret.clone()).receive(headers, body)?; // 401 / 400 on error
//!     let event: Event = received.event; // received.delivery_id: the same across retries
//!     Ok(event.event_type())
//! }
//! # let _ = handle;
//! ```
//!
//! ## Durable backends
//!
//! The default queue lives in memory. `SqliteStore` (feature `sqlite`) keeps configuration and
//! deliveries in one file; `PostgresStore` (feature `postgres`) in a schema that many worker
//! processes share. Either is both store and queue:
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use dataops_webhooks::sqlite::SqliteStore;
//! use dataops_webhooks::{WebhookDispatcher, WorkerOptions};
//!
//! let store = Arc::new(SqliteStore::open("webhooks.db").await?); // creates and migrates
//! let dispatcher = WebhookDispatcher::builder().backend(store).build()?;
//! let worker = dispatcher.start_worker(WorkerOptions::default());
//! // ... emit from anywhere in the host; deliveries survive a restart ...
//! worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Your own store and queue
//!
//! A host that keeps its data elsewhere implements [`ConfigStore`] and [`DeliveryQueue`]
//! (and may replace the [`Transport`]). Every type their methods take or return can be built
//! outside the crate, and the rules are the crate's: [`queue::Finish::transition`] says what a
//! settle does to a delivery, so a queue only stores it; `ConfigStore::update_webhook` is a
//! compare-and-set on [`webhook::Webhook::revision`]. With `test-util`,
//! `config_store_conformance!` and `delivery_queue_conformance!` expand into one test per
//! behaviour against the host's backend (see `testing`).
//!
//! ## Testing host code
//!
//! Code written against `impl Dispatcher` is unit-tested with `testing::FakeDispatcher`
//! (feature `test-util`): it records what is emitted and answers with the outcome the test
//! chooses, without a network or a worker.
//!
//! ## Watching it run
//!
//! The crate logs through `tracing` and counts through `metrics`; install any subscriber and
//! recorder (a `tracing-subscriber`, a Prometheus exporter) and the spans, events and metrics
//! listed in [`telemetry`] appear — nothing is exported until you do. For questions an
//! operator asks, [`Deliveries`] answers without SQL:
//!
//! ```no_run
//! use std::time::Duration;
//! # async fn run(dispatcher: dataops_webhooks::WebhookDispatcher, hooks: Vec<dataops_webhooks::webhook::WebhookId>) -> Result<(), Box<dyn std::error::Error>> {
//! let stats = dispatcher.deliveries().statistics(hooks, Duration::from_secs(3600)).await?;
//! println!(
//!     "{} waiting; {} of {} attempts failed in the last hour; p95 {:?}",
//!     stats.overall.pending,
//!     stats.overall.attempts - stats.overall.attempts_succeeded,
//!     stats.overall.attempts,
//!     stats.overall.p95_duration,
//! );
//! # Ok(()) }
//! ```
//!
//! ## Errors
//!
//! Every error is a typed enum or struct that says what happened and what to do:
//! [`DispatchError`] for emits, test sends and previews; [`ManageError`] for configuration
//! (with [`webhook::WebhookError`] naming the field at fault); [`store::StoreError`] and
//! [`queue::QueueError`] from backends, with `is_retryable()`; [`ParseError`] for a payload
//! that does not read, with its JSON path. Nothing is lost when a backend fails after an emit
//! returned: the worker reports a [`HostEvent::BackendError`] (what it was doing, for which
//! delivery, whether it may pass, and the backend's error as the source) and tries again.
//!
//! ## Writing and reading events
//!
//! ```
//! use dataops_webhooks::event::{Dataset, Event};
//!
//! let event = Event::dataset_complete(
//!     "traffic-signs",
//!     Dataset {
//!         id: "traffic-signs-v3".into(),
//!         frame_count: 1_200,
//!         label_count: 5_400,
//!         data_url: vec!["gs://bucket/traffic-signs-v3/frames.jsonl".into()],
//!         dataflow_status: "DONE".into(),
//!         dataflow_status_postprocess: "DONE".into(),
//!         ..Default::default()
//!     },
//! );
//! let body: Vec<u8> = serde_json::to_vec(&event)?;
//! assert!(body.starts_with(br#"{"event":"dataset-complete","project":"traffic-signs","dataset":{"id":"traffic-signs-v3""#));
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! ```
//! use dataops_webhooks::{Event, ParseError};
//!
//! let body = br#"{"event":"issues-created","project":"traffic-signs","issues":[
//!     {"id":"i-1","issue_name":"blurry frames","creation_type":"auto",
//!      "element_type":"frame","num_elements":42}]}"#;
//! match Event::from_slice(body)? {
//!     Event::IssuesCreated(created) => assert_eq!(created.issues[0].num_elements, 42),
//!     other => println!("not handled here: {}", other.event_type()),
//! }
//!
//! // An event type from a newer platform is a typed error naming it.
//! let newer = br#"{"event":"dataset-archived","project":"p","dataset":{}}"#;
//! assert!(matches!(Event::from_slice(newer), Err(ParseError::UnknownEvent(e)) if e.name() == "dataset-archived"));
//! # Ok::<(), ParseError>(())
//! ```
//!
//! ## Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `dispatch` | yes | webhook configuration, [`ConfigStore`] + [`MemoryStore`](store::MemoryStore), [`HttpTransport`](transport::HttpTransport) (reqwest + rustls), the address guard, [`WebhookDispatcher`]; pulls in tokio and reqwest |
//! | `receiver` | yes | [`receiver::Verifier`]: verify and parse requests, with `http` types only (no tokio, no reqwest) |
//! | `sqlite` | no | `sqlite::SqliteStore`: configuration and the delivery queue in one SQLite file (bundled SQLite) |
//! | `postgres` | no | `postgres::PostgresStore`: many worker processes on one database, transactional emit |
//! | `axum` | no | `labeling::axum::export_route`: the labeling export receiver on axum |
//! | `test-util` | no | `testing`: the conformance suites for any [`ConfigStore`] and [`DeliveryQueue`], and `FakeDispatcher` for host tests |
//!
//! The event catalogue, [`secret`] and [`signing`] are always there.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod event;
pub mod labeling;
#[cfg(feature = "management")]
pub mod management;
pub mod secret;
pub mod signing;

#[cfg(feature = "dispatch")]
mod clock;
#[cfg(feature = "dispatch")]
pub mod delivery;
#[cfg(feature = "dispatch")]
mod dispatcher;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "dispatch")]
pub mod queue;
#[cfg(feature = "dispatch")]
mod random;
#[cfg(feature = "receiver")]
pub mod receiver;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "dispatch")]
pub mod store;
#[cfg(feature = "dispatch")]
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;
#[cfg(feature = "dispatch")]
pub mod transport;
#[cfg(feature = "dispatch")]
pub mod webhook;
#[cfg(feature = "dispatch")]
pub mod worker;

pub use error::{ParseError, UnknownEventType};
pub use event::{Event, EventType};

#[cfg(feature = "dispatch")]
pub use delivery::{
    judge, retry, AttemptResult, DeliveryOutcome, DeliveryTicket, Preview, RequestError,
};
#[cfg(feature = "dispatch")]
pub use dispatcher::{
    DispatchError, Dispatcher, DispatcherBuilder, Emit, Receipt, WebhookDispatcher,
    DEFAULT_CONCURRENCY, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_REQUEST_TIMEOUT,
};
#[cfg(feature = "dispatch")]
pub use queue::{Deliveries, DeliveryQueue};
#[cfg(feature = "dispatch")]
pub use store::ConfigStore;
#[cfg(feature = "dispatch")]
pub use store::{ManageError, Webhooks};
#[cfg(feature = "dispatch")]
pub use transport::Transport;
#[cfg(feature = "dispatch")]
pub use worker::{BackendFailure, BackendOperation, HostEvent, WorkerHandle, WorkerOptions};

/// The `User-Agent` of every request: `dataops-webhooks/<version>`.
pub const USER_AGENT: &str = concat!("dataops-webhooks/", env!("CARGO_PKG_VERSION"));

/// The README's Rust snippets, compiled and run as documentation tests.
#[cfg(all(
    doctest,
    feature = "dispatch",
    feature = "receiver",
    feature = "sqlite",
    feature = "postgres",
    feature = "management"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
