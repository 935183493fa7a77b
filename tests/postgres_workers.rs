//! Scale-out on PostgreSQL: three worker processes and one producer process share one
//! database; the producer emits 10,000 events; one worker is killed with SIGKILL mid-run.
//! Every event is received, under one delivery id, and no delivery is ever in flight from two
//! workers at once.
//!
//! The children are this test binary run again with `--ignored --exact scale_child`, told what
//! to do by environment variables. Needs `DATAOPS_WEBHOOKS_TEST_POSTGRES` (CI sets it).

#[path = "common/pg.rs"]
mod pg;

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
use dataops_webhooks::postgres::{PostgresOptions, PostgresStore};
use dataops_webhooks::queue::{DeliveryQuery, DeliveryStatus};
use dataops_webhooks::retry::RetryPolicy;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, Scope, WebhookId};
use dataops_webhooks::{Dispatcher, Emit, WebhookDispatcher, WorkerOptions};
use pg::TestSchema;

const EVENTS: usize = 10_000;
const WORKERS: usize = 3;
/// The producer's concurrent emitters.
const EMITTERS: usize = 8;

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// (dataset id, delivery id) per request.
    requests: Mutex<Vec<(String, String)>>,
    /// Requests in flight per delivery id.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Deliveries that arrived while another request of theirs was in flight.
    overlaps: Mutex<Vec<String>>,
    total: AtomicUsize,
}

/// Counts a request as in flight until dropped (also when the connection is cut).
struct InFlight<'a>(&'a Seen, String);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.0.in_flight.lock().expect("lock");
        if let Some(n) = in_flight.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.1);
            }
        }
    }
}

async fn receiver() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let seen = state.clone();
        async move {
            let delivery = headers
                .get("x-aquarium-delivery")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            {
                let mut in_flight = seen.in_flight.lock().expect("lock");
                let n = in_flight.entry(delivery.clone()).or_insert(0);
                *n += 1;
                if *n > 1 {
                    seen.overlaps.lock().expect("lock").push(delivery.clone());
                }
            }
            let _guard = InFlight(&seen, delivery.clone());
            tokio::time::sleep(Duration::from_millis(2)).await;
            match Event::from_slice(&body) {
                Ok(Event::DatasetComplete(DatasetEvent {
                    entity: DatasetEntity::Dataset(dataset),
                    ..
                })) => {
                    seen.requests
                        .lock()
                        .expect("lock")
                        .push((dataset.id, delivery));
                    seen.total.fetch_add(1, Ordering::SeqCst);
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

fn dispatcher(store: PostgresStore) -> WebhookDispatcher {
    let store = Arc::new(store);
    WebhookDispatcher::builder()
        .store(store.clone())
        .queue(store)
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(Duration::from_secs(2))
        .build()
        .expect("dispatcher")
}

/// A child process that is killed if the test ends before it does.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child(mode: &str, schema: &str) -> ChildGuard {
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "scale_child", "--nocapture"])
        .env("SCALE_MODE", mode)
        .env("SCALE_SCHEMA", schema)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    ChildGuard(child)
}

