//! Bad input: every malformed payload is a clear, typed error that says what and where, and
//! nothing panics.

mod common;

use std::error::Error as _;

use common::fixture_value;
use dataops_webhooks::{Event, ParseError};
use serde_json::{json, Value};

fn parse_value(value: &Value) -> ParseError {
    let body = serde_json::to_vec(value).expect("a JSON value serializes");
    Event::from_slice(&body).expect_err("payload should be refused")
}

/// Asserts an `Invalid` error at `path` whose reason contains `reason`.
fn assert_invalid(err: &ParseError, path: &str, reason: &str) {
    match err {
        ParseError::Invalid {
            path: at,
            reason: why,
            ..
        } => {
            assert_eq!(at, path, "path of: {err}");
            assert!(why.contains(reason), "reason `{why}` lacks `{reason}`");
        }
        other => panic!("expected Invalid at {path}, got {other:?}"),
    }
}

#[test]
fn truncated_json_is_a_syntax_error_with_its_position() {
    let err = Event::from_slice(br#"{"event":"dataset-complete","project":"p","dat"#).unwrap_err();
    match &err {
        ParseError::Syntax { line, column, .. } => {
            assert_eq!((*line, *column), (1, 46));
        }
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("webhook payload is not valid JSON at line 1, column 46"));
    assert!(
        err.source().is_some(),
        "the parser's error is kept as the source"
    );
}

#[test]
fn every_prefix_of_a_valid_payload_is_refused_without_panicking() {
    let body = serde_json::to_vec(&fixture_value("issue_exported.json")).unwrap();
    for end in 0..body.len() {
        assert!(
            Event::from_slice(&body[..end]).is_err(),
            "prefix of {end} bytes"
        );
    }
    assert!(Event::from_slice(&body).is_ok());
}

#[test]
fn not_an_object() {
    for body in [&b""[..], b"[]", b"\"dataset-complete\"", b"null", b"42"] {
        let err = Event::from_slice(body).unwrap_err();
        assert!(
            matches!(err, ParseError::Syntax { .. } | ParseError::Invalid { .. }),
            "{err:?}"
        );
    }
    assert_invalid(
        &Event::from_slice(b"[]").unwrap_err(),
        ".",
        "expected a webhook envelope object",
    );
}

#[test]
fn trailing_bytes_after_the_envelope_are_refused() {
    let mut body = serde_json::to_vec(&fixture_value("issue_updated_add.json")).unwrap();
    body.extend_from_slice(b" {}");
    assert!(matches!(
        Event::from_slice(&body),
        Err(ParseError::Syntax { .. })
    ));
}

#[test]
fn unknown_event_names_it() {
    let err = parse_value(&json!({"event": "model-trained", "project": "p", "model": {}}));
    match &err {
        ParseError::UnknownEvent(unknown) => assert_eq!(unknown.name(), "model-trained"),
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .contains("unknown event type `model-trained`"));
    // serde_json alone says the same, as a plain message.
    let plain = serde_json::from_value::<Event>(json!({"event": "model-trained"})).unwrap_err();
    assert!(plain.to_string().contains("model-trained"), "{plain}");
}

#[test]
fn missing_or_mistyped_envelope_fields() {
    assert_invalid(
        &parse_value(&json!({"project": "p", "issues": []})),
        ".",
        "missing field `event`",
    );
    assert_invalid(
        &parse_value(&json!({"event": "issues-created", "issues": []})),
        ".",
        "missing field `project`",
    );
    assert_invalid(
        &parse_value(&json!({"event": 7, "project": "p", "issues": []})),
        "event",
        "invalid type: integer `7`",
    );
    assert_invalid(
        &parse_value(&json!({"event": "issues-created", "project": null, "issues": []})),
        "project",
        "invalid type: null",
    );
}

#[test]
fn missing_entity_says_which_key_the_event_needs() {
    let err = parse_value(&json!({"event": "dataset-complete", "project": "p"}));
    assert_invalid(
        &err,
        ".",
        "missing entity: a `dataset-complete` event carries `dataset` or `inference_set`",
    );
    assert_eq!(
        err.to_string(),
        "invalid webhook payload envelope: missing entity: a `dataset-complete` event carries \
         `dataset` or `inference_set`"
    );
}

#[test]
fn an_entity_of_another_event_is_refused() {
    let mut payload = fixture_value("issue_updated_add.json");
    payload["event"] = json!("issues-created");
    assert_invalid(
        &parse_value(&payload),
        ".",
        "a `issues-created` event carries `issues`, not `issue_update`",
    );
}

#[test]
fn two_entities_are_refused() {
    let mut payload = fixture_value("dataset_complete_dataset.json");
    payload["inference_set"] =
        fixture_value("dataset_complete_inference_set.json")["inference_set"].clone();
    assert_invalid(&parse_value(&payload), ".", "two entities");
}

#[test]
fn wrong_types_name_the_path() {
    let mut payload = fixture_value("dataset_complete_dataset.json");
    payload["dataset"]["frame_count"] = json!("1200");
    assert_invalid(
        &parse_value(&payload),
        "dataset.frame_count",
        "invalid type: string \"1200\", expected u64",
    );

    let mut payload = fixture_value("dataset_complete_dataset.json");
    payload["dataset"]["created_at"] = json!("last tuesday");
    assert_invalid(
        &parse_value(&payload),
        "dataset.created_at",
        "expected an RFC 3339 timestamp",
    );

    let mut payload = fixture_value("issues_created.json");
    payload["issues"][1]["num_elements"] = json!(-1);
    assert_invalid(
        &parse_value(&payload),
        "issues[1].num_elements",
        "expected u64",
    );

    let mut payload = fixture_value("issue_exported.json");
    payload["issue"]["elements"][0]["frame_data"]["label_data"][1]["uuid"] = json!(17);
    assert_invalid(
        &parse_value(&payload),
        "issue.elements[0].frame_data.label_data[1].uuid",
        "invalid type: integer `17`, expected a string",
    );

    let mut payload = fixture_value("issue_exported.json");
    payload["issue"]["elements"][0]["frame_data"]["sensor_data"] =
        payload["issue"]["elements"][0]["frame_data"]["sensor_data"][0].clone();
    assert_invalid(
        &parse_value(&payload),
        "issue.elements[0].frame_data.sensor_data",
        "invalid type: map, expected a sequence",
    );

    let mut payload = fixture_value("issue_exported.json");
    payload["issue"]["elements"][0]["frame_data"]["custom_metrics"]["confusion"] = json!([[0.5]]);
    assert_invalid(
        &parse_value(&payload),
        "issue.elements[0].frame_data.custom_metrics.confusion[0][0]",
        "expected i64",
    );
}

#[test]
fn a_frame_element_without_frame_data_is_refused() {
    let mut payload = fixture_value("issue_exported.json");
    payload["issue"]["elements"][0]
        .as_object_mut()
        .unwrap()
        .remove("frame_data");
    assert_invalid(
        &parse_value(&payload),
        "issue.elements[0]",
        "missing field `frame_data`",
    );
}

#[test]
fn a_crop_element_without_its_label_is_refused() {
    let mut payload = fixture_value("issue_exported.json");
    payload["issue"]["elements"][1]
        .as_object_mut()
        .unwrap()
        .remove("crop_data");
    assert_invalid(
        &parse_value(&payload),
        "issue.elements[1]",
        "a crop element needs `crop_data`",
    );
}

#[test]
fn a_required_frame_field_is_named_when_missing() {
    let mut payload = fixture_value("issue_exported.json");
    payload["issue"]["elements"][0]["frame_data"]
        .as_object_mut()
        .unwrap()
        .remove("task_id");
    assert_invalid(
        &parse_value(&payload),
        "issue.elements[0].frame_data",
        "missing field `task_id`",
    );
}

#[test]
fn a_duplicated_user_metadata_key_is_refused() {
    let body = serde_json::to_string(&fixture_value("issue_exported.json"))
        .unwrap()
        .replacen(
            r#""weather":"rain""#,
            r#""weather":"rain","weather":"fog""#,
            1,
        );
    let err = Event::from_slice(body.as_bytes()).unwrap_err();
    assert_invalid(
        &err,
        "issue.elements[0].frame_data",
        "duplicate field `weather`",
    );
}

#[test]
fn hostile_nesting_never_overflows_the_stack() {
    let depth = 100_000;
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));

    // Under a key that is ignored, the parser skips the value without recursing.
    let ignored = format!(
        r#"{{"event":"issue-exported","project":"p","issue":{{"id":"i","elements":[],"x":{deep}}}}}"#
    );
    assert!(Event::from_slice(ignored.as_bytes()).is_ok());

    // Under a key that is kept (user metadata), nesting stops at the parser's recursion limit.
    let mut payload = fixture_value("issue_exported.json");
    payload["issue"]["elements"][0]["frame_data"]["deep"] = json!("PLACEHOLDER");
    let kept = serde_json::to_string(&payload)
        .unwrap()
        .replace(r#""PLACEHOLDER""#, &deep);
    let err = Event::from_slice(kept.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");
}

#[test]
fn a_huge_bad_value_is_not_repeated_in_full() {
    let mut payload = fixture_value("dataset_complete_dataset.json");
    payload["dataset"]["frame_count"] = json!("9".repeat(100_000));
    let message = parse_value(&payload).to_string();
    assert!(message.len() < 1_000, "{} bytes", message.len());
    assert!(message.contains("dataset.frame_count"), "{message}");
}

#[test]
fn timestamps_that_would_not_round_trip_are_refused_with_their_path() {
    for sent_at in [
        "-0001-03-18T10:01:02",
        "0000-01-01T00:00:00+00:01",
        "9999-12-31T23:59:59-00:01",
        "4-3-181:1:00",
        "+10000-01-01T00:00:00Z",
    ] {
        let payload = json!({
            "event": "webhook-test",
            "project": "p",
            "test": {"message": "m", "sent_at": sent_at},
        });
        assert_invalid(
            &parse_value(&payload),
            "test.sent_at",
            "in the years 0001 to 9999",
        );
    }
}
