//! What a host's tracing subscriber and metrics recorder see: spans, events and metrics of a
//! delivered, a retried, a dead and a disabled delivery and of a test send, captured by a
//! hand-made `tracing` layer and `metrics-util`'s debugging recorder — and that no secret,
//! header value or URL query ever appears in any of it.

#[path = "common/flaky.rs"]
mod flaky;
#[path = "common/wrapped_queue.rs"]
mod wrapped_queue;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dataops_webhooks::event::{Dataset, Event};
use dataops_webhooks::queue::DeliveryStatus;
use dataops_webhooks::retry::RetryPolicy;
use dataops_webhooks::secret::Secret;
use dataops_webhooks::telemetry::names;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, Scope, WebhookId};
use dataops_webhooks::{Dispatcher, WebhookDispatcher, WorkerOptions};
use flaky::Flaky;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event as TraceEvent, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

const MS: Duration = Duration::from_millis(1);

/// A span as it closed: its name and every field recorded on it.
#[derive(Debug, Clone)]
struct SpanSeen {
    name: String,
    fields: BTreeMap<String, String>,
}

/// An event: level, message and fields.
#[derive(Debug, Clone)]
struct EventSeen {
    level: tracing::Level,
    message: String,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Seen {
    open: HashMap<u64, SpanSeen>,
    closed: Vec<SpanSeen>,
    events: Vec<EventSeen>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Seen>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut span = SpanSeen {
            name: attrs.metadata().name().to_owned(),
            fields: BTreeMap::new(),
        };
        attrs.record(&mut Fields(&mut span.fields));
        self.0
            .lock()
            .expect("lock")
            .open
            .insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(span) = self.0.lock().expect("lock").open.get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }

    fn on_event(&self, event: &TraceEvent<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        self.0.lock().expect("lock").events.push(EventSeen {
            level: *event.metadata().level(),
            message,
            fields,
        });
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        let mut seen = self.0.lock().expect("lock");
        if let Some(span) = seen.open.remove(&id.into_u64()) {
            seen.closed.push(span);
        }
    }
}

/// The process's subscriber: installed once, globally (a per-thread one misses callsites
/// that another test's thread reached first while no subscriber listened). Tests hold
/// [`serial`] and start from an empty capture.
fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    let capture = CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(capture.clone()),
            )
            .expect("the test subscriber is the only one");
            capture
        })
        .clone();
    let mut seen = capture.0.lock().expect("lock");
    seen.open.clear();
    seen.closed.clear();
    seen.events.clear();
    drop(seen);
    capture
}

impl Capture {
    fn spans(&self, name: &str) -> Vec<SpanSeen> {
        let seen = self.0.lock().expect("lock");
        seen.closed
            .iter()
            .chain(seen.open.values())
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    fn events(&self) -> Vec<EventSeen> {
        self.0.lock().expect("lock").events.clone()
    }

    /// Everything captured, as text, for the secret check.
    fn text(&self) -> String {
        let seen = self.0.lock().expect("lock");
        let spans = seen.closed.iter().chain(seen.open.values());
        let mut text = String::new();
        for span in spans {
            text.push_str(&format!("{} {:?}\n", span.name, span.fields));
        }
        for event in &seen.events {
            text.push_str(&format!(
                "{} {} {:?}\n",
                event.level, event.message, event.fields
            ));
        }
        text
    }
}

/// The process's metrics recorder (one per process: tests that read metrics hold
/// [`serial`] so each sees only its own).
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("install the debugging recorder");
        snapshotter
    })
}

/// Runs this binary's tests one at a time: the metrics recorder and the tracing subscriber
/// are process-wide.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    snapshotter(); // installed before anything is recorded
    capture();
    SERIAL.lock().await
}

/// Metrics by name and sorted labels, recorded since the last call: each snapshot drains
/// the debugging recorder (counters start again from zero, histograms empty).
type Metrics = Vec<(String, Vec<(String, String)>, DebugValue)>;

fn metrics() -> Metrics {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        // A key seen by an earlier test and drained since reads as zero: not recorded now.
        .filter(|(_, _, _, value)| match value {
            DebugValue::Counter(n) => *n > 0,
            DebugValue::Histogram(values) => !values.is_empty(),
            DebugValue::Gauge(_) => true,
        })
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            (key.name().to_owned(), labels, value)
        })
        .collect()
}

