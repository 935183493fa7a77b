//! Crash test: a child process emits 5,000 events into a SQLite-backed dispatcher whose
//! receiver is slow, and is killed with SIGKILL halfway through, with emits and deliveries in
//! flight; a second process on the same file emits the rest (idempotently: a repeated emit of
//! a recorded event records nothing new) and finishes the work. Every event is received at
//! least once, and a duplicate always carries the same delivery id.
//!
//! The children are this test binary run again with `--ignored --exact crash_child`, told
//! what to do by environment variables.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use dataops_webhooks::event::{Dataset, DatasetEntity, DatasetEvent, Event};
use dataops_webhooks::queue::{DeliveryQuery, DeliveryStatus};
use dataops_webhooks::retry::RetryPolicy;
use dataops_webhooks::sqlite::SqliteStore;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, Scope, WebhookId};
use dataops_webhooks::{Dispatcher, Emit, WebhookDispatcher, WorkerOptions};

const EVENTS: usize = 5_000;

/// What the receiver saw: (dataset id, delivery id) per request.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

async fn slow_receiver() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let log = log.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let delivery = headers
                .get("x-aquarium-delivery")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            match Event::from_slice(&body) {
                Ok(Event::DatasetComplete(DatasetEvent {
                    entity: DatasetEntity::Dataset(dataset),
                    ..
                })) => {
                    log.lock().expect("lock").push((dataset.id, delivery));
                    StatusCode::NO_CONTENT
                }
                _ => StatusCode::BAD_REQUEST,
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn dispatcher(store: Arc<SqliteStore>) -> WebhookDispatcher {
    WebhookDispatcher::builder()
        .store(store.clone())
        .queue(store)
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(Duration::from_secs(2))
        .build()
        .expect("dispatcher")
}

fn worker_options() -> WorkerOptions {
    WorkerOptions::default()
        .lease(Duration::from_secs(3))
        .poll_interval(Duration::from_millis(50))
        .retry(RetryPolicy::new(vec![Duration::from_millis(100); 20]).jitter(0.0))
}

/// A child process that is killed if the test ends before it does.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child(mode: &str, db: &std::path::Path, first_event: usize) -> ChildGuard {
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "crash_child", "--nocapture"])
        .env("CRASH_MODE", mode)
        .env("CRASH_DB", db)
        .env("CRASH_FIRST_EVENT", first_event.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    ChildGuard(child)
}

/// Counts the child's `accepted <n>` lines (one per emit that returned) as they arrive.
fn count_accepted(child: &mut ChildGuard) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let stdout = child.0.stdout.take().expect("piped stdout");
    let counter = count.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("accepted ") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    count
}

