//! The four labeling receivers in `examples/`, each run against a local stand-in of its
//! labeling service on loopback: the exact requests the service receives, failures answered
//! non-2xx so the platform retries, and retries that do not repeat finished steps. Last, the
//! whole way: the dispatcher emits `issue-exported` and the stand-in holds the batch.
// Each example brings its own copy of `examples/labeling_support`, as when it is built alone.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/labeling_graphql.rs"]
mod graphql;
#[allow(dead_code)]
#[path = "../examples/labeling_labelbox.rs"]
mod labelbox;
#[allow(dead_code)]
#[path = "../examples/labeling_rest.rs"]
mod rest;
#[allow(dead_code)]
#[path = "../examples/labeling_scale.rs"]
mod scale;
#[path = "common/standin.rs"]
mod standin;

use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use base64::Engine;
use dataops_webhooks::labeling::ExportReceiver;
use dataops_webhooks::receiver::Verifier;
use dataops_webhooks::secret::Secret;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{EventFilter, NewWebhook, Scope};
use dataops_webhooks::{Dispatcher, Event, EventType, WebhookDispatcher, WorkerOptions};
use serde_json::{json, Value};
use standin::{Fault, Recorded, StandIn};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const IMAGE_1: &str = "https://cdn.example.com/frames/0001.jpg";
const IMAGE_2: &str = "https://cdn.example.com/frames/0002.jpg";
const ISSUE: &str = "stop signs predicted as yield";

fn secret() -> Secret {
    Secret::parse(SECRET).expect("secret")
}

fn receiver() -> ExportReceiver {
    ExportReceiver::new(Verifier::new(secret()))
}

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/issue_exported.json"
    ))
    .expect("fixture")
}

