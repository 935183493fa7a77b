//! `frame_data` of an exported element: coordinate frames, metrics, geo data, labels, sensor
//! data and the user's own metadata fields.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::wire::{self, insert_once, set_once, timestamp, Finite, Timestamp};

/// The frame an exported element belongs to (`frame_data`).
///
/// Besides the documented fields, the platform writes the user's own metadata fields flat into
/// this object (`[user__metadata_field]: str | int | float | bool`). They are read into
/// [`metadata`](Self::metadata) and written back flat, after the documented fields. Any key the
/// crate does not know lands there too, so a field added by a newer platform is kept.
///
/// Lists and maps that are absent or `null` read as empty; `date_captured`, `device_id` and
/// `task_id` are required.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FrameData {
    /// The coordinate frames of the frame's sensors.
    pub coordinate_frames: Vec<CoordinateFrame>,
    /// Custom metrics by metric name: an integer matrix or a float each.
    pub custom_metrics: BTreeMap<String, CustomMetric>,
    /// When the frame was captured.
    pub date_captured: DateTime<Utc>,
    /// The capturing device.
    pub device_id: String,
    /// Geographic coordinates by field name (for example `lat`, `lon`).
    pub geo_data: BTreeMap<String, f64>,
    /// The frame's labels.
    pub label_data: Vec<Label>,
    /// What each sensor captured, in the platform's order.
    pub sensor_data: Vec<SensorData>,
    /// The labeling task the frame came from.
    pub task_id: String,
    /// The user's own metadata fields, flat in `frame_data` on the wire. A key that collides with
    /// a documented field is refused when serializing.
    pub metadata: BTreeMap<String, MetadataValue>,
}

impl FrameData {
    /// The documented keys of `frame_data`, in the order they are written.
    pub const FIELDS: [&'static str; 8] = [
        "coordinate_frames",
        "custom_metrics",
        "date_captured",
        "device_id",
        "geo_data",
        "label_data",
        "sensor_data",
        "task_id",
    ];
}

/// A coordinate frame (`coordinate_frames[]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CoordinateFrame {
    /// The frame's id.
    pub coordinate_frame_id: String,
    /// Free-form metadata (`Optional[Dict]`): `None` is written as `null`, as documented.
    #[serde(default)]
    pub coordinate_frame_metadata: Option<Map<String, Value>>,
    /// The coordinate frame's type.
    pub coordinate_frame_type: String,
}

/// A label on a frame (`label_data[]`), also the shape of a crop's label.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Label {
    /// The label's attributes: `confidence` and any others.
    #[serde(default)]
    pub attributes: LabelAttributes,
    /// The label's class name.
    pub label: String,
    /// The coordinate frame the label is drawn in.
    ///
    /// The platform spells this key `label_coorindate_frame`. That misspelling is what this
    /// crate writes, so receivers written against the documentation keep working; on input the
    /// corrected spelling `label_coordinate_frame` is accepted too (one of them, not both).
    #[serde(rename = "label_coorindate_frame", alias = "label_coordinate_frame")]
    pub label_coordinate_frame: String,
    /// The label's geometry type.
    pub label_type: String,
    /// Ids of related labels.
    #[serde(default, deserialize_with = "wire::null_as_empty")]
    pub linked_labels: Vec<String>,
    /// The label's id: what a labeling service is asked to requeue.
    pub uuid: String,
}

/// A label's attributes: `{confidence: float, ...}`, an open map.
///
/// `confidence` is optional: ground-truth labels carry none. Absent or `null` reads as `None`,
/// and `None` is left out of the payload. Every other attribute is kept in
/// [`extra`](Self::extra) as sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelAttributes {
    /// The model's confidence in the label.
    pub confidence: Option<f64>,
    /// Every other attribute.
    pub extra: Map<String, Value>,
}

