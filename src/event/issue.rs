//! `issues-created` and `issue-updated`.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::wire::{insert_once, open_string_enum, set_once};

/// The payload of `issues-created`.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuesCreated {
    /// Name of the project the issues were created in.
    pub project: String,
    /// The new issues (`"issues": [...]`).
    pub issues: Vec<CreatedIssue>,
}

/// One issue in an `issues-created` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedIssue {
    /// The issue's id.
    pub id: String,
    /// The issue's name.
    pub issue_name: String,
    /// Whether the platform found the issue or a user made it.
    pub creation_type: CreationType,
    /// Whether the issue's elements are whole frames or crops.
    pub element_type: ElementType,
    /// How many elements the issue holds.
    pub num_elements: u64,
    /// The inference set used to generate the issue's elements, usually set for auto-created
    /// issues (`originating_inference_set_name?`): absent or `null` reads as `None`, and `None`
    /// is left out of the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originating_inference_set_name: Option<String>,
}

open_string_enum! {
    /// How an issue came to be (`creation_type`).
    pub enum CreationType {
        /// Found by the platform (`"auto"`).
        Auto => "auto",
        /// Created by a user (`"manual"`).
        Manual => "manual",
    }
}

open_string_enum! {
    /// What an issue's elements are (`element_type`).
    pub enum ElementType {
        /// Whole frames (`"frame"`).
        Frame => "frame",
        /// Crops: single labels within a frame (`"crop"`).
        Crop => "crop",
    }
}

/// The payload of `issue-updated`.
///
/// The event list of the platform's documentation calls this event `issue-update`, while its
/// schema says `issue-updated`. This crate writes `issue-updated` and reads both.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueUpdated {
    /// Name of the project the issue belongs to.
    pub project: String,
    /// What changed (`"issue_update": {...}`).
    pub issue_update: IssueUpdate,
}

/// The entity of `issue-updated`: the issue's id and what changed.
///
/// On the wire it is one flat object: `{"id": ..., "update_type": ..., <that type's fields>}`.
/// Here the fields live inside the [`IssueChange`] variant they belong to, so a count that does
/// not belong to an update type cannot be set.
///
/// ```
/// use dataops_webhooks::event::{IssueChange, IssueUpdate};
///
/// let update = IssueUpdate::new("issue-7", IssueChange::added(12));
/// assert_eq!(
///     serde_json::to_string(&update)?,
///     r#"{"id":"issue-7","update_type":"add","num_elements_added":12}"#
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct IssueUpdate {
    /// The issue's id.
    pub id: String,
    /// What changed, with the fields of that update type.
    pub change: IssueChange,
}

impl IssueUpdate {
    /// An update of issue `id`.
    pub fn new(id: impl Into<String>, change: IssueChange) -> Self {
        Self {
            id: id.into(),
            change,
        }
    }
}

/// What changed in an issue, one variant per `update_type`.
///
/// Every documented field is optional (`?` in the schema): absent or `null` reads as `None`,
/// and `None` is left out of the payload. Fields that belong to another update type are
/// ignored on input (a producer may send them all, as `null`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum IssueChange {
    /// Elements were added (`"add"`).
    Add {
        /// `num_elements_added`.
        num_elements_added: Option<u64>,
    },
    /// Elements were removed (`"remove"`).
    Remove {
        /// `num_elements_removed`.
        num_elements_removed: Option<u64>,
    },
    /// Elements were moved here from another issue (`"move"`).
    Move {
        /// `num_elements_moved`.
        num_elements_moved: Option<u64>,
        /// `num_elements_already_present`: moved elements that were already in this issue.
        num_elements_already_present: Option<u64>,
        /// `original_issue_name`: the issue the elements were in before.
        ///
        /// The documentation types it `int`, but it holds an issue *name*, so it is a string
        /// here and on output. On input an integer is accepted too (a producer that followed the
        /// documented type) and kept as its decimal text.
        original_issue_name: Option<String>,
    },
    /// The status of the issue's elements changed (`"elt_status"`).
    EltStatus {
        /// `new_elements_status`.
        new_elements_status: Option<String>,
        /// `num_elements_updated`.
        num_elements_updated: Option<u64>,
    },
    /// The issue's own status changed (`"issue_status"`).
    IssueStatus {
        /// `previous_issue_status`.
        previous_issue_status: Option<String>,
        /// `new_issue_status`.
        new_issue_status: Option<String>,
    },
    /// An update type this version of the crate does not know, with its fields kept as sent so
    /// it round-trips. Constructing one with a known `update_type` writes a payload that reads
    /// back as that known variant.
    Other {
        /// The `update_type` value.
        update_type: String,
        /// Every other field of the entity besides `id` and `update_type`.
        fields: Map<String, Value>,
    },
}

