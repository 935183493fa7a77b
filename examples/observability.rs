//! Logs and metrics of a few deliveries: the host installs a `tracing` subscriber and a
//! Prometheus exporter (the crate installs neither), sends to a flaky loopback receiver,
//! then prints the delivery statistics and the scraped metrics page.
//!
//! `cargo run --example observability`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use dataops_webhooks::event::{Dataset, Event};
use dataops_webhooks::retry::RetryPolicy;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, Scope};
use dataops_webhooks::{Dispatcher, HostEvent, WebhookDispatcher, WorkerOptions};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;

/// `/steady` answers 204; `/flaky` fails every other request; `/down` always answers 503.
async fn receiver() -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let count = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/steady",
            axum::routing::post(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            "/flaky",
            axum::routing::post(move || {
                let n = count.fetch_add(1, Ordering::Relaxed);
                async move {
                    if n.is_multiple_of(2) {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        )
        .route(
            "/down",
            axum::routing::post(|| async { StatusCode::SERVICE_UNAVAILABLE }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The host's choices: the crate's logs from `debug` up (others from `info`) to stderr,
    // metrics on a loopback scrape port.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target("dataops_webhooks", tracing::Level::DEBUG);
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    let scrape = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    PrometheusBuilder::new()
        .with_http_listener(scrape)
        .install()?;

    let addr = receiver().await?;
    let dispatcher = WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private()) // the receiver is on loopback
        .build()?;
    let org = Default::default();
    dispatcher.webhooks().create_org_secret(&org).await?;
    let mut hooks = Vec::new();
    for path in ["/steady", "/flaky", "/down"] {
        let hook = NewWebhook::new(
            Scope::Project("traffic-signs".into()),
            format!("http://{addr}{path}"),
        );
        hooks.push(dispatcher.webhooks().create(hook).await?.id);
    }
    let retries = RetryPolicy::new(vec![
        Duration::ZERO,
        Duration::from_millis(50),
        Duration::from_millis(50),
    ])
    .jitter(0.0);
    let worker = dispatcher.start_worker(
        WorkerOptions::default()
            .retry(retries)
            .poll_interval(Duration::from_millis(20))
            .depth_interval(Some(Duration::from_millis(100))),
    );
    let mut events = worker.events();
    for n in 0..4 {
        let dataset = Dataset {
            id: format!("v{n}"),
            ..Default::default()
        };
        dispatcher
            .emit(Event::dataset_complete("traffic-signs", dataset))
            .await?;
    }
    // `/down` gives up after three attempts per delivery: four deliveries die.
    let mut dead = 0;
    while dead < 4 {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await?? {
            HostEvent::DeliveryExhausted { .. } => dead += 1,
            _ => continue,
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // a depth sample, the last settles
    worker.shutdown().await;

    let stats = dispatcher
        .deliveries()
        .statistics(hooks, Duration::from_secs(3600))
        .await?;
    let all = &stats.overall;
    println!("\n== delivery statistics (last hour) ==");
    println!(
        "pending {}, succeeded {}, dead {}; {} attempts, success rate {:.0}%, p50 {:?}, p95 {:?}",
        all.pending,
        all.succeeded,
        all.dead,
        all.attempts,
        all.success_rate().unwrap_or_default() * 100.0,
        all.p50_duration.unwrap_or_default(),
        all.p95_duration.unwrap_or_default(),
    );

    let page = reqwest::get(format!("http://{scrape}/metrics"))
        .await?
        .text()
        .await?;
    println!("\n== http://{scrape}/metrics ==");
    for line in page.lines().filter(|l| l.contains("dataops_webhooks")) {
        println!("{line}");
    }
    Ok(())
}
