//! The typed event catalogue: every event the platform sends, in its documented wire format.
//!
//! Every payload is a JSON object `{"event": <type>, "project": <name>, <entity key>: <entity>}`.
//! [`Event`] is the enum of all events; its serde implementations read and write exactly that
//! envelope, so `serde_json::to_vec(&event)` gives the documented JSON and
//! `serde_json::from_slice::<Event>(body)` reads any payload. [`Event::from_slice`] does the same
//! with a typed [`ParseError`](crate::ParseError) that names the field at fault.
//!
//! | event type | [`Event`] variant | entity key | entity |
//! |---|---|---|---|
//! | `dataset-complete` | [`DatasetComplete`](Event::DatasetComplete) | `dataset` or `inference_set` | [`Dataset`] or [`InferenceSet`] |
//! | `dataset-failed` | [`DatasetFailed`](Event::DatasetFailed) | `dataset` or `inference_set` | [`Dataset`] or [`InferenceSet`] |
//! | `issues-created` | [`IssuesCreated`](Event::IssuesCreated) | `issues` | list of [`CreatedIssue`] |
//! | `issue-updated` | [`IssueUpdated`](Event::IssueUpdated) | `issue_update` | [`IssueUpdate`] |
//! | `issue-exported` | [`IssueExported`](Event::IssueExported) | `issue` | [`ExportedIssue`] |
//! | `webhook-test` | [`Test`](Event::Test) | `test` | [`TestPayload`] |
//!
//! # Reading and writing rules
//!
//! The platform's documentation is the contract; where it is loose, these rules decide:
//!
//! - **Key order.** Output follows the documented order: `event`, `project`, the entity; inside
//!   entities, the order of the schema. Input may come in any order.
//! - **Optional fields** (`name?` in the schema): absent or `null` reads as `None`; `None` is left
//!   out of the output.
//! - **Lists and maps**: absent or `null` reads as empty; they are always written.
//! - **Other fields are required**: a missing one is an error naming it.
//! - **Unknown keys** inside an entity never fail a parse. Where the schema has an open map
//!   (`frame_data`'s user metadata, label `attributes`, `data_urls`, `geo_data`,
//!   `custom_metrics`, `sensor_metadata`, `coordinate_frame_metadata`, `crop_data`) they are
//!   kept and written back; elsewhere they are ignored. Unknown top-level keys are ignored.
//! - **Unknown values** of `creation_type`, `element_type` and `update_type` are kept as `Other`
//!   variants and written back unchanged. An unknown *event type* is an error naming it.
//! - **Timestamps** (`created_at`, `updated_at`, `date_captured`, `sent_at`) are
//!   [`chrono::DateTime<Utc>`](chrono::DateTime). Output is RFC 3339 in UTC with a `Z` and 0, 3, 6
//!   or 9 fractional digits, as the value needs: `2024-05-01T12:00:00Z`,
//!   `2024-05-01T12:00:00.250Z`. Input is RFC 3339 with any offset (converted to UTC), or an
//!   ISO 8601 date-time without an offset (`2024-05-01T12:00:00.123456`, as Python's
//!   `isoformat()` prints it), read as UTC.
//! - **Numbers**: JSON has no NaN or infinity, so serializing one is an error rather than the
//!   silent `null` serde_json would write. Floats round-trip bit for bit.
//!
//! # Quirks of the documentation, decided
//!
//! - The event list says `issue-update`, the schema `issue-updated`: `issue-updated` is written,
//!   both are read ([`EventType::from_str`](std::str::FromStr) accepts both too).
//! - The label key is spelled `label_coorindate_frame` on the wire: that spelling is written, and
//!   `label_coordinate_frame` is read as well ([`Label::label_coordinate_frame`]).
//! - `original_issue_name` is documented as `int` but holds an issue name: it is a string; an
//!   integer is read as its decimal text ([`IssueChange::Move`]).
//! - The inference-set schema lists `data_url` twice: there is one `data_url`; a payload that
//!   repeats the key is refused as ambiguous ([`InferenceSet`]).
//! - `confidence` is optional (ground-truth labels have none), `inference_set` on an element may
//!   be `null`, and a crop's label (`crop_data`, undocumented) is typed as far as its `uuid`.

mod dataset;
mod envelope;
mod export;
mod frame;
mod issue;
mod test_event;
pub(crate) mod wire;

use std::fmt;
use std::str::FromStr;

pub use dataset::{Dataset, DatasetEntity, DatasetEvent, InferenceSet};
pub use export::{CropData, ElementKind, ExportedElement, ExportedIssue, IssueExported};
pub use frame::{
    CoordinateFrame, CustomMetric, FrameData, Label, LabelAttributes, MetadataValue, SensorData,
};
pub use issue::{
    CreatedIssue, CreationType, ElementType, IssueChange, IssueUpdate, IssueUpdated, IssuesCreated,
};
pub use test_event::{TestEvent, TestPayload};

use crate::error::UnknownEventType;

/// Any event the platform sends, with its project and entity.
///
/// Build one with the constructors, serialize it with serde:
///
/// ```
/// use dataops_webhooks::event::{Event, IssueChange, IssueUpdate};
///
/// let event = Event::issue_updated("traffic-signs", IssueUpdate::new("issue-7", IssueChange::added(12)));
/// let body = serde_json::to_vec(&event)?;
/// assert_eq!(
///     std::str::from_utf8(&body)?,
///     r#"{"event":"issue-updated","project":"traffic-signs","issue_update":{"id":"issue-7","update_type":"add","num_elements_added":12}}"#
/// );
/// assert_eq!(Event::from_slice(&body)?, event);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `dataset-complete`: a dataset or inference set finished processing.
    DatasetComplete(DatasetEvent),
    /// `dataset-failed`: a dataset or inference set failed to process.
    DatasetFailed(DatasetEvent),
    /// `issues-created`: issues were created.
    IssuesCreated(IssuesCreated),
    /// `issue-updated`: an issue changed.
    IssueUpdated(IssueUpdated),
    /// `issue-exported`: an issue was exported, for hand-off to labeling.
    IssueExported(IssueExported),
    /// `webhook-test`: the test payload of "send test payload".
    Test(TestEvent),
}

