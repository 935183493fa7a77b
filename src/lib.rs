//! # dataops-webhooks
//!
//! A webhook engine for data-operations platforms for ML datasets: a host application
//! describes what happened as a typed [`Event`], and the crate turns it into the exact JSON its
//! customers' endpoints receive.
//!
//! This release holds the **event catalogue**: the five platform events
//! (`dataset-complete`, `dataset-failed`, `issues-created`, `issue-updated`,
//! `issue-exported`) and the test event, as Rust types whose serde implementations write and
//! read the documented wire format to the byte. See [`event`] for the wire rules and how each
//! quirk of the platform's documentation was decided.
//!
//! ## Emitting side: build an event, get the body
//!
//! ```
//! use dataops_webhooks::event::{Dataset, Event};
//!
//! let event = Event::dataset_complete(
//!     "traffic-signs",
//!     Dataset {
//!         id: "traffic-signs-v3".into(),
//!         frame_count: 1_200,
//!         label_count: 5_400,
//!         data_url: vec!["gs://bucket/traffic-signs-v3/frames.jsonl".into()],
//!         dataflow_status: "DONE".into(),
//!         dataflow_status_postprocess: "DONE".into(),
//!         ..Default::default()
//!     },
//! );
//! let body: Vec<u8> = serde_json::to_vec(&event)?;
//! assert!(body.starts_with(br#"{"event":"dataset-complete","project":"traffic-signs","dataset":{"id":"traffic-signs-v3""#));
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! ## Receiving side: read any payload
//!
//! ```
//! use dataops_webhooks::{Event, ParseError};
//!
//! let body = br#"{"event":"issues-created","project":"traffic-signs","issues":[
//!     {"id":"i-1","issue_name":"blurry frames","creation_type":"auto",
//!      "element_type":"frame","num_elements":42}]}"#;
//! match Event::from_slice(body)? {
//!     Event::IssuesCreated(created) => assert_eq!(created.issues[0].num_elements, 42),
//!     other => println!("not handled here: {}", other.event_type()),
//! }
//!
//! // An event type from a newer platform is a typed error naming it.
//! let newer = br#"{"event":"dataset-archived","project":"p","dataset":{}}"#;
//! assert!(matches!(Event::from_slice(newer), Err(ParseError::UnknownEvent(e)) if e.name() == "dataset-archived"));
//! # Ok::<(), ParseError>(())
//! ```
//!
//! ## Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | *(none yet)* | | the event catalogue needs no optional dependency |

#![forbid(unsafe_code)]

pub mod error;
pub mod event;

pub use error::{ParseError, UnknownEventType};
pub use event::{Event, EventType};

/// The README's Rust snippets, compiled and run as documentation tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