/// Serves an example's router on loopback; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Posts `body` as the platform would with the shared-secret scheme, as delivery `delivery`.
async fn deliver(url: &str, delivery: &str, body: Vec<u8>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-aquarium-secret", SECRET)
        .header("x-aquarium-delivery", delivery)
        .body(body)
        .send()
        .await
        .expect("the receiver answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn bearer(key: &str) -> Option<String> {
    Some(format!("Bearer {key}"))
}

fn request(path: &str, auth: Option<String>, key: Option<&str>, body: Value) -> Recorded {
    Recorded {
        method: "POST".into(),
        path: path.into(),
        authorization: auth,
        idempotency_key: key.map(str::to_owned),
        body,
    }
}

#[tokio::test]
async fn graphql_sends_one_relabel_mutation_with_each_label_once() {
    let api = StandIn::start(|r, _| {
        let n = r.body["variables"]["labelIds"]
            .as_array()
            .map_or(0, Vec::len);
        if r.body["variables"]["projectId"] == "broken" {
            return (
                StatusCode::OK,
                json!({"errors": [{"message": "no such project"}]}),
            );
        }
        (
            StatusCode::OK,
            json!({"data": {"project": {"bulkDeleteLabels": {"count": n}}}}),
        )
    })
    .await;
    let service = graphql::support::Service {
        url: api.url("/graphql"),
        api_key: "key-g".into(),
        timeout: Duration::from_secs(5),
    };
    let url = serve(graphql::app(receiver(), service)).await + "/webhook";

    assert_eq!(
        deliver(&url, "dlv_g1", fixture()).await,
        (204, String::new())
    );
    let expected = request(
        "/graphql",
        bearer("key-g"),
        Some("dlv_g1"),
        json!({
            "query": graphql::RELABEL_MUTATION,
            "variables": {
                "projectId": "traffic-signs",
                "labelIds": ["lbl-inf-1", "lbl-gt-1", "lbl-gt-9"],
            },
        }),
    );
    assert_eq!(api.requests(), vec![expected]);

    // A GraphQL error in a 200 answer is a failure: 502, so the platform retries.
    let broken = String::from_utf8(fixture())
        .expect("utf-8")
        .replace("\"project\": \"traffic-signs\"", "\"project\": \"broken\"");
    let (status, message) = deliver(&url, "dlv_g2", broken.into_bytes()).await;
    assert_eq!(status, 502, "{message}");
    assert!(message.contains("no such project"), "{message}");
}

#[tokio::test]
async fn rest_submits_one_batch_and_a_retry_does_not_make_another() {
    // The stand-in keeps one batch per idempotency key, as such APIs do.
    let api = StandIn::start(|r, earlier| {
        let seen = earlier
            .iter()
            .any(|e| e.idempotency_key == r.idempotency_key && e.body == r.body);
        let status = if seen {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        (status, json!({"id": "batch-1"}))
    })
    .await;
    api.fault(0, Fault::Fail);
    let service = rest::support::Service {
        url: api.url("/v1/batches"),
        api_key: "key-r".into(),
        timeout: Duration::from_secs(5),
    };
    let url = serve(rest::app(receiver(), service)).await + "/webhook";

    let (status, message) = deliver(&url, "dlv_r1", fixture()).await;
    assert_eq!(status, 502, "a 5xx from the service is reported: {message}");
    assert!(message.contains("500"), "{message}");
    assert_eq!(deliver(&url, "dlv_r1", fixture()).await.0, 204, "the retry");
    let batch = json!({
        "name": format!("traffic-signs-v3_relabel_{ISSUE}"),
        "project": "traffic-signs",
        "frames": [
            {"id": "frame-0001", "url": IMAGE_1},
            {"id": "crop-lbl-gt-9", "url": IMAGE_2},
        ],
    });
    let expected = request("/v1/batches", bearer("key-r"), Some("dlv_r1"), batch);
    assert_eq!(api.requests(), vec![expected.clone(), expected]);
}

#[tokio::test]
async fn labelbox_creates_project_dataset_and_rows_without_repeating_on_retry() {
    let api = StandIn::start(|r, _| {
        let query = r.body["query"].as_str().unwrap_or_default();
        let data = if query.starts_with("mutation CreateProject") {
            json!({"createProject": {"id": "proj-1"}})
        } else if query.starts_with("mutation CreateDataset") {
            json!({"createDataset": {"id": "ds-1"}})
        } else if query.starts_with("mutation CreateDataRows") {
            json!({"createDataRows": {"count": r.body["variables"]["rows"].as_array().map_or(0, Vec::len)}})
        } else {
            json!({"project": {"datasets": [{"id": "ds-1"}]}})
        };
        (StatusCode::OK, json!({ "data": data }))
    })
    .await;
    api.fault(2, Fault::Fail); // the data rows, the first time
    let service = labelbox::support::Service {
        url: api.url("/graphql"),
        api_key: "key-l".into(),
        timeout: Duration::from_secs(5),
    };
    let url = serve(labelbox::app(receiver(), service)).await + "/labelbox_webhook";

    assert_eq!(deliver(&url, "dlv_l1", fixture()).await.0, 502);
    assert_eq!(deliver(&url, "dlv_l1", fixture()).await.0, 204);
    let operation = |r: &Recorded| {
        let query = r.body["query"].as_str().unwrap_or_default();
        query
            .split(['(', ' '])
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    let requests = api.requests();
    let operations: Vec<String> = requests.iter().map(operation).collect();
    assert_eq!(
        operations,
        [
            "CreateProject",
            "CreateDataset",
            "CreateDataRows",
            "CreateDataRows",
            "ConnectDataset"
        ],
        "project and dataset are not created again on the retry"
    );
    for r in &requests {
        assert_eq!(r.authorization, bearer("key-l"));
        assert_eq!(r.path, "/graphql");
    }
    assert_eq!(
        requests[0].body["variables"],
        json!({"name": "traffic-signs_aquarium_export", "description": format!("{ISSUE} (issue-101)")})
    );
    assert_eq!(
        requests[1].body["variables"],
        json!({"name": format!("traffic-signs-v3_{ISSUE}")})
    );
    assert_eq!(
        requests[3].body["variables"],
        json!({"datasetId": "ds-1", "rows": [
            {"rowData": IMAGE_1, "externalId": "frame-0001", "globalKey": "issue-101/frame-0001"},
            {"rowData": IMAGE_2, "externalId": "crop-lbl-gt-9", "globalKey": "issue-101/crop-lbl-gt-9"},
        ]})
    );
    assert_eq!(
        requests[4].body["variables"],
        json!({"projectId": "proj-1", "datasetId": "ds-1"})
    );
}

#[tokio::test]
async fn scale_creates_a_batch_of_tasks_and_a_timeout_is_retried_without_duplicates() {
    // Scale refuses a second task with the same unique_id (409).
    let api = StandIn::start(|r, earlier| {
        let unique = &r.body["unique_id"];
        let duplicate = !unique.is_null() && earlier.iter().any(|e| &e.body["unique_id"] == unique);
        if duplicate {
            return (
                StatusCode::CONFLICT,
                json!({"error": "duplicate unique_id"}),
            );
        }
        (StatusCode::OK, json!({"status": "ok"}))
    })
    .await;
    api.fault(3, Fault::Stall(Duration::from_secs(2))); // the second task, the first time
    let service = scale::support::Service {
        url: api.url("/v1"),
        api_key: "key-s".into(),
        timeout: Duration::from_millis(500),
    };
    let url = serve(scale::app(receiver(), service)).await + "/scale_webhook";

    let (status, message) = deliver(&url, "dlv_s1", fixture()).await;
    assert_eq!(status, 502, "{message}");
    assert!(message.contains("did not answer in time"), "{message}");
    assert_eq!(deliver(&url, "dlv_s1", fixture()).await.0, 204);

    let auth = Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("key-s:")
    ));
    let project = format!("traffic-signs_{ISSUE}");
    let batch = format!("{ISSUE}_batch_dlv_s1");
    let task = |element: &str, image: &str| {
        request(
            "/v1/task/imageannotation",
            auth.clone(),
            None,
            json!({
                "instruction": "**Instructions:** Please label all the things",
                "attachment": image,
                "geometries": {"box": {"objects_to_annotate": ["stop", "yield"]}},
                "priority": 10,
                "project": project,
                "batch": batch,
                "studio": true,
                "unique_id": format!("dlv_s1/{element}"),
                "metadata": {"element_id": element, "issue_id": "issue-101"},
            }),
        )
    };
    let expected = vec![
        request(
            "/v1/projects",
            auth.clone(),
            None,
            json!({"type": "imageannotation", "name": project, "rapid": false, "studio": true,
                   "params": {"instruction": "Please label"}}),
        ),
        request(
            "/v1/batches",
            auth.clone(),
            None,
            json!({"project": project, "name": batch, "calibration_batch": false,
                   "self_label_batch": false, "studio": true}),
        ),
        task("frame-0001", IMAGE_1),
        // Timed out the first time; sent again on the retry, refused as a duplicate (409),
        // which counts as done. Project, batch and the first task are not sent again.
        task("crop-lbl-gt-9", IMAGE_2),
        task("crop-lbl-gt-9", IMAGE_2),
        request(
            &format!("/v1/batches/{}/finalize", batch.replace(' ', "%20")),
            auth.clone(),
            None,
            json!({}),
        ),
    ];
    assert_eq!(api.requests(), expected);
}

#[tokio::test]
async fn other_events_bad_signatures_and_the_test_payload() {
    let api = StandIn::start(|_, _| (StatusCode::OK, json!({}))).await;
    let service = rest::support::Service {
        url: api.url("/v1/batches"),
        api_key: "key-r".into(),
        timeout: Duration::from_secs(5),
    };
    let url = serve(rest::app(receiver(), service)).await + "/webhook";
    let other = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dataset_failed_dataset.json"
    ))
    .expect("fixture");
    let (status, message) = deliver(&url, "dlv_x1", other).await;
    assert_eq!(status, 400);
    assert_eq!(
        message,
        "endpoint not set up to handle dataset-failed events"
    );
    let test = br#"{"event":"webhook-test","project":"p","test":{"message":"hi","sent_at":"2024-05-01T12:00:00Z"}}"#.to_vec();
    assert_eq!(deliver(&url, "dlv_x2", test).await.0, 204);
    let response = reqwest::Client::new()
        .post(&url)
        .header("x-aquarium-secret", "whsec_not-the-secret")
        .body(fixture())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(deliver(&url, "dlv_x3", b"{not json".to_vec()).await.0, 400);
    assert!(api.requests().is_empty(), "nothing reached the service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emitted_export_ends_as_a_batch_in_the_labeling_service() {
    let api = StandIn::start(|_, _| (StatusCode::CREATED, json!({"id": "batch-1"}))).await;
    let dispatcher = WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private())
        .build()
        .expect("dispatcher");
    let org_secret = dispatcher
        .webhooks()
        .create_org_secret(&Default::default())
        .await
        .expect("secret");
    let service = rest::support::Service {
        url: api.url("/v1/batches"),
        api_key: "key-r".into(),
        timeout: Duration::from_secs(5),
    };
    let receiver = ExportReceiver::new(Verifier::new(org_secret));
    let url = serve(rest::app(receiver, service)).await + "/webhook";
    dispatcher
        .webhooks()
        .create(
            NewWebhook::new(Scope::Project("traffic-signs".into()), url)
                .events(EventFilter::only([EventType::IssueExported])),
        )
        .await
        .expect("webhook");
    let worker = dispatcher.start_worker(WorkerOptions::default());

    let Event::IssueExported(export) = Event::from_slice(&fixture()).expect("fixture") else {
        panic!("the fixture is an export");
    };
    let receipt = dispatcher
        .emit(Event::issue_exported(export.project, export.issue))
        .await
        .expect("emit");
    let outcomes = receipt.outcomes().await;
    assert!(outcomes[0].is_success(), "{outcomes:?}");
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].idempotency_key.as_deref(),
        Some(outcomes[0].delivery_id.to_string().as_str()),
        "the delivery id is the batch's idempotency key"
    );
    assert_eq!(
        requests[0].body,
        json!({
            "name": format!("traffic-signs-v3_relabel_{ISSUE}"),
            "project": "traffic-signs",
            "frames": [
                {"id": "frame-0001", "url": IMAGE_1},
                {"id": "crop-lbl-gt-9", "url": IMAGE_2},
            ],
        })
    );
    worker.shutdown().await;
}