impl IssueChange {
    /// `add`, with the number of elements added.
    pub fn added(count: u64) -> Self {
        Self::Add {
            num_elements_added: Some(count),
        }
    }

    /// `remove`, with the number of elements removed.
    pub fn removed(count: u64) -> Self {
        Self::Remove {
            num_elements_removed: Some(count),
        }
    }

    /// The `update_type` written on the wire.
    pub fn update_type(&self) -> &str {
        match self {
            Self::Add { .. } => "add",
            Self::Remove { .. } => "remove",
            Self::Move { .. } => "move",
            Self::EltStatus { .. } => "elt_status",
            Self::IssueStatus { .. } => "issue_status",
            Self::Other { update_type, .. } => update_type,
        }
    }
}

impl Serialize for IssueUpdate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("update_type", self.change.update_type())?;
        fn entry<M: SerializeMap, T: Serialize>(
            map: &mut M,
            key: &str,
            value: &Option<T>,
        ) -> Result<(), M::Error> {
            match value {
                Some(v) => map.serialize_entry(key, v),
                None => Ok(()),
            }
        }
        match &self.change {
            IssueChange::Add { num_elements_added } => {
                entry(&mut map, "num_elements_added", num_elements_added)?;
            }
            IssueChange::Remove {
                num_elements_removed,
            } => entry(&mut map, "num_elements_removed", num_elements_removed)?,
            IssueChange::Move {
                num_elements_moved,
                num_elements_already_present,
                original_issue_name,
            } => {
                entry(&mut map, "num_elements_moved", num_elements_moved)?;
                entry(
                    &mut map,
                    "num_elements_already_present",
                    num_elements_already_present,
                )?;
                entry(&mut map, "original_issue_name", original_issue_name)?;
            }
            IssueChange::EltStatus {
                new_elements_status,
                num_elements_updated,
            } => {
                entry(&mut map, "new_elements_status", new_elements_status)?;
                entry(&mut map, "num_elements_updated", num_elements_updated)?;
            }
            IssueChange::IssueStatus {
                previous_issue_status,
                new_issue_status,
            } => {
                entry(&mut map, "previous_issue_status", previous_issue_status)?;
                entry(&mut map, "new_issue_status", new_issue_status)?;
            }
            IssueChange::Other { fields, .. } => {
                for (key, value) in fields {
                    if key != "id" && key != "update_type" {
                        map.serialize_entry(key, value)?;
                    }
                }
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for IssueUpdate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(IssueUpdateVisitor)
    }
}

struct IssueUpdateVisitor;

impl<'de> Visitor<'de> for IssueUpdateVisitor {
    type Value = IssueUpdate;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an issue_update object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IssueUpdate, A::Error> {
        let mut id: Option<String> = None;
        let mut update_type: Option<String> = None;
        // The object is small; keeping the other fields raw until the update type is known lets
        // unknown update types keep everything they carried.
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "id" => set_once(&mut id, "id", map.next_value()?)?,
                "update_type" => set_once(&mut update_type, "update_type", map.next_value()?)?,
                _ => {
                    let value = map.next_value()?;
                    insert_once(&mut fields, key, value)?;
                }
            }
        }
        let id = id.ok_or_else(|| de::Error::missing_field("id"))?;
        let update_type = update_type.ok_or_else(|| de::Error::missing_field("update_type"))?;
        let change = change_from_fields(update_type, fields)?;
        Ok(IssueUpdate { id, change })
    }
}

