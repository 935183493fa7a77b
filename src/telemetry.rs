//! Logs and metrics, through the ecosystem's facades: [`tracing`](https://docs.rs/tracing)
//! spans and events, and [`metrics`](https://docs.rs/metrics) counters, histograms and
//! gauges. The crate never installs a subscriber or a recorder: with none installed, every
//! call here is a cheap no-op, and nothing leaves the process.
//!
//! ## Spans
//!
//! | span (target `dataops_webhooks`) | fields |
//! |---|---|
//! | `emit` | `event_type`, `project`, `org`, `event_id`, `deliveries` |
//! | `send_test` | `webhook_id`, `url_host`, `delivery_id`, `status`, `error_kind` |
//! | `claim` | `limit`, `claimed` |
//! | `attempt` | `delivery_id`, `webhook_id`, `event_type`, `attempt`, `url_host`, then `status`, `duration_ms`, `error_kind`, `decision` (`delivered`, `retry`, `dead`, `abandoned`), `retry_at`, `disabled` |
//! | `settle` (inside `attempt`) | `delivery_id`, `kind` (`attempted`, `abandoned`, `released`) |
//!
//! A span never holds a URL's path or query, a header value, a secret or a payload: only the
//! host part of the endpoint's URL.
//!
//! ## Events
//!
//! | level | when |
//! |---|---|
//! | `warn` | a webhook was disabled by the worker; a delivery is dead (attempts spent or endpoint gone); the queue or store failed (with the error's source chain); an event was emitted while this dispatcher has no running worker (once per dispatcher, until a worker starts); a webhook was sent a request without a signature (once per webhook and process); a retention purge failed |
//! | `debug` | each attempt, with its outcome |
//!
//! Nothing is logged at `info` or above for a delivery that succeeds.
//!
//! ## Metrics
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `dataops_webhooks_events_emitted_total` | counter | `event_type` |
//! | `dataops_webhooks_deliveries_created_total` | counter | `event_type` |
//! | `dataops_webhooks_attempts_total` | counter | `event_type`, `outcome` (`delivered`, `retried`, `dead`, `abandoned`), `error_kind` ([`AttemptErrorKind::as_str`](crate::queue::AttemptErrorKind::as_str) or `none`) |
//! | `dataops_webhooks_attempt_duration_seconds` | histogram | `event_type`, `outcome` |
//! | `dataops_webhooks_delivery_lag_seconds` | histogram | `event_type` — from the emit to its first attempt's request |
//! | `dataops_webhooks_webhooks_disabled_total` | counter | `reason` (`gone`, `failing`) |
//! | `dataops_webhooks_test_sends_total` | counter | `outcome` (`delivered`, `failed`) |
//! | `dataops_webhooks_backend_errors_total` | counter | `operation` ([`BackendOperation::as_str`](crate::worker::BackendOperation::as_str)) |
//! | `dataops_webhooks_queue_depth` | gauge | `state` (`due`, `scheduled`, `in_flight`) — sampled by each worker |
//! | `dataops_webhooks_queue_oldest_due_seconds` | gauge | — age of the oldest delivery due and not yet claimed |
//! | `dataops_webhooks_purged_total` | counter | `kind` (`deliveries`, `attempts`, `events`) — removed by the workers' retention purges |
//!
//! Every label has a fixed, small set of values. The webhook id is added as a `webhook_id`
//! label to the attempt counter and duration histogram only when a worker is started with
//! [`WorkerOptions::metrics_per_webhook`](crate::WorkerOptions::metrics_per_webhook); a URL
//! is never a label.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Key, Label, Metadata};

pub(crate) use crate::error::chain;
use crate::queue::{AttemptErrorKind, QueueDepth};
use crate::webhook::WebhookId;
use crate::EventType;

/// The metric names, for hosts that filter or describe them.
pub mod names {
    /// Events recorded by `emit` (also those with no subscriber, when an idempotency key
    /// made them be recorded; `PostgresStore::emit_in` counts when it writes into the host's
    /// transaction, whether or not that commits). A repeated idempotency key is not counted.
    pub const EVENTS_EMITTED: &str = "dataops_webhooks_events_emitted_total";
    /// Deliveries recorded by `emit`, one per subscribed webhook.
    pub const DELIVERIES_CREATED: &str = "dataops_webhooks_deliveries_created_total";
    /// Attempts by outcome and error kind (abandoned deliveries count here, not attempted).
    pub const ATTEMPTS: &str = "dataops_webhooks_attempts_total";
    /// How long an attempt's request took, in seconds.
    pub const ATTEMPT_DURATION: &str = "dataops_webhooks_attempt_duration_seconds";
    /// From an emit to its delivery's first request, in seconds.
    pub const DELIVERY_LAG: &str = "dataops_webhooks_delivery_lag_seconds";
    /// Webhooks the worker disabled.
    pub const WEBHOOKS_DISABLED: &str = "dataops_webhooks_webhooks_disabled_total";
    /// Test sends by outcome.
    pub const TEST_SENDS: &str = "dataops_webhooks_test_sends_total";
    /// Failures of the queue or store met by the worker.
    pub const BACKEND_ERRORS: &str = "dataops_webhooks_backend_errors_total";
    /// Pending deliveries by state, sampled by each worker.
    pub const QUEUE_DEPTH: &str = "dataops_webhooks_queue_depth";
    /// Age of the oldest delivery due and not claimed, in seconds.
    pub const QUEUE_OLDEST_DUE: &str = "dataops_webhooks_queue_oldest_due_seconds";
    /// Rows the workers' purges removed, by kind.
    pub const PURGED: &str = "dataops_webhooks_purged_total";
}

