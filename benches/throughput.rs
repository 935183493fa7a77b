//! End-to-end deliveries per second for every backend, against a raw signing sender measured in
//! the same run, with the peak memory of the sending process.
//!
//! `cargo bench --bench throughput --all-features [-- FILTER…]`
//!
//! This process runs the loopback receiver (it answers 200 and counts); each scenario runs in
//! a child process of its own (this binary again), so its peak RSS is the sender's alone. A
//! scenario sends `N` deliveries (default 20,000) of a ~1 KB `dataset-complete` body, either
//! to one endpoint (N events) or fanned out (N/100 events × 100 endpoints), from 64 emitting
//! tasks (or one, where the name says `1 emitter`), with the worker's default options. The
//! clock runs from the child's first emit until the receiver has answered every request and
//! the child's queue holds nothing pending (the child asks its queue only once the parent says
//! the receiver has every request, so the check does not load the database it measures while
//! the queue drains). The emitting tasks drop each receipt at once, as a
//! host that does not wait for outcomes does, so the sender's memory is the library's.
//!
//! `sender CPU` is the CPU time the sending process used over the run (every thread, user and
//! system), per delivery: the cost a change saves shows there even when the machine's speed
//! drifts between runs, which moves the rates. (A PostgreSQL server's CPU is not in it.)
//!
//! `raw-signed` is the ceiling for a signing sender: a bare reqwest loop, 64 requests in flight,
//! signing each request with Standard Webhooks. Each scenario runs `DATAOPS_WEBHOOKS_BENCH_RUNS`
//! times (default 3); the median is printed. Every other row's run is paired with a
//! raw-signed run of the same shape made just before it, and `× raw` is the median of those
//! runs' ratios, so a drift in the machine's speed over the minutes of a table moves both
//! sides of a ratio alike.
//! PostgreSQL scenarios use `DATAOPS_WEBHOOKS_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`) in a schema of their own, and are skipped with a
//! message when it is unreachable. Arguments filter scenarios by substring.
//!
//! `-- --instructions [FILTER…]` counts instead of timing: each scenario's sender runs under
//! valgrind's callgrind twice (2,000 and 6,000 deliveries), and the difference in
//! instructions executed, per delivery, is printed with its ratio to raw-signed. The count
//! moves by under 1% from run to run (timing still decides how many emits or settles share a
//! group), so it shows changes smaller than this machine's timing noise; it leaves out the
//! kernel's work, PostgreSQL's, and a second worker process's.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{event, runtime, start_counting_receiver, PROJECT};
use dataops_webhooks::postgres::{PostgresOptions, PostgresStore};
use dataops_webhooks::sqlite::SqliteStore;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, OrgId, Scope};
use dataops_webhooks::{Dispatcher, DispatcherBuilder, WebhookDispatcher, WorkerOptions};

/// Fan-out width.
const FANOUT: usize = 100;
/// Emitting tasks (and the raw sender's requests in flight).
const TASKS: usize = 64;
const ROLE: &str = "DATAOPS_WEBHOOKS_BENCH_ROLE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sender {
    Raw,
    Memory,
    Sqlite,
    Postgres,
    /// PostgreSQL with a second worker process beside the sender's.
    PostgresTwo,
}

impl Sender {
    fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw-signed",
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::PostgresTwo => "postgres-2-processes",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            Self::Raw,
            Self::Memory,
            Self::Sqlite,
            Self::Postgres,
            Self::PostgresTwo,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    sender: Sender,
    endpoints: usize,
    emitters: usize,
}

impl Scenario {
    fn name(&self) -> String {
        let shape = if self.endpoints == 1 {
            "one endpoint".to_owned()
        } else {
            format!("fan-out ×{}", self.endpoints)
        };
        let emitters = if self.emitters == 1 {
            ", 1 emitter"
        } else {
            ""
        };
        format!("{} / {shape}{emitters}", self.sender.name())
    }
}

/// What a child reports.
#[derive(Debug, Default, Clone, Copy)]
struct Measured {
    secs: f64,
    rss_mb: f64,
    emit_p99_ms: f64,
    /// The sender's CPU time (user and system) from the start to its report.
    cpu_secs: f64,
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("sender") => child(),
        Ok("worker") => second_worker(),
        _ => parent(),
    }
}

