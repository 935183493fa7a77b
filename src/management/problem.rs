//! Errors as HTTP problem details (RFC 9457, `application/problem+json`), and the JSON and
//! query extractors whose refusals are problem details with the field's path.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::Denied;
use crate::queue::QueueError;
use crate::store::ManageError;
use crate::webhook::WebhookError;
use crate::DispatchError;

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response (RFC 9457): `type` names the kind of problem (a URN under
/// `urn:dataops-webhooks:problem:`), `detail` says what happened and what to do, and
/// `errors` points at the request fields at fault (JSON pointers into the body, or the query
/// parameter's name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct Problem {
    /// The kind of problem, such as `urn:dataops-webhooks:problem:not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind in a few words.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, and what to do about it.
    pub detail: String,
    /// The fields at fault, for validation problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

/// One field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct FieldProblem {
    /// A JSON pointer into the request body (`/url`, `/events/0`), or `?name` for a query
    /// parameter.
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

/// The problem kinds, by their last URN segment.
pub(crate) mod kind {
    pub(crate) const INVALID_BODY: &str = "invalid-body";
    pub(crate) const INVALID_INPUT: &str = "invalid-input";
    pub(crate) const UNAUTHENTICATED: &str = "unauthenticated";
    pub(crate) const FORBIDDEN: &str = "forbidden";
    pub(crate) const CROSS_SITE: &str = "cross-site-request";
    pub(crate) const NOT_FOUND: &str = "not-found";
    pub(crate) const CONFLICT: &str = "conflict";
    pub(crate) const SECRET_EXISTS: &str = "secret-exists";
    pub(crate) const NO_WEBHOOK: &str = "no-webhook";
    pub(crate) const UNSUPPORTED_MEDIA: &str = "unsupported-media-type";
    pub(crate) const TOO_LARGE: &str = "body-too-large";
    pub(crate) const UNSUPPORTED: &str = "unsupported";
    pub(crate) const UNAVAILABLE: &str = "backend-unavailable";
    pub(crate) const INTERNAL: &str = "internal";
}

impl Problem {
    /// A problem of `kind` (the last segment of its URN) with this status and detail.
    pub(crate) fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:dataops-webhooks:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// The same problem, pointing at a field.
    #[must_use]
    pub(crate) fn at(mut self, pointer: impl Into<String>) -> Self {
        let detail = self.detail.clone();
        self.errors.push(FieldProblem {
            pointer: pointer.into(),
            detail,
        });
        self
    }

    /// 404 for a resource that does not exist, or that the caller may not see.
    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            kind::NOT_FOUND,
            format!("no {what} with this id exists in your organization"),
        )
    }

    /// 403 for an organization-level operation asked by a caller limited to some projects.
    pub(crate) fn needs_org_access(what: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            kind::FORBIDDEN,
            format!("{what} needs access to the whole organization, not only some of its projects"),
        )
    }

    /// A validation problem at `pointer`.
    pub(crate) fn invalid(pointer: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            kind::INVALID_INPUT,
            detail,
        )
        .at(pointer)
    }

    /// The status.
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A server-side failure: logged with its source chain, answered without it.
    fn backend(retryable: bool, error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::warn!(
            target: "dataops_webhooks",
            error = %crate::error::chain(error),
            "a management request failed in the backend"
        );
        if retryable {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                kind::UNAVAILABLE,
                "the webhook store is unavailable for a moment; nothing was changed, try again",
            )
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                kind::INTERNAL,
                "the webhook store failed; the server log has the cause",
            )
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl From<Denied> for Problem {
    fn from(denied: Denied) -> Self {
        let kind = if denied.status() == StatusCode::UNAUTHORIZED {
            kind::UNAUTHENTICATED
        } else {
            kind::FORBIDDEN
        };
        Self::new(denied.status(), kind, denied.message())
    }
}

/// The body field a validation error is about.
fn pointer_of(error: &WebhookError) -> &'static str {
    match error {
        WebhookError::InvalidUrl { .. }
        | WebhookError::UnsupportedUrlScheme(_)
        | WebhookError::UrlHasCredentials
        | WebhookError::UrlHasFragment
        | WebhookError::UrlTooLong { .. }
        | WebhookError::BlockedAddress { .. } => "/url",
        WebhookError::EmptyEventSet
        | WebhookError::UnknownEvent(_)
        | WebhookError::TestEventNotSubscribable => "/events",
        WebhookError::ReservedHeader(_)
        | WebhookError::InvalidHeader { .. }
        | WebhookError::DuplicateHeader(_)
        | WebhookError::TooManyHeaders(_) => "/headers",
        WebhookError::DescriptionTooLong(_) => "/description",
        WebhookError::InvalidProject => "/project",
        WebhookError::UnstorableText(text) => match text.field() {
            "description" => "/description",
            "organization id" => "/org",
            _ => "/project",
        },
        WebhookError::SecretNotStandard | WebhookError::SecretAsymmetric => "/profile",
        WebhookError::InvalidRateLimit => "/rate_limit",
    }
}

impl From<WebhookError> for Problem {
    fn from(error: WebhookError) -> Self {
        Self::invalid(pointer_of(&error), error.to_string())
    }
}

