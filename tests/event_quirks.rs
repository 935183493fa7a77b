//! The documentation's quirks and the lenient-input rules, each decided in the rustdoc of
//! `dataops_webhooks::event` and tested here against a fixture.

mod common;

use common::{fixture_bytes, fixture_value, ts, written};
use dataops_webhooks::event::{
    CreationType, DatasetEntity, ElementType, Event, IssueChange, IssueUpdate, Label,
};
use dataops_webhooks::{EventType, ParseError};
use serde_json::{json, Value};

fn parse(name: &str) -> Event {
    Event::from_slice(&fixture_bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn issue_update_from_the_event_list_reads_as_issue_updated_and_is_written_as_the_schema_says() {
    let event = parse("quirks/event_name_issue_update.json");
    assert_eq!(event.event_type(), EventType::IssueUpdated);
    assert_eq!(
        event,
        Event::issue_updated(
            "traffic-signs",
            IssueUpdate::new("issue-101", IssueChange::added(5))
        )
    );
    let mut expected = fixture_value("quirks/event_name_issue_update.json");
    expected["event"] = json!("issue-updated");
    assert_eq!(written(&event), expected);
}

#[test]
fn the_misspelled_label_key_is_written_and_both_spellings_are_read() {
    let canonical = fixture_value("issue_exported.json");
    let first_label = &canonical["issue"]["elements"][0]["frame_data"]["label_data"][0];
    assert!(first_label.get("label_coorindate_frame").is_some());

    let corrected: Label = serde_json::from_slice(&fixture_bytes(
        "quirks/label_coordinate_frame_corrected_spelling.json",
    ))
    .unwrap();
    assert_eq!(corrected.label_coordinate_frame, "cam_front");
    let out = serde_json::to_value(&corrected).unwrap();
    assert_eq!(out["label_coorindate_frame"], "cam_front");
    assert_eq!(out.get("label_coordinate_frame"), None);
}

#[test]
fn a_label_with_both_spellings_is_refused_as_ambiguous() {
    let err = serde_json::from_slice::<Label>(&fixture_bytes(
        "quirks/label_coordinate_frame_both_spellings.json",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("duplicate field `label_coorindate_frame`"),
        "{err}"
    );
}

#[test]
fn an_integer_original_issue_name_reads_as_its_text_and_is_written_as_a_string() {
    let event = parse("quirks/original_issue_name_int.json");
    let Event::IssueUpdated(updated) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(
        updated.issue_update.change,
        IssueChange::Move {
            num_elements_moved: Some(8),
            num_elements_already_present: Some(0),
            original_issue_name: Some("2024".into()),
        }
    );
    assert_eq!(
        written(&event)["issue_update"]["original_issue_name"],
        json!("2024")
    );
}

#[test]
fn an_inference_set_that_repeats_data_url_is_refused_naming_the_key() {
    let err = Event::from_slice(&fixture_bytes(
        "quirks/inference_set_duplicate_data_url.json",
    ))
    .unwrap_err();
    assert_eq!(err.path(), Some("inference_set"));
    assert!(
        err.to_string().contains("duplicate field `data_url`"),
        "{err}"
    );
}

#[test]
fn null_optional_fields_read_as_none_and_are_left_out_of_the_output() {
    let event = parse("quirks/optional_fields_null.json");
    let Event::DatasetComplete(complete) = &event else {
        panic!("{event:?}")
    };
    let DatasetEntity::InferenceSet(set) = &complete.entity else {
        panic!("{complete:?}")
    };
    assert_eq!(set.embeddings_url, None);
    assert_eq!(set.cached_metrics, None);
    assert!(set.data_url.is_empty(), "a null list reads as empty");

    let out = written(&event);
    let entity = out["inference_set"].as_object().unwrap();
    assert!(!entity.contains_key("embeddings_url"));
    assert!(!entity.contains_key("cached_metrics"));
    assert_eq!(entity["data_url"], json!([]), "lists are always written");
}

#[test]
fn null_update_counts_and_fields_of_other_update_types_are_dropped() {
    let event = parse("quirks/update_counts_null.json");
    assert_eq!(
        written(&event)["issue_update"],
        json!({"id": "issue-102", "update_type": "move", "num_elements_moved": 4})
    );
}

#[test]
fn a_null_originating_inference_set_reads_as_none_and_is_left_out() {
    let event = parse("quirks/originating_inference_set_null.json");
    let Event::IssuesCreated(created) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(created.issues[0].originating_inference_set_name, None);
    let out = written(&event);
    assert!(out["issues"][0]
        .get("originating_inference_set_name")
        .is_none());
}

#[test]
fn unknown_keys_are_ignored_and_unknown_values_kept() {
    let event = parse("quirks/unknown_keys_and_values.json");
    let Event::IssuesCreated(created) = &event else {
        panic!("{event:?}")
    };
    let issue = &created.issues[0];
    assert_eq!(issue.creation_type, CreationType::Other("scheduled".into()));
    assert_eq!(issue.element_type, ElementType::Other("polygon".into()));
    let out = written(&event);
    assert_eq!(out["issues"][0]["creation_type"], "scheduled");
    assert_eq!(out["issues"][0]["element_type"], "polygon");
    assert!(out.get("platform_version").is_none());
    assert!(out["issues"][0].get("severity").is_none());
}

#[test]
fn unknown_keys_in_open_maps_are_kept() {
    let mut payload = fixture_value("issue_exported.json");
    let element = &mut payload["issue"]["elements"][0];
    element["frame_data"]["new_platform_field"] = json!({"nested": [1, 2]});
    element["frame_data"]["label_data"][0]["attributes"]["truncated"] = json!(true);
    element["frame_data"]["sensor_data"][0]["data_urls"]["depth_url"] = json!("https://d/1.png");
    element["frame_data"]["geo_data"]["alt"] = json!(12.0);
    element["unknown_element_key"] = json!("ignored");
    let event: Event = serde_json::from_value(payload.clone()).unwrap();

    let out = written(&event);
    let frame_data = &out["issue"]["elements"][0]["frame_data"];
    assert_eq!(frame_data["new_platform_field"], json!({"nested": [1, 2]}));
    assert_eq!(frame_data["label_data"][0]["attributes"]["truncated"], true);
    assert_eq!(
        frame_data["sensor_data"][0]["data_urls"]["depth_url"],
        "https://d/1.png"
    );
    assert_eq!(frame_data["geo_data"]["alt"], 12.0);
    // A closed entity drops what it does not know; everything else is unchanged.
    payload["issue"]["elements"][0]
        .as_object_mut()
        .unwrap()
        .remove("unknown_element_key");
    assert_eq!(out, payload);
}

#[test]
fn unknown_update_types_keep_their_fields() {
    let body = br#"{"event":"issue-updated","project":"p","issue_update":
        {"id":"i","update_type":"rename","old_name":"a","new_name":"b"}}"#;
    let event = Event::from_slice(body).unwrap();
    let Event::IssueUpdated(updated) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(updated.issue_update.change.update_type(), "rename");
    assert_eq!(
        written(&event)["issue_update"],
        json!({"id": "i", "update_type": "rename", "old_name": "a", "new_name": "b"})
    );
}

#[test]
fn timestamps_with_offsets_or_none_read_as_utc_and_are_written_with_z() {
    let event = parse("quirks/timestamps_with_offsets.json");
    let Event::DatasetComplete(complete) = &event else {
        panic!("{event:?}")
    };
    let DatasetEntity::Dataset(dataset) = &complete.entity else {
        panic!("{complete:?}")
    };
    assert_eq!(dataset.created_at, ts("2024-03-18T09:12:44Z"));
    assert_eq!(dataset.updated_at, ts("2024-03-18T10:01:02.250Z"));
    let out = written(&event);
    assert_eq!(out["dataset"]["created_at"], "2024-03-18T09:12:44Z");
    assert_eq!(out["dataset"]["updated_at"], "2024-03-18T10:01:02.250Z");
}

#[test]
fn an_integer_where_a_metric_float_is_expected_reads_as_a_float() {
    let mut payload = fixture_value("issue_exported.json");
    payload["issue"]["elements"][0]["frame_data"]["custom_metrics"]["blur_score"] = json!(3);
    let event: Event = serde_json::from_value(payload).unwrap();
    let out = written(&event);
    assert_eq!(
        out["issue"]["elements"][0]["frame_data"]["custom_metrics"]["blur_score"],
        Value::from(3.0)
    );
}

#[test]
fn the_envelope_may_come_in_any_key_order() {
    let body =
        br#"{"issue_update":{"update_type":"add","id":"i"},"project":"p","event":"issue-updated"}"#;
    assert_eq!(
        Event::from_slice(body).unwrap(),
        Event::issue_updated(
            "p",
            IssueUpdate::new(
                "i",
                IssueChange::Add {
                    num_elements_added: None
                }
            )
        )
    );
}

#[test]
fn non_finite_numbers_fail_serialization_instead_of_becoming_null() {
    let mut event = parse("issue_exported.json");
    if let Event::IssueExported(exported) = &mut event {
        exported.issue.elements[0].frame_data.label_data[0]
            .attributes
            .confidence = Some(f64::NAN);
    }
    let err = serde_json::to_vec(&event).unwrap_err().to_string();
    assert!(err.contains("NaN"), "{err}");
}

#[test]
fn unknown_event_is_not_an_invalid_payload() {
    let err = Event::from_slice(br#"{"event":"dataset-archived","project":"p"}"#).unwrap_err();
    assert!(matches!(err, ParseError::UnknownEvent(ref e) if e.name() == "dataset-archived"));
}
