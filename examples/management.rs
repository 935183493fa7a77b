//! The Webhooks tab, the send icon and the Export-to-labeling dialog, served on 127.0.0.1
//! over a SQLite file: open the printed URL in a browser.
//!
//! `cargo run --example management`
//!
//! It sets up a demo organization with a webhook in project `traffic-signs` pointing at a
//! loopback receiver, a second project `street-scenes` with no webhook (its export dialog
//! prompts to create one), and a sample issue to export. The receiver prints every request
//! it gets; its `/down` path always answers 503, to see an error in the page. Every caller is
//! let in as the demo organization's administrator: a real host checks its own session.
//!
//! With `MANAGEMENT_DEMO_SMOKE=1` it checks that the page and the API answer, then exits.

use std::net::SocketAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use dataops_webhooks::management::{self, Access, Authorizer, Denied, ManagementOptions};
use dataops_webhooks::sqlite::SqliteStore;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{EventFilter, NewWebhook, Scope};
use dataops_webhooks::{Event, EventType, WebhookDispatcher, WorkerOptions};
use tokio::net::TcpListener;

/// Lets every caller in as the demo organization's administrator.
#[derive(Debug)]
struct DemoAdmin;

#[async_trait]
impl Authorizer for DemoAdmin {
    async fn authorize(&self, _: &http::request::Parts) -> Result<Access, Denied> {
        Ok(Access::organization("demo"))
    }
}

/// A labeling service stand-in: `/labeling` takes everything, `/down` is down.
async fn receiver() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/labeling",
            post(|headers: HeaderMap, body: String| async move {
                let event = headers
                    .get("x-aquarium-event")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?");
                println!("receiver: {event}, {} bytes", body.len());
                StatusCode::OK
            }),
        )
        .route(
            "/down",
            post(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "labeling service is down for maintenance",
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path: PathBuf = std::env::temp_dir().join("dataops-webhooks-management-demo.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = std::sync::Arc::new(SqliteStore::open(&path).await?);
    let dispatcher = WebhookDispatcher::builder()
        .backend(store)
        // The demo receiver is on loopback; production keeps the default (public only).
        .address_policy(AddressPolicy::allow_private())
        .default_org("demo")
        .build()?;
    let _worker = dispatcher.start_worker(WorkerOptions::default());

    let labeling = receiver().await?;
    dispatcher
        .webhooks()
        .create(
            NewWebhook::new(
                Scope::Project("traffic-signs".into()),
                format!("http://{labeling}/labeling"),
            )
            .events(EventFilter::only([
                EventType::IssueExported,
                EventType::DatasetComplete,
            ]))
            .description("labeling hand-off"),
        )
        .await?;

    let sample = include_bytes!("../tests/fixtures/issue_exported.json");
    let Event::IssueExported(export) = Event::from_slice(sample)? else {
        return Err("the sample is not an issue-exported payload".into());
    };
    let options = ManagementOptions::new().sample_issue(export.issue);
    let app = Router::new().nest(
        "/webhooks",
        management::router_with(dispatcher, DemoAdmin, options),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}/webhooks?project=traffic-signs");
    println!("SQLite file: {}", path.display());
    println!(
        "labeling receiver: http://{labeling}/labeling (and http://{labeling}/down, which fails)"
    );
    println!("open {url}");
    println!("(project street-scenes has no webhook: its export dialog prompts to create one)");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    if std::env::var_os("MANAGEMENT_DEMO_SMOKE").is_some() {
        smoke(addr).await?;
        println!("smoke check passed");
        return Ok(());
    }
    tokio::select! {
        result = server => result??,
        _ = tokio::signal::ctrl_c() => println!("stopping"),
    }
    Ok(())
}

/// Fetches the page and the webhook list once, over loopback, with a bare HTTP/1.1 client.
async fn smoke(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let client = reqwest::Client::new();
    let page = client.get(format!("http://{addr}/webhooks")).send().await?;
    if !page.status().is_success() || !page.text().await?.contains("Export to labeling") {
        return Err("the page did not load".into());
    }
    let list = client
        .get(format!(
            "http://{addr}/webhooks/api/webhooks?project=traffic-signs"
        ))
        .send()
        .await?
        .text()
        .await?;
    let list: serde_json::Value = serde_json::from_str(&list)?;
    if list["items"].as_array().map(Vec::len) != Some(1) {
        return Err(format!("unexpected listing: {list}").into());
    }
    Ok(())
}
