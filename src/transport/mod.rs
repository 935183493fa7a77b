//! How a signed request reaches an endpoint: the [`Transport`] trait, its request, response
//! and error types, and the default reqwest implementation [`HttpTransport`].
//!
//! A host plugs its own transport (a proxy, an egress queue, a test double) by implementing
//! [`Transport`] and passing it to
//! [`DispatcherBuilder::transport`](crate::DispatcherBuilder::transport).

pub mod guard;
mod http_client;
mod proxy;

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use url::Url;

pub use http_client::{
    HttpTransport, HttpTransportBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_EXCERPT_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
};
pub use proxy::EgressProxy;

/// Sends one HTTP request. Implementations must not follow redirects (a 3xx is the
/// endpoint's answer) and should honour [`TransportRequest::timeout`].
///
/// A transport that answers every request itself, as a host's test might use (or that hands
/// requests to an egress service):
///
/// ```
/// use std::sync::Mutex;
/// use async_trait::async_trait;
/// use dataops_webhooks::transport::{Transport, TransportError, TransportRequest, TransportResponse};
///
/// #[derive(Debug, Default)]
/// struct Recording {
///     sent: Mutex<Vec<TransportRequest>>,
/// }
///
/// #[async_trait]
/// impl Transport for Recording {
///     async fn send(&self, request: TransportRequest) -> Result<TransportResponse, TransportError> {
///         self.sent.lock().unwrap().push(request);
///         Ok(TransportResponse::new(
///             http::StatusCode::NO_CONTENT,
///             http::HeaderMap::new(),
///             bytes::Bytes::new(),
///             std::time::Duration::from_millis(1),
///         ))
///     }
/// }
/// ```
///
/// Pass it to [`DispatcherBuilder::transport`](crate::DispatcherBuilder::transport).
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// POSTs `request.body` to `request.url` with `request.headers`.
    ///
    /// # Errors
    /// A [`TransportError`] when no HTTP response was had; an HTTP error status is an `Ok`
    /// response, judged by the dispatcher.
    async fn send(&self, request: TransportRequest) -> Result<TransportResponse, TransportError>;
}

/// One POST to make.
#[derive(Clone)]
#[non_exhaustive]
pub struct TransportRequest {
    /// Where to.
    pub url: Url,
    /// Every header, signatures included.
    pub headers: HeaderMap,
    /// The body: the same shared bytes for every endpoint of an event.
    pub body: Bytes,
    /// The most the whole exchange may take, response body included.
    pub timeout: Duration,
}

impl TransportRequest {
    /// A request.
    pub fn new(url: Url, headers: HeaderMap, body: Bytes, timeout: Duration) -> Self {
        Self {
            url,
            headers,
            body,
            timeout,
        }
    }
}

impl fmt::Debug for TransportRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportRequest")
            .field("url", &self.url.as_str())
            .field("headers", &RedactedHeaders(&self.headers))
            .field("body_len", &self.body.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// An endpoint's answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportResponse {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The start of the response body, cut at the transport's excerpt limit.
    pub body: Bytes,
    /// From sending the request to reading the body.
    pub duration: Duration,
}

impl TransportResponse {
    /// A response.
    pub fn new(status: StatusCode, headers: HeaderMap, body: Bytes, duration: Duration) -> Self {
        Self {
            status,
            headers,
            body,
            duration,
        }
    }

    /// The body excerpt as text, invalid UTF-8 replaced.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What kind of failure kept a request from getting a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// No complete response within the timeout.
    Timeout,
    /// The connection could not be made (refused, unreachable), or the endpoint reset or
    /// closed it before answering.
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake failed (bad certificate, not TLS, ...).
    Tls,
    /// The address guard refused the destination.
    BlockedAddress,
    /// The response body was larger than the transport accepts.
    ResponseTooLarge,
    /// The request itself could not be built.
    InvalidRequest,
    /// Anything else.
    Other,
}

impl TransportErrorKind {
    /// A short name: `timeout`, `connect`, `dns`, `tls`, `blocked_address`,
    /// `response_too_large`, `invalid_request`, `other`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::BlockedAddress => "blocked_address",
            Self::ResponseTooLarge => "response_too_large",
            Self::InvalidRequest => "invalid_request",
            Self::Other => "other",
        }
    }
}

impl TransportErrorKind {
    /// The kind named by [`as_str`](Self::as_str); an unknown name is [`Other`](Self::Other).
    pub fn from_name(name: &str) -> Self {
        match name {
            "timeout" => Self::Timeout,
            "connect" => Self::Connect,
            "dns" => Self::Dns,
            "tls" => Self::Tls,
            "blocked_address" => Self::BlockedAddress,
            "response_too_large" => Self::ResponseTooLarge,
            "invalid_request" => Self::InvalidRequest,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A request that got no usable response, classified.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} error: {message}")]
pub struct TransportError {
    kind: TransportErrorKind,
    message: String,
    status: Option<StatusCode>,
    duration: Option<Duration>,
    #[source]
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl TransportError {
    /// An error of `kind` with a message for the user.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            duration: None,
            source: None,
        }
    }

    /// Records the status the endpoint answered with, when it answered before the exchange
    /// failed (a 200 whose body is over the limit, say).
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Records how long the exchange ran before it failed.
    #[must_use]
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// The status the endpoint answered with before the exchange failed, if it did.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// How long the exchange ran before it failed, when the sender measured it (the
    /// dispatcher always does).
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What kind of failure it was.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether it was a timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind == TransportErrorKind::Timeout
    }
}

/// Header names whose values are safe to show in `Debug` and logs; every other value may be
/// a secret (the shared-secret header, a user's `Authorization`).
const SHOWN_HEADERS: &[&str] = &[
    "content-type",
    "user-agent",
    crate::signing::AQUARIUM_DELIVERY,
    crate::signing::AQUARIUM_EVENT,
    crate::signing::WEBHOOK_ID,
    crate::signing::WEBHOOK_TIMESTAMP,
];

/// `Debug` for headers that shows every name but only non-secret values.
pub(crate) struct RedactedHeaders<'a>(pub(crate) &'a HeaderMap);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            if SHOWN_HEADERS.contains(&name.as_str()) {
                map.entry(&name.as_str(), &value.to_str().unwrap_or("<binary>"));
            } else {
                map.entry(&name.as_str(), &"<redacted>");
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn request_debug_redacts_secret_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-aquarium-secret",
            HeaderValue::from_static("whsec_topsecret"),
        );
        headers.insert("authorization", HeaderValue::from_static("Bearer sk_live"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let url = Url::parse("https://example.com/hook").expect("url");
        let request = TransportRequest::new(
            url,
            headers,
            Bytes::from_static(b"{}"),
            Duration::from_secs(1),
        );
        let shown = format!("{request:?}");
        assert!(
            !shown.contains("topsecret") && !shown.contains("sk_live"),
            "{shown}"
        );
        assert!(shown.contains("application/json"), "{shown}");
    }
}