fn total() -> usize {
    std::env::var("DATAOPS_WEBHOOKS_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

fn parent() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runs: usize = std::env::var("DATAOPS_WEBHOOKS_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
        .max(1);
    let n = total();
    let rt = runtime();
    let (addr, received) = rt.block_on(start_counting_receiver());
    let postgres = rt.block_on(postgres_reachable());
    if !postgres {
        eprintln!(
            "PostgreSQL at {} is unreachable: its rows are skipped",
            pg_url()
        );
    }
    let mut scenarios = Vec::new();
    for endpoints in [1, FANOUT] {
        for sender in [
            Sender::Raw,
            Sender::Memory,
            Sender::Sqlite,
            Sender::Postgres,
            Sender::PostgresTwo,
        ] {
            if sender == Sender::PostgresTwo && endpoints != 1 {
                continue;
            }
            scenarios.push(Scenario {
                sender,
                endpoints,
                emitters: TASKS,
            });
        }
    }
    scenarios.push(Scenario {
        sender: Sender::Sqlite,
        endpoints: 1,
        emitters: 1,
    });
    let wanted = |s: &Scenario| {
        (postgres || !matches!(s.sender, Sender::Postgres | Sender::PostgresTwo))
            && (filters.is_empty() || filters.iter().any(|f| s.name().contains(f.as_str())))
    };
    // The raw ceiling of a shape has a row whenever a row of that shape does (and, counting
    // instructions, is the ratio's denominator).
    let shapes: Vec<usize> = scenarios
        .iter()
        .filter(|s| wanted(s))
        .map(|s| s.endpoints)
        .collect();
    scenarios.retain(|s| wanted(s) || (s.sender == Sender::Raw && shapes.contains(&s.endpoints)));
    if std::env::args().any(|a| a == "--instructions") {
        return rt.block_on(count_instructions(&scenarios, addr, &received));
    }
    println!(
        "{n} deliveries per run, median of {runs}, on {} cores; × raw: the median of each run's \
         rate over a raw-signed run of the same shape just before it",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:<40} {:>12} {:>9} {:>10} {:>13} {:>13}",
        "scenario", "deliveries/s", "× raw", "peak RSS", "emit p99", "sender CPU"
    );
    for scenario in scenarios {
        let mut results = Vec::with_capacity(runs);
        let mut ratios = Vec::with_capacity(runs);
        for run in 0..runs {
            // The machine's speed drifts over minutes: each run is set against a raw-signed
            // run of the same shape made just before it.
            let ceiling = (scenario.sender != Sender::Raw).then_some(Scenario {
                sender: Sender::Raw,
                endpoints: scenario.endpoints,
                emitters: TASKS,
            });
            let raw = ceiling.map(|raw| rt.block_on(measure(raw, addr, &received, n, run)));
            let measured = rt.block_on(measure(scenario, addr, &received, n, run));
            if let Some(raw) = raw {
                ratios.push(raw.secs / measured.secs);
            }
            results.push(measured);
        }
        results.sort_by(|a, b| a.secs.total_cmp(&b.secs));
        ratios.sort_by(f64::total_cmp);
        let median = results[results.len() / 2];
        let rate = n as f64 / median.secs;
        let (ratio, p99) = match ratios.get(ratios.len() / 2) {
            Some(ratio) => (
                format!("{ratio:.2}"),
                format!("{:.2} ms", median.emit_p99_ms),
            ),
            None => (String::new(), String::new()),
        };
        println!(
            "{:<40} {:>12.0} {:>9} {:>7.1} MB {:>13} {:>8.1} µs/d",
            scenario.name(),
            rate,
            ratio,
            median.rss_mb,
            p99,
            median.cpu_secs * 1e6 / n as f64
        );
    }
}

/// Deliveries of the two runs of `--instructions`: their difference in instructions is the
/// cost of the deliveries between them, with start-up, set-up and shutdown cancelled out.
const INSTRUCTION_RUNS: [usize; 2] = [2_000, 6_000];

/// `--instructions`: each scenario's sender under valgrind's callgrind, counting the
/// instructions it executes (user space, every thread) per delivery. Unlike a rate or CPU
/// time, the count hardly moves with what else the machine is doing, so a change of a few
/// percent shows in one run. System calls' work in the kernel and waiting are not in it, and
/// on PostgreSQL neither is the server's work nor the second worker process's.
async fn count_instructions(
    scenarios: &[Scenario],
    addr: std::net::SocketAddr,
    received: &common::Received,
) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    println!(
        "instructions per delivery: the difference between runs of {} and {} deliveries, under callgrind",
        INSTRUCTION_RUNS[0], INSTRUCTION_RUNS[1]
    );
    println!("{:<40} {:>16} {:>9}", "scenario", "instructions/d", "× raw");
    let mut raw = std::collections::HashMap::new();
    for scenario in scenarios {
        let mut totals = Vec::new();
        for (run, n) in INSTRUCTION_RUNS.into_iter().enumerate() {
            let out = dir.path().join(format!("callgrind.{run}"));
            let wrapper = [
                "valgrind".to_owned(),
                "--tool=callgrind".to_owned(),
                "--quiet".to_owned(),
                format!("--callgrind-out-file={}", out.display()),
            ];
            measure_under(*scenario, addr, received, n, run, Some(&wrapper)).await;
            totals.push(callgrind_total(&out));
        }
        let per_delivery =
            (totals[1] - totals[0]) / (INSTRUCTION_RUNS[1] - INSTRUCTION_RUNS[0]) as f64;
        let ratio = if scenario.sender == Sender::Raw {
            raw.insert(scenario.endpoints, per_delivery);
            String::new()
        } else {
            raw.get(&scenario.endpoints)
                .map(|r| format!("{:.2}", per_delivery / r))
                .unwrap_or_default()
        };
        println!(
            "{:<40} {:>16.0} {:>9}",
            scenario.name(),
            per_delivery,
            ratio
        );
    }
}