fn dataset_event(n: usize) -> Emit {
    let id = format!("dataset-{n}");
    let event = Event::dataset_complete(
        "p",
        Dataset {
            id: id.clone(),
            ..Default::default()
        },
    );
    Emit::new(event).idempotency_key(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_no_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("state.db");
    let (addr, seen) = slow_receiver().await;
    let webhook = {
        let store = Arc::new(SqliteStore::open(&db).await.expect("open"));
        let d = dispatcher(store);
        d.webhooks()
            .create_org_secret(&Default::default())
            .await
            .expect("secret");
        d.webhooks()
            .create(NewWebhook::new(
                Scope::Project("p".into()),
                format!("http://{addr}/hook"),
            ))
            .await
            .expect("webhook")
            .id
    };

    // First process: emits with its worker delivering alongside, and is killed halfway
    // through its emits, with deliveries in flight.
    let mut first = child("emit", &db, 0);
    let accepted = count_accepted(&mut first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while accepted.load(Ordering::SeqCst) < EVENTS / 2 {
        assert!(tokio::time::Instant::now() < deadline, "the child emits");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reaped");
    let accepted_before_kill = accepted.load(Ordering::SeqCst);
    let received_before_kill = seen.lock().expect("lock").len();

    // Second process: same file; emits again from the first event whose receipt the first
    // process did not report (the idempotency key makes a repeat of a recorded emit a
    // no-op), then delivers until nothing is pending, and exits.
    let mut second = child("finish", &db, accepted_before_kill);
    let _drained = count_accepted(&mut second);
    let status = tokio::task::spawn_blocking(move || {
        let mut second = second;
        second.0.wait()
    })
    .await
    .expect("join")
    .expect("wait");
    assert!(status.success(), "the second process finished: {status}");

    let store = Arc::new(SqliteStore::open(&db).await.expect("open"));
    let d = dispatcher(store);
    let recorded = all_deliveries(&d, webhook).await;
    assert!(
        received_before_kill < EVENTS,
        "the kill came mid-run: {received_before_kill} deliveries before it"
    );
    assert_eq!(recorded.len(), EVENTS, "one delivery per event, none twice");
    for (delivery, status) in &recorded {
        assert_eq!(*status, DeliveryStatus::Succeeded, "{delivery}");
    }
    let seen = seen.lock().expect("lock").clone();
    let mut ids_by_dataset: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (dataset, delivery) in &seen {
        ids_by_dataset.entry(dataset).or_default().insert(delivery);
    }
    // Every event arrived, under exactly one delivery id however often it came.
    assert_eq!(ids_by_dataset.len(), EVENTS, "every event received");
    for (dataset, ids) in &ids_by_dataset {
        assert_eq!(
            ids.len(),
            1,
            "{dataset} came under several delivery ids: {ids:?}"
        );
    }
    let recorded_ids: HashSet<String> = recorded.iter().map(|(id, _)| id.clone()).collect();
    for ids in ids_by_dataset.values() {
        for id in ids {
            assert!(recorded_ids.contains(*id), "{id} is a recorded delivery");
        }
    }
    println!(
        "{EVENTS} events: {accepted_before_kill} emitted and {received_before_kill} received \
         before the kill; {} requests in all ({} repeats)",
        seen.len(),
        seen.len() - EVENTS,
    );
}

async fn all_deliveries(
    d: &WebhookDispatcher,
    webhook: WebhookId,
) -> Vec<(String, DeliveryStatus)> {
    let mut query = DeliveryQuery::new(webhook).limit(200);
    let mut all = Vec::new();
    loop {
        let page = d.deliveries().list(&query).await.expect("list");
        all.extend(page.items.iter().map(|r| (r.id.to_string(), r.status)));
        match page.next {
            Some(cursor) => query = query.before(cursor),
            None => return all,
        }
    }
}

/// The child process's body; does nothing unless run by `a_killed_process_loses_no_event`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by a_killed_process_loses_no_event"]
async fn crash_child() {
    let (Ok(mode), Ok(db)) = (std::env::var("CRASH_MODE"), std::env::var("CRASH_DB")) else {
        return;
    };
    let first: usize = std::env::var("CRASH_FIRST_EVENT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let store = Arc::new(SqliteStore::open(&db).await.expect("open"));
    let d = dispatcher(store);
    let worker = d.start_worker(worker_options());
    for n in first..EVENTS {
        let receipt = d.emit_with(dataset_event(n)).await.expect("emit");
        assert!(!receipt.is_unhandled());
        println!("accepted {n}");
    }
    if mode == "emit" {
        // Keep delivering until killed.
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    // "finish": work until nothing is pending.
    let webhooks = d
        .webhooks()
        .list(&dataops_webhooks::store::WebhookQuery::new(
            dataops_webhooks::webhook::OrgId::default(),
        ))
        .await
        .expect("webhooks");
    loop {
        let mut pending = 0;
        for w in &webhooks.items {
            let page = d
                .deliveries()
                .list(
                    &DeliveryQuery::new(w.id)
                        .status(DeliveryStatus::Pending)
                        .limit(1),
                )
                .await
                .expect("list");
            pending += page.items.len();
        }
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown().await;
}