/// The value of counter `name` with exactly `labels`.
fn counter(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    metrics
        .iter()
        .find_map(|(n, l, v)| match v {
            DebugValue::Counter(c) if n == name && *l == want => Some(*c),
            _ => None,
        })
        .unwrap_or(0)
}

/// How many values histogram `name` holds, over all its label sets.
fn histogram_count(metrics: &Metrics, name: &str) -> usize {
    metrics
        .iter()
        .map(|(n, _, v)| match v {
            DebugValue::Histogram(values) if n == name => values.len(),
            _ => 0,
        })
        .sum()
}

fn random_text(prefix: &str) -> String {
    let mut bytes = [0_u8; 12];
    getrandom::fill(&mut bytes).expect("random");
    format!("{prefix}{}", hex::encode(bytes))
}

fn options() -> WorkerOptions {
    WorkerOptions::default()
        .retry(RetryPolicy::new(vec![Duration::ZERO, 30 * MS, 30 * MS, 30 * MS]).jitter(0.0))
        .poll_interval(20 * MS)
        .depth_interval(Some(20 * MS))
        .shutdown_grace(Duration::from_secs(5))
}

fn dispatcher() -> WebhookDispatcher {
    WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(2_000 * MS)
        .build()
        .expect("dispatcher")
}

fn dataset() -> Event {
    Event::dataset_complete(
        "p",
        Dataset {
            id: "v3".into(),
            ..Default::default()
        },
    )
}

/// A webhook of project `p` at `url`.
async fn hook(d: &WebhookDispatcher, url: String) -> WebhookId {
    d.webhooks()
        .create(NewWebhook::new(Scope::Project("p".into()), url))
        .await
        .expect("create")
        .id
}

fn field<'a>(span: &'a SpanSeen, name: &str) -> &'a str {
    span.fields.get(name).map_or("", String::as_str)
}

