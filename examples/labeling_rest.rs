//! "Export to labeling" into a generic REST labeling API: each exported issue becomes one
//! batch with one frame per element that has an image (its id and image URL).
//!
//! ```sh
//! AQ_WEBHOOK_SECRET=whsec_... LABELING_API_ENDPOINT=https://labeling.example.com/batches \
//!   LABELING_API_KEY=... PORT=8080 cargo run --example labeling_rest --all-features
//! ```
//!
//! Point an `issue-exported` webhook at `http://<this host>:8080/webhook`. The batch carries the
//! delivery id as `Idempotency-Key`, so a retried delivery does not create a second batch; a
//! failed request answers 502 so the platform retries.

#[path = "labeling_support/mod.rs"]
pub(crate) mod support;

use std::error::Error;

use axum::Router;
use dataops_webhooks::labeling::{axum::export_route, Export, ExportReceiver};
use serde_json::{json, Value};
use support::{post_json, Auth, Service, ServiceError};

/// The receiver: `POST /webhook`.
pub(crate) fn app(receiver: ExportReceiver, service: Service) -> Router {
    let client = support::client(service.timeout);
    Router::new().route(
        "/webhook",
        export_route(receiver, move |export: Export| {
            let (client, service) = (client.clone(), service.clone());
            async move { submit_batch(&client, &service, &export).await }
        }),
    )
}

/// The batch for an export: named after its datasets and the issue.
pub(crate) fn batch(export: &Export) -> Value {
    let issue = &export.issue;
    let frames: Vec<Value> = support::images(issue)
        .into_iter()
        .map(|(id, url)| json!({"id": id, "url": url}))
        .collect();
    json!({
        "name": format!(
            "{}_relabel_{}",
            issue.datasets().join("+"),
            issue.name().unwrap_or(&issue.id)
        ),
        "project": export.project,
        "frames": frames,
    })
}

async fn submit_batch(
    client: &reqwest::Client,
    service: &Service,
    export: &Export,
) -> Result<(), ServiceError> {
    let body = batch(export);
    if body["frames"].as_array().is_none_or(Vec::is_empty) {
        return Ok(());
    }
    post_json(
        client,
        &service.url,
        Auth::Bearer(&service.api_key),
        export.delivery_id.as_deref(),
        &body,
        false,
    )
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let receiver = support::receiver_from_env()?;
    let service = Service::from_env("LABELING_API_ENDPOINT", None, "LABELING_API_KEY")?;
    support::serve(app(receiver, service), "/webhook", 8080).await
}
