//! "Export to labeling" into Labelbox, through its GraphQL API: each exported issue gets a
//! project, a dataset, and one data row per element with an image (row data = the image URL,
//! external id = the element id), and the dataset is attached to the project.
//!
//! ```sh
//! AQ_WEBHOOK_SECRET=whsec_... LABELBOX_API_KEY=... PORT=9000 \
//!   cargo run --example labeling_labelbox --all-features
//! ```
//!
//! `LABELBOX_API_URL` overrides the API address (default `https://api.labelbox.com/graphql`).
//! Point an `issue-exported` webhook at `http://<this host>:9000/labelbox_webhook`. Any failed
//! step answers 502 so the platform retries; the steps already done for that delivery are not
//! repeated, and data rows carry a global key (`<issue id>/<element id>`) that Labelbox keeps
//! unique.

#[path = "labeling_support/mod.rs"]
pub(crate) mod support;

use std::error::Error;

use axum::Router;
use dataops_webhooks::labeling::{axum::export_route, Export, ExportReceiver};
use serde_json::{json, Value};
use support::{post_json, Auth, Progress, Service, ServiceError};

const CREATE_PROJECT: &str = "mutation CreateProject($name: String!, $description: String!) { \
createProject(data: {name: $name, description: $description, mediaType: Image}) { id } }";
const CREATE_DATASET: &str =
    "mutation CreateDataset($name: String!) { createDataset(data: {name: $name}) { id } }";
const CREATE_DATA_ROWS: &str = "mutation CreateDataRows($datasetId: ID!, \
$rows: [DataRowCreateInput!]!) { createDataRows(datasetId: $datasetId, data: $rows) { count } }";
const CONNECT_DATASET: &str = "mutation ConnectDataset($projectId: ID!, $datasetId: ID!) { \
project(where: {id: $projectId}) { datasets(connect: {id: $datasetId}) { id } } }";

/// The receiver: `POST /labelbox_webhook`.
pub(crate) fn app(receiver: ExportReceiver, service: Service) -> Router {
    let client = support::client(service.timeout);
    let progress = Progress::default();
    Router::new().route(
        "/labelbox_webhook",
        export_route(receiver, move |export: Export| {
            let (client, service, progress) = (client.clone(), service.clone(), progress.clone());
            async move { hand_off(&client, &service, &progress, &export).await }
        }),
    )
}

/// Runs one GraphQL operation; returns `data.<field>.id` (or the whole `data.<field>`).
async fn graphql(
    client: &reqwest::Client,
    service: &Service,
    query: &str,
    variables: Value,
    field: &str,
) -> Result<Value, ServiceError> {
    let body = json!({"query": query, "variables": variables});
    let answer = post_json(
        client,
        &service.url,
        Auth::Bearer(&service.api_key),
        None,
        &body,
        false,
    )
    .await?;
    if let Some(errors) = answer.get("errors") {
        return Err(ServiceError::Answer(errors.to_string()));
    }
    let result = &answer["data"][field];
    if result.is_null() {
        return Err(ServiceError::Answer(format!("no `{field}` in the answer")));
    }
    Ok(result.get("id").unwrap_or(result).clone())
}

async fn hand_off(
    client: &reqwest::Client,
    service: &Service,
    progress: &Progress,
    export: &Export,
) -> Result<(), ServiceError> {
    let issue = &export.issue;
    let rows: Vec<Value> = support::images(issue)
        .into_iter()
        .map(|(element, url)| {
            json!({
                "rowData": url,
                "externalId": element,
                "globalKey": format!("{}/{element}", issue.id),
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let delivery = export.delivery_id.as_deref().unwrap_or(&issue.id);
    let name = issue.name().unwrap_or(&issue.id);
    let project = progress
        .step(delivery, "project", || {
            let variables = json!({
                "name": format!("{}_aquarium_export", export.project),
                "description": format!("{name} ({})", issue.id),
            });
            graphql(client, service, CREATE_PROJECT, variables, "createProject")
        })
        .await?;
    let dataset = progress
        .step(delivery, "dataset", || {
            let variables = json!({"name": format!("{}_{name}", issue.datasets().join("+"))});
            graphql(client, service, CREATE_DATASET, variables, "createDataset")
        })
        .await?;
    progress
        .step(delivery, "rows", || {
            let variables = json!({"datasetId": dataset, "rows": rows});
            graphql(
                client,
                service,
                CREATE_DATA_ROWS,
                variables,
                "createDataRows",
            )
        })
        .await?;
    progress
        .step(delivery, "connect", || {
            let variables = json!({"projectId": project, "datasetId": dataset});
            graphql(client, service, CONNECT_DATASET, variables, "project")
        })
        .await?;
    progress.finish(delivery);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let receiver = support::receiver_from_env()?;
    let service = Service::from_env(
        "LABELBOX_API_URL",
        Some("https://api.labelbox.com/graphql"),
        "LABELBOX_API_KEY",
    )?;
    support::serve(app(receiver, service), "/labelbox_webhook", 9000).await
}