#[tokio::test]
async fn delivered_retried_dead_and_disabled_are_traced_and_counted_without_secrets() {
    let _serial = serial().await;
    let capture = capture();
    metrics(); // drain what earlier tests recorded
    let server = Flaky::start().await;
    let d = dispatcher();
    let org_secret = d
        .webhooks()
        .create_org_secret(&Default::default())
        .await
        .expect("secret");
    // Secrets, header values and URL queries drawn at random: none may appear anywhere.
    let own_secret = Secret::generate().expect("secret");
    let (token, header_value) = (random_text("tok"), random_text("hdr"));
    let mut hooks: HashMap<&str, WebhookId> = HashMap::new();
    for path in ["/ok", "/first-fails", "/failing", "/gone"] {
        let url = format!("{}?token={token}", server.url(path));
        let mut new = NewWebhook::new(Scope::Project("p".into()), url)
            .header("X-Api-Key", header_value.clone());
        if path == "/ok" {
            new = new.secret(own_secret.clone());
        }
        hooks.insert(path, d.webhooks().create(new).await.expect("create").id);
    }
    let worker = d.start_worker(options());
    let receipt = d.emit(dataset()).await.expect("emit");
    let ids: Vec<_> = receipt.deliveries.iter().map(|t| t.delivery_id).collect();
    assert_eq!(ids.len(), 4);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut settled = 0;
        for id in &ids {
            let record = d
                .deliveries()
                .get(id)
                .await
                .expect("get")
                .expect("recorded");
            settled += usize::from(record.status != DeliveryStatus::Pending);
        }
        if settled == ids.len() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "deliveries settle");
        tokio::time::sleep(20 * MS).await;
    }
    let test = d.send_test(&hooks["/ok"]).await.expect("test send");
    assert!(test.is_success(), "{test:?}");
    tokio::time::sleep(60 * MS).await; // a depth sample after the work
    worker.shutdown().await;

    // The emit span.
    let emits = capture.spans("emit");
    assert_eq!(emits.len(), 1, "one emit span: {emits:?}");
    assert_eq!(field(&emits[0], "event_type"), "dataset-complete");
    assert_eq!(field(&emits[0], "project"), "p");
    assert_eq!(field(&emits[0], "deliveries"), "4");
    assert_eq!(field(&emits[0], "event_id"), receipt.event_id.to_string());

    // Attempt spans: per webhook, by attempt number.
    let attempts = capture.spans("attempt");
    let of = |path: &str| -> Vec<SpanSeen> {
        let mut spans: Vec<SpanSeen> = attempts
            .iter()
            .filter(|s| field(s, "webhook_id") == hooks[path].to_string())
            .cloned()
            .collect();
        spans.sort_by_key(|s| field(s, "attempt").parse::<u32>().unwrap_or(0));
        spans
    };
    let ok = of("/ok");
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(
        (
            field(&ok[0], "decision"),
            field(&ok[0], "status"),
            field(&ok[0], "url_host"),
            field(&ok[0], "attempt"),
            field(&ok[0], "event_type"),
        ),
        ("delivered", "204", "127.0.0.1", "1", "dataset-complete")
    );
    assert!(
        field(&ok[0], "duration_ms").parse::<u64>().is_ok(),
        "{ok:?}"
    );
    assert!(!ok[0].fields.contains_key("error_kind"));
    let retried = of("/first-fails");
    assert_eq!(retried.len(), 2, "{retried:?}");
    assert_eq!(
        (
            field(&retried[0], "decision"),
            field(&retried[0], "status"),
            field(&retried[0], "error_kind")
        ),
        ("retried", "500", "http_status")
    );
    assert!(!field(&retried[0], "retry_at").is_empty(), "{retried:?}");
    assert_eq!(field(&retried[1], "decision"), "delivered");
    let dead = of("/failing");
    assert_eq!(
        dead.iter()
            .map(|s| field(s, "decision"))
            .collect::<Vec<_>>(),
        ["retried", "retried", "retried", "dead"],
        "{dead:?}"
    );
    let gone = of("/gone");
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(
        (
            field(&gone[0], "decision"),
            field(&gone[0], "status"),
            field(&gone[0], "disabled")
        ),
        ("dead", "410", "true")
    );
    assert!(capture
        .spans("claim")
        .iter()
        .any(|s| field(s, "claimed") != "0"));
    let settles = capture.spans("settle");
    assert_eq!(
        settles
            .iter()
            .filter(|s| field(s, "kind") == "attempted")
            .count(),
        8,
        "one settle per attempt: {settles:?}"
    );
    let tests = capture.spans("send_test");
    assert_eq!(tests.len(), 1);
    assert_eq!(field(&tests[0], "status"), "204");

    // Events: a debug per attempt; warnings for the dead and the disabled; nothing at info
    // or above about a delivery that simply succeeded.
    let events = capture.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.level == tracing::Level::DEBUG && e.message == "delivery attempt")
            .count(),
        8
    );
    let loud: Vec<&EventSeen> = events
        .iter()
        .filter(|e| e.level <= tracing::Level::INFO)
        .collect();
    let dead_warnings = loud
        .iter()
        .filter(|e| e.level == tracing::Level::WARN && e.message.starts_with("delivery is dead"))
        .count();
    let disabled_warnings: Vec<_> = loud
        .iter()
        .filter(|e| e.level == tracing::Level::WARN && e.message.starts_with("webhook disabled"))
        .collect();
    assert_eq!(dead_warnings, 2, "{loud:?}");
    assert_eq!(disabled_warnings.len(), 1, "{loud:?}");
    assert_eq!(
        disabled_warnings[0].fields.get("webhook_id"),
        Some(&hooks["/gone"].to_string())
    );
    let expected = ["delivery is dead", "webhook disabled", "webhook recovered"];
    assert!(
        loud.iter()
            .all(|e| expected.iter().any(|m| e.message.starts_with(m))),
        "only the dead, the disabled and the recovered are told at info or above: {loud:?}"
    );

    // Metrics recorded by this test.
    let after = metrics();
    let delta = |name: &str, labels: &[(&str, &str)]| counter(&after, name, labels);
    let ty = ("event_type", "dataset-complete");
    assert_eq!(delta(names::EVENTS_EMITTED, &[ty]), 1);
    assert_eq!(delta(names::DELIVERIES_CREATED, &[ty]), 4);
    let attempts_of = |outcome: &str, kind: &str| {
        delta(
            names::ATTEMPTS,
            &[ty, ("outcome", outcome), ("error_kind", kind)],
        )
    };
    assert_eq!(attempts_of("delivered", "none"), 2);
    assert_eq!(attempts_of("retried", "http_status"), 4);
    assert_eq!(attempts_of("dead", "http_status"), 2);
    assert_eq!(delta(names::WEBHOOKS_DISABLED, &[("reason", "gone")]), 1);
    assert_eq!(delta(names::TEST_SENDS, &[("outcome", "delivered")]), 1);
    assert_eq!(histogram_count(&after, names::ATTEMPT_DURATION), 8);
    assert_eq!(
        histogram_count(&after, names::DELIVERY_LAG),
        4,
        "one lag per delivery, at its first attempt"
    );
    let depth: Vec<_> = after
        .iter()
        .filter(|(n, _, _)| n == names::QUEUE_DEPTH)
        .map(|(_, labels, _)| labels.clone())
        .collect();
    assert_eq!(
        depth.len(),
        3,
        "due, scheduled and in-flight gauges: {depth:?}"
    );
    assert!(
        after
            .iter()
            .all(|(_, labels, _)| labels.iter().all(|(k, _)| k != "webhook_id" && k != "url")),
        "no webhook id without the opt-in, never a URL"
    );

    // Secrets, header values and URL queries: nowhere.
    let mut text = capture.text();
    for (name, labels, _) in &after {
        text.push_str(&format!("{name} {labels:?}\n"));
    }
    for secret in [
        org_secret.expose(),
        own_secret.expose(),
        token.as_str(),
        header_value.as_str(),
    ] {
        assert!(!text.contains(secret), "a secret leaked into:\n{text}");
    }
    assert!(
        !text.contains("/first-fails"),
        "no URL path either:\n{text}"
    );
}