/// How an attempt ended, as the metrics and spans name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Label order: the discriminants index the metric keys.
    Delivered,
    Retried,
    Dead,
    Abandoned,
}

impl Outcome {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retried => "retried",
            Self::Dead => "dead",
            Self::Abandoned => "abandoned",
        }
    }
}

/// Gives each metric its unit and description, for recorders that show them. Called when a
/// worker starts; harmless to repeat.
pub(crate) fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(names::EVENTS_EMITTED, "Events recorded by emit");
    describe_counter!(
        names::DELIVERIES_CREATED,
        "Deliveries recorded by emit, one per subscribed webhook"
    );
    describe_counter!(
        names::ATTEMPTS,
        "Delivery attempts by outcome and error kind"
    );
    describe_histogram!(
        names::ATTEMPT_DURATION,
        Unit::Seconds,
        "Duration of a delivery attempt's request"
    );
    describe_histogram!(
        names::DELIVERY_LAG,
        Unit::Seconds,
        "From an emit to its delivery's first request"
    );
    describe_counter!(names::WEBHOOKS_DISABLED, "Webhooks the worker disabled");
    describe_counter!(names::TEST_SENDS, "Test sends by outcome");
    describe_counter!(
        names::BACKEND_ERRORS,
        "Failures of the delivery queue or config store met by the worker"
    );
    describe_gauge!(names::QUEUE_DEPTH, "Pending deliveries by state");
    describe_counter!(names::PURGED, "Rows removed by retention purges, by kind");
    describe_gauge!(
        names::QUEUE_OLDEST_DUE,
        Unit::Seconds,
        "Age of the oldest delivery due and not yet claimed"
    );
}

/// Where the crate's metrics say they come from.
static METADATA: Metadata<'static> = Metadata::new(
    "dataops_webhooks",
    metrics::Level::INFO,
    Some(module_path!()),
);

/// The outcomes, in [`Outcome`] order.
const OUTCOMES: [Outcome; 4] = [
    Outcome::Delivered,
    Outcome::Retried,
    Outcome::Dead,
    Outcome::Abandoned,
];

/// Error kinds in label order: [`AttemptErrorKind::ALL`], then `none`.
const KINDS: usize = AttemptErrorKind::ALL.len() + 1;

fn kind_index(kind: Option<AttemptErrorKind>) -> usize {
    kind.and_then(|k| AttemptErrorKind::ALL.iter().position(|x| *x == k))
        .unwrap_or(KINDS - 1)
}

fn kind_name(index: usize) -> &'static str {
    AttemptErrorKind::ALL
        .get(index)
        .map_or("none", |k| k.as_str())
}

/// Every event type, in label order.
const EVENT_TYPES: [EventType; 6] = [
    EventType::DatasetComplete,
    EventType::DatasetFailed,
    EventType::IssuesCreated,
    EventType::IssueUpdated,
    EventType::IssueExported,
    EventType::Test,
];

fn event_index(event_type: EventType) -> usize {
    EVENT_TYPES
        .iter()
        .position(|t| *t == event_type)
        .unwrap_or_default()
}

/// The keys of the per-delivery metrics, built (and hashed) once: recording with no
/// recorder installed then costs a lookup, not a key per call.
struct Keys {
    emitted: Vec<Key>,
    created: Vec<Key>,
    /// By event type, outcome, error kind.
    attempts: Vec<Key>,
    /// By event type, outcome.
    durations: Vec<Key>,
    lag: Vec<Key>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let typed = |name: &'static str| -> Vec<Key> {
            EVENT_TYPES
                .iter()
                .map(|t| Key::from_parts(name, vec![Label::new("event_type", t.as_str())]))
                .collect()
        };
        let mut attempts = Vec::with_capacity(EVENT_TYPES.len() * OUTCOMES.len() * KINDS);
        let mut durations = Vec::with_capacity(EVENT_TYPES.len() * OUTCOMES.len());
        for t in EVENT_TYPES {
            for outcome in OUTCOMES {
                for kind in 0..KINDS {
                    attempts.push(Key::from_parts(
                        names::ATTEMPTS,
                        vec![
                            Label::new("event_type", t.as_str()),
                            Label::new("outcome", outcome.as_str()),
                            Label::new("error_kind", kind_name(kind)),
                        ],
                    ));
                }
                durations.push(Key::from_parts(
                    names::ATTEMPT_DURATION,
                    vec![
                        Label::new("event_type", t.as_str()),
                        Label::new("outcome", outcome.as_str()),
                    ],
                ));
            }
        }
        Keys {
            emitted: typed(names::EVENTS_EMITTED),
            created: typed(names::DELIVERIES_CREATED),
            attempts,
            durations,
            lag: typed(names::DELIVERY_LAG),
        }
    })
}

