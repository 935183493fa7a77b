//! "Export to labeling" into Scale: each exported issue gets a project, a batch, one image
//! annotation task per element with an image, and the batch is finalized.
//!
//! ```sh
//! AQ_WEBHOOK_SECRET=whsec_... SCALE_API_KEY=... PORT=9000 \
//!   cargo run --example labeling_scale --all-features
//! ```
//!
//! `SCALE_API_URL` overrides the API address (default `https://api.scale.com/v1`). Point an
//! `issue-exported` webhook at `http://<this host>:9000/scale_webhook`. Any failed step answers
//! 502 so the platform retries; steps already done for that delivery are not repeated, a 409
//! (the project or batch exists) counts as done, and each task carries a `unique_id`
//! (`<delivery id>/<element id>`) so Scale refuses a duplicate. The classes to annotate are the
//! class names of the issue's labels (`object` when it has none).

#[path = "labeling_support/mod.rs"]
pub(crate) mod support;

use std::error::Error;

use axum::Router;
use dataops_webhooks::labeling::{axum::export_route, Export, ExportReceiver};
use serde_json::{json, Value};
use support::{post_json, Auth, Progress, Service, ServiceError};

/// The receiver: `POST /scale_webhook`.
pub(crate) fn app(receiver: ExportReceiver, service: Service) -> Router {
    let client = support::client(service.timeout);
    let progress = Progress::default();
    Router::new().route(
        "/scale_webhook",
        export_route(receiver, move |export: Export| {
            let (client, service, progress) = (client.clone(), service.clone(), progress.clone());
            async move { hand_off(&client, &service, &progress, &export).await }
        }),
    )
}

async fn hand_off(
    client: &reqwest::Client,
    service: &Service,
    progress: &Progress,
    export: &Export,
) -> Result<(), ServiceError> {
    let issue = &export.issue;
    let images = support::images(issue);
    if images.is_empty() {
        return Ok(());
    }
    let delivery = export.delivery_id.as_deref().unwrap_or(&issue.id);
    let name = issue.name().unwrap_or(&issue.id);
    let project = format!("{}_{name}", export.project);
    let batch = format!("{name}_batch_{delivery}");
    let mut classes: Vec<&str> = issue.class_names().into_iter().collect();
    if classes.is_empty() {
        classes.push("object");
    }
    let base = service.url.trim_end_matches('/');
    let post = |path: String, body: Value, conflict_is_done: bool| async move {
        let url = format!("{base}{path}");
        post_json(
            client,
            &url,
            Auth::BasicKey(&service.api_key),
            None,
            &body,
            conflict_is_done,
        )
        .await
    };
    progress
        .step(delivery, "project", || {
            let body = json!({
                "type": "imageannotation",
                "name": project,
                "rapid": false,
                "studio": true,
                "params": {"instruction": "Please label"},
            });
            post("/projects".into(), body, true)
        })
        .await?;
    progress
        .step(delivery, "batch", || {
            let body = json!({
                "project": project,
                "name": batch,
                "calibration_batch": false,
                "self_label_batch": false,
                "studio": true,
            });
            post("/batches".into(), body, true)
        })
        .await?;
    for (element, url) in &images {
        progress
            .step(delivery, &format!("task {element}"), || {
                let body = json!({
                    "instruction": "**Instructions:** Please label all the things",
                    "attachment": url,
                    "geometries": {"box": {"objects_to_annotate": classes}},
                    "priority": 10,
                    "project": project,
                    "batch": batch,
                    "studio": true,
                    "unique_id": format!("{delivery}/{element}"),
                    "metadata": {"element_id": element, "issue_id": issue.id},
                });
                post("/task/imageannotation".into(), body, true)
            })
            .await?;
    }
    // The batch name is one path segment, percent-encoded.
    let mut finalize = url::Url::parse("http://scale.invalid/batches")
        .map_err(|e| ServiceError::Export(e.to_string()))?;
    finalize
        .path_segments_mut()
        .map_err(|()| ServiceError::Export("no path".into()))?
        .push(&batch)
        .push("finalize");
    progress
        .step(delivery, "finalize", || {
            post(finalize.path().to_owned(), json!({}), false)
        })
        .await?;
    progress.finish(delivery);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let receiver = support::receiver_from_env()?;
    let service = Service::from_env(
        "SCALE_API_URL",
        Some("https://api.scale.com/v1"),
        "SCALE_API_KEY",
    )?;
    support::serve(app(receiver, service), "/scale_webhook", 9000).await
}
