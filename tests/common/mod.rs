//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use dataops_webhooks::Event;
use serde_json::Value;

/// The bytes of `tests/fixtures/<name>`.
pub(crate) fn fixture_bytes(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `tests/fixtures/<name>` as a JSON value.
pub(crate) fn fixture_value(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// An RFC 3339 timestamp written in a test.
pub(crate) fn ts(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .to_utc()
}

/// Serializes `event` and reads the bytes back as a JSON value.
pub(crate) fn written(event: &Event) -> Value {
    let bytes = serde_json::to_vec(event).unwrap_or_else(|e| panic!("serializing: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("re-reading: {e}"))
}