/// What one sensor captured (`sensor_data[]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SensorData {
    /// The coordinate frame the sensor's data is in.
    pub coordinate_frame: String,
    /// Media URLs by kind (`image_url`, ...): which key holds the media depends on the sensor.
    #[serde(default, deserialize_with = "wire::null_as_empty")]
    pub data_urls: BTreeMap<String, String>,
    /// When the sensor captured the data.
    #[serde(with = "timestamp")]
    pub date_captured: DateTime<Utc>,
    /// The sensor's id.
    pub sensor_id: String,
    /// Free-form sensor metadata.
    #[serde(default, deserialize_with = "wire::null_as_empty")]
    pub sensor_metadata: Map<String, Value>,
    /// The sensor's type.
    pub sensor_type: String,
}

impl SensorData {
    /// The `image_url` of [`data_urls`](Self::data_urls), if the sensor has one.
    pub fn image_url(&self) -> Option<&str> {
        self.data_urls.get("image_url").map(String::as_str)
    }
}

/// A custom metric's value: `int[][] | float`.
///
/// An integer where a float is expected (`3`) reads as [`Scalar`](Self::Scalar) and is written
/// back as a float (`3.0`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CustomMetric {
    /// An integer matrix, such as a confusion matrix.
    Matrix(Vec<Vec<i64>>),
    /// A single number.
    Scalar(f64),
}

/// One of the user's own metadata fields in `frame_data`: `str | int | float | bool`.
///
/// Any other JSON value (null, a list, an object, an integer beyond `i64`) is kept as
/// [`Json`](Self::Json), so a payload always round-trips.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MetadataValue {
    /// A string.
    String(String),
    /// An integer.
    Int(i64),
    /// A float (JSON numbers with a fraction or an exponent).
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Any other JSON value. Holding a string, boolean, or `i64`-range integer here is written
    /// fine but reads back as the typed variant.
    Json(Value),
}

impl From<&str> for MetadataValue {
    fn from(v: &str) -> Self {
        Self::String(v.to_owned())
    }
}

impl From<String> for MetadataValue {
    fn from(v: String) -> Self {
        Self::String(v)
    }
}

impl From<i64> for MetadataValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<f64> for MetadataValue {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<bool> for MetadataValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl Serialize for FrameData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(FrameData::FIELDS.len() + self.metadata.len()))?;
        map.serialize_entry("coordinate_frames", &self.coordinate_frames)?;
        map.serialize_entry("custom_metrics", &self.custom_metrics)?;
        map.serialize_entry("date_captured", &Timestamp(self.date_captured))?;
        map.serialize_entry("device_id", &self.device_id)?;
        map.serialize_entry("geo_data", &Finite(&self.geo_data))?;
        map.serialize_entry("label_data", &self.label_data)?;
        map.serialize_entry("sensor_data", &self.sensor_data)?;
        map.serialize_entry("task_id", &self.task_id)?;
        for (key, value) in &self.metadata {
            if FrameData::FIELDS.contains(&key.as_str()) {
                return Err(S::Error::custom(format_args!(
                    "user metadata field `{key}` collides with the documented frame_data field of \
                     that name; rename the metadata field"
                )));
            }
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A `frame_data` key: a documented field, or a user metadata field.
enum FrameKey {
    CoordinateFrames,
    CustomMetrics,
    DateCaptured,
    DeviceId,
    GeoData,
    LabelData,
    SensorData,
    TaskId,
    Metadata(String),
}

impl<'de> Deserialize<'de> for FrameKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(wire::StrVisitor::new(
            "a frame_data key",
            |key: &str| match key {
                "coordinate_frames" => Self::CoordinateFrames,
                "custom_metrics" => Self::CustomMetrics,
                "date_captured" => Self::DateCaptured,
                "device_id" => Self::DeviceId,
                "geo_data" => Self::GeoData,
                "label_data" => Self::LabelData,
                "sensor_data" => Self::SensorData,
                "task_id" => Self::TaskId,
                other => Self::Metadata(other.to_owned()),
            },
        ))
    }
}

impl<'de> Deserialize<'de> for FrameData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FrameDataVisitor)
    }
}

struct FrameDataVisitor;

/// Reads a list or map value that may be `null`.
fn collection<'de, A, T>(map: &mut A) -> Result<T, A::Error>
where
    A: MapAccess<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(map.next_value::<Option<T>>()?.unwrap_or_default())
}

