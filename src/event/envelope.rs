//! The envelope `{"event", "project", <entity key>: <entity>}`: serde for [`Event`] and the
//! diagnosing parser [`Event::from_slice`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::wire::{set_once, StrVisitor};
use super::{
    CreatedIssue, Dataset, DatasetEntity, DatasetEvent, Event, EventType, ExportedIssue,
    InferenceSet, IssueExported, IssueUpdate, IssueUpdated, IssuesCreated, TestEvent, TestPayload,
};
use crate::error::ParseError;

impl Event {
    /// Reads a webhook body, with an error that says what is wrong and where.
    ///
    /// Accepts exactly what `serde_json::from_slice::<Event>` accepts, and costs the same when
    /// the body is valid; on failure it tells apart malformed JSON
    /// ([`ParseError::Syntax`]), an event type this crate does not know
    /// ([`ParseError::UnknownEvent`]) and a payload that does not match its schema
    /// ([`ParseError::Invalid`], with the path of the field at fault).
    ///
    /// ```
    /// use dataops_webhooks::{Event, ParseError};
    ///
    /// let body = br#"{"event":"dataset-complete","project":"p","dataset":{"id":"d","frame_count":"ten"}}"#;
    /// match Event::from_slice(body) {
    ///     Err(ParseError::Invalid { path, reason, .. }) => {
    ///         assert_eq!(path, "dataset.frame_count");
    ///         assert!(reason.starts_with("invalid type: string \"ten\", expected u64"));
    ///     }
    ///     other => panic!("unexpected: {other:?}"),
    /// }
    /// ```
    pub fn from_slice(body: &[u8]) -> Result<Event, ParseError> {
        serde_json::from_slice(body).map_err(|first| diagnose(body, first))
    }
}

/// Explains why `body` did not parse. Only runs on failure, so the path tracking costs nothing
/// on the happy path.
fn diagnose(body: &[u8], first: serde_json::Error) -> ParseError {
    #[derive(Deserialize)]
    struct EventName<'a> {
        #[serde(borrow)]
        event: Option<Cow<'a, str>>,
    }
    if let Ok(EventName { event: Some(name) }) = serde_json::from_slice::<EventName<'_>>(body) {
        if let Err(unknown) = name.parse::<EventType>() {
            return ParseError::UnknownEvent(unknown);
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, Event>(&mut de) {
        Err(e) => ParseError::from_json(e.path().to_string(), e.into_inner()),
        // Trailing characters after the envelope; or, should the two parsers ever disagree,
        // the first error.
        Ok(_) => ParseError::from_json(".".to_owned(), de.end().err().unwrap_or(first)),
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("event", self.event_type().as_str())?;
        map.serialize_entry("project", self.project())?;
        match self {
            Event::DatasetComplete(e) | Event::DatasetFailed(e) => match &e.entity {
                DatasetEntity::Dataset(d) => map.serialize_entry("dataset", d)?,
                DatasetEntity::InferenceSet(i) => map.serialize_entry("inference_set", i)?,
            },
            Event::IssuesCreated(e) => map.serialize_entry("issues", &e.issues)?,
            Event::IssueUpdated(e) => map.serialize_entry("issue_update", &e.issue_update)?,
            Event::IssueExported(e) => map.serialize_entry("issue", &e.issue)?,
            Event::Test(e) => map.serialize_entry("test", &e.test)?,
        }
        map.end()
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parsed = d.deserialize_str(StrVisitor::new("an event type string", |s: &str| {
            s.parse::<EventType>()
        }))?;
        parsed.map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor)
    }
}

/// A top-level key. The entity key alone says which entity type to read, so the envelope is
/// read in one pass whatever the order of its keys.
enum Key {
    Event,
    Project,
    Dataset,
    InferenceSet,
    Issues,
    IssueUpdate,
    Issue,
    Test,
    Unknown,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(StrVisitor::new("an envelope key", |key: &str| match key {
            "event" => Key::Event,
            "project" => Key::Project,
            "dataset" => Key::Dataset,
            "inference_set" => Key::InferenceSet,
            "issues" => Key::Issues,
            "issue_update" => Key::IssueUpdate,
            "issue" => Key::Issue,
            "test" => Key::Test,
            _ => Key::Unknown,
        }))
    }
}

