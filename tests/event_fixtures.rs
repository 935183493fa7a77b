//! Every documented event and variant: the fixture parses into the expected typed value, and
//! the typed value serializes back to the same JSON.

mod common;

use std::collections::BTreeMap;

use common::{fixture_bytes, fixture_value, ts, written};
use dataops_webhooks::event::{
    CoordinateFrame, CreatedIssue, CreationType, CropData, CustomMetric, Dataset, ElementKind,
    ElementType, Event, ExportedElement, ExportedIssue, FrameData, InferenceSet, IssueChange,
    IssueUpdate, Label, LabelAttributes, MetadataValue, SensorData, TestEvent, TestPayload,
};
use dataops_webhooks::EventType;
use serde_json::{json, Map, Value};

/// Parses the fixture both ways a receiver can, compares with `expected`, and checks that
/// `expected` serializes to the fixture's JSON.
fn check(name: &str, expected: Event) {
    let body = fixture_bytes(name);
    let parsed = Event::from_slice(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(parsed, expected, "{name}: parsed value");
    let via_serde: Event = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(via_serde, expected, "{name}: serde_json::from_slice");
    assert_eq!(
        written(&expected),
        fixture_value(name),
        "{name}: written JSON"
    );
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn traffic_signs_dataset() -> Dataset {
    Dataset {
        id: "traffic-signs-v3".into(),
        archived: false,
        created_at: ts("2024-03-18T09:12:44Z"),
        updated_at: ts("2024-03-18T10:01:02.250Z"),
        frame_count: 1200,
        label_count: 5400,
        data_url: strings(&[
            "gs://aq-bucket/traffic-signs-v3/frames-000.jsonl",
            "gs://aq-bucket/traffic-signs-v3/frames-001.jsonl",
        ]),
        embeddings_url: Some(strings(&["gs://aq-bucket/traffic-signs-v3/embeddings.npy"])),
        dataflow_status: "DONE".into(),
        dataflow_status_postprocess: "DONE".into(),
    }
}

#[test]
fn dataset_complete_with_a_dataset() {
    check(
        "dataset_complete_dataset.json",
        Event::dataset_complete("traffic-signs", traffic_signs_dataset()),
    );
}

#[test]
fn dataset_complete_with_an_inference_set() {
    let inference_set = InferenceSet {
        id: "traffic-signs-v3-yolo8".into(),
        archived: false,
        base_dataset: "traffic-signs-v3".into(),
        created_at: ts("2024-03-19T08:00:00Z"),
        updated_at: ts("2024-03-19T08:45:30.123456Z"),
        data_url: strings(&["gs://aq-bucket/traffic-signs-v3-yolo8/inferences.jsonl"]),
        frame_count: 1200,
        label_count: 6012,
        embeddings_url: Some(strings(&[
            "gs://aq-bucket/traffic-signs-v3-yolo8/embeddings.npy",
        ])),
        cached_metrics: Some(vec![
            vec![vec![0.91, 0.05], vec![0.04, 0.88]],
            vec![vec![1.0, 0.0], vec![0.125, 0.875]],
        ]),
        dataflow_status: "DONE".into(),
        dataflow_status_postprocess: "DONE".into(),
    };
    check(
        "dataset_complete_inference_set.json",
        Event::dataset_complete("traffic-signs", inference_set),
    );
}

#[test]
fn dataset_failed_with_a_dataset() {
    let dataset = Dataset {
        id: "pallets-2024-04".into(),
        archived: false,
        created_at: ts("2024-04-02T16:20:00Z"),
        updated_at: ts("2024-04-02T16:24:09Z"),
        frame_count: 0,
        label_count: 0,
        data_url: strings(&["s3://pallets/2024-04/frames.jsonl"]),
        embeddings_url: None,
        dataflow_status: "FAILED".into(),
        dataflow_status_postprocess: "PENDING".into(),
    };
    check(
        "dataset_failed_dataset.json",
        Event::dataset_failed("warehouse-pallets", dataset),
    );
}

#[test]
fn dataset_failed_with_an_inference_set() {
    let inference_set = InferenceSet {
        id: "pallets-2024-04-detr".into(),
        archived: true,
        base_dataset: "pallets-2024-04".into(),
        created_at: ts("2024-04-03T07:00:00Z"),
        updated_at: ts("2024-04-03T07:03:00Z"),
        data_url: vec![],
        frame_count: 310,
        label_count: 0,
        embeddings_url: None,
        cached_metrics: None,
        dataflow_status: "FAILED".into(),
        dataflow_status_postprocess: "FAILED".into(),
    };
    check(
        "dataset_failed_inference_set.json",
        Event::dataset_failed("warehouse-pallets", inference_set),
    );
}

#[test]
fn issues_created() {
    let issues = [
        CreatedIssue {
            id: "issue-101".into(),
            issue_name: "stop signs predicted as yield".into(),
            creation_type: CreationType::Auto,
            element_type: ElementType::Crop,
            num_elements: 37,
            originating_inference_set_name: Some("traffic-signs-v3-yolo8".into()),
        },
        CreatedIssue {
            id: "issue-102".into(),
            issue_name: "night frames to relabel".into(),
            creation_type: CreationType::Manual,
            element_type: ElementType::Frame,
            num_elements: 12,
            originating_inference_set_name: None,
        },
    ];
    check(
        "issues_created.json",
        Event::issues_created("traffic-signs", issues),
    );
}

#[test]
fn issue_updated_for_every_update_type() {
    let cases = [
        (
            "issue_updated_add.json",
            IssueUpdate::new("issue-101", IssueChange::added(5)),
        ),
        (
            "issue_updated_remove.json",
            IssueUpdate::new("issue-101", IssueChange::removed(2)),
        ),
        (
            "issue_updated_move.json",
            IssueUpdate::new(
                "issue-102",
                IssueChange::Move {
                    num_elements_moved: Some(8),
                    num_elements_already_present: Some(1),
                    original_issue_name: Some("stop signs predicted as yield".into()),
                },
            ),
        ),
        (
            "issue_updated_elt_status.json",
            IssueUpdate::new(
                "issue-102",
                IssueChange::EltStatus {
                    new_elements_status: Some("done".into()),
                    num_elements_updated: Some(12),
                },
            ),
        ),
        (
            "issue_updated_issue_status.json",
            IssueUpdate::new(
                "issue-102",
                IssueChange::IssueStatus {
                    previous_issue_status: Some("triage".into()),
                    new_issue_status: Some("inProgress".into()),
                },
            ),
        ),
    ];
    for (name, update) in cases {
        check(name, Event::issue_updated("traffic-signs", update));
    }
}

#[test]
fn the_test_event() {
    let event = Event::Test(TestEvent {
        project: "traffic-signs".into(),
        test: TestPayload {
            message: TestEvent::MESSAGE.into(),
            sent_at: ts("2024-05-01T12:00:00.125Z"),
        },
    });
    check("webhook_test.json", event);
}

#[test]
fn a_fresh_test_event_is_marked_and_round_trips() {
    let event = Event::test("traffic-signs");
    assert_eq!(event.event_type(), EventType::Test);
    let body = written(&event);
    assert_eq!(body["event"], "webhook-test");
    assert_eq!(body["test"]["message"], TestEvent::MESSAGE);
    let bytes = serde_json::to_vec(&event).unwrap();
    assert_eq!(Event::from_slice(&bytes).unwrap(), event);
}

fn exported_issue() -> ExportedIssue {
    let frame = ExportedElement {
        dataset: "traffic-signs-v3".into(),
        inference_set: Some("traffic-signs-v3-yolo8".into()),
        issue_name: "stop signs predicted as yield".into(),
        element_id: "frame-0001".into(),
        kind: ElementKind::Frame,
        frame_id: "frame-0001".into(),
        frame_data: FrameData {
            coordinate_frames: vec![
                CoordinateFrame {
                    coordinate_frame_id: "cam_front".into(),
                    coordinate_frame_metadata: Some(object(
                        json!({"intrinsics": [1266.4, 0.0, 816.3], "undistorted": true}),
                    )),
                    coordinate_frame_type: "IMAGE".into(),
                },
                CoordinateFrame {
                    coordinate_frame_id: "world".into(),
                    coordinate_frame_metadata: None,
                    coordinate_frame_type: "WORLD".into(),
                },
            ],
            custom_metrics: BTreeMap::from([
                ("blur_score".into(), CustomMetric::Scalar(0.42)),
                (
                    "confusion".into(),
                    CustomMetric::Matrix(vec![vec![3, 1], vec![0, 7]]),
                ),
            ]),
            date_captured: ts("2024-03-01T17:45:10.500Z"),
            device_id: "truck-17-cam-front".into(),
            geo_data: BTreeMap::from([("lat".into(), 37.7749), ("lon".into(), -122.4194)]),
            label_data: vec![
                Label {
                    attributes: LabelAttributes {
                        confidence: Some(0.87),
                        extra: object(json!({"occluded": false, "iou": 0.61})),
                    },
                    label: "yield".into(),
                    label_coordinate_frame: "cam_front".into(),
                    label_type: "BBOX_2D".into(),
                    linked_labels: strings(&["lbl-gt-1"]),
                    uuid: "lbl-inf-1".into(),
                },
                Label {
                    attributes: LabelAttributes {
                        confidence: None,
                        extra: object(json!({"source": "annotator-4"})),
                    },
                    label: "stop".into(),
                    label_coordinate_frame: "cam_front".into(),
                    label_type: "BBOX_2D".into(),
                    linked_labels: vec![],
                    uuid: "lbl-gt-1".into(),
                },
            ],
            sensor_data: vec![
                SensorData {
                    coordinate_frame: "cam_front".into(),
                    data_urls: BTreeMap::from([
                        (
                            "image_url".into(),
                            "https://cdn.example.com/frames/0001.jpg".into(),
                        ),
                        (
                            "thumbnail_url".into(),
                            "https://cdn.example.com/thumbs/0001.jpg".into(),
                        ),
                    ]),
                    date_captured: ts("2024-03-01T17:45:10.500Z"),
                    sensor_id: "cam_front".into(),
                    sensor_metadata: object(json!({"exposure_ms": 8, "iso": 400})),
                    sensor_type: "IMAGE".into(),
                },
                SensorData {
                    coordinate_frame: "world".into(),
                    data_urls: BTreeMap::from([(
                        "pointcloud_url".into(),
                        "https://cdn.example.com/lidar/0001.pcd".into(),
                    )]),
                    date_captured: ts("2024-03-01T17:45:10.498Z"),
                    sensor_id: "lidar_top".into(),
                    sensor_metadata: Map::new(),
                    sensor_type: "POINTCLOUD".into(),
                },
            ],
            task_id: "task-88".into(),
            metadata: BTreeMap::from([
                ("weather".into(), MetadataValue::from("rain")),
                ("num_pedestrians".into(), MetadataValue::Int(3)),
                ("sun_elevation_deg".into(), MetadataValue::Float(12.5)),
                ("is_night".into(), MetadataValue::Bool(false)),
            ]),
        },
    };
    let crop = ExportedElement {
        dataset: "traffic-signs-v3".into(),
        inference_set: None,
        issue_name: "stop signs predicted as yield".into(),
        element_id: "crop-lbl-gt-9".into(),
        kind: ElementKind::Crop(CropData {
            uuid: "lbl-gt-9".into(),
            extra: object(json!({
                "label": "stop", "label_type": "BBOX_2D", "attributes": {"area_px": 1450}
            })),
        }),
        frame_id: "frame-0002".into(),
        frame_data: FrameData {
            coordinate_frames: vec![CoordinateFrame {
                coordinate_frame_id: "cam_front".into(),
                coordinate_frame_metadata: None,
                coordinate_frame_type: "IMAGE".into(),
            }],
            date_captured: ts("2024-03-01T17:45:11Z"),
            device_id: "truck-17-cam-front".into(),
            sensor_data: vec![SensorData {
                coordinate_frame: "cam_front".into(),
                data_urls: BTreeMap::from([(
                    "image_url".into(),
                    "https://cdn.example.com/frames/0002.jpg".into(),
                )]),
                date_captured: ts("2024-03-01T17:45:11Z"),
                sensor_id: "cam_front".into(),
                sensor_metadata: Map::new(),
                sensor_type: "IMAGE".into(),
            }],
            task_id: "task-88".into(),
            ..Default::default()
        },
    };
    ExportedIssue {
        id: "issue-101".into(),
        elements: vec![frame, crop],
    }
}

#[test]
fn issue_exported_with_a_frame_and_a_crop() {
    check(
        "issue_exported.json",
        Event::issue_exported("traffic-signs", exported_issue()),
    );
}

#[test]
fn typed_accessors_of_an_exported_issue() {
    let issue = exported_issue();
    let frame = &issue.elements[0];
    assert_eq!(frame.kind.element_type(), ElementType::Frame);
    assert_eq!(
        frame.frame_data.sensor_data[0].image_url(),
        Some("https://cdn.example.com/frames/0001.jpg")
    );
    assert_eq!(frame.frame_data.sensor_data[1].image_url(), None);
    let crop = &issue.elements[1];
    assert_eq!(crop.kind.crop().map(|c| c.uuid.as_str()), Some("lbl-gt-9"));
    assert_eq!(crop.kind.element_type(), ElementType::Crop);
}

/// Key order is part of "to the byte": the envelope and every entity are written in the
/// documented order.
#[test]
fn keys_are_written_in_the_documented_order() {
    let event = Event::issue_updated(
        "p",
        IssueUpdate::new(
            "i",
            IssueChange::Move {
                num_elements_moved: Some(2),
                num_elements_already_present: Some(0),
                original_issue_name: Some("old".into()),
            },
        ),
    );
    assert_eq!(
        serde_json::to_string(&event).unwrap(),
        r#"{"event":"issue-updated","project":"p","issue_update":{"id":"i","update_type":"move","num_elements_moved":2,"num_elements_already_present":0,"original_issue_name":"old"}}"#
    );

    let dataset = Event::dataset_complete("p", traffic_signs_dataset());
    assert_eq!(
        serde_json::to_string(&dataset).unwrap(),
        concat!(
            r#"{"event":"dataset-complete","project":"p","dataset":{"id":"traffic-signs-v3","archived":false,"#,
            r#""created_at":"2024-03-18T09:12:44Z","updated_at":"2024-03-18T10:01:02.250Z","frame_count":1200,"#,
            r#""label_count":5400,"data_url":["gs://aq-bucket/traffic-signs-v3/frames-000.jsonl","#,
            r#""gs://aq-bucket/traffic-signs-v3/frames-001.jsonl"],"#,
            r#""embeddings_url":["gs://aq-bucket/traffic-signs-v3/embeddings.npy"],"#,
            r#""dataflow_status":"DONE","dataflow_status_postprocess":"DONE"}}"#
        )
    );

    let exported = serde_json::to_string(&Event::issue_exported("p", exported_issue())).unwrap();
    assert_in_order(
        &exported,
        &[
            r#"{"event":"#,
            r#""project":"#,
            r#""issue":{"id":"#,
            r#""elements":[{"dataset":"#,
            r#""inference_set":"#,
            r#""issue_name":"#,
            r#""element_id":"#,
            r#""element_type":"frame""#,
            r#""frame_id":"#,
            r#""frame_data":{"coordinate_frames":"#,
            r#""custom_metrics":"#,
            r#""date_captured":"#,
            r#""device_id":"#,
            r#""geo_data":"#,
            r#""label_data":[{"attributes":{"confidence":0.87"#,
            r#""label":"yield","label_coorindate_frame":"cam_front","label_type":"#,
            r#""linked_labels":"#,
            r#""uuid":"lbl-inf-1""#,
            r#""sensor_data":[{"coordinate_frame":"#,
            r#""data_urls":"#,
            r#""sensor_id":"#,
            r#""sensor_metadata":"#,
            r#""sensor_type":"#,
            r#""task_id":"task-88","is_night":false"#,
            r#""element_type":"crop""#,
            r#""crop_data":{"#,
        ],
    );
}

fn assert_in_order(haystack: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match haystack[from..].find(needle) {
            Some(at) => from += at + needle.len(),
            None => panic!("`{needle}` not found after byte {from} in {haystack}"),
        }
    }
}
