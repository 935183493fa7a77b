//! The JSON the management routes take and give. These are the API's own shapes, not the
//! stored records: a stored field can change without changing the API, and nothing secret
//! (custom header values, signing secrets) leaves except where a route says so.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::delivery::{AttemptResult, DeliveryOutcome, DeliveryTicket};
use crate::event::{Event, ExportedIssue};
use crate::queue::{AttemptLog, DeliveryRecord};
use crate::webhook::{EventFilter, Webhook, WebhookStatus};

/// The event list entry that stands for every platform event, present and future.
pub const ALL_EVENTS: &str = "*";

/// A webhook as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct WebhookView {
    /// Its id.
    pub id: String,
    /// Its project; `null` for an organization-wide webhook.
    pub project: Option<String>,
    /// Where requests go.
    pub url: String,
    /// The event types it receives, or `["*"]` for all of them.
    pub events: Vec<String>,
    /// Whether it receives events now.
    pub active: bool,
    /// `active`, `inactive` (turned off by a user) or `disabled` (by the system, after its
    /// deliveries kept failing).
    pub status: String,
    /// Why the system disabled it.
    pub disabled_reason: Option<String>,
    /// A note for the user.
    pub description: Option<String>,
    /// The names of its custom headers (their values are never shown again).
    pub header_names: Vec<String>,
    /// Its header profile: `aquarium`, `labelbox`, `github` or `standard-webhooks`.
    pub profile: String,
    /// Its rate limit, if any.
    pub rate_limit: Option<RateLimitBody>,
    /// Whether it signs with a secret of its own rather than the organization's.
    pub own_secret: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        let (status, reason) = match &w.status {
            WebhookStatus::Active => ("active", None),
            WebhookStatus::Inactive => ("inactive", None),
            WebhookStatus::Disabled { reason, .. } => ("disabled", Some(reason.clone())),
        };
        Self {
            id: w.id.to_string(),
            project: w.scope.project().map(str::to_owned),
            url: w.url.to_string(),
            events: event_names(&w.events),
            active: w.status.is_active(),
            status: status.to_owned(),
            disabled_reason: reason,
            description: w.description.clone(),
            header_names: w.headers.iter().map(|(n, _)| n.to_owned()).collect(),
            profile: w.profile.as_str().to_owned(),
            rate_limit: w.rate_limit.map(|l| RateLimitBody {
                per_second: l.per_second,
                burst: Some(l.burst),
            }),
            own_secret: w.secret.is_some(),
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A filter's event names, `["*"]` for all.
fn event_names(filter: &EventFilter) -> Vec<String> {
    match filter {
        EventFilter::Only(types) => types.iter().map(|t| t.as_str().to_owned()).collect(),
        _ => vec![ALL_EVENTS.to_owned()],
    }
}

/// A rate limit: requests per second to the endpoint, from each worker process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitBody {
    /// Requests per second (0.001 to 1,000,000).
    pub per_second: f64,
    /// Requests that may go at once after a quiet spell (default 1).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// One page of webhooks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct WebhookPage {
    /// The webhooks, oldest first.
    pub items: Vec<WebhookView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next: Option<String>,
}

/// The webhooks that handle an event type in a project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct WebhookList {
    /// The webhooks; empty means "no webhook handles it: create one".
    pub items: Vec<WebhookView>,
}

/// A new webhook.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NewWebhookBody {
    /// Its project; leave it out for an organization-wide webhook (which needs access to the
    /// whole organization).
    #[serde(default)]
    pub project: Option<String>,
    /// Where requests go: an absolute `https://` (or `http://`) URL.
    pub url: String,
    /// Event names such as `issue-exported`, or `["*"]` for all.
    pub events: Vec<String>,
    /// Whether it receives events from the start (default `true`).
    #[serde(default)]
    pub active: Option<bool>,
    /// A note for the user.
    #[serde(default)]
    pub description: Option<String>,
    /// Headers sent with every request, such as an API key for a gateway.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Header profile (default `aquarium`).
    #[serde(default)]
    pub profile: Option<String>,
    /// A rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitBody>,
}

/// Changes to a webhook; fields left out stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WebhookUpdateBody {
    /// A new URL.
    #[serde(default)]
    pub url: Option<String>,
    /// New event names, or `["*"]`.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Turn it on or off.
    #[serde(default)]
    pub active: Option<bool>,
    /// A new note; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// The new set of custom headers: a header given `null` keeps its current value (values
    /// are never shown, so a form can keep one without knowing it); headers left out are
    /// removed.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, Option<String>>>,
    /// A new header profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// A new rate limit; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RateLimitBody>)]
    pub rate_limit: Option<Option<RateLimitBody>>,
}

/// A field that is present, possibly `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Query of the webhook listing.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
#[non_exhaustive]
pub struct WebhookListQuery {
    /// Only this project's webhooks.
    pub project: Option<String>,
    /// `organization`: only the organization-wide webhooks.
    pub scope: Option<String>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<usize>,
}

/// Query of the subscriber look-up.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
#[non_exhaustive]
pub struct SubscribersQuery {
    /// The project.
    pub project: String,
    /// The event type, such as `issue-exported`.
    pub event: String,
}

/// The organization's new secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct SecretView {
    /// The secret: copy it now, it is never shown again.
    pub secret: String,
    /// A reminder of that, for the page.
    pub warning: String,
}

impl SecretView {
    /// The answer that shows `secret`, the one time it is shown.
    pub(crate) fn once(secret: &crate::secret::Secret) -> Self {
        Self {
            secret: secret.expose().to_owned(),
            warning: "Copy this secret now: it is shown once and cannot be retrieved again."
                .to_owned(),
        }
    }
}