#[tokio::test]
async fn an_emit_without_a_worker_warns_once_and_an_unsigned_webhook_once() {
    let _serial = serial().await;
    let capture = capture();
    let server = Flaky::start().await;
    let d = dispatcher();
    // No organization secret, no secret of its own: sent unsigned.
    let hook = hook(&d, server.url("/ok")).await;
    let idle = |capture: &Capture| {
        capture
            .events()
            .iter()
            .filter(|e| e.level == tracing::Level::WARN && e.message.contains("no running worker"))
            .count()
    };
    for _ in 0..3 {
        d.emit(dataset()).await.expect("emit");
    }
    assert_eq!(idle(&capture), 1, "once, not per emit");
    let worker = d.start_worker(options().metrics_per_webhook(true));
    d.send_test(&hook).await.expect("test send");
    d.send_test(&hook).await.expect("test send");
    let unsigned: Vec<EventSeen> = capture
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::WARN && e.message.contains("unsigned"))
        .collect();
    assert_eq!(unsigned.len(), 1, "once per webhook: {unsigned:?}");
    assert_eq!(
        unsigned[0].fields.get("webhook_id"),
        Some(&hook.to_string())
    );
    worker.shutdown().await;
    d.emit(dataset()).await.expect("emit");
    assert_eq!(idle(&capture), 2, "again after the worker stopped");
}

#[tokio::test]
async fn the_webhook_label_is_opt_in() {
    let _serial = serial().await;
    metrics(); // drain what earlier tests recorded
    let server = Flaky::start().await;
    let d = dispatcher();
    let hook = hook(&d, server.url("/ok")).await;
    let worker = d.start_worker(options().metrics_per_webhook(true));
    let receipt = d.emit(dataset()).await.expect("emit");
    for ticket in receipt.deliveries {
        let outcome = ticket.outcome().await;
        assert!(outcome.is_success(), "{outcome:?}");
    }
    worker.shutdown().await;
    let labelled = metrics()
        .into_iter()
        .filter(|(name, labels, _)| {
            name == names::ATTEMPTS && labels.contains(&("webhook_id".to_owned(), hook.to_string()))
        })
        .count();
    assert_eq!(labelled, 1, "the attempt counter carries the webhook id");
}

