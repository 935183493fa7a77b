//! Quickstart: build every event the platform sends, write each as the JSON body a webhook
//! endpoint receives, and read it back the way a receiver does.
//!
//! `cargo run --example quickstart`

use std::collections::BTreeMap;
use std::error::Error;

use chrono::{TimeZone, Utc};
use dataops_webhooks::event::{
    CreatedIssue, CreationType, CropData, Dataset, ElementKind, ElementType, Event,
    ExportedElement, ExportedIssue, FrameData, InferenceSet, IssueChange, IssueUpdate, Label,
    LabelAttributes, MetadataValue, SensorData,
};
use dataops_webhooks::ParseError;

fn main() -> Result<(), Box<dyn Error>> {
    let project = "traffic-signs";
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

    let events = [
        Event::dataset_complete(project, dataset),
        Event::dataset_failed(project, inference_set),
        Event::issues_created(project, [created]),
        Event::issue_updated(
            project,
            IssueUpdate::new("issue-101", IssueChange::added(2)),
        ),
        Event::issue_exported(project, exported),
        Event::test(project),
    ];

    for event in &events {
        // What the endpoint receives: the body, serialized once.
        let body = serde_json::to_vec(event)?;
        // What a receiver does with it.
        let received = Event::from_slice(&body)?;
        assert_eq!(&received, event, "the receiver reads exactly what was sent");
        println!(
            "{:<16} {:>5} bytes  {}",
            received.event_type(),
            body.len(),
            summary(&received)
        );
    }

    let preview = serde_json::to_string_pretty(&events[3])?;
    println!("\nissue-updated as its endpoint receives it:\n{preview}");

    // A payload from a newer platform version: a typed error that names the event type.
    match Event::from_slice(br#"{"event":"model-trained","project":"p","model":{}}"#) {
        Err(ParseError::UnknownEvent(unknown)) => {
            println!("\nnot handled: {unknown}");
        }
        other => return Err(format!("expected an unknown-event error, got {other:?}").into()),
    }
    Ok(())
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
