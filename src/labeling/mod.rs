//! Hand-off to labeling: what every receiver of `issue-exported` needs to turn an exported
//! issue into a labeling service's requests.
//!
//! - Helpers on [`ExportedIssue`] and [`ExportedElement`]: the issue's name and datasets, the
//!   label ids to requeue, each element's media by sensor and its image, the class names seen.
//! - [`ExportReceiver`] (feature `receiver`): verify a request, parse it, and route
//!   `issue-exported` to a handler, for hosts that run their own HTTP server; with the `axum`
//!   feature, [`axum::export_route`] mounts it on an axum router.
//!
//! ```
//! use dataops_webhooks::Event;
//!
//! let body = std::fs::read("tests/fixtures/issue_exported.json")?;
//! let Event::IssueExported(export) = Event::from_slice(&body)? else { unreachable!() };
//! let issue = &export.issue;
//! assert_eq!(issue.name(), Some("stop signs predicted as yield"));
//! assert_eq!(issue.datasets(), ["traffic-signs-v3"]);
//! // Frames requeue their labels, crops the crop's label.
//! assert_eq!(issue.label_ids_to_requeue(), ["lbl-inf-1", "lbl-gt-1", "lbl-gt-9"]);
//! assert_eq!(issue.elements[0].image_url()?, "https://cdn.example.com/frames/0001.jpg");
//! assert_eq!(issue.class_names().into_iter().collect::<Vec<_>>(), ["stop", "yield"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "receiver")]
mod receiver;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::event::{ElementKind, ExportedElement, ExportedIssue};

#[cfg(feature = "receiver")]
pub use receiver::{Export, ExportReceiver, Routed};

/// The `data_urls` key of an element's image.
pub const IMAGE_URL: &str = "image_url";

/// One sensor's media of an element: its URLs by kind (`image_url`, `pointcloud_url`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SensorMedia<'a> {
    /// The sensor.
    pub sensor_id: &'a str,
    /// Its type (`IMAGE`, `POINTCLOUD`, ...).
    pub sensor_type: &'a str,
    /// Its media URLs by kind.
    pub urls: &'a BTreeMap<String, String>,
}

/// An element has no image to label: none of its sensors has an `image_url`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("element {element_id} has no image: none of its sensors ({}) has an `image_url`; \
         send it to a service that labels its media, or leave it out", sensors.join(", "))]
#[non_exhaustive]
pub struct MissingImage {
    /// The element.
    pub element_id: String,
    /// Its sensors, `id (type: url kinds)`, to show what it has instead.
    pub sensors: Vec<String>,
}

impl ExportedIssue {
    /// The issue's name (carried by each element; `None` for an issue without elements).
    pub fn name(&self) -> Option<&str> {
        self.elements.first().map(|e| e.issue_name.as_str())
    }

    /// The datasets the elements come from, each once, in order of first appearance.
    pub fn datasets(&self) -> Vec<&str> {
        distinct(self.elements.iter().map(|e| e.dataset.as_str()))
    }

    /// Every label to send back for labeling, each once, in element order: a frame element's
    /// labels, a crop element's own label.
    pub fn label_ids_to_requeue(&self) -> Vec<&str> {
        distinct(
            self.elements
                .iter()
                .flat_map(ExportedElement::label_ids_to_requeue),
        )
    }

    /// The class names of every label the elements carry (a crop's own label included), sorted.
    pub fn class_names(&self) -> BTreeSet<&str> {
        let mut names = BTreeSet::new();
        for element in &self.elements {
            names.extend(
                element
                    .frame_data
                    .label_data
                    .iter()
                    .map(|l| l.label.as_str()),
            );
            if let Some(label) = element
                .kind
                .crop()
                .and_then(|c| c.extra.get("label"))
                .and_then(|l| l.as_str())
            {
                names.insert(label);
            }
        }
        names
    }
}

