//! Property tests: any event survives serialize → parse unchanged and is written back byte for
//! byte; no input makes the parser panic.

use chrono::{DateTime, Utc};
use dataops_webhooks::event::{
    CoordinateFrame, CreatedIssue, CreationType, CropData, CustomMetric, Dataset, DatasetEntity,
    ElementKind, ElementType, Event, ExportedElement, ExportedIssue, FrameData, InferenceSet,
    IssueChange, IssueUpdate, Label, LabelAttributes, MetadataValue, SensorData, TestEvent,
    TestPayload,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn text() -> impl Strategy<Value = String> {
    // Any characters, including quotes, backslashes, control characters and non-BMP ones.
    prop_oneof![
        ".{0,12}",
        "[a-z_]{1,8}",
        any::<String>().prop_map(|s| s.chars().take(8).collect())
    ]
}

fn float() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite())
}

/// The first and last seconds the wire format can write: 0001-01-01T00:00:00Z and
/// 9999-12-31T23:59:59Z.
const FIRST: i64 = -62_135_596_800;
const LAST: i64 = 253_402_300_799;

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    // Years 0001 to 9999, any nanosecond, with the first and last days of the range drawn as
    // often as the rest.
    let seconds = prop_oneof![FIRST..=LAST, FIRST..FIRST + 86_400, LAST - 86_400..=LAST];
    (seconds, 0_u32..1_000_000_000)
        .prop_filter_map("in range", |(s, n)| DateTime::from_timestamp(s, n))
        .boxed()
}