/// Whether the organization has a secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct SecretStatus {
    /// Whether it has one.
    pub exists: bool,
}

/// A rotation.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RotateBody {
    /// Seconds the old secret keeps signing Standard Webhooks requests (default 0: it stops
    /// at once, as the platform documents).
    #[serde(default)]
    pub grace_seconds: Option<u64>,
}

impl RotateBody {
    /// The grace period asked for (zero when left out).
    pub(crate) fn grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.grace_seconds.unwrap_or(0))
    }
}

/// The caller's access, for the page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct AccessView {
    /// The organization.
    pub org: String,
    /// The projects the caller may manage; `null` for all of them.
    pub projects: Option<Vec<String>>,
    /// The event types a webhook can subscribe to.
    pub event_types: Vec<String>,
}

/// The outcome of one delivery attempt: a test send's, or an export's first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct OutcomeView {
    /// The delivery.
    pub delivery_id: String,
    /// The webhook.
    pub webhook_id: String,
    /// Where it went.
    pub url: String,
    /// `delivered` (2xx), `rejected` (another status), `failed` (no answer, or not sent),
    /// or `pending` (not attempted yet: the worker will).
    pub result: String,
    /// The endpoint's status, when it answered.
    pub status: Option<u16>,
    /// What went wrong, in words to show the user.
    pub error: Option<String>,
    /// When the attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// When the next attempt is due, if it will be retried.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl OutcomeView {
    /// A delivery whose first attempt has not finished yet.
    pub(crate) fn pending(ticket: &DeliveryTicket) -> Self {
        Self {
            delivery_id: ticket.delivery_id.to_string(),
            webhook_id: ticket.webhook_id.to_string(),
            url: ticket.url.to_string(),
            result: "pending".to_owned(),
            status: None,
            error: None,
            attempted_at: None,
            next_attempt_at: None,
        }
    }
}

impl From<&DeliveryOutcome> for OutcomeView {
    fn from(o: &DeliveryOutcome) -> Self {
        let result = match &o.result {
            AttemptResult::Delivered { .. } => "delivered",
            AttemptResult::Rejected { .. } => "rejected",
            _ => "failed",
        };
        Self {
            delivery_id: o.delivery_id.to_string(),
            webhook_id: o.webhook_id.to_string(),
            url: o.url.to_string(),
            result: result.to_owned(),
            status: o.status().map(|s| s.as_u16()),
            error: o.error_message(),
            attempted_at: Some(o.attempted_at),
            next_attempt_at: o.next_attempt_at,
        }
    }
}

/// A request as a webhook would receive it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct PreviewView {
    /// Where it would go.
    pub url: String,
    /// Its headers; the shared-secret header and custom header values show as `<redacted>`.
    pub headers: BTreeMap<String, String>,
    /// The body, exactly as it would be sent.
    pub body: String,
}

/// An event to preview.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PreviewBody {
    /// The event, as its JSON payload (`{"event": "issue-exported", "project": ..., ...}`).
    #[schema(value_type = Object)]
    pub event: Event,
}

/// An issue to export to labeling.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ExportBody {
    /// The exported issue, as in the `issue` field of the `issue-exported` payload.
    #[schema(value_type = Object)]
    pub issue: ExportedIssue,
}

/// What an export did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct ExportResult {
    /// The event's id.
    pub event_id: String,
    /// The first attempt of each delivery (`pending` where none finished in time).
    pub outcomes: Vec<OutcomeView>,
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct DeliveryView {
    /// Its id (the `X-Aquarium-Delivery` / `webhook-id` header).
    pub id: String,
    /// Its event.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The webhook.
    pub webhook_id: String,
    /// The URL at emit time.
    pub url: String,
    /// `pending`, `succeeded` or `dead`.
    pub status: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When it is next due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it was emitted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&DeliveryRecord> for DeliveryView {
    fn from(d: &DeliveryRecord) -> Self {
        Self {
            id: d.id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type.as_str().to_owned(),
            webhook_id: d.webhook_id.to_string(),
            url: d.url.clone(),
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_error: d.last_error.clone(),
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// One page of deliveries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct DeliveryPageView {
    /// The deliveries.
    pub items: Vec<DeliveryView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last.
    pub next: Option<String>,
}

/// Query of a webhook's deliveries.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
#[non_exhaustive]
pub struct DeliveryListQuery {
    /// Only `pending`, `succeeded` or `dead` ones.
    pub status: Option<String>,
    /// Only those emitted at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only those emitted before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<usize>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct AttemptView {
    /// When it started.
    pub attempted_at: DateTime<Utc>,
    /// The endpoint's status, when it answered.
    pub status: Option<u16>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The start of the response body.
    pub response: String,
    /// The kind of failure; `null` on success.
    pub error_kind: Option<String>,
    /// The error in words; `null` on success.
    pub error: Option<String>,
}

impl From<&AttemptLog> for AttemptView {
    fn from(a: &AttemptLog) -> Self {
        Self {
            attempted_at: a.attempted_at,
            status: a.status,
            duration_ms: u64::try_from(a.duration.as_millis()).unwrap_or(u64::MAX),
            response: a.response.clone(),
            error_kind: a.error_kind.map(|k| k.as_str().to_owned()),
            error: a.error.clone(),
        }
    }
}

/// A delivery's attempts, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct AttemptList {
    /// The attempts.
    pub items: Vec<AttemptView>,
}

/// A recovery: redeliver the dead deliveries of a time range.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RecoverBody {
    /// From this time (RFC 3339).
    pub since: DateTime<Utc>,
    /// Up to this time (default: now).
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}

/// How many deliveries were sent again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct RecoverResult {
    /// How many.
    pub redelivered: usize,
}
