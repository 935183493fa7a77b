//! Deliveries per second through PostgreSQL with 1 and 3 worker tasks in one process and
//! with one worker in each of 2 processes, on a loopback receiver; and `emit` latency
//! (p50/p99) while a worker delivers alongside.
//!
//! One iteration emits 20 events to 10 endpoints (200 deliveries) from 8 concurrent tasks and
//! waits until the receiver has had every one: emit → commit → NOTIFY → claim → signed POST →
//! finish, end to end. The second process is this binary run again as a worker.
//!
//! `cargo bench --bench postgres --features postgres`, with `DATAOPS_WEBHOOKS_TEST_POSTGRES`
//! naming the database (default `postgres://postgres@127.0.0.1:5432/test`); the benchmark
//! works in a schema of its own and drops it. Target: at least 3,000 deliveries/s.

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{event, runtime, start_counting_receiver, Received, PROJECT};
use criterion::{BenchmarkId, Criterion, Throughput};
use dataops_webhooks::postgres::{PostgresOptions, PostgresStore};
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, OrgId, Scope};
use dataops_webhooks::{Dispatcher, WebhookDispatcher, WorkerHandle, WorkerOptions};

const ENDPOINTS: usize = 10;
const EVENTS: usize = 20;
const EMITTERS: usize = 8;
const LATENCY_SAMPLES: usize = 2_000;
const ROLE_VAR: &str = "DATAOPS_WEBHOOKS_BENCH_ROLE";
const SCHEMA_VAR: &str = "DATAOPS_WEBHOOKS_BENCH_SCHEMA";

fn url() -> String {
    std::env::var("DATAOPS_WEBHOOKS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn options(schema: &str) -> PostgresOptions {
    PostgresOptions::new(&url())
        .unwrap_or_else(|e| panic!("{e}"))
        .schema(schema)
}

fn dispatcher(store: PostgresStore) -> WebhookDispatcher {
    let store = Arc::new(store);
    WebhookDispatcher::builder()
        .store(store.clone())
        .queue(store)
        .address_policy(AddressPolicy::allow_private())
        .build()
        .unwrap_or_else(|e| panic!("dispatcher: {e}"))
}

/// A worker process: this binary run again; killed when dropped.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn start(schema: &str) -> Self {
        let child = Command::new(std::env::current_exe().unwrap_or_else(|e| panic!("{e}")))
            .env(ROLE_VAR, "worker")
            .env(SCHEMA_VAR, schema)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn a worker process: {e}"));
        Self(child)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of the second process.
fn run_worker_process(schema: &str) {
    runtime().block_on(async {
        let store = PostgresStore::connect(options(schema))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _worker = dispatcher(store).start_worker(WorkerOptions::default());
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    });
}

/// Emits a batch from concurrent tasks; returns when every emit has committed.
async fn emit_batch(dispatcher: &WebhookDispatcher, round: usize) {
    let tasks: Vec<_> = (0..EMITTERS)
        .map(|task| {
            let dispatcher = dispatcher.clone();
            tokio::spawn(async move {
                for n in (task..EVENTS).step_by(EMITTERS) {
                    let receipt = dispatcher
                        .emit(event(format!("traffic-signs-v{round}-{n}")))
                        .await
                        .unwrap_or_else(|e| panic!("emit: {e}"));
                    black_box(receipt);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("emitter: {e}"));
    }
}

fn main() {
    if std::env::var(ROLE_VAR).as_deref() == Ok("worker") {
        let schema = std::env::var(SCHEMA_VAR).unwrap_or_else(|e| panic!("{e}"));
        run_worker_process(&schema);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    let rt = runtime();
    let schema = format!("bench_pg_{}", std::process::id());
    let store = match rt.block_on(PostgresStore::connect(options(&schema))) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("skipping the PostgreSQL benchmark: {e}");
            return;
        }
    };
    rt.block_on(async {
        store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    });
    let (addr, received) = rt.block_on(start_counting_receiver());
    let d = dispatcher(store.clone());
    rt.block_on(async {
        d.webhooks()
            .create_org_secret(&OrgId::default())
            .await
            .unwrap_or_else(|e| panic!("secret: {e}"));
        for i in 0..ENDPOINTS {
            let hook =
                NewWebhook::new(Scope::Project(PROJECT.into()), format!("http://{addr}/{i}"));
            d.webhooks()
                .create(hook)
                .await
                .unwrap_or_else(|e| panic!("create: {e}"));
        }
    });

    throughput(&mut criterion, &rt, &d, &schema, &received);
    emit_latency(&mut criterion, &rt, &d);

    rt.block_on(async {
        if let Ok(client) = store.pool().get().await {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await;
        }
    });
    criterion.final_summary();
}

fn throughput(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    d: &WebhookDispatcher,
    schema: &str,
    received: &Received,
) {
    let mut group = c.benchmark_group("postgres");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Elements((EVENTS * ENDPOINTS) as u64));
    let mut round = 0;
    // (name, parameter, worker tasks here, worker processes besides this one)
    for (name, parameter, tasks, processes) in [
        ("worker_tasks", 1, 1, 0),
        ("worker_tasks", 3, 3, 0),
        ("processes", 2, 1, 1),
    ] {
        let _guard = rt.enter();
        let workers: Vec<WorkerHandle> = (0..tasks)
            .map(|_| d.start_worker(WorkerOptions::default()))
            .collect();
        let others: Vec<WorkerProcess> = (0..processes)
            .map(|_| WorkerProcess::start(schema))
            .collect();
        // Let the other process connect and listen.
        rt.block_on(tokio::time::sleep(Duration::from_millis(
            if others.is_empty() { 50 } else { 1_000 },
        )));
        group.bench_function(BenchmarkId::new(name, parameter), |b| {
            b.iter(|| {
                round += 1;
                rt.block_on(async {
                    let target = received.count() + EVENTS * ENDPOINTS;
                    emit_batch(d, round).await;
                    received.until(target).await;
                });
            });
        });
        rt.block_on(async {
            for worker in workers {
                worker.shutdown().await;
            }
        });
        drop(others);
    }
    group.finish();
}

/// `emit` latency with a worker delivering alongside: the mean from criterion, the
/// percentiles printed from a separate run of timed emits.
fn emit_latency(c: &mut Criterion, rt: &tokio::runtime::Runtime, d: &WebhookDispatcher) {
    let _guard = rt.enter();
    let worker = d.start_worker(WorkerOptions::default());
    let mut group = c.benchmark_group("postgres_emit_latency");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("emit", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(
                    d.emit(event("traffic-signs-v0".into()))
                        .await
                        .unwrap_or_else(|e| panic!("emit: {e}")),
                )
            })
        });
    });
    group.finish();
    let mut times: Vec<Duration> = rt.block_on(async {
        let mut times = Vec::with_capacity(LATENCY_SAMPLES);
        for n in 0..LATENCY_SAMPLES {
            let started = Instant::now();
            let receipt = d
                .emit(event(format!("latency-{n}")))
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
        "postgres_emit_latency: p50 {:?}, p99 {:?} over {} emits ({ENDPOINTS} endpoints each)",
        at(0.50),
        at(0.99),
        times.len()
    );
    rt.block_on(worker.shutdown());
}