impl<'de> Visitor<'de> for FrameDataVisitor {
    type Value = FrameData;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a frame_data object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FrameData, A::Error> {
        let mut coordinate_frames = None;
        let mut custom_metrics = None;
        let mut date_captured: Option<Timestamp> = None;
        let mut device_id = None;
        let mut geo_data = None;
        let mut label_data = None;
        let mut sensor_data = None;
        let mut task_id = None;
        let mut metadata = BTreeMap::new();
        while let Some(key) = map.next_key::<FrameKey>()? {
            match key {
                FrameKey::CoordinateFrames => set_once(
                    &mut coordinate_frames,
                    "coordinate_frames",
                    collection(&mut map)?,
                )?,
                FrameKey::CustomMetrics => {
                    set_once(&mut custom_metrics, "custom_metrics", collection(&mut map)?)?;
                }
                FrameKey::DateCaptured => {
                    set_once(&mut date_captured, "date_captured", map.next_value()?)?;
                }
                FrameKey::DeviceId => set_once(&mut device_id, "device_id", map.next_value()?)?,
                FrameKey::GeoData => set_once(&mut geo_data, "geo_data", collection(&mut map)?)?,
                FrameKey::LabelData => {
                    set_once(&mut label_data, "label_data", collection(&mut map)?)?;
                }
                FrameKey::SensorData => {
                    set_once(&mut sensor_data, "sensor_data", collection(&mut map)?)?;
                }
                FrameKey::TaskId => set_once(&mut task_id, "task_id", map.next_value()?)?,
                FrameKey::Metadata(name) => {
                    let value = map.next_value()?;
                    insert_once(&mut metadata, name, value)?;
                }
            }
        }
        Ok(FrameData {
            coordinate_frames: coordinate_frames.unwrap_or_default(),
            custom_metrics: custom_metrics.unwrap_or_default(),
            date_captured: date_captured
                .ok_or_else(|| de::Error::missing_field("date_captured"))?
                .0,
            device_id: device_id.ok_or_else(|| de::Error::missing_field("device_id"))?,
            geo_data: geo_data.unwrap_or_default(),
            label_data: label_data.unwrap_or_default(),
            sensor_data: sensor_data.unwrap_or_default(),
            task_id: task_id.ok_or_else(|| de::Error::missing_field("task_id"))?,
            metadata,
        })
    }
}

impl Serialize for LabelAttributes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = self.extra.len() + usize::from(self.confidence.is_some());
        let mut map = s.serialize_map(Some(len))?;
        if let Some(confidence) = &self.confidence {
            map.serialize_entry("confidence", &Finite(confidence))?;
        }
        for (key, value) in &self.extra {
            if key == "confidence" {
                return Err(S::Error::custom(
                    "label attribute `confidence` belongs in LabelAttributes::confidence, not in extra",
                ));
            }
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for LabelAttributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(LabelAttributesVisitor)
    }
}

struct LabelAttributesVisitor;

impl<'de> Visitor<'de> for LabelAttributesVisitor {
    type Value = LabelAttributes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a label attributes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LabelAttributes, A::Error> {
        let mut confidence: Option<Option<f64>> = None;
        let mut extra = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "confidence" {
                set_once(&mut confidence, "confidence", map.next_value()?)?;
            } else {
                let value = map.next_value()?;
                insert_once(&mut extra, key, value)?;
            }
        }
        Ok(LabelAttributes {
            confidence: confidence.flatten(),
            extra,
        })
    }
}

impl Serialize for CustomMetric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Matrix(rows) => rows.serialize(s),
            Self::Scalar(v) => wire::finite(v, s),
        }
    }
}

impl<'de> Deserialize<'de> for CustomMetric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CustomMetricVisitor)
    }
}

struct CustomMetricVisitor;

