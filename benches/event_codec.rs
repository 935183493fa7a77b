//! Serialize and parse an `issue-exported` event with 10,000 elements, each with labels, sensor
//! data, custom metrics and user metadata. Criterion reports throughput in bytes of JSON.
//!
//! `cargo bench --bench event_codec`

use std::collections::BTreeMap;
use std::hint::black_box;

use chrono::{DateTime, Duration, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataops_webhooks::event::{
    CoordinateFrame, CropData, CustomMetric, ElementKind, Event, ExportedElement, ExportedIssue,
    FrameData, Label, LabelAttributes, MetadataValue, SensorData,
};
use serde_json::{json, Map, Value};

const ELEMENTS: usize = 10_000;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn label(frame: usize, n: usize) -> Label {
    Label {
        attributes: LabelAttributes {
            confidence: Some(0.5 + (n as f64) / 10.0),
            extra: object(json!({"occluded": n.is_multiple_of(2), "iou": 0.25 * n as f64})),
        },
        label: ["stop", "yield", "speed_limit"][n % 3].into(),
        label_coordinate_frame: "cam_front".into(),
        label_type: "BBOX_2D".into(),
        linked_labels: vec![format!("lbl-{frame}-{}", (n + 1) % 3)],
        uuid: format!("lbl-{frame}-{n}"),
    }
}

fn element(i: usize, captured: DateTime<Utc>) -> ExportedElement {
    let sensor = |id: &str, url_key: &str, ext: &str| SensorData {
        coordinate_frame: id.into(),
        data_urls: BTreeMap::from([(
            url_key.to_owned(),
            format!("https://cdn.example.com/{id}/{i:06}.{ext}"),
        )]),
        date_captured: captured,
        sensor_id: id.into(),
        sensor_metadata: object(json!({"exposure_ms": 8, "gain": 1.5})),
        sensor_type: if ext == "jpg" { "IMAGE" } else { "POINTCLOUD" }.into(),
    };
    ExportedElement {
        dataset: "traffic-signs-v3".into(),
        inference_set: Some("traffic-signs-v3-yolo8".into()),
        issue_name: "stop signs predicted as yield".into(),
        element_id: format!("element-{i:06}"),
        kind: if i.is_multiple_of(5) {
            ElementKind::Crop(CropData::new(format!("lbl-{i}-0")))
        } else {
            ElementKind::Frame
        },
        frame_id: format!("frame-{i:06}"),
        frame_data: FrameData {
            coordinate_frames: vec![
                CoordinateFrame {
                    coordinate_frame_id: "cam_front".into(),
                    coordinate_frame_metadata: Some(object(json!({"fx": 1266.4, "fy": 1266.4}))),
                    coordinate_frame_type: "IMAGE".into(),
                },
                CoordinateFrame {
                    coordinate_frame_id: "world".into(),
                    coordinate_frame_metadata: None,
                    coordinate_frame_type: "WORLD".into(),
                },
            ],
            custom_metrics: BTreeMap::from([
                ("blur_score".into(), CustomMetric::Scalar(i as f64 / 7.0)),
                (
                    "confusion".into(),
                    CustomMetric::Matrix(vec![vec![3, 1, 0], vec![0, 7, 2], vec![1, 0, 9]]),
                ),
            ]),
            date_captured: captured,
            device_id: format!("truck-{}-cam-front", i % 40),
            geo_data: BTreeMap::from([
                ("lat".into(), 37.7749 + i as f64 * 1e-5),
                ("lon".into(), -122.4194 - i as f64 * 1e-5),
            ]),
            label_data: (0..3).map(|n| label(i, n)).collect(),
            sensor_data: vec![
                sensor("cam_front", "image_url", "jpg"),
                sensor("lidar_top", "pointcloud_url", "pcd"),
            ],
            task_id: format!("task-{}", i / 100),
            metadata: BTreeMap::from([
                ("weather".into(), MetadataValue::from("rain")),
                ("num_pedestrians".into(), MetadataValue::Int((i % 9) as i64)),
                ("sun_elevation_deg".into(), MetadataValue::Float(12.5)),
                ("is_night".into(), MetadataValue::Bool(i.is_multiple_of(2))),
            ]),
        },
    }
}

fn exported_issue() -> Event {
    let start = DateTime::from_timestamp(1_709_315_110, 500_000_000).unwrap_or_default();
    let elements = (0..ELEMENTS)
        .map(|i| element(i, start + Duration::milliseconds(i as i64 * 100)))
        .collect();
    Event::issue_exported(
        "traffic-signs",
        ExportedIssue {
            id: "issue-101".into(),
            elements,
        },
    )
}

fn codec(c: &mut Criterion) {
    let event = exported_issue();
    let body = match serde_json::to_vec(&event) {
        Ok(body) => body,
        Err(e) => panic!("the benchmark event must serialize: {e}"),
    };
    println!(
        "issue-exported with {ELEMENTS} elements: {:.1} MB of JSON",
        body.len() as f64 / 1e6
    );

    let mut group = c.benchmark_group("issue_exported_10k");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("serialize", |b| {
        b.iter(|| serde_json::to_vec(black_box(&event)))
    });
    group.bench_function("parse", |b| b.iter(|| Event::from_slice(black_box(&body))));
    // The same parse with the parsed event's drop left out of the timing: the difference is
    // what freeing ~1M small allocations costs.
    group.bench_function("parse_excluding_drop", |b| {
        b.iter_with_large_drop(|| Event::from_slice(black_box(&body)))
    });
    // Reference point: the same bytes into an untyped serde_json::Value.
    group.bench_function("parse_untyped_value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&body)))
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