#[tokio::test]
async fn an_operator_finds_test_sends_event_deliveries_and_statistics() {
    let _serial = serial().await;
    let server = Flaky::start().await;
    let d = dispatcher();
    let ok = hook(&d, server.url("/ok")).await;
    let gone = hook(&d, server.url("/gone")).await;
    // A test send leaves a record: the delivery and its attempt.
    let test = d.send_test(&gone).await.expect("test send");
    let record = d
        .deliveries()
        .get(&test.delivery_id)
        .await
        .expect("get")
        .expect("the test send is kept");
    assert_eq!(record.status, DeliveryStatus::Dead);
    assert_eq!(record.event_type, dataops_webhooks::EventType::Test);
    let attempts = d
        .deliveries()
        .attempts(&test.delivery_id)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status, Some(410));

    let worker = d.start_worker(options());
    let receipt = d.emit(dataset()).await.expect("emit");
    for ticket in &receipt.deliveries {
        ticket.outcome().await;
    }
    worker.shutdown().await;
    let found = d
        .deliveries()
        .of_event(&receipt.event_id)
        .await
        .expect("of event");
    let mut webhooks: Vec<WebhookId> = found.iter().map(|r| r.webhook_id).collect();
    webhooks.sort();
    let mut expected = vec![ok, gone];
    expected.sort();
    assert_eq!(webhooks, expected, "the event went to both webhooks");

    let stats = d
        .deliveries()
        .statistics(vec![ok, gone], Duration::from_secs(3600))
        .await
        .expect("statistics");
    assert_eq!(
        stats.overall.attempts, 3,
        "two deliveries and the test send"
    );
    assert_eq!(stats.overall.attempts_succeeded, 1);
    assert_eq!(stats.webhooks[&gone].dead, 2);
    assert_eq!(stats.webhooks[&ok].succeeded, 1);
    assert_eq!(d.deliveries().depth().await.expect("depth").due, 0);
}

#[tokio::test]
async fn a_backend_failure_is_warned_with_its_source_chain_and_counted() {
    let _serial = serial().await;
    let capture = capture();
    metrics(); // drain what earlier tests recorded
    let server = Flaky::start().await;
    let d = WebhookDispatcher::builder()
        .queue(Arc::new(wrapped_queue::FailsFirstSettle::default()))
        .address_policy(AddressPolicy::allow_private())
        .build()
        .expect("dispatcher");
    hook(&d, server.url("/ok")).await;
    let worker = d.start_worker(options().lease(Duration::from_secs(3)));
    d.emit(dataset()).await.expect("emit");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let warning = loop {
        let found = capture
            .events()
            .into_iter()
            .find(|e| e.level == tracing::Level::WARN && e.message.contains("store failed"));
        if let Some(found) = found {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a backend failure is warned"
        );
        tokio::time::sleep(10 * MS).await;
    };
    worker.shutdown().await;
    assert_eq!(
        warning.fields.get("operation").map(String::as_str),
        Some("settle")
    );
    assert_eq!(
        warning.fields.get("transient").map(String::as_str),
        Some("true")
    );
    let error = warning.fields.get("error").cloned().unwrap_or_default();
    assert!(
        error.contains("the outbox is unreachable") && error.contains("connection refused"),
        "the message and its source: {error}"
    );
    let after = metrics();
    let label = [("operation", "settle")];
    assert_eq!(counter(&after, names::BACKEND_ERRORS, &label), 1);
}

#[tokio::test]
async fn purges_are_counted_by_kind() {
    let _serial = serial().await;
    metrics(); // drain what earlier tests recorded
    let server = Flaky::start().await;
    let d = dispatcher();
    hook(&d, server.url("/ok")).await;
    let eager = dataops_webhooks::queue::RetentionPolicy::default()
        .succeeded(Duration::ZERO)
        .interval(10 * MS);
    let worker = d.start_worker(options().retention(Some(eager)));
    for _ in 0..3 {
        let receipt = d.emit(dataset()).await.expect("emit");
        for ticket in &receipt.deliveries {
            assert!(ticket.outcome().await.is_success());
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut purged = 0;
    while purged < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "purged {purged} of 3"
        );
        tokio::time::sleep(20 * MS).await;
        purged += counter(&metrics(), names::PURGED, &[("kind", "deliveries")]);
    }
    worker.shutdown().await;
    assert_eq!(purged, 3, "each purged delivery counted once");
}