impl Event {
    /// `dataset-complete` for a [`Dataset`] or an [`InferenceSet`].
    pub fn dataset_complete(project: impl Into<String>, entity: impl Into<DatasetEntity>) -> Self {
        Self::DatasetComplete(DatasetEvent {
            project: project.into(),
            entity: entity.into(),
        })
    }

    /// `dataset-failed` for a [`Dataset`] or an [`InferenceSet`].
    pub fn dataset_failed(project: impl Into<String>, entity: impl Into<DatasetEntity>) -> Self {
        Self::DatasetFailed(DatasetEvent {
            project: project.into(),
            entity: entity.into(),
        })
    }

    /// `issues-created` for the given issues.
    pub fn issues_created(
        project: impl Into<String>,
        issues: impl IntoIterator<Item = CreatedIssue>,
    ) -> Self {
        Self::IssuesCreated(IssuesCreated {
            project: project.into(),
            issues: issues.into_iter().collect(),
        })
    }

    /// `issue-updated` for one update.
    pub fn issue_updated(project: impl Into<String>, issue_update: IssueUpdate) -> Self {
        Self::IssueUpdated(IssueUpdated {
            project: project.into(),
            issue_update,
        })
    }

    /// `issue-exported` for an issue and its elements.
    pub fn issue_exported(project: impl Into<String>, issue: ExportedIssue) -> Self {
        Self::IssueExported(IssueExported {
            project: project.into(),
            issue,
        })
    }

    /// The test event, stamped now (see [`TestEvent`]).
    pub fn test(project: impl Into<String>) -> Self {
        Self::Test(TestEvent::new(project))
    }

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::DatasetComplete(_) => EventType::DatasetComplete,
            Self::DatasetFailed(_) => EventType::DatasetFailed,
            Self::IssuesCreated(_) => EventType::IssuesCreated,
            Self::IssueUpdated(_) => EventType::IssueUpdated,
            Self::IssueExported(_) => EventType::IssueExported,
            Self::Test(_) => EventType::Test,
        }
    }

    /// The name of the project the event originated in.
    pub fn project(&self) -> &str {
        match self {
            Self::DatasetComplete(e) | Self::DatasetFailed(e) => &e.project,
            Self::IssuesCreated(e) => &e.project,
            Self::IssueUpdated(e) => &e.project,
            Self::IssueExported(e) => &e.project,
            Self::Test(e) => &e.project,
        }
    }
}

/// The type of an event: its `event` string on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventType {
    /// `dataset-complete`.
    DatasetComplete,
    /// `dataset-failed`.
    DatasetFailed,
    /// `issues-created`.
    IssuesCreated,
    /// `issue-updated` (read from `issue-update` too).
    IssueUpdated,
    /// `issue-exported`.
    IssueExported,
    /// `webhook-test`: sent by "send test payload" to one webhook, whatever it subscribes to.
    Test,
}

impl EventType {
    /// The five events the platform emits, which webhooks subscribe to. The test event is not
    /// among them.
    pub const PLATFORM: [EventType; 5] = [
        Self::DatasetComplete,
        Self::DatasetFailed,
        Self::IssuesCreated,
        Self::IssueUpdated,
        Self::IssueExported,
    ];

    /// The `event` string written on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DatasetComplete => "dataset-complete",
            Self::DatasetFailed => "dataset-failed",
            Self::IssuesCreated => "issues-created",
            Self::IssueUpdated => "issue-updated",
            Self::IssueExported => "issue-exported",
            Self::Test => "webhook-test",
        }
    }

    /// The entity keys an event of this type carries (one of them).
    pub const fn entity_keys(self) -> &'static [&'static str] {
        match self {
            Self::DatasetComplete | Self::DatasetFailed => &["dataset", "inference_set"],
            Self::IssuesCreated => &["issues"],
            Self::IssueUpdated => &["issue_update"],
            Self::IssueExported => &["issue"],
            Self::Test => &["test"],
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = UnknownEventType;

    /// Reads an `event` string. `issue-update`, the name in the platform's event list, reads as
    /// [`IssueUpdated`](Self::IssueUpdated).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "dataset-complete" => Self::DatasetComplete,
            "dataset-failed" => Self::DatasetFailed,
            "issues-created" => Self::IssuesCreated,
            "issue-updated" | "issue-update" => Self::IssueUpdated,
            "issue-exported" => Self::IssueExported,
            "webhook-test" => Self::Test,
            other => return Err(UnknownEventType::new(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_reads_back_from_its_wire_name() {
        for t in EventType::PLATFORM.into_iter().chain([EventType::Test]) {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(
            format!("[{:<16}]", EventType::IssueExported),
            "[issue-exported  ]"
        );
    }

    #[test]
    fn issue_update_is_read_as_issue_updated() {
        assert_eq!("issue-update".parse(), Ok(EventType::IssueUpdated));
    }

    #[test]
    fn unknown_type_names_itself() {
        let err = "dataset-archived".parse::<EventType>().err();
        assert_eq!(
            err.as_ref().map(UnknownEventType::name),
            Some("dataset-archived")
        );
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("`dataset-archived`"), "{message}");
        assert!(message.contains("issue-exported"), "{message}");
    }
}