/// Waits for the child to print `line` (its set-up is done).
fn wait_for_line(child: &mut ChildGuard, line: &str) {
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l == line => break,
            Some(Ok(_)) => {}
            _ => panic!("the child ended before printing {line:?}"),
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_the_queue_and_a_killed_one_loses_nothing() {
    let Some(schema) = TestSchema::new("scale") else {
        return;
    };
    let (addr, seen) = receiver().await;
    let d = dispatcher(schema.store().await);
    d.webhooks()
        .create_org_secret(&Default::default())
        .await
        .expect("secret");
    let webhook = d
        .webhooks()
        .create(NewWebhook::new(
            Scope::Project("p".into()),
            format!("http://{addr}/hook"),
        ))
        .await
        .expect("webhook")
        .id;

    let mut workers: Vec<ChildGuard> = (0..WORKERS).map(|_| child("work", &schema.name)).collect();
    for worker in &mut workers {
        wait_for_line(worker, "working");
    }
    let mut producer = child("produce", &schema.name);
    wait_for_line(&mut producer, "producing");

    // Kill one worker with SIGKILL once the run is well under way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while seen.total.load(Ordering::SeqCst) < EVENTS * 3 / 10 {
        assert!(tokio::time::Instant::now() < deadline, "deliveries start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    workers[0].0.kill().expect("SIGKILL");
    workers[0].0.wait().expect("reaped");
    let received_before_kill = seen.total.load(Ordering::SeqCst);

    let status = tokio::task::spawn_blocking(move || {
        let mut producer = producer;
        producer.0.wait()
    })
    .await
    .expect("join")
    .expect("wait");
    assert!(status.success(), "the producer finished: {status}");

    // The two survivors finish the work, the dead one's leased deliveries included.
    let recorded = loop {
        let recorded = all_deliveries(&d, webhook).await;
        let done = recorded.len() == EVENTS
            && recorded
                .iter()
                .all(|(_, s)| *s == DeliveryStatus::Succeeded);
        if done {
            break recorded;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} deliveries recorded, {} succeeded",
            recorded.len(),
            recorded
                .iter()
                .filter(|(_, s)| *s == DeliveryStatus::Succeeded)
                .count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(workers);

    assert!(
        received_before_kill < EVENTS,
        "the kill came mid-run: {received_before_kill} received before it"
    );
    let overlaps = seen.overlaps.lock().expect("lock").clone();
    assert!(
        overlaps.is_empty(),
        "deliveries in flight from two workers at once: {overlaps:?}"
    );
    // The attempt log agrees: no two recorded attempts of a delivery overlap in time.
    let overlapping = schema
        .number(&format!(
            "SELECT count(*) FROM {s}.attempts a JOIN {s}.attempts b
               ON a.delivery_id = b.delivery_id AND a.id <> b.id
              AND a.attempted_at <= b.attempted_at
              AND b.attempted_at < a.attempted_at + a.duration_us * interval '1 microsecond'",
            s = schema.name
        ))
        .await;
    assert_eq!(overlapping, 0, "overlapping attempts in the log");
    let attempts = schema
        .number(&format!("SELECT count(*) FROM {}.attempts", schema.name))
        .await;
    assert!(attempts >= EVENTS as i64, "{attempts} attempts logged");
    let requests = seen.requests.lock().expect("lock").clone();
    let mut ids_by_dataset: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (dataset, delivery) in &requests {
        ids_by_dataset.entry(dataset).or_default().insert(delivery);
    }
    assert_eq!(ids_by_dataset.len(), EVENTS, "every event received");
    for (dataset, ids) in &ids_by_dataset {
        assert_eq!(
            ids.len(),
            1,
            "{dataset} under several delivery ids: {ids:?}"
        );
    }
    let recorded_ids: HashSet<&str> = recorded.iter().map(|(id, _)| id.as_str()).collect();
    for ids in ids_by_dataset.values() {
        for id in ids {
            assert!(recorded_ids.contains(id), "{id} is a recorded delivery");
        }
    }
    println!(
        "{EVENTS} events over {WORKERS} worker processes: {received_before_kill} received \
         before one was killed; {} requests in all ({} repeats)",
        requests.len(),
        requests.len() - EVENTS
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

/// The child process's body; does nothing unless run by the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by three_workers_share_the_queue_and_a_killed_one_loses_nothing"]
async fn scale_child() {
    let (Ok(mode), Ok(schema), Some(url)) = (
        std::env::var("SCALE_MODE"),
        std::env::var("SCALE_SCHEMA"),
        pg::url(),
    ) else {
        return;
    };
    let options = PostgresOptions::new(&url)
        .expect("URL")
        .schema(schema)
        .pool_size(8);
    let store = PostgresStore::connect(options).await.expect("connect");
    store.check_schema().await.expect("migrated by the parent");
    let d = dispatcher(store);
    if mode == "work" {
        let _worker = d.start_worker(
            WorkerOptions::default()
                .lease(Duration::from_secs(3))
                .poll_interval(Duration::from_millis(500))
                .retry(RetryPolicy::new(vec![Duration::from_millis(200); 20]).jitter(0.0)),
        );
        println!("working");
        // Work until killed.
        tokio::time::sleep(Duration::from_secs(600)).await;
        return;
    }
    println!("producing");
    let next = Arc::new(AtomicUsize::new(0));
    let mut emitters = tokio::task::JoinSet::new();
    for _ in 0..EMITTERS {
        let (d, next) = (d.clone(), next.clone());
        emitters.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= EVENTS {
                    return;
                }
                let id = format!("dataset-{n}");
                let event = Event::dataset_complete(
                    "p",
                    Dataset {
                        id: id.clone(),
                        ..Default::default()
                    },
                );
                let receipt = d
                    .emit_with(Emit::new(event).idempotency_key(id))
                    .await
                    .expect("emit");
                assert!(!receipt.is_unhandled());
            }
        });
    }
    while let Some(done) = emitters.join_next().await {
        done.expect("emitter");
    }
}
