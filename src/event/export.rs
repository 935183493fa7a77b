//! `issue-exported`: an issue's elements, sent to a webhook for hand-off to labeling.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::frame::FrameData;
use super::issue::ElementType;
use super::wire;

/// The payload of `issue-exported`.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueExported {
    /// Name of the project the issue belongs to.
    pub project: String,
    /// The exported issue (`"issue": {...}`).
    pub issue: ExportedIssue,
}

/// An exported issue: its id and its elements.
///
/// The issue's name and datasets are on each element (`issue_name`, `dataset`), not on the issue.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ExportedIssue {
    /// The issue's id.
    pub id: String,
    /// The issue's elements. Absent or `null` reads as empty.
    #[serde(default, deserialize_with = "wire::null_as_empty")]
    pub elements: Vec<ExportedElement>,
}

/// One element of an exported issue: a whole frame, or a crop (one label) within a frame.
///
/// ```
/// use dataops_webhooks::event::{CropData, ElementKind, ExportedElement, FrameData};
///
/// let crop = ExportedElement {
///     dataset: "traffic-signs-v3".into(),
///     issue_name: "mislabeled stop signs".into(),
///     element_id: "crop-9".into(),
///     kind: ElementKind::Crop(CropData::new("label-9")),
///     frame_id: "frame-4".into(),
///     frame_data: FrameData { device_id: "cam-1".into(), task_id: "t-1".into(), ..Default::default() },
///     ..Default::default()
/// };
/// assert_eq!(crop.kind.crop().map(|c| c.uuid.as_str()), Some("label-9"));
/// ```
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(try_from = "WireElement")]
pub struct ExportedElement {
    /// The dataset the element's frame belongs to.
    pub dataset: String,
    /// The inference set the element came from. The documentation types it `str`; an element of
    /// a labeled dataset alone may have none, so absent or `null` reads as `None`, and `None` is
    /// written as `null` (the key stays, for receivers that index it).
    pub inference_set: Option<String>,
    /// The name of the issue the element is in.
    pub issue_name: String,
    /// The element's id.
    pub element_id: String,
    /// Frame or crop (`element_type`), with the crop's label for a crop (`crop_data`).
    pub kind: ElementKind,
    /// The id of the frame the element is (or is in).
    pub frame_id: String,
    /// The frame's data. Required for every element: a crop's media and labels are its frame's.
    pub frame_data: FrameData,
}

/// What an element is: `element_type` on the wire, plus `crop_data` for a crop.
///
/// A crop must carry its label, so a crop without `crop_data` is refused on input, and a
/// [`Crop`](Self::Crop) cannot be built without one. `crop_data` on a frame element is ignored.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum ElementKind {
    /// A whole frame (`"element_type": "frame"`).
    #[default]
    Frame,
    /// A crop (`"element_type": "crop"`) and its label (`crop_data`).
    Crop(CropData),
    /// An element type this version of the crate does not know, kept as sent. Holding `frame`
    /// or `crop` here writes a payload that reads back as the typed variant (or, for `crop`
    /// without `crop_data`, not at all): use the typed variants for those.
    Other(String),
}

impl ElementKind {
    /// The `element_type` written on the wire.
    pub fn element_type(&self) -> ElementType {
        match self {
            Self::Frame => ElementType::Frame,
            Self::Crop(_) => ElementType::Crop,
            Self::Other(other) => ElementType::Other(other.clone()),
        }
    }

    /// The crop's label, for a crop.
    pub fn crop(&self) -> Option<&CropData> {
        match self {
            Self::Crop(crop) => Some(crop),
            _ => None,
        }
    }
}

/// A crop's label (`crop_data`).
///
/// The platform's documentation does not list this object's fields; its sample receivers read
/// `crop_data.uuid`, the label's id. So `uuid` is required and typed, and every other field is
/// kept as sent in [`extra`](Self::extra).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CropData {
    /// The crop's label id.
    pub uuid: String,
    /// Every other field of the crop's label.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CropData {
    /// The label of a crop with this id, and no other fields.
    pub fn new(uuid: impl Into<String>) -> Self {
        Self {
            uuid: uuid.into(),
            extra: Map::new(),
        }
    }
}

/// `ExportedElement` as it is on the wire, before `element_type` and `crop_data` are checked
/// against each other.
#[derive(Deserialize)]
struct WireElement {
    dataset: String,
    #[serde(default)]
    inference_set: Option<String>,
    issue_name: String,
    element_id: String,
    element_type: ElementType,
    frame_id: String,
    frame_data: FrameData,
    #[serde(default)]
    crop_data: Option<CropData>,
}

impl TryFrom<WireElement> for ExportedElement {
    type Error = &'static str;

    fn try_from(wire: WireElement) -> Result<Self, Self::Error> {
        let kind = match wire.element_type {
            ElementType::Frame => ElementKind::Frame,
            ElementType::Crop => ElementKind::Crop(
                wire.crop_data
                    .ok_or("a crop element needs `crop_data`, the crop's label with its `uuid`")?,
            ),
            ElementType::Other(other) => ElementKind::Other(other),
        };
        Ok(Self {
            dataset: wire.dataset,
            inference_set: wire.inference_set,
            issue_name: wire.issue_name,
            element_id: wire.element_id,
            kind,
            frame_id: wire.frame_id,
            frame_data: wire.frame_data,
        })
    }
}

/// Borrowed view written in the documented key order; `crop_data` goes last, crops only.
#[derive(Serialize)]
struct WireElementRef<'a> {
    dataset: &'a str,
    inference_set: &'a Option<String>,
    issue_name: &'a str,
    element_id: &'a str,
    element_type: &'a str,
    frame_id: &'a str,
    frame_data: &'a FrameData,
    #[serde(skip_serializing_if = "Option::is_none")]
    crop_data: Option<&'a CropData>,
}

impl Serialize for ExportedElement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let element_type = match &self.kind {
            ElementKind::Frame => "frame",
            ElementKind::Crop(_) => "crop",
            ElementKind::Other(other) => other,
        };
        WireElementRef {
            dataset: &self.dataset,
            inference_set: &self.inference_set,
            issue_name: &self.issue_name,
            element_id: &self.element_id,
            element_type,
            frame_id: &self.frame_id,
            frame_data: &self.frame_data,
            crop_data: self.kind.crop(),
        }
        .serialize(s)
    }
}
