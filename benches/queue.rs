//! Deliveries per second through the durable queue, in memory and in SQLite, with 1 and 10
//! endpoints on a loopback receiver; and `emit` latency (p50/p99) for each backend while a
//! worker delivers alongside.
//!
//! One iteration emits a batch of events (100 deliveries in all) and waits until a worker
//! has delivered every one: emit → queue → claim → signed POST → finish, end to end. Each
//! case runs with one emitting task (a sequential caller: each emit waits for its commit) and
//! with eight (a server whose request handlers emit concurrently).
//!
//! `cargo bench --bench queue`. Targets: the in-memory queue within 0.8 of the direct-send
//! figure of `benches/dispatch.rs` before the queue existed (1 endpoint: 17.5K/s, 10
//! endpoints: 51.7K/s on the reference machine); SQLite at least 3,000 deliveries/s.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{event, runtime, start_receiver, PROJECT};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataops_webhooks::sqlite::SqliteStore;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, OrgId, Scope};
use dataops_webhooks::{
    Dispatcher, DispatcherBuilder, WebhookDispatcher, WorkerHandle, WorkerOptions,
};

/// Deliveries per iteration.
const BATCH: usize = 100;
/// Concurrent emitting tasks in the second variant of each throughput bench.
const EMITTERS: usize = 8;
/// Emits timed for the latency percentiles.
const LATENCY_SAMPLES: usize = 3_000;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Sqlite,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
        }
    }
}

/// A dispatcher on `backend` with `endpoints` webhooks, its worker, and the temporary
/// directory holding its file (if any), which must outlive both.
struct Setup {
    dispatcher: WebhookDispatcher,
    _worker: WorkerHandle,
    _dir: Option<tempfile::TempDir>,
}

async fn setup(backend: Backend, endpoints: usize, addr: std::net::SocketAddr) -> Setup {
    let builder = WebhookDispatcher::builder().address_policy(AddressPolicy::allow_private());
    let (builder, dir): (DispatcherBuilder, _) = match backend {
        Backend::Memory => (builder, None),
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
            let store = SqliteStore::open(dir.path().join("bench.db"))
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let store = Arc::new(store);
            (builder.store(store.clone()).queue(store), Some(dir))
        }
    };
    let dispatcher = builder
        .build()
        .unwrap_or_else(|e| panic!("dispatcher: {e}"));
    dispatcher
        .webhooks()
        .create_org_secret(&OrgId::default())
        .await
        .unwrap_or_else(|e| panic!("secret: {e}"));
    for i in 0..endpoints {
        let hook = NewWebhook::new(Scope::Project(PROJECT.into()), format!("http://{addr}/{i}"));
        dispatcher
            .webhooks()
            .create(hook)
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
    }
    let worker = dispatcher.start_worker(WorkerOptions::default());
    Setup {
        dispatcher,
        _worker: worker,
        _dir: dir,
    }
}

/// Emits `events` events from `emitters` concurrent tasks (as a server's request handlers
/// would) and waits until every delivery's first attempt has succeeded.
async fn emit_and_deliver(dispatcher: &WebhookDispatcher, events: usize, emitters: usize) {
    let tasks: Vec<_> = (0..emitters)
        .map(|task| {
            let dispatcher = dispatcher.clone();
            tokio::spawn(async move {
                let mut receipts = Vec::new();
                for n in (task..events).step_by(emitters) {
                    let receipt = dispatcher
                        .emit(event(format!("traffic-signs-v{n}")))
                        .await
                        .unwrap_or_else(|e| panic!("emit: {e}"));
                    receipts.push(receipt);
                }
                for receipt in receipts {
                    let outcomes = receipt.outcomes().await;
                    assert!(outcomes.iter().all(|o| o.is_success()), "{outcomes:?}");
                    black_box(outcomes);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("emitter: {e}"));
    }
}

fn bench_throughput(c: &mut Criterion) {
    let rt = runtime();
    let addr = rt.block_on(start_receiver());
    let mut group = c.benchmark_group("queue");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    for backend in [Backend::Memory, Backend::Sqlite] {
        for endpoints in [1usize, 10] {
            let setup = rt.block_on(setup(backend, endpoints, addr));
            let events = BATCH / endpoints;
            group.throughput(Throughput::Elements((events * endpoints) as u64));
            for emitters in [1usize, EMITTERS] {
                let name = format!("{}/emitters={emitters}", backend.name());
                group.bench_function(BenchmarkId::new(name, endpoints), |b| {
                    b.iter(|| rt.block_on(emit_and_deliver(&setup.dispatcher, events, emitters)));
                });
            }
        }
    }
    group.finish();
}

/// `emit` latency with a worker delivering alongside (one endpoint): criterion reports the
/// mean; the percentiles are printed from a separate run of timed emits.
fn bench_emit_latency(c: &mut Criterion) {
    let rt = runtime();
    let addr = rt.block_on(start_receiver());
    let mut group = c.benchmark_group("emit_latency");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for backend in [Backend::Memory, Backend::Sqlite] {
        let setup = rt.block_on(setup(backend, 1, addr));
        group.bench_function(backend.name(), |b| {
            b.iter(|| {
                rt.block_on(async {
                    black_box(
                        setup
                            .dispatcher
                            .emit(event("traffic-signs-v0".into()))
                            .await
                            .unwrap_or_else(|e| panic!("emit: {e}")),
                    )
                })
            });
        });
        let mut times: Vec<Duration> = rt.block_on(async {
            let mut times = Vec::with_capacity(LATENCY_SAMPLES);
            for n in 0..LATENCY_SAMPLES {
                let started = Instant::now();
                let receipt = setup
                    .dispatcher
                    .emit(event(format!("traffic-signs-v{n}")))
                    .await
                    .unwrap_or_else(|e| panic!("emit: {e}"));
                times.push(started.elapsed());
                black_box(receipt);
            }
            times
        });
        times.sort_unstable();
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "emit_latency/{}: p50 {:?}, p99 {:?} over {} emits",
            backend.name(),
            at(0.50),
            at(0.99),
            times.len()
        );
    }
    group.finish();
}

criterion_group!(benches, bench_throughput, bench_emit_latency);
criterion_main!(benches);
