//! The test event that "send test payload" delivers.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::wire::timestamp;

/// The payload of the test event (`"event": "webhook-test"`).
///
/// It is minimal and says plainly that it is a test: receivers can recognise it by its event
/// type alone and need not act on it. On the wire:
///
/// ```json
/// {"event": "webhook-test", "project": "traffic-signs",
///  "test": {"message": "This is a test payload from dataops-webhooks.", "sent_at": "2024-05-01T12:00:00Z"}}
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TestEvent {
    /// The project of the webhook being tested; empty for an organization-wide webhook.
    pub project: String,
    /// The test entity (`"test": {...}`).
    pub test: TestPayload,
}

/// The entity of the test event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestPayload {
    /// A human-readable line saying this is a test.
    pub message: String,
    /// When the test payload was made.
    #[serde(with = "timestamp")]
    pub sent_at: DateTime<Utc>,
}

impl TestEvent {
    /// The message every test payload made by [`TestEvent::new`] carries.
    pub const MESSAGE: &'static str = "This is a test payload from dataops-webhooks.";

    /// A test event for `project`, stamped with the current time (whole milliseconds).
    pub fn new(project: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            test: TestPayload {
                message: Self::MESSAGE.to_owned(),
                sent_at: Utc::now().trunc_subsecs(3),
            },
        }
    }
}