impl ExportedElement {
    /// The labels to requeue for this element: its frame's labels for a frame, the crop's
    /// label for a crop, none for an element type this crate does not know.
    pub fn label_ids_to_requeue(&self) -> Vec<&str> {
        match &self.kind {
            ElementKind::Frame => self
                .frame_data
                .label_data
                .iter()
                .map(|l| l.uuid.as_str())
                .collect(),
            ElementKind::Crop(crop) => vec![crop.uuid.as_str()],
            _ => Vec::new(),
        }
    }

    /// The element's media, one entry per sensor, in the payload's order.
    pub fn media(&self) -> Vec<SensorMedia<'_>> {
        self.frame_data
            .sensor_data
            .iter()
            .map(|s| SensorMedia {
                sensor_id: &s.sensor_id,
                sensor_type: &s.sensor_type,
                urls: &s.data_urls,
            })
            .collect()
    }

    /// The URL of the element's image: the `image_url` of its first sensor that has one.
    ///
    /// # Errors
    /// [`MissingImage`], naming the element and what its sensors have instead.
    pub fn image_url(&self) -> Result<&str, MissingImage> {
        let media = self.media();
        if let Some(url) = media.iter().find_map(|m| m.urls.get(IMAGE_URL)) {
            return Ok(url);
        }
        Err(MissingImage {
            element_id: self.element_id.clone(),
            sensors: media
                .iter()
                .map(|m| {
                    let kinds: Vec<&str> = m.urls.keys().map(String::as_str).collect();
                    format!("{} ({}: {})", m.sensor_id, m.sensor_type, kinds.join(" "))
                })
                .collect(),
        })
    }
}

/// Each item once, in order of first appearance.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    items.filter(|item| seen.insert(*item)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CropData, FrameData, Label, SensorData};

    fn frame(id: &str, labels: &[(&str, &str)], sensors: &[(&str, &str, &str)]) -> ExportedElement {
        ExportedElement {
            dataset: "ds".into(),
            issue_name: "issue".into(),
            element_id: id.into(),
            frame_id: id.into(),
            frame_data: FrameData {
                label_data: labels
                    .iter()
                    .map(|(uuid, class)| Label {
                        uuid: (*uuid).into(),
                        label: (*class).into(),
                        ..Default::default()
                    })
                    .collect(),
                sensor_data: sensors
                    .iter()
                    .map(|(sensor, kind, url)| SensorData {
                        sensor_id: (*sensor).into(),
                        sensor_type: "IMAGE".into(),
                        data_urls: [((*kind).to_owned(), (*url).to_owned())].into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn requeued_labels_are_distinct_and_in_order() {
        let mut crop = frame("c", &[("x", "car")], &[]);
        crop.kind = ElementKind::Crop(CropData::new("b"));
        let issue = ExportedIssue {
            id: "i".into(),
            elements: vec![
                frame("f1", &[("a", "car"), ("b", "bus")], &[]),
                crop,
                frame("f2", &[("a", "car"), ("c", "van")], &[]),
            ],
        };
        assert_eq!(issue.label_ids_to_requeue(), ["a", "b", "c"]);
        assert_eq!(
            issue.class_names().into_iter().collect::<Vec<_>>(),
            ["bus", "car", "van"]
        );
        assert_eq!(issue.datasets(), ["ds"]);
        assert_eq!(ExportedIssue::default().name(), None);
    }

    #[test]
    fn an_element_without_an_image_says_what_it_has() {
        let lidar = frame("f9", &[], &[("lidar", "pointcloud_url", "s3://x.pcd")]);
        let err = lidar.image_url().expect_err("no image");
        assert_eq!(err.element_id, "f9");
        let message = err.to_string();
        assert!(
            message.contains("f9") && message.contains("pointcloud_url"),
            "{message}"
        );
        let camera = frame(
            "f1",
            &[],
            &[
                ("lidar", "pointcloud_url", "s3://x.pcd"),
                ("cam", IMAGE_URL, "https://i/1.jpg"),
            ],
        );
        assert_eq!(camera.image_url(), Ok("https://i/1.jpg"));
        assert_eq!(camera.media().len(), 2);
    }
}
