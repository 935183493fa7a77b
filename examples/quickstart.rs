//! Quickstart: a customer's receiver on loopback, webhooks configured on the platform side,
//! all five events emitted and a test payload sent, and what the receiver got and verified.
//!
//! `cargo run --example quickstart` (no set-up: everything runs in this process on 127.0.0.1)

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use chrono::{TimeZone, Utc};
use dataops_webhooks::event::{
    CreatedIssue, CreationType, CropData, Dataset, ElementKind, ElementType, Event,
    ExportedElement, ExportedIssue, FrameData, InferenceSet, IssueChange, IssueUpdate, Label,
    LabelAttributes, MetadataValue, SensorData,
};
use dataops_webhooks::queue::DeliveryQuery;
use dataops_webhooks::receiver::Verifier;
use dataops_webhooks::signing::{SignatureScheme, SignatureSchemes};
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{EventFilter, NewWebhook, OrgId, Scope};
use dataops_webhooks::{Dispatcher, EventType, WebhookDispatcher, WorkerOptions};

const PROJECT: &str = "traffic-signs";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The platform side: a dispatcher over the in-memory store. Loopback targets are allowed
    // here only because the receiver runs on this machine; the default refuses them.
    let dispatcher = WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(Duration::from_secs(5))
        .build()?;
    // The worker delivers what `emit` queues, retrying failures; stop it before exiting.
    let worker = dispatcher.start_worker(WorkerOptions::default());
    let org = OrgId::default();
    let secret = dispatcher.webhooks().create_org_secret(&org).await?;
    println!(
        "organization secret, shown once: {}…",
        &secret.expose()[..10]
    );

    // The customer's side: a receiver that verifies every request with that secret.
    let receiver = Receiver::start(Verifier::new(secret)).await?;

    // One webhook for "Export to labeling", and one organization-wide webhook for everything,
    // signed with every scheme.
    let labeling = NewWebhook::new(Scope::Project(PROJECT.into()), receiver.url("/labeling"))
        .events(EventFilter::only([EventType::IssueExported]))
        .description("export to labeling");
    let labeling = dispatcher.webhooks().create(labeling).await?;
    let audit = NewWebhook::new(Scope::Organization, receiver.url("/audit"))
        .schemes(SignatureSchemes::of(SignatureScheme::ALL));
    let audit = dispatcher.webhooks().create(audit).await?;

    // "Send test payload" on the labeling webhook.
    let test = dispatcher.send_test(&labeling.id).await?;
    println!("test payload to {}: {}", test.url, outcome_text(&test));

    // "Export to labeling" previews the payload before sending it.
    let events = sample_events(PROJECT)?;
    let preview = dispatcher.preview(&labeling.id, &events[4]).await?;
    println!(
        "preview of issue-exported: {} bytes to {}",
        preview.body.len(),
        preview.url
    );

    // The platform emits its five events; each goes to every subscribed webhook.
    for event in events {
        let receipt = dispatcher.emit(event).await?;
        for outcome in receipt.outcomes().await {
            println!(
                "emit {:<16} -> {}: {}",
                receipt.event_type,
                outcome.url.path(),
                outcome_text(&outcome)
            );
        }
    }

    // "Export to labeling" in a project no webhook serves: the host prompts its user to
    // create one. (The organization-wide webhook is switched off first, so none does.)
    dispatcher.webhooks().deactivate(&audit.id).await?;
    let receipt = dispatcher
        .emit(Event::issue_exported(
            "another-project",
            ExportedIssue::default(),
        ))
        .await?;
    if receipt.is_unhandled() {
        println!(
            "no webhook handles issue-exported in another-project: prompt the user to create one"
        );
    }

    // A request that did not come from the platform is refused by the receiver.
    let forged = reqwest::Client::new()
        .post(receiver.url("/labeling"))
        .header("x-aquarium-secret", "whsec_guessed")
        .body(r#"{"event":"webhook-test"}"#)
        .send()
        .await?;
    println!("a forged request gets {}", forged.status());

    println!("\nthe receiver got {} requests:", receiver.log().len());
    for line in receiver.log() {
        println!("  {line}");
    }

    // The delivery log of the labeling webhook, as a "Webhooks" page would show it.
    let log = dispatcher
        .deliveries()
        .list(&DeliveryQuery::new(labeling.id))
        .await?;
    for delivery in &log.items {
        println!(
            "log: {} {} {} after {} attempt(s)",
            delivery.id, delivery.event_type, delivery.status, delivery.attempts
        );
    }
    worker.shutdown().await;
    Ok(())
}

fn outcome_text(outcome: &dataops_webhooks::DeliveryOutcome) -> String {
    match outcome.error_message() {
        None => format!(
            "delivered ({})",
            outcome.status().map(|s| s.as_u16()).unwrap_or_default()
        ),
        Some(error) => format!("failed: {error}"),
    }
}