enum Entity {
    Dataset(Dataset),
    InferenceSet(InferenceSet),
    Issues(Vec<CreatedIssue>),
    IssueUpdate(IssueUpdate),
    Issue(ExportedIssue),
    Test(TestPayload),
}

impl Entity {
    fn key(&self) -> &'static str {
        match self {
            Entity::Dataset(_) => "dataset",
            Entity::InferenceSet(_) => "inference_set",
            Entity::Issues(_) => "issues",
            Entity::IssueUpdate(_) => "issue_update",
            Entity::Issue(_) => "issue",
            Entity::Test(_) => "test",
        }
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a webhook envelope object {\"event\", \"project\", <entity>}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let mut event_type: Option<EventType> = None;
        let mut project: Option<String> = None;
        let mut entity: Option<Entity> = None;
        while let Some(key) = map.next_key::<Key>()? {
            let next = match key {
                Key::Event => {
                    set_once(&mut event_type, "event", map.next_value()?)?;
                    continue;
                }
                Key::Project => {
                    set_once(&mut project, "project", map.next_value()?)?;
                    continue;
                }
                Key::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Key::Dataset => Entity::Dataset(map.next_value()?),
                Key::InferenceSet => Entity::InferenceSet(map.next_value()?),
                Key::Issues => Entity::Issues(map.next_value()?),
                Key::IssueUpdate => Entity::IssueUpdate(map.next_value()?),
                Key::Issue => Entity::Issue(map.next_value()?),
                Key::Test => Entity::Test(map.next_value()?),
            };
            if let Some(previous) = &entity {
                return Err(de::Error::custom(format_args!(
                    "the payload carries two entities, `{}` and `{}`; an event has one",
                    previous.key(),
                    next.key()
                )));
            }
            entity = Some(next);
        }
        let event_type = event_type.ok_or_else(|| de::Error::missing_field("event"))?;
        let project = project.ok_or_else(|| de::Error::missing_field("project"))?;
        assemble(event_type, project, entity)
    }
}

fn assemble<E: de::Error>(
    event_type: EventType,
    project: String,
    entity: Option<Entity>,
) -> Result<Event, E> {
    use EventType::{DatasetComplete, DatasetFailed};
    Ok(match (event_type, entity) {
        (t @ (DatasetComplete | DatasetFailed), Some(Entity::Dataset(d))) => {
            dataset_event(t, project, DatasetEntity::Dataset(d))
        }
        (t @ (DatasetComplete | DatasetFailed), Some(Entity::InferenceSet(i))) => {
            dataset_event(t, project, DatasetEntity::InferenceSet(i))
        }
        (EventType::IssuesCreated, Some(Entity::Issues(issues))) => {
            Event::IssuesCreated(IssuesCreated { project, issues })
        }
        (EventType::IssueUpdated, Some(Entity::IssueUpdate(issue_update))) => {
            Event::IssueUpdated(IssueUpdated {
                project,
                issue_update,
            })
        }
        (EventType::IssueExported, Some(Entity::Issue(issue))) => {
            Event::IssueExported(IssueExported { project, issue })
        }
        (EventType::Test, Some(Entity::Test(test))) => Event::Test(TestEvent { project, test }),
        (event_type, found) => {
            let expected = EntityKeys(event_type.entity_keys());
            return Err(match found {
                None => de::Error::custom(format_args!(
                    "missing entity: a `{event_type}` event carries {expected}"
                )),
                Some(other) => de::Error::custom(format_args!(
                    "a `{event_type}` event carries {expected}, not `{}`",
                    other.key()
                )),
            });
        }
    })
}

fn dataset_event(event_type: EventType, project: String, entity: DatasetEntity) -> Event {
    let event = DatasetEvent { project, entity };
    if event_type == EventType::DatasetFailed {
        Event::DatasetFailed(event)
    } else {
        Event::DatasetComplete(event)
    }
}

/// `` `dataset` or `inference_set` ``.
struct EntityKeys(&'static [&'static str]);

impl fmt::Display for EntityKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "`{key}`")?;
        }
        Ok(())
    }
}