/// Timestamp text at the edges of the range, with any offset: some fall outside in UTC.
fn edge_timestamp_text() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("0000-12-31T23"),
            Just("0001-01-01T00"),
            Just("9999-12-31T23"),
            Just("10000-01-01T00")
        ],
        0_u32..60,
        0_u32..60,
        prop_oneof![
            Just(String::new()),
            Just("Z".to_owned()),
            (any::<bool>(), 0_u32..24, 0_u32..60)
                .prop_map(|(plus, h, m)| format!("{}{h:02}:{m:02}", if plus { '+' } else { '-' }))
        ],
    )
        .prop_map(|(start, m, s, offset)| format!("{start}:{m:02}:{s:02}{offset}"))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(text(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An open map whose keys avoid the names its owner types itself.
fn open_map(reserved: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
    btree_map(text(), json_value(), 0..3).prop_map(move |m| {
        m.into_iter()
            .filter(|(k, _)| !reserved.contains(&k.as_str()))
            .collect()
    })
}

/// An unknown wire value: anything but the known ones.
fn other_name(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    text().prop_filter("not a known value", move |s| !known.contains(&s.as_str()))
}

fn dataset() -> impl Strategy<Value = Dataset> {
    (
        (text(), any::<bool>(), timestamp(), timestamp()),
        (any::<u64>(), any::<u64>(), vec(text(), 0..3)),
        (option::of(vec(text(), 0..3)), text(), text()),
    )
        .prop_map(
            |(
                (id, archived, created_at, updated_at),
                (frame_count, label_count, data_url),
                (embeddings_url, dataflow_status, dataflow_status_postprocess),
            )| Dataset {
                id,
                archived,
                created_at,
                updated_at,
                frame_count,
                label_count,
                data_url,
                embeddings_url,
                dataflow_status,
                dataflow_status_postprocess,
            },
        )
}

fn inference_set() -> impl Strategy<Value = InferenceSet> {
    (
        dataset(),
        text(),
        option::of(vec(vec(vec(float(), 0..3), 0..3), 0..3)),
    )
        .prop_map(|(d, base_dataset, cached_metrics)| InferenceSet {
            id: d.id,
            archived: d.archived,
            base_dataset,
            created_at: d.created_at,
            updated_at: d.updated_at,
            data_url: d.data_url,
            frame_count: d.frame_count,
            label_count: d.label_count,
            embeddings_url: d.embeddings_url,
            cached_metrics,
            dataflow_status: d.dataflow_status,
            dataflow_status_postprocess: d.dataflow_status_postprocess,
        })
}

fn dataset_entity() -> impl Strategy<Value = DatasetEntity> {
    prop_oneof![
        dataset().prop_map(DatasetEntity::from),
        inference_set().prop_map(DatasetEntity::from),
    ]
}

fn created_issue() -> impl Strategy<Value = CreatedIssue> {
    let creation_type = prop_oneof![
        Just(CreationType::Auto),
        Just(CreationType::Manual),
        other_name(&["auto", "manual"]).prop_map(CreationType::Other),
    ];
    let element_type = prop_oneof![
        Just(ElementType::Frame),
        Just(ElementType::Crop),
        other_name(&["frame", "crop"]).prop_map(ElementType::Other),
    ];
    (
        text(),
        text(),
        creation_type,
        element_type,
        any::<u64>(),
        option::of(text()),
    )
        .prop_map(
            |(id, issue_name, creation_type, element_type, num_elements, origin)| CreatedIssue {
                id,
                issue_name,
                creation_type,
                element_type,
                num_elements,
                originating_inference_set_name: origin,
            },
        )
}

fn issue_change() -> impl Strategy<Value = IssueChange> {
    let count = || option::of(any::<u64>());
    prop_oneof![
        count().prop_map(|n| IssueChange::Add {
            num_elements_added: n
        }),
        count().prop_map(|n| IssueChange::Remove {
            num_elements_removed: n
        }),
        (count(), count(), option::of(text())).prop_map(|(moved, present, original)| {
            IssueChange::Move {
                num_elements_moved: moved,
                num_elements_already_present: present,
                original_issue_name: original,
            }
        }),
        (option::of(text()), count()).prop_map(|(status, updated)| IssueChange::EltStatus {
            new_elements_status: status,
            num_elements_updated: updated,
        }),
        (option::of(text()), option::of(text())).prop_map(|(previous, new)| {
            IssueChange::IssueStatus {
                previous_issue_status: previous,
                new_issue_status: new,
            }
        }),
        (
            other_name(&["add", "remove", "move", "elt_status", "issue_status"]),
            open_map(&["id", "update_type"]),
        )
            .prop_map(|(update_type, fields)| IssueChange::Other {
                update_type,
                fields,
            }),
    ]
}

fn label() -> impl Strategy<Value = Label> {
    (
        option::of(float()),
        open_map(&["confidence"]),
        (text(), text(), text()),
        vec(text(), 0..3),
        text(),
    )
        .prop_map(
            |(confidence, extra, (label, frame, label_type), linked_labels, uuid)| Label {
                attributes: LabelAttributes { confidence, extra },
                label,
                label_coordinate_frame: frame,
                label_type,
                linked_labels,
                uuid,
            },
        )
}

fn sensor_data() -> impl Strategy<Value = SensorData> {
    (
        text(),
        btree_map(text(), text(), 0..3),
        timestamp(),
        text(),
        open_map(&[]),
        text(),
    )
        .prop_map(
            |(
                coordinate_frame,
                data_urls,
                date_captured,
                sensor_id,
                sensor_metadata,
                sensor_type,
            )| {
                SensorData {
                    coordinate_frame,
                    data_urls,
                    date_captured,
                    sensor_id,
                    sensor_metadata,
                    sensor_type,
                }
            },
        )
}

fn metadata_value() -> impl Strategy<Value = MetadataValue> {
    prop_oneof![
        text().prop_map(MetadataValue::String),
        any::<i64>().prop_map(MetadataValue::Int),
        float().prop_map(MetadataValue::Float),
        any::<bool>().prop_map(MetadataValue::Bool),
        // What the typed variants do not cover.
        prop_oneof![
            Just(Value::Null),
            (i64::MAX as u64 + 1..=u64::MAX).prop_map(Value::from),
            vec(json_value(), 0..3).prop_map(Value::Array),
            open_map(&[]).prop_map(Value::Object),
        ]
        .prop_map(MetadataValue::Json),
    ]
}

fn frame_data() -> impl Strategy<Value = FrameData> {
    let coordinate_frame =
        (text(), option::of(open_map(&[])), text()).prop_map(|(id, meta, t)| CoordinateFrame {
            coordinate_frame_id: id,
            coordinate_frame_metadata: meta,
            coordinate_frame_type: t,
        });
    let metric = prop_oneof![
        vec(vec(any::<i64>(), 0..3), 0..3).prop_map(CustomMetric::Matrix),
        float().prop_map(CustomMetric::Scalar),
    ];
    let metadata = btree_map(text(), metadata_value(), 0..4).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| !FrameData::FIELDS.contains(&k.as_str()))
            .collect()
    });
    (
        (vec(coordinate_frame, 0..2), btree_map(text(), metric, 0..3)),
        (timestamp(), text(), btree_map(text(), float(), 0..3)),
        (vec(label(), 0..3), vec(sensor_data(), 0..2), text()),
        metadata,
    )
        .prop_map(
            |(
                (coordinate_frames, custom_metrics),
                (date_captured, device_id, geo_data),
                (label_data, sensor_data, task_id),
                metadata,
            )| FrameData {
                coordinate_frames,
                custom_metrics,
                date_captured,
                device_id,
                geo_data,
                label_data,
                sensor_data,
                task_id,
                metadata,
            },
        )
}