/// A customer's receiver: verifies, parses, and logs what it got.
#[derive(Clone)]
struct Receiver {
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(verifier: Verifier) -> Result<Self, Box<dyn Error>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .fallback(receive)
            .with_state((verifier, log.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, log })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

type ReceiverState = (Verifier, Arc<Mutex<Vec<String>>>);

async fn receive(
    State((verifier, log)): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let (status, line) = match verifier.verify(&headers, &body) {
        Err(e) => (
            StatusCode::UNAUTHORIZED,
            format!("{:<10} refused: {e}", uri.path()),
        ),
        Ok(scheme) => match Event::from_slice(&body) {
            Ok(event) => (
                StatusCode::NO_CONTENT,
                format!(
                    "{:<10} {:<16} verified by {scheme:<17} {}",
                    uri.path(),
                    event.event_type(),
                    summary(&event)
                ),
            ),
            Err(e) => (
                StatusCode::BAD_REQUEST,
                format!("{:<10} bad payload: {e}", uri.path()),
            ),
        },
    };
    if let Ok(mut log) = log.lock() {
        log.push(line.clone());
    }
    (status, line)
}

/// The five platform events, with realistic content.
fn sample_events(project: &str) -> Result<[Event; 5], Box<dyn Error>> {
    let uploaded = Utc
        .with_ymd_and_hms(2024, 3, 18, 9, 12, 44)
        .single()
        .ok_or("invalid date")?;

    let dataset = Dataset {
        id: "traffic-signs-v3".into(),
        created_at: uploaded,
        updated_at: uploaded,
        frame_count: 1_200,
        label_count: 5_400,
        data_url: vec!["gs://aq-bucket/traffic-signs-v3/frames.jsonl".into()],
        dataflow_status: "DONE".into(),
        dataflow_status_postprocess: "DONE".into(),
        ..Default::default()
    };
    let inference_set = InferenceSet {
        id: "traffic-signs-v3-yolo8".into(),
        base_dataset: dataset.id.clone(),
        created_at: uploaded,
        updated_at: uploaded,
        frame_count: 1_200,
        dataflow_status: "FAILED".into(),
        dataflow_status_postprocess: "FAILED".into(),
        ..Default::default()
    };
    let created = CreatedIssue {
        id: "issue-101".into(),
        issue_name: "stop signs predicted as yield".into(),
        creation_type: CreationType::Auto,
        element_type: ElementType::Frame,
        num_elements: 2,
        originating_inference_set_name: Some(inference_set.id.clone()),
    };
    let frame = |id: &str, image: &str| FrameData {
        date_captured: uploaded,
        device_id: "truck-17-cam-front".into(),
        task_id: "task-88".into(),
        label_data: vec![Label {
            attributes: LabelAttributes {
                confidence: Some(0.87),
                ..Default::default()
            },
            label: "yield".into(),
            label_coordinate_frame: "cam_front".into(),
            label_type: "BBOX_2D".into(),
            uuid: format!("lbl-{id}"),
            ..Default::default()
        }],
        sensor_data: vec![SensorData {
            coordinate_frame: "cam_front".into(),
            data_urls: BTreeMap::from([("image_url".to_owned(), image.to_owned())]),
            date_captured: uploaded,
            sensor_id: "cam_front".into(),
            sensor_type: "IMAGE".into(),
            ..Default::default()
        }],
        metadata: BTreeMap::from([("weather".to_owned(), MetadataValue::from("rain"))]),
        ..Default::default()
    };
    let exported = ExportedIssue {
        id: created.id.clone(),
        elements: vec![
            ExportedElement {
                dataset: dataset.id.clone(),
                issue_name: created.issue_name.clone(),
                element_id: "frame-0001".into(),
                frame_id: "frame-0001".into(),
                frame_data: frame("0001", "https://cdn.example.com/frames/0001.jpg"),
                ..Default::default()
            },
            ExportedElement {
                dataset: dataset.id.clone(),
                issue_name: created.issue_name.clone(),
                element_id: "crop-lbl-0002".into(),
                kind: ElementKind::Crop(CropData::new("lbl-0002")),
                frame_id: "frame-0002".into(),
                frame_data: frame("0002", "https://cdn.example.com/frames/0002.jpg"),
                ..Default::default()
            },
        ],
    };

    Ok([
        Event::dataset_complete(project, dataset),
        Event::dataset_failed(project, inference_set),
        Event::issues_created(project, [created]),
        Event::issue_updated(
            project,
            IssueUpdate::new("issue-101", IssueChange::added(2)),
        ),
        Event::issue_exported(project, exported),
    ])
}

fn summary(event: &Event) -> String {
    match event {
        Event::DatasetComplete(e) | Event::DatasetFailed(e) => {
            format!("{} `{}`", e.project, e.entity.id())
        }
        Event::IssuesCreated(e) => format!("{} new issue(s)", e.issues.len()),
        Event::IssueUpdated(e) => format!(
            "issue `{}`: {}",
            e.issue_update.id,
            e.issue_update.change.update_type()
        ),
        Event::IssueExported(e) => {
            let images: Vec<_> = e
                .issue
                .elements
                .iter()
                .filter_map(|el| el.frame_data.sensor_data.first()?.image_url())
                .collect();
            format!("{} element(s), images {images:?}", e.issue.elements.len())
        }
        Event::Test(e) => e.test.message.clone(),
        other => other.event_type().to_string(),
    }
}
