//! [`ExportReceiver`]: the receiving end of "Export to labeling" for any HTTP server.

use std::fmt;
use std::future::Future;

use http::{HeaderMap, Response, StatusCode};

use crate::event::ExportedIssue;
use crate::receiver::{ReceiveError, Verifier};
use crate::{Event, ParseError};

/// Verifies, parses and routes webhook requests: `issue-exported` to a handler, the test
/// payload acknowledged, every other event "not handled".
///
/// ```
/// use dataops_webhooks::labeling::{ExportReceiver, Routed};
/// use dataops_webhooks::receiver::Verifier;
/// use dataops_webhooks::secret::Secret;
/// use http::HeaderMap;
///
/// let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// let receiver = ExportReceiver::new(Verifier::new(secret.clone()));
/// let mut headers = HeaderMap::new();
/// headers.insert("x-aquarium-secret", secret.expose().parse()?);
/// // An event this endpoint does not handle (here, one this crate does not even know):
/// let body = br#"{"event":"model-trained","project":"p","model":{"id":"m"}}"#;
/// match receiver.route(&headers, body) {
///     Ok(Routed::NotHandled { event }) => assert_eq!(event, "model-trained"),
///     other => panic!("{other:?}"),
/// }
/// // A wrong secret is refused before the body is read.
/// headers.insert("x-aquarium-secret", "whsec_wrong".parse()?);
/// assert!(receiver.route(&headers, body).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ExportReceiver {
    verifier: Verifier,
}

/// What a verified request asks for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Routed {
    /// An issue to hand off to labeling.
    Export(Export),
    /// The "send test payload" event: acknowledge it.
    Test {
        /// Its project.
        project: String,
    },
    /// Any other event, known or not: this endpoint does not handle it.
    NotHandled {
        /// The event's name (`dataset-complete`, ...).
        event: String,
    },
}

/// An exported issue and where it came from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Export {
    /// The delivery id (`webhook-id` or `X-Aquarium-Delivery`): the same on every retry of
    /// one delivery, so a handler can make its side effects idempotent with it.
    pub delivery_id: Option<String>,
    /// The project the issue belongs to.
    pub project: String,
    /// The issue.
    pub issue: ExportedIssue,
}

impl ExportReceiver {
    /// A receiver that checks requests with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }

    /// Verifies the request and says what it asks for.
    ///
    /// # Errors
    /// [`ReceiveError::Verify`] for a bad or missing signature, [`ReceiveError::Parse`] for a
    /// body that is not a valid event, [`ReceiveError::BodyTooLarge`].
    pub fn route(&self, headers: &HeaderMap, body: &[u8]) -> Result<Routed, ReceiveError> {
        let received = match self.verifier.receive(headers, body) {
            Ok(received) => received,
            Err(ReceiveError::Parse(ParseError::UnknownEvent(unknown))) => {
                return Ok(Routed::NotHandled {
                    event: unknown.name().to_owned(),
                })
            }
            Err(other) => return Err(other),
        };
        Ok(match received.event {
            Event::IssueExported(exported) => Routed::Export(Export {
                delivery_id: received.delivery_id,
                project: exported.project,
                issue: exported.issue,
            }),
            Event::Test(test) => Routed::Test {
                project: test.project,
            },
            other => Routed::NotHandled {
                event: other.event_type().as_str().to_owned(),
            },
        })
    }

    /// Routes the request and runs `handler` on an export; returns the response to send:
    ///
    /// | outcome | status |
    /// |---|---|
    /// | export handled, or the test payload | 204 |
    /// | the handler failed (the labeling service is down, timed out) | 502, so the sender retries |
    /// | an event this endpoint does not handle | 400, naming it |
    /// | a bad signature | 401 |
    /// | a body that is not an event | 400; 413 when too large |
    pub async fn handle<F, Fut, E>(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        handler: F,
    ) -> Response<String>
    where
        F: FnOnce(Export) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        match self.route(headers, body) {
            Ok(Routed::Export(export)) => match handler(export).await {
                Ok(()) => respond(StatusCode::NO_CONTENT, String::new()),
                Err(e) => respond(
                    StatusCode::BAD_GATEWAY,
                    format!("the labeling hand-off failed: {e}"),
                ),
            },
            Ok(Routed::Test { .. }) => respond(StatusCode::NO_CONTENT, String::new()),
            Ok(Routed::NotHandled { event }) => respond(
                StatusCode::BAD_REQUEST,
                format!("endpoint not set up to handle {event} events"),
            ),
            Err(ReceiveError::Verify(e)) => respond(StatusCode::UNAUTHORIZED, e.to_string()),
            Err(e @ ReceiveError::BodyTooLarge { .. }) => {
                respond(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            Err(e) => respond(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}

fn respond(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}