/// The instructions a callgrind output file counted (its `totals:` line).
fn callgrind_total(path: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e} (is valgrind installed?)", path.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("{} has no totals line", path.display()))
}

/// Runs one scenario in a child process and times it.
async fn measure(
    scenario: Scenario,
    addr: std::net::SocketAddr,
    received: &common::Received,
    n: usize,
    run: usize,
) -> Measured {
    measure_under(scenario, addr, received, n, run, None).await
}

/// [`measure`], with the child started under `wrapper` (a command and its arguments, the
/// child's own command line appended), such as valgrind.
async fn measure_under(
    scenario: Scenario,
    addr: std::net::SocketAddr,
    received: &common::Received,
    n: usize,
    run: usize,
    wrapper: Option<&[String]>,
) -> Measured {
    let schema = format!("bench_tp_{}_{run}", std::process::id());
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut command = match wrapper {
        Some([program, args @ ..]) => {
            let mut command = Command::new(program);
            command.args(args).arg(exe);
            command
        }
        _ => Command::new(exe),
    };
    let mut child = command
        .env(ROLE, "sender")
        .env("DATAOPS_WEBHOOKS_BENCH_N", n.to_string())
        .env("BENCH_SENDER", scenario.sender.name())
        .env("BENCH_ENDPOINTS", scenario.endpoints.to_string())
        .env("BENCH_EMITTERS", scenario.emitters.to_string())
        .env("BENCH_ADDR", addr.to_string())
        .env("BENCH_SCHEMA", &schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the sender: {e}"));
    let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("stdin"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("stdout"));
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let expect = |line: Option<String>, what: &str| {
        line.unwrap_or_else(|| panic!("the sender exited before {what}"))
    };
    let ready = expect(lines.recv().await, "being ready");
    assert_eq!(ready, "READY", "the sender said {ready}");
    let target = received.count() + n;
    let cpu_before = cpu_secs(child.id());
    let started = Instant::now();
    writeln!(stdin, "GO").unwrap_or_else(|e| panic!("{e}"));
    stdin.flush().unwrap_or_else(|e| panic!("{e}"));
    received.until(target).await;
    // The sender checks that its queue has settled only once told: polling a durable
    // queue's depth while it drains would load the database the run measures.
    writeln!(stdin, "RECEIVED").unwrap_or_else(|e| panic!("{e}"));
    stdin.flush().unwrap_or_else(|e| panic!("{e}"));
    let done = expect(lines.recv().await, "settling");
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(child.id()) - cpu_before;
    // Exactly one request per delivery: none failed and was tried again.
    assert_eq!(
        received.count(),
        target,
        "{}: deliveries were retried",
        scenario.name()
    );
    let mut fields = done.split_whitespace().skip(1).map(|f| {
        f.parse::<f64>()
            .unwrap_or_else(|e| panic!("the sender said {done}: {e}"))
    });
    let measured = Measured {
        secs,
        rss_mb: fields.next().unwrap_or_default(),
        emit_p99_ms: fields.next().unwrap_or_default(),
        cpu_secs: cpu,
    };
    drop(stdin);
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(200)).await;
    measured
}