fn add(key: Option<&Key>, n: u64) {
    if let Some(key) = key {
        metrics::with_recorder(|r| r.register_counter(key, &METADATA).increment(n));
    }
}

fn record(key: Option<&Key>, value: f64) {
    if let Some(key) = key {
        metrics::with_recorder(|r| r.register_histogram(key, &METADATA).record(value));
    }
}

/// An emit recorded an event with `deliveries` deliveries.
pub(crate) fn emitted(event_type: EventType, deliveries: usize) {
    let (keys, t) = (keys(), event_index(event_type));
    add(keys.emitted.get(t), 1);
    add(
        keys.created.get(t),
        u64::try_from(deliveries).unwrap_or(u64::MAX),
    );
}

/// An attempt ended (or a delivery was abandoned: `duration` is `None`).
pub(crate) fn attempted(
    event_type: EventType,
    outcome: Outcome,
    error_kind: Option<AttemptErrorKind>,
    duration: Option<Duration>,
    webhook: Option<&WebhookId>,
) {
    if let Some(webhook) = webhook {
        return attempted_by_webhook(event_type, outcome, error_kind, duration, webhook);
    }
    let keys = keys();
    let typed = event_index(event_type) * OUTCOMES.len() + outcome as usize;
    add(keys.attempts.get(typed * KINDS + kind_index(error_kind)), 1);
    if let Some(d) = duration {
        record(keys.durations.get(typed), d.as_secs_f64());
    }
}

/// [`attempted`] with the opt-in `webhook_id` label: one key per call.
fn attempted_by_webhook(
    event_type: EventType,
    outcome: Outcome,
    error_kind: Option<AttemptErrorKind>,
    duration: Option<Duration>,
    webhook: &WebhookId,
) {
    let (event_type, outcome) = (event_type.as_str(), outcome.as_str());
    let kind = error_kind.map_or("none", AttemptErrorKind::as_str);
    let webhook = webhook.to_string();
    counter!(names::ATTEMPTS, "event_type" => event_type, "outcome" => outcome,
        "error_kind" => kind, "webhook_id" => webhook.clone())
    .increment(1);
    if let Some(d) = duration {
        histogram!(names::ATTEMPT_DURATION, "event_type" => event_type,
            "outcome" => outcome, "webhook_id" => webhook)
        .record(d.as_secs_f64());
    }
}

/// A delivery's first request went out `lag` after its emit.
pub(crate) fn first_attempt_lag(event_type: EventType, lag: Duration) {
    record(keys().lag.get(event_index(event_type)), lag.as_secs_f64());
}

/// The worker disabled a webhook: `gone` (410) or `failing` (the health window).
pub(crate) fn disabled(reason: &'static str) {
    counter!(names::WEBHOOKS_DISABLED, "reason" => reason).increment(1);
}

/// A test send ended.
pub(crate) fn test_sent(delivered: bool) {
    let outcome = if delivered { "delivered" } else { "failed" };
    counter!(names::TEST_SENDS, "outcome" => outcome).increment(1);
}

/// The worker met a backend failure during `operation`.
pub(crate) fn backend_error(operation: &'static str) {
    counter!(names::BACKEND_ERRORS, "operation" => operation).increment(1);
}

/// A purge removed these rows.
pub(crate) fn purged(report: &crate::queue::PurgeReport) {
    for (kind, n) in [
        ("deliveries", report.deliveries),
        ("attempts", report.attempts),
        ("events", report.events),
    ] {
        if n > 0 {
            counter!(names::PURGED, "kind" => kind).increment(n);
        }
    }
}

/// A sample of the queue's depth.
pub(crate) fn depth(depth: &QueueDepth, now: chrono::DateTime<chrono::Utc>) {
    #[allow(clippy::cast_precision_loss)] // a gauge; counts beyond 2^53 are approximate
    let count = |n: u64| n as f64;
    gauge!(names::QUEUE_DEPTH, "state" => "due").set(count(depth.due));
    gauge!(names::QUEUE_DEPTH, "state" => "scheduled").set(count(depth.scheduled));
    gauge!(names::QUEUE_DEPTH, "state" => "in_flight").set(count(depth.in_flight));
    let age = depth
        .oldest_due
        .and_then(|at| (now - at).to_std().ok())
        .unwrap_or_default();
    gauge!(names::QUEUE_OLDEST_DUE).set(age.as_secs_f64());
}
