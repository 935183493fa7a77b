//! "Export to labeling" into a GraphQL labeling API: each exported issue becomes one relabel
//! mutation carrying the issue's label ids (a frame's labels, a crop's own label), each once.
//!
//! ```sh
//! AQ_WEBHOOK_SECRET=whsec_... LABELING_API_ENDPOINT=https://labeling.example.com/graphql \
//!   LABELING_API_KEY=... PORT=8080 cargo run --example labeling_graphql --all-features
//! ```
//!
//! Point an `issue-exported` webhook at `http://<this host>:8080/webhook`. A failed mutation
//! (an error answer, a GraphQL `errors` list, a timeout) answers 502 so the platform retries;
//! the mutation is idempotent, and carries the delivery id as `Idempotency-Key`.

#[path = "labeling_support/mod.rs"]
pub(crate) mod support;

use std::error::Error;

use axum::Router;
use dataops_webhooks::labeling::{axum::export_route, Export, ExportReceiver};
use serde_json::json;
use support::{post_json, Auth, Service, ServiceError};

/// The relabel mutation: remove the labels and keep them as templates for relabeling.
pub(crate) const RELABEL_MUTATION: &str = "mutation BulkDeleteLabels($projectId: ID!, \
$makeTemplates: Boolean = true, $labelIds: [ID!]) { project(where: {id: $projectId}) { \
bulkDeleteLabels(where: {id_in: $labelIds}, makeTemplates: $makeTemplates, \
waitForQueue: true) { count } } }";

/// The receiver: `POST /webhook`.
pub(crate) fn app(receiver: ExportReceiver, service: Service) -> Router {
    let client = support::client(service.timeout);
    Router::new().route(
        "/webhook",
        export_route(receiver, move |export: Export| {
            let (client, service) = (client.clone(), service.clone());
            async move { relabel(&client, &service, &export).await }
        }),
    )
}

async fn relabel(
    client: &reqwest::Client,
    service: &Service,
    export: &Export,
) -> Result<(), ServiceError> {
    let label_ids = export.issue.label_ids_to_requeue();
    if label_ids.is_empty() {
        return Ok(());
    }
    let body = json!({
        "query": RELABEL_MUTATION,
        "variables": {"projectId": export.project, "labelIds": label_ids},
    });
    let answer = post_json(
        client,
        &service.url,
        Auth::Bearer(&service.api_key),
        export.delivery_id.as_deref(),
        &body,
        false,
    )
    .await?;
    if let Some(errors) = answer.get("errors") {
        return Err(ServiceError::Answer(errors.to_string()));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let receiver = support::receiver_from_env()?;
    let service = Service::from_env("LABELING_API_ENDPOINT", None, "LABELING_API_KEY")?;
    support::serve(app(receiver, service), "/webhook", 8080).await
}