fn pg_url() -> String {
    std::env::var("DATAOPS_WEBHOOKS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn pg_options(schema: &str) -> PostgresOptions {
    PostgresOptions::new(&pg_url())
        .unwrap_or_else(|e| panic!("{e}"))
        .schema(schema)
}

async fn postgres_reachable() -> bool {
    match PostgresStore::connect(pg_options("bench_probe")).await {
        Ok(store) => store.pool().get().await.is_ok(),
        Err(_) => false,
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// The sender: sets up, says READY, waits for GO, sends, waits until every delivery is
/// settled, says DONE with its peak RSS and emit p99.
fn child() {
    let sender = Sender::parse(&env("BENCH_SENDER")).unwrap_or_else(|| panic!("sender"));
    let endpoints: usize = env("BENCH_ENDPOINTS").parse().unwrap_or(1);
    let emitters: usize = env("BENCH_EMITTERS").parse().unwrap_or(TASKS);
    let addr = env("BENCH_ADDR");
    let schema = env("BENCH_SCHEMA");
    let n = total();
    let urls: Vec<String> = (0..endpoints)
        .map(|i| format!("http://{addr}/hook/{i}"))
        .collect();
    let rt = runtime();
    rt.block_on(async {
        let cleanup = if sender == Sender::Raw {
            ready_and_go().await;
            raw_signed(&urls, n).await;
            wait_for_stdin().await;
            report(0.0);
            None
        } else {
            let (dispatcher, dir, pg) = dispatcher(sender, &schema).await;
            configure(&dispatcher, &urls).await;
            let _second = (sender == Sender::PostgresTwo).then(|| SecondWorker::start(&schema));
            let worker = dispatcher.start_worker(WorkerOptions::default());
            if _second.is_some() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            ready_and_go().await;
            let p99 = emit_all(&dispatcher, n / endpoints, emitters).await;
            // The parent says when the receiver has every delivery; then every settle must
            // commit before the run ends.
            wait_for_stdin().await;
            drained(&dispatcher).await;
            report(p99);
            worker.shutdown().await;
            drop(dir);
            pg
        };
        // The parent closes stdin once it has read the report.
        wait_for_stdin().await;
        if let Some(store) = cleanup {
            if let Ok(client) = store.pool().get().await {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                    .await;
            }
        }
    });
}

async fn ready_and_go() {
    println!("READY");
    wait_for_stdin().await;
}

/// Waits for the parent's next line (or for it to close stdin).
async fn wait_for_stdin() {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Tells the parent this sender is done: its peak RSS and emit p99.
fn report(p99: f64) {
    println!("DONE {:.1} {:.3}", peak_rss_mb(), p99 * 1e3);
}

async fn dispatcher(
    sender: Sender,
    schema: &str,
) -> (
    WebhookDispatcher,
    Option<tempfile::TempDir>,
    Option<PostgresStore>,
) {
    let builder = WebhookDispatcher::builder().address_policy(AddressPolicy::allow_private());
    let (builder, dir, pg): (DispatcherBuilder, _, _) = match sender {
        Sender::Raw | Sender::Memory => (builder, None, None),
        Sender::Sqlite => {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
            let store = SqliteStore::open(dir.path().join("bench.db"))
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            (builder.backend(Arc::new(store)), Some(dir), None)
        }
        Sender::Postgres | Sender::PostgresTwo => {
            let store = PostgresStore::connect(pg_options(schema))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
            (builder.backend(Arc::new(store.clone())), None, Some(store))
        }
    };
    let dispatcher = builder
        .build()
        .unwrap_or_else(|e| panic!("dispatcher: {e}"));
    (dispatcher, dir, pg)
}

async fn configure(dispatcher: &WebhookDispatcher, urls: &[String]) {
    dispatcher
        .webhooks()
        .create_org_secret(&OrgId::default())
        .await
        .unwrap_or_else(|e| panic!("secret: {e}"));
    for url in urls {
        dispatcher
            .webhooks()
            .create(NewWebhook::new(
                Scope::Project(PROJECT.into()),
                url.as_str(),
            ))
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
    }
}

/// Emits `events` events from `emitters` tasks, as a host does: each emit's receipt is
/// dropped at once. Returns the emit p99 in seconds.
async fn emit_all(dispatcher: &WebhookDispatcher, events: usize, emitters: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..emitters)
        .map(|_| {
            let (dispatcher, next) = (dispatcher.clone(), next.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= events {
                        break;
                    }
                    let started = Instant::now();
                    let receipt = dispatcher
                        .emit(event(format!("traffic-signs-v{i}")))
                        .await
                        .unwrap_or_else(|e| panic!("emit: {e}"));
                    times.push(started.elapsed());
                    assert!(!receipt.deliveries.is_empty(), "no webhook took the event");
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.unwrap_or_else(|e| panic!("emitter: {e}")));
    }
    times.sort_unstable();
    times
        .get((times.len().saturating_sub(1)) * 99 / 100)
        .map_or(0.0, Duration::as_secs_f64)
}

/// Waits until the queue holds no pending delivery. The receiver answers every request with
/// 200, so the parent's exact request count tells that each first attempt succeeded.
async fn drained(dispatcher: &WebhookDispatcher) {
    loop {
        let depth = dispatcher
            .deliveries()
            .depth()
            .await
            .unwrap_or_else(|e| panic!("depth: {e}"));
        if depth.due + depth.scheduled + depth.in_flight == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The ceiling: reqwest, `TASKS` requests in flight, each signed with Standard Webhooks.
async fn raw_signed(urls: &[String], n: usize) {
    let client = reqwest::Client::new();
    let secret = standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap_or_else(|e| panic!("{e}"));
    let secret = Arc::new(secret);
    let urls: Arc<[String]> = urls.into();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (client, secret, urls, next) =
                (client.clone(), secret.clone(), urls.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let events = n / urls.len();
                    let body = serde_json::to_vec(&event(format!("traffic-signs-v{}", i % events)))
                        .unwrap_or_else(|e| panic!("{e}"));
                    let id = format!("msg_{i}");
                    let at = chrono::Utc::now().timestamp();
                    let signature = secret
                        .sign(&id, at, &body)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let response = client
                        .post(&urls[i % urls.len()])
                        .header("content-type", "application/json")
                        .header("webhook-id", id)
                        .header("webhook-timestamp", at.to_string())
                        .header("webhook-signature", signature)
                        .body(body)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("raw post: {e}"));
                    assert!(response.status().is_success());
                    let _ = response.bytes().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A second worker process on the same PostgreSQL schema.
struct SecondWorker(std::process::Child);

impl SecondWorker {
    fn start(schema: &str) -> Self {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(exe)
            .env(ROLE, "worker")
            .env("BENCH_SCHEMA", schema)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn a worker process: {e}"));
        Self(child)
    }
}

impl Drop for SecondWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn second_worker() {
    let schema = env("BENCH_SCHEMA");
    runtime().block_on(async {
        let store = PostgresStore::connect(pg_options(&schema))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let dispatcher = WebhookDispatcher::builder()
            .backend(Arc::new(store))
            .address_policy(AddressPolicy::allow_private())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let _worker = dispatcher.start_worker(WorkerOptions::default());
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    });
}

/// The CPU time process `pid` has used (user and system, every thread), in seconds:
/// `/proc/<pid>/stat` counts it in clock ticks.
fn cpu_secs(pid: u32) -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let per_second = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it are space-separated.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let field = |i: usize| -> f64 {
        after_name
            .split_whitespace()
            .nth(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0.0)
    };
    // utime and stime: fields 14 and 15 of the line (the name is field 2).
    (field(11) + field(12)) / per_second
}

/// This process's peak resident set (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