impl<'de> Visitor<'de> for CustomMetricVisitor {
    type Value = CustomMetric;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a custom metric: an integer matrix or a number")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<CustomMetric, E> {
        Ok(CustomMetric::Scalar(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<CustomMetric, E> {
        Ok(CustomMetric::Scalar(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<CustomMetric, E> {
        Ok(CustomMetric::Scalar(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CustomMetric, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(row) = seq.next_element()? {
            rows.push(row);
        }
        Ok(CustomMetric::Matrix(rows))
    }
}

impl Serialize for MetadataValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::String(v) => s.serialize_str(v),
            Self::Int(v) => s.serialize_i64(*v),
            Self::Float(v) => wire::finite(v, s),
            Self::Bool(v) => s.serialize_bool(*v),
            Self::Json(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for MetadataValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MetadataValueVisitor)
    }
}

struct MetadataValueVisitor;

impl<'de> Visitor<'de> for MetadataValueVisitor {
    type Value = MetadataValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metadata value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<MetadataValue, E> {
        Ok(MetadataValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MetadataValue, E> {
        Ok(MetadataValue::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MetadataValue, E> {
        Ok(i64::try_from(v).map_or_else(|_| MetadataValue::Json(v.into()), MetadataValue::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<MetadataValue, E> {
        Ok(MetadataValue::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MetadataValue, E> {
        Ok(MetadataValue::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<MetadataValue, E> {
        Ok(MetadataValue::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<MetadataValue, E> {
        Ok(MetadataValue::Json(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MetadataValue, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(MetadataValue::Json)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MetadataValue, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(MetadataValue::Json)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn metadata_values_keep_their_json_type() -> Result<(), serde_json::Error> {
        let read = |v: Value| serde_json::from_value::<MetadataValue>(v);
        assert_eq!(read(json!("rain"))?, MetadataValue::from("rain"));
        assert_eq!(read(json!(-3))?, MetadataValue::Int(-3));
        assert_eq!(read(json!(2.5))?, MetadataValue::Float(2.5));
        assert_eq!(read(json!(true))?, MetadataValue::Bool(true));
        assert_eq!(read(json!(null))?, MetadataValue::Json(Value::Null));
        assert_eq!(read(json!(u64::MAX))?, MetadataValue::Json(json!(u64::MAX)));
        assert_eq!(read(json!([1, "a"]))?, MetadataValue::Json(json!([1, "a"])));
        Ok(())
    }

    #[test]
    fn non_finite_numbers_are_refused_when_serializing() {
        let mut frame = FrameData::default();
        frame.geo_data.insert("lat".into(), f64::NAN);
        let err = serde_json::to_string(&frame).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("NaN")));

        let metric = CustomMetric::Scalar(f64::INFINITY);
        assert!(serde_json::to_string(&metric).is_err());
        let attributes = LabelAttributes {
            confidence: Some(f64::NEG_INFINITY),
            extra: Map::new(),
        };
        assert!(serde_json::to_string(&attributes).is_err());
    }

    #[test]
    fn metadata_may_not_shadow_a_documented_field() {
        let mut frame = FrameData::default();
        frame.metadata.insert("task_id".into(), "x".into());
        let err = serde_json::to_string(&frame)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("`task_id` collides"), "{err}");
    }

    #[test]
    fn confidence_may_not_hide_in_extra() {
        let mut attributes = LabelAttributes::default();
        attributes.extra.insert("confidence".into(), json!(0.5));
        assert!(serde_json::to_string(&attributes).is_err());
    }

    #[test]
    fn a_repeated_attribute_is_refused() {
        let err = serde_json::from_str::<LabelAttributes>(r#"{"iou":0.1,"iou":0.2}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("duplicate field `iou`"), "{err}");
        assert!(
            serde_json::from_str::<LabelAttributes>(r#"{"confidence":1,"confidence":1}"#).is_err()
        );
    }

    #[test]
    fn a_custom_metric_matrix_must_hold_integers() {
        assert!(serde_json::from_value::<CustomMetric>(json!([[1, 2], [3, 4]])).is_ok());
        assert!(serde_json::from_value::<CustomMetric>(json!([[1.5]])).is_err());
        assert!(serde_json::from_value::<CustomMetric>(json!("high")).is_err());
    }
}
