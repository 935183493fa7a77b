//! Deliveries per second: `emit` to 1, 10 and 100 endpoints on a loopback receiver, against a
//! raw reqwest loop posting the same bytes with the same concurrency, in the same run.
//!
//! "The same bytes" is the whole request: the raw loop sends the body and the headers of a
//! preview (signatures included), computed once, so the receiver parses the same requests and
//! the difference is the dispatcher's own work: store lookup, signing, per-delivery tasks.
//!
//! `cargo bench --bench dispatch`. Throughput is in deliveries ("elements") per second; the
//! ratio ours/raw is the figure to watch (target: at least 0.9).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{event, runtime, start_receiver, PROJECT};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::transport::{Transport, TransportError, TransportRequest, TransportResponse};
use dataops_webhooks::webhook::{NewWebhook, OrgId, Scope};
use dataops_webhooks::{
    Dispatcher, Preview, WebhookDispatcher, WorkerOptions, DEFAULT_CONCURRENCY,
};
use tokio::sync::Semaphore;

/// Gives `dispatcher` an organization secret and `endpoints` webhooks on the bench's project.
async fn configure(
    dispatcher: WebhookDispatcher,
    endpoints: usize,
    url: impl Fn(usize) -> String,
) -> WebhookDispatcher {
    dispatcher
        .webhooks()
        .create_org_secret(&OrgId::default())
        .await
        .unwrap_or_else(|e| panic!("secret: {e}"));
    for i in 0..endpoints {
        let hook = NewWebhook::new(Scope::Project(PROJECT.into()), url(i));
        dispatcher
            .webhooks()
            .create(hook)
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
    }
    dispatcher
}

async fn dispatcher_with(endpoints: usize, addr: std::net::SocketAddr) -> WebhookDispatcher {
    let dispatcher = WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private())
        .build()
        .unwrap_or_else(|e| panic!("dispatcher: {e}"));
    configure(dispatcher, endpoints, |i| format!("http://{addr}/hook/{i}")).await
}

/// The baseline: the same bytes posted with reqwest, the same concurrency bound.
async fn raw_post_all(
    client: &reqwest::Client,
    urls: &[String],
    request: &Preview,
    permits: &Arc<Semaphore>,
) {
    let tasks: Vec<_> = urls
        .iter()
        .map(|url| {
            let (client, url, permits) = (client.clone(), url.clone(), permits.clone());
            let (headers, body) = (request.headers.clone(), request.body.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire().await;
                let response = client
                    .post(url)
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("raw post: {e}"));
                let _ = response.bytes().await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("task: {e}"));
    }
}

fn bench_dispatch(c: &mut Criterion) {
    let rt = runtime();
    let addr = rt.block_on(start_receiver());
    let event = event("traffic-signs-v3".into());
    let client = reqwest::Client::builder()
        .user_agent(dataops_webhooks::USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"));
    let permits = Arc::new(Semaphore::new(DEFAULT_CONCURRENCY));

    let mut group = c.benchmark_group("dispatch");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(6));
    for endpoints in [1usize, 10, 100] {
        group.throughput(Throughput::Elements(endpoints as u64));
        let dispatcher = rt.block_on(dispatcher_with(endpoints, addr));
        let _worker = rt.block_on(async { dispatcher.start_worker(WorkerOptions::default()) });
        group.bench_with_input(BenchmarkId::new("emit", endpoints), &endpoints, |b, &n| {
            b.iter(|| {
                rt.block_on(async {
                    let receipt = dispatcher
                        .emit(event.clone())
                        .await
                        .unwrap_or_else(|e| panic!("emit: {e}"));
                    let outcomes = receipt.outcomes().await;
                    assert!(outcomes.len() == n && outcomes.iter().all(|o| o.is_success()));
                    black_box(outcomes);
                })
            });
        });
        let urls: Vec<String> = (0..endpoints)
            .map(|i| format!("http://{addr}/hook/{i}"))
            .collect();
        let preview = rt.block_on(async {
            let first = dispatcher
                .subscribers(None, PROJECT, event.event_type())
                .await
                .unwrap_or_else(|e| panic!("subscribers: {e}"));
            dispatcher
                .preview(&first[0].id, &event)
                .await
                .unwrap_or_else(|e| panic!("preview: {e}"))
        });
        group.bench_with_input(
            BenchmarkId::new("raw_reqwest", endpoints),
            &endpoints,
            |b, _| {
                b.iter(|| rt.block_on(raw_post_all(&client, &urls, &preview, &permits)));
            },
        );
    }
    group.finish();
}

/// A transport that answers 204 at once: what is left is the dispatcher's own cost.
#[derive(Debug)]
struct NullTransport;

#[async_trait::async_trait]
impl Transport for NullTransport {
    async fn send(&self, _: TransportRequest) -> Result<TransportResponse, TransportError> {
        Ok(TransportResponse::new(
            http::StatusCode::NO_CONTENT,
            http::HeaderMap::new(),
            bytes::Bytes::new(),
            Duration::ZERO,
        ))
    }
}

/// The dispatcher's own work per delivery (lookup, signing, headers, task, outcome), with no
/// network at all.
fn bench_overhead(c: &mut Criterion) {
    let rt = runtime();
    let event = event("traffic-signs-v3".into());
    let mut group = c.benchmark_group("overhead");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for endpoints in [1usize, 100] {
        let dispatcher = rt.block_on(async {
            let d = WebhookDispatcher::builder()
                .transport(Arc::new(NullTransport))
                .build()
                .unwrap_or_else(|e| panic!("dispatcher: {e}"));
            configure(d, endpoints, |i| format!("https://hooks.example.com/{i}")).await
        });
        let _worker = rt.block_on(async { dispatcher.start_worker(WorkerOptions::default()) });
        group.throughput(Throughput::Elements(endpoints as u64));
        group.bench_with_input(
            BenchmarkId::new("emit_null_transport", endpoints),
            &endpoints,
            |b, _| {
                b.iter(|| {
                    rt.block_on(async {
                        let receipt = dispatcher
                            .emit(event.clone())
                            .await
                            .unwrap_or_else(|e| panic!("emit: {e}"));
                        black_box(receipt.outcomes().await);
                    })
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_dispatch, bench_overhead);
criterion_main!(benches);
