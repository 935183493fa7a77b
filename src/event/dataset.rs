//! `dataset-complete` and `dataset-failed`: a labeled dataset or an inference set finished
//! (or failed) processing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::wire::{self, timestamp};

/// The payload of `dataset-complete` and `dataset-failed`.
///
/// Both events carry the same entity; which event it is lives in the [`Event`](super::Event)
/// variant.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetEvent {
    /// Name of the project the dataset belongs to (the envelope's `project`).
    pub project: String,
    /// What was uploaded: a labeled dataset or an inference set.
    pub entity: DatasetEntity,
}

/// What a dataset event is about. On the wire the entity key tells them apart: `dataset` or
/// `inference_set`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DatasetEntity {
    /// A labeled dataset (`"dataset": {...}`).
    Dataset(Dataset),
    /// An inference set for a labeled dataset (`"inference_set": {...}`).
    InferenceSet(InferenceSet),
}

impl From<Dataset> for DatasetEntity {
    fn from(dataset: Dataset) -> Self {
        Self::Dataset(dataset)
    }
}

impl From<InferenceSet> for DatasetEntity {
    fn from(inference_set: InferenceSet) -> Self {
        Self::InferenceSet(inference_set)
    }
}

impl DatasetEntity {
    /// The dataset's or inference set's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Dataset(d) => &d.id,
            Self::InferenceSet(i) => &i.id,
        }
    }
}

/// A labeled dataset, as sent in `{"dataset": {...}}`.
///
/// Fields are written in the documented order. Build one with struct-update syntax:
///
/// ```
/// use dataops_webhooks::event::Dataset;
///
/// let dataset = Dataset {
///     id: "traffic-signs-v3".into(),
///     frame_count: 1_200,
///     label_count: 5_400,
///     data_url: vec!["gs://bucket/traffic-signs-v3/frames.jsonl".into()],
///     dataflow_status: "DONE".into(),
///     dataflow_status_postprocess: "DONE".into(),
///     ..Default::default()
/// };
/// assert_eq!(dataset.embeddings_url, None);
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Dataset {
    /// The dataset's id.
    pub id: String,
    /// Whether the dataset is archived.
    pub archived: bool,
    /// When the dataset was created.
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
    /// When the dataset was last updated.
    #[serde(with = "timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Number of frames.
    pub frame_count: u64,
    /// Number of labels.
    pub label_count: u64,
    /// Where the uploaded data lives. Absent or `null` reads as empty.
    #[serde(default, deserialize_with = "wire::null_as_empty")]
    pub data_url: Vec<String>,
    /// Where the embeddings live, when they were uploaded (`embeddings_url?`): absent or `null`
    /// reads as `None`, and `None` is left out of the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings_url: Option<Vec<String>>,
    /// The processing status, as the platform reports it.
    pub dataflow_status: String,
    /// The post-processing status, as the platform reports it.
    pub dataflow_status_postprocess: String,
}

/// An inference set for a labeled dataset, as sent in `{"inference_set": {...}}`.
///
/// The documentation lists `data_url` twice; a JSON object cannot usefully hold one key twice,
/// so the inference set has one `data_url` and a payload that repeats the key is refused as
/// ambiguous, with an error naming `data_url`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InferenceSet {
    /// The inference set's id.
    pub id: String,
    /// Whether the inference set is archived.
    pub archived: bool,
    /// The labeled dataset the inferences were made on.
    pub base_dataset: String,
    /// When the inference set was created.
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
    /// When the inference set was last updated.
    #[serde(with = "timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Where the uploaded data lives. Absent or `null` reads as empty.
    #[serde(default, deserialize_with = "wire::null_as_empty")]
    pub data_url: Vec<String>,
    /// Number of frames.
    pub frame_count: u64,
    /// Number of labels.
    pub label_count: u64,
    /// Where the embeddings live, when they were uploaded (`embeddings_url?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings_url: Option<Vec<String>>,
    /// Precomputed metrics (`cached_metrics?: float[][][]`). Serializing a NaN or an infinity
    /// here is an error.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "wire::finite"
    )]
    pub cached_metrics: Option<Vec<Vec<Vec<f64>>>>,
    /// The processing status, as the platform reports it.
    pub dataflow_status: String,
    /// The post-processing status, as the platform reports it.
    pub dataflow_status_postprocess: String,
}