impl From<ManageError> for Problem {
    fn from(error: ManageError) -> Self {
        match error {
            ManageError::Invalid(e) => e.into(),
            ManageError::NotFound(_) => Self::not_found("webhook"),
            ManageError::Conflict(_) => {
                Self::new(StatusCode::CONFLICT, kind::CONFLICT, error.to_string())
            }
            ManageError::SecretExists(_) => Self::new(
                StatusCode::CONFLICT,
                kind::SECRET_EXISTS,
                "the organization already has a signing secret, and it is never shown again; \
                 rotate it to get a new one",
            ),
            ref e => Self::backend(e.is_retryable(), e),
        }
    }
}

impl From<QueueError> for Problem {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::Unsupported(what) => Self::new(
                StatusCode::NOT_IMPLEMENTED,
                kind::UNSUPPORTED,
                format!("this server's delivery queue does not support {what}"),
            ),
            ref e => Self::backend(e.is_retryable(), e),
        }
    }
}

impl From<DispatchError> for Problem {
    fn from(error: DispatchError) -> Self {
        match error {
            DispatchError::WebhookNotFound(_) => Self::not_found("webhook"),
            DispatchError::PayloadTooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                kind::TOO_LARGE,
                error.to_string(),
            ),
            DispatchError::UnstorableText(e) => Self::invalid("/project", e.to_string()),
            DispatchError::Store(e) => Self::backend(e.is_retryable(), &e),
            DispatchError::Queue(e) => e.into(),
            ref e => Self::backend(false, e),
        }
    }
}

/// A JSON body read with the field path of any error, as a problem.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

/// A JSON body that may be left out (an empty body reads as `T::default()`).
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let (is_json, bytes) = read(request, state).await?;
        parse(is_json, &bytes).map(Self)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let (is_json, bytes) = read(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse(is_json, &bytes).map(Self)
    }
}

/// Whether the body is declared JSON, and the body (within the router's size limit).
async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<(bool, Bytes), Problem> {
    let is_json = declares_json(request.headers());
    let bytes = Bytes::from_request(request, state).await.map_err(|e| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            kind::TOO_LARGE,
            format!("the request body could not be read: {}", e.body_text()),
        )
    })?;
    Ok((is_json, bytes))
}

/// Whether the headers declare a JSON body (`application/json`, any parameters).
pub(crate) fn declares_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The body as `T`, or a problem pointing at the field at fault.
fn parse<T: DeserializeOwned>(is_json: bool, bytes: &[u8]) -> Result<T, Problem> {
    if !is_json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            kind::UNSUPPORTED_MEDIA,
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|error| {
        let pointer = json_pointer(error.path());
        let detail = format!(
            "the request body is not what this operation takes: {}",
            error.into_inner()
        );
        Problem::new(StatusCode::BAD_REQUEST, kind::INVALID_BODY, detail).at(pointer)
    })?;
    de.end().map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            kind::INVALID_BODY,
            format!("the request body has more after its JSON value: {e}"),
        )
    })?;
    Ok(value)
}

/// A path as a JSON pointer (RFC 6901).
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => pointer.push('-'),
        }
    }
    pointer
}

/// Query parameters, refused as a problem.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Self(q.0))
            .map_err(|e| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    kind::INVALID_INPUT,
                    format!("invalid query parameters: {}", e.body_text()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::webhook::WebhookId;

    #[test]
    fn each_error_answers_with_its_status_and_kind() {
        let id = WebhookId::new();
        let cases: [(Problem, u16, &str); 7] = [
            (ManageError::Conflict(id).into(), 409, kind::CONFLICT),
            (ManageError::NotFound(id).into(), 404, kind::NOT_FOUND),
            (
                QueueError::Unsupported("statistics").into(),
                501,
                kind::UNSUPPORTED,
            ),
            (
                DispatchError::WebhookNotFound(id).into(),
                404,
                kind::NOT_FOUND,
            ),
            (
                DispatchError::PayloadTooLarge {
                    actual: 9,
                    limit: 1,
                }
                .into(),
                413,
                kind::TOO_LARGE,
            ),
            (
                Denied::unauthenticated("sign in").into(),
                401,
                kind::UNAUTHENTICATED,
            ),
            (Denied::forbidden("no").into(), 403, kind::FORBIDDEN),
        ];
        for (problem, status, kind) in cases {
            assert_eq!(problem.status, status, "{problem:?}");
            assert_eq!(problem.kind, format!("urn:dataops-webhooks:problem:{kind}"));
            assert_eq!(problem.into_response().status().as_u16(), status);
        }
    }

    #[test]
    fn a_backend_failure_is_answered_without_its_cause() {
        let cause = std::io::Error::other("connection to db-7.internal:5432 refused");
        let problem: Problem = ManageError::from(StoreError::backend("query failed", cause)).into();
        assert_eq!(
            (problem.status, problem.kind.as_str()),
            (503, "urn:dataops-webhooks:problem:backend-unavailable")
        );
        assert!(!problem.detail.contains("db-7"), "{}", problem.detail);
    }

    #[test]
    fn field_paths_become_json_pointers() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            headers: std::collections::BTreeMap<String, u8>,
        }
        let problem = parse::<Body>(true, br#"{"headers": {"a/b~c": "x"}}"#).expect_err("refused");
        assert_eq!(problem.errors[0].pointer, "/headers/a~1b~0c");
        let trailing = parse::<Body>(true, br#"{"headers": {}} {}"#).expect_err("refused");
        assert_eq!(trailing.status, 400);
        let not_json = parse::<Body>(false, b"{}").expect_err("refused");
        assert_eq!(not_json.status, 415);
    }
}