fn change_from_fields<E: de::Error>(
    update_type: String,
    mut fields: Map<String, Value>,
) -> Result<IssueChange, E> {
    let mut take = |name: &str| fields.remove(name).unwrap_or(Value::Null);
    Ok(match update_type.as_str() {
        "add" => IssueChange::Add {
            num_elements_added: typed("num_elements_added", take("num_elements_added"))?,
        },
        "remove" => IssueChange::Remove {
            num_elements_removed: typed("num_elements_removed", take("num_elements_removed"))?,
        },
        "move" => IssueChange::Move {
            num_elements_moved: typed("num_elements_moved", take("num_elements_moved"))?,
            num_elements_already_present: typed(
                "num_elements_already_present",
                take("num_elements_already_present"),
            )?,
            original_issue_name: issue_name(take("original_issue_name"))?,
        },
        "elt_status" => IssueChange::EltStatus {
            new_elements_status: typed("new_elements_status", take("new_elements_status"))?,
            num_elements_updated: typed("num_elements_updated", take("num_elements_updated"))?,
        },
        "issue_status" => IssueChange::IssueStatus {
            previous_issue_status: typed("previous_issue_status", take("previous_issue_status"))?,
            new_issue_status: typed("new_issue_status", take("new_issue_status"))?,
        },
        _ => IssueChange::Other {
            update_type,
            fields,
        },
    })
}

/// Reads one optional field of a known update type, naming the field when it has the wrong type.
fn typed<T: de::DeserializeOwned, E: de::Error>(name: &str, value: Value) -> Result<Option<T>, E> {
    serde_json::from_value::<Option<T>>(value)
        .map_err(|e| E::custom(format_args!("field `{name}`: {e}")))
}

/// `original_issue_name`: a string, or an integer as the documentation types it.
fn issue_name<E: de::Error>(value: Value) -> Result<Option<String>, E> {
    match value {
        Value::Null => Ok(None),
        Value::String(name) => Ok(Some(name)),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        other => Err(E::custom(format_args!(
            "field `original_issue_name`: expected an issue name (a string, or an integer), found {}",
            wire_kind(&other)
        ))),
    }
}

fn wire_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a non-integer number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<IssueUpdate, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn fields_of_other_update_types_are_ignored() -> Result<(), serde_json::Error> {
        let update = parse(
            r#"{"id":"i","update_type":"add","num_elements_added":3,
                "num_elements_removed":null,"new_issue_status":"closed"}"#,
        )?;
        assert_eq!(update.change, IssueChange::added(3));
        Ok(())
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let err = parse(r#"{"id":"i","update_type":"remove","num_elements_removed":"two"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("field `num_elements_removed`"), "{err}");
        assert!(err.contains("expected u64"), "{err}");
    }

    #[test]
    fn original_issue_name_refuses_a_float() {
        let err = parse(r#"{"id":"i","update_type":"move","original_issue_name":1.5}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("original_issue_name"), "{err}");
    }

    #[test]
    fn a_repeated_field_is_refused() {
        assert!(parse(r#"{"id":"i","id":"j","update_type":"add"}"#).is_err());
        assert!(parse(
            r#"{"id":"i","update_type":"add","num_elements_added":1,"num_elements_added":2}"#
        )
        .is_err());
    }

    #[test]
    fn update_type_is_required() {
        let err = parse(r#"{"id":"i"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("missing field `update_type`"), "{err}");
    }

    #[test]
    fn creation_and_element_types_keep_unknown_values() -> Result<(), serde_json::Error> {
        let t: CreationType = serde_json::from_str(r#""scheduled""#)?;
        assert_eq!(t, CreationType::Other("scheduled".into()));
        assert_eq!(serde_json::to_string(&t)?, r#""scheduled""#);
        assert_eq!(ElementType::from("crop"), ElementType::Crop);
        Ok(())
    }
}