fn element() -> impl Strategy<Value = ExportedElement> {
    let kind = prop_oneof![
        Just(ElementKind::Frame),
        (text(), open_map(&["uuid"]))
            .prop_map(|(uuid, extra)| ElementKind::Crop(CropData { uuid, extra })),
        other_name(&["frame", "crop"]).prop_map(ElementKind::Other),
    ];
    (
        (text(), option::of(text()), text(), text()),
        kind,
        text(),
        frame_data(),
    )
        .prop_map(
            |((dataset, inference_set, issue_name, element_id), kind, frame_id, frame_data)| {
                ExportedElement {
                    dataset,
                    inference_set,
                    issue_name,
                    element_id,
                    kind,
                    frame_id,
                    frame_data,
                }
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (text(), dataset_entity()).prop_map(|(p, e)| Event::dataset_complete(p, e)),
        (text(), dataset_entity()).prop_map(|(p, e)| Event::dataset_failed(p, e)),
        (text(), vec(created_issue(), 0..3)).prop_map(|(p, i)| Event::issues_created(p, i)),
        (text(), text(), issue_change())
            .prop_map(|(p, id, c)| Event::issue_updated(p, IssueUpdate::new(id, c))),
        (text(), text(), vec(element(), 0..3))
            .prop_map(|(p, id, elements)| Event::issue_exported(p, ExportedIssue { id, elements })),
        (text(), text(), timestamp()).prop_map(|(project, message, sent_at)| {
            Event::Test(TestEvent {
                project,
                test: TestPayload { message, sent_at },
            })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_event_survives_serialize_then_parse(event in event()) {
        let bytes = serde_json::to_vec(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = Event::from_slice(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&parsed, &event);
        // Writing the parsed event again gives the same bytes.
        let again = serde_json::to_vec(&parsed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn a_timestamp_read_is_written_back_in_a_form_read_again(text in edge_timestamp_text()) {
        let payload = serde_json::json!({
            "event": "webhook-test",
            "project": "p",
            "test": {"message": "m", "sent_at": text},
        });
        let bytes = serde_json::to_vec(&payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Ok(event) = Event::from_slice(&bytes) {
            let written = serde_json::to_vec(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again = Event::from_slice(&written).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(again, event);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        let _ = Event::from_slice(&bytes);
    }

    #[test]
    fn corrupted_payloads_never_panic(
        event in event(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = serde_json::to_vec(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        // Either it still parses, or it is refused with a message; it never panics.
        if let Err(e) = Event::from_slice(&bytes) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
