//! Webhook configuration: where events go, which ones, and how requests are signed.
//!
//! A [`Webhook`] is the stored record; [`NewWebhook`] and [`WebhookUpdate`] are what a host
//! passes to [`Webhooks`](crate::Webhooks) to create and change one. Every input is validated
//! by the pure functions in [`validate`] before anything is written.

mod id;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::secret::Secret;
use crate::signing::{HeaderProfile, SignatureSchemes};
use crate::EventType;

pub use id::{BadId, DeliveryId, EventId, OrgId, WebhookId};
pub(crate) use id::{IdMap, IdSet};
pub use validate::{UnstorableText, WebhookError};

/// Which events of an organization a webhook receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "project")]
#[non_exhaustive]
pub enum Scope {
    /// Events of one project, by its name (the `project` of the payload).
    Project(String),
    /// Events of every project of the organization.
    Organization,
}

impl Scope {
    /// The webhook's project, or `None` for an organization-wide webhook.
    pub fn project(&self) -> Option<&str> {
        match self {
            Self::Project(p) => Some(p),
            Self::Organization => None,
        }
    }
}

/// The event types a webhook subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "types")]
#[non_exhaustive]
pub enum EventFilter {
    /// Every platform event, including types added in later versions.
    All,
    /// These types only (never empty once validated).
    Only(BTreeSet<EventType>),
}

impl EventFilter {
    /// A filter from wire names such as `"issue-exported"`.
    ///
    /// # Errors
    /// [`WebhookError::UnknownEvent`] for a name that is not a platform event (the test event
    /// cannot be subscribed to: "send test payload" reaches a webhook whatever it subscribes
    /// to), [`WebhookError::EmptyEventSet`] for no names.
    pub fn from_names<I, S>(names: I) -> Result<Self, WebhookError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let types = names
            .into_iter()
            .map(|name| validate::subscribable(name.as_ref()))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let filter = Self::Only(types);
        validate::event_filter(&filter)?;
        Ok(filter)
    }

    /// A filter of the given types.
    pub fn only(types: impl IntoIterator<Item = EventType>) -> Self {
        Self::Only(types.into_iter().collect())
    }

    /// Whether an event of type `event` passes the filter.
    pub fn matches(&self, event: EventType) -> bool {
        match self {
            Self::All => EventType::PLATFORM.contains(&event),
            Self::Only(types) => types.contains(&event),
        }
    }
}

/// Whether a webhook receives events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
#[non_exhaustive]
pub enum WebhookStatus {
    /// Receives events.
    Active,
    /// Turned off by the user; turn it back on with
    /// [`Webhooks::reactivate`](crate::Webhooks::reactivate).
    Inactive,
    /// Turned off by the system after its deliveries kept failing; the host may re-enable it.
    Disabled {
        /// Why, in words a user can act on.
        reason: String,
        /// When.
        since: DateTime<Utc>,
    },
}

impl WebhookStatus {
    /// Whether events are delivered to the webhook.
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Active)
    }
}

/// Extra headers a user asked to be sent with every request of a webhook (an API key for
/// their gateway, say). Values may be credentials, so `Debug` shows names only.
///
/// A value of this type only ever holds valid headers: every way to make one — [`with`],
/// [`insert`], [`from_pairs`], deserializing — checks each header with
/// [`validate::header`] (a valid HTTP name that is not one of the crate's own
/// [`RESERVED_HEADERS`](validate::RESERVED_HEADERS), in any letter case; a value without line
/// breaks) and keeps at most [`MAX_CUSTOM_HEADERS`](validate::MAX_CUSTOM_HEADERS). Names are
/// stored in lower case.
///
/// ```
/// use dataops_webhooks::webhook::{CustomHeaders, WebhookError};
///
/// let headers = CustomHeaders::new().with("Authorization", "Bearer gateway-key")?;
/// assert_eq!(headers.iter().next(), Some(("authorization", "Bearer gateway-key")));
///
/// // The crate's own headers cannot be replaced, however they are spelled or made.
/// assert!(matches!(CustomHeaders::new().with("Content-Length", "0"), Err(WebhookError::ReservedHeader(_))));
/// let parsed: Result<CustomHeaders, _> = serde_json::from_str(r#"{"X-Aquarium-Delivery": "dlv_forged"}"#);
/// assert!(parsed.is_err());
/// # Ok::<(), WebhookError>(())
/// ```
///
/// [`with`]: Self::with
/// [`insert`]: Self::insert
/// [`from_pairs`]: Self::from_pairs
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CustomHeaders(BTreeMap<String, String>);

impl CustomHeaders {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// These headers and one more (replacing one of the same name).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn with(
        mut self,
        name: impl AsRef<str>,
        value: impl Into<String>,
    ) -> Result<Self, WebhookError> {
        self.insert(name, value)?;
        Ok(self)
    }

    /// Adds a header, or replaces the one of the same name (letter case aside).
    ///
    /// # Errors
    /// [`WebhookError::ReservedHeader`] or [`WebhookError::InvalidHeader`] from
    /// [`validate::header`]; [`WebhookError::TooManyHeaders`] past
    /// [`MAX_CUSTOM_HEADERS`](validate::MAX_CUSTOM_HEADERS). A refused header changes nothing.
    pub fn insert(
        &mut self,
        name: impl AsRef<str>,
        value: impl Into<String>,
    ) -> Result<(), WebhookError> {
        let value = value.into();
        let name = validate::header(name.as_ref(), &value)?;
        if self.0.len() >= validate::MAX_CUSTOM_HEADERS && !self.0.contains_key(&name) {
            return Err(WebhookError::TooManyHeaders(self.0.len() + 1));
        }
        self.0.insert(name, value);
        Ok(())
    }

    /// Headers from `(name, value)` pairs, such as a form's rows or a database's.
    ///
    /// # Errors
    /// As [`insert`](Self::insert), and [`WebhookError::DuplicateHeader`] when two names
    /// differ only in letter case (which one was meant is unclear).
    pub fn from_pairs<I, N, V>(pairs: I) -> Result<Self, WebhookError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<str>,
        V: Into<String>,
    {
        let mut headers = Self::new();
        for (name, value) in pairs {
            let value = value.into();
            let lower = validate::header(name.as_ref(), &value)?;
            if headers.0.contains_key(&lower) {
                return Err(WebhookError::DuplicateHeader(lower));
            }
            headers.insert(lower, value)?;
        }
        Ok(headers)
    }

    /// The value of a header, by name in any letter case.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The headers as `(name, value)`, names in lower case, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Headers as they were before validation: only for tests of the send-time guard.
    #[cfg(test)]
    pub(crate) fn unchecked<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
}

impl<'de> Deserialize<'de> for CustomHeaders {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = BTreeMap::<String, String>::deserialize(d)?;
        Self::from_pairs(pairs).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for CustomHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// A configured webhook, as stored by a [`ConfigStore`](crate::store::ConfigStore).
///
/// Records are made by [`Webhooks::create`](crate::Webhooks::create), which validates them.
/// A custom store persists them whole: the type is serde-serializable (the secret, which the
/// store must keep to sign, included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Webhook {
    /// The webhook's id.
    pub id: WebhookId,
    /// The organization it belongs to.
    pub org: OrgId,
    /// One project, or the whole organization.
    pub scope: Scope,
    /// Where requests go: absolute `http` or `https`, without credentials.
    pub url: Url,
    /// The event types it receives.
    pub events: EventFilter,
    /// Whether it receives them now.
    pub status: WebhookStatus,
    /// A note for the user.
    pub description: Option<String>,
    /// Headers added to every request.
    pub headers: CustomHeaders,
    /// Its own secret; `None` signs with the organization's.
    #[serde(with = "secret_text")]
    pub secret: Option<Secret>,
    /// How requests are signed (under the [`Aquarium`](HeaderProfile::Aquarium) profile).
    pub schemes: SignatureSchemes,
    /// Which headers carry the delivery id and event type, and which signature other
    /// platforms' profiles use. Records stored before it existed read as the default.
    #[serde(default)]
    pub profile: HeaderProfile,
    /// Its own replaced secret, still signing (Standard Webhooks only) until it expires;
    /// see [`Webhooks::rotate_secret`](crate::Webhooks::rotate_secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
    /// At most this many requests per second to it, from each worker process (`None`: as
    /// fast as it answers, within the concurrency limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
    /// How many times it was changed: each update writes `revision + 1`, and a store only
    /// accepts it over the revision it was read at (see
    /// [`ConfigStore::update_webhook`](crate::store::ConfigStore::update_webhook)), so two
    /// writers never undo each other. Records stored before it existed read as 0.
    #[serde(default)]
    pub revision: u64,
}

impl Webhook {
    /// Its own replaced secrets still valid at `now` (empty once the grace period ended).
    pub fn valid_previous_secrets(&self, now: DateTime<Utc>) -> &[Secret] {
        match &self.previous_secret {
            Some(p) if p.expires_at > now => std::slice::from_ref(&p.secret),
            _ => &[],
        }
    }

    /// Whether an event of `event_type` in `project` is delivered to this webhook now.
    pub fn receives(&self, project: &str, event_type: EventType) -> bool {
        self.status.is_active()
            && self.events.matches(event_type)
            && self.scope.project().is_none_or(|p| p == project)
    }
}

/// What a host gives to create a webhook. Built with [`NewWebhook::new`] and its setters.
///
/// ```
/// use dataops_webhooks::webhook::{EventFilter, NewWebhook, Scope};
/// use dataops_webhooks::EventType;
///
/// let new = NewWebhook::new(Scope::Project("traffic-signs".into()), "https://labeling.example/hook")
///     .events(EventFilter::only([EventType::IssueExported]))
///     .description("export to labeling");
/// # let _ = new;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewWebhook {
    /// The organization; `None` is the dispatcher's default organization.
    pub org: Option<OrgId>,
    /// One project or the whole organization.
    pub scope: Scope,
    /// The endpoint URL as typed by the user; validated on create.
    pub url: String,
    /// The event types (default: all).
    pub events: EventFilter,
    /// Whether it starts active (default) or inactive.
    pub active: bool,
    /// A note for the user.
    pub description: Option<String>,
    /// Headers added to every request.
    pub headers: CustomHeaders,
    /// Its own secret; `None` signs with the organization's.
    pub secret: Option<Secret>,
    /// How requests are signed (default: shared secret + Standard Webhooks).
    pub schemes: SignatureSchemes,
    /// Which header conventions its requests follow (default: the platform's).
    pub profile: HeaderProfile,
    /// A cap on its request rate (default: none).
    pub rate_limit: Option<RateLimit>,
    /// The first header [`header`](Self::header) refused, reported by `create`.
    header_error: Option<WebhookError>,
}

impl NewWebhook {
    /// A webhook for `scope` posting to `url`, subscribed to every event, active, signed
    /// with the organization's secret and the default schemes.
    pub fn new(scope: Scope, url: impl Into<String>) -> Self {
        Self {
            org: None,
            scope,
            url: url.into(),
            events: EventFilter::All,
            active: true,
            description: None,
            headers: CustomHeaders::new(),
            secret: None,
            schemes: SignatureSchemes::default(),
            profile: HeaderProfile::default(),
            rate_limit: None,
            header_error: None,
        }
    }

    /// Sets the organization.
    #[must_use]
    pub fn org(mut self, org: impl Into<OrgId>) -> Self {
        self.org = Some(org.into());
        self
    }

    /// Sets the event types.
    #[must_use]
    pub fn events(mut self, events: EventFilter) -> Self {
        self.events = events;
        self
    }

    /// Starts the webhook inactive.
    #[must_use]
    pub fn inactive(mut self) -> Self {
        self.active = false;
        self
    }

    /// Sets the description.
    #[must_use]
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Adds a custom header. Like every setter it never fails: a header
    /// [`CustomHeaders::insert`] refuses is reported by
    /// [`Webhooks::create`](crate::Webhooks::create) (and nothing is created).
    #[must_use]
    pub fn header(mut self, name: impl AsRef<str>, value: impl Into<String>) -> Self {
        if let Err(error) = self.headers.insert(name, value) {
            self.header_error.get_or_insert(error);
        }
        self
    }

    /// Sets every custom header at once, replacing any added before.
    #[must_use]
    pub fn headers(mut self, headers: CustomHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// Gives the webhook its own secret (Labelbox-style); otherwise the organization's signs.
    #[must_use]
    pub fn secret(mut self, secret: Secret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Sets the signature schemes.
    #[must_use]
    pub fn schemes(mut self, schemes: SignatureSchemes) -> Self {
        self.schemes = schemes;
        self
    }

    /// Sets the header profile: [`HeaderProfile::Labelbox`] for receivers written for
    /// Labelbox, and so on.
    #[must_use]
    pub fn profile(mut self, profile: HeaderProfile) -> Self {
        self.profile = profile;
        self
    }

    /// Caps the rate of requests to the endpoint.
    #[must_use]
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }
}

/// A change to a webhook: every field left `None` stays as it is.
///
/// ```
/// use dataops_webhooks::webhook::{EventFilter, WebhookUpdate};
/// use dataops_webhooks::EventType;
///
/// let update = WebhookUpdate::new()
///     .url("https://labeling.example/v2/hook")
///     .events(EventFilter::only([EventType::IssueExported, EventType::IssueUpdated]));
/// # let _ = update;
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WebhookUpdate {
    /// A new URL.
    pub url: Option<String>,
    /// New event types.
    pub events: Option<EventFilter>,
    /// Active (`true`) or inactive (`false`); `true` also re-enables a disabled webhook.
    pub active: Option<bool>,
    /// New headers, replacing all the old ones.
    pub headers: Option<CustomHeaders>,
    /// A new description; `Some(None)` removes it.
    pub description: Option<Option<String>>,
    /// New signature schemes.
    pub schemes: Option<SignatureSchemes>,
    /// A new header profile.
    pub profile: Option<HeaderProfile>,
    /// A new rate limit; `Some(None)` removes it.
    pub rate_limit: Option<Option<RateLimit>>,
}

impl WebhookUpdate {
    /// No change yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the URL.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Changes the event types.
    #[must_use]
    pub fn events(mut self, events: EventFilter) -> Self {
        self.events = Some(events);
        self
    }

    /// Activates (`true`) or deactivates (`false`).
    #[must_use]
    pub fn active(mut self, active: bool) -> Self {
        self.active = Some(active);
        self
    }

    /// Replaces the custom headers.
    #[must_use]
    pub fn headers(mut self, headers: CustomHeaders) -> Self {
        self.headers = Some(headers);
        self
    }

    /// Sets (`Some`) or removes (`None`) the description.
    #[must_use]
    pub fn description(mut self, text: Option<String>) -> Self {
        self.description = Some(text);
        self
    }

    /// Changes the signature schemes.
    #[must_use]
    pub fn schemes(mut self, schemes: SignatureSchemes) -> Self {
        self.schemes = Some(schemes);
        self
    }

    /// Changes the header profile.
    #[must_use]
    pub fn profile(mut self, profile: HeaderProfile) -> Self {
        self.profile = Some(profile);
        self
    }

    /// Sets (`Some`) or removes (`None`) the rate limit.
    #[must_use]
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = Some(limit);
        self
    }
}

/// A cap on how fast one webhook's endpoint is sent requests: `per_second` on average, with
/// bursts of up to `burst` at once (a token bucket). Deliveries over the rate wait in the
/// queue — they are not failed — and other endpoints are not slowed.
///
/// The rate is per worker process: with `n` processes working one queue, give each
/// `per_second / n` for a total of `per_second`.
///
/// ```
/// use dataops_webhooks::webhook::RateLimit;
///
/// let limit = RateLimit::per_second(200.0).burst(20);
/// assert_eq!((limit.per_second, limit.burst), (200.0, 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RateLimit {
    /// Requests per second, on average (0.001 to 1,000,000).
    pub per_second: f64,
    /// Requests that may go at once after a quiet spell (at least 1; default 1).
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` requests a second, one at a time.
    pub fn per_second(per_second: f64) -> Self {
        Self {
            per_second,
            burst: 1,
        }
    }

    /// Allows bursts of `burst` requests.
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }
}

/// An organization's signing secret, with the previous one while its grace period lasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SigningKeys {
    /// The secret that signs from now on.
    #[serde(with = "secret_text::required")]
    pub current: Secret,
    /// When `current` was made.
    pub created_at: DateTime<Utc>,
    /// The replaced secret, still signing (Standard Webhooks only) until `expires_at`.
    pub previous: Option<PreviousSecret>,
}

/// A replaced secret in its rotation grace period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PreviousSecret {
    /// The old secret.
    #[serde(with = "secret_text::required")]
    pub secret: Secret,
    /// When it stops signing.
    pub expires_at: DateTime<Utc>,
}

impl SigningKeys {
    /// Keys with a fresh `current` and no previous secret.
    pub fn new(current: Secret, created_at: DateTime<Utc>) -> Self {
        Self {
            current,
            created_at,
            previous: None,
        }
    }

    /// The older secrets still valid at `now`.
    pub fn valid_previous(&self, now: DateTime<Utc>) -> &[Secret] {
        match &self.previous {
            Some(p) if p.expires_at > now => std::slice::from_ref(&p.secret),
            _ => &[],
        }
    }
}

/// Serde for secrets as their text: stores must keep them to sign.
mod secret_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secret::Secret;

    pub(super) fn serialize<S: Serializer>(
        secret: &Option<Secret>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match secret {
            Some(secret) => s.serialize_some(secret.expose()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| Secret::import(text).map_err(serde::de::Error::custom))
            .transpose()
    }

    pub(super) mod required {
        use super::*;

        pub(in crate::webhook) fn serialize<S: Serializer>(
            secret: &Secret,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.serialize_str(secret.expose())
        }

        pub(in crate::webhook) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Secret, D::Error> {
            Secret::import(String::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_matches_every_platform_event_but_not_the_test_event() {
        for t in EventType::PLATFORM {
            assert!(EventFilter::All.matches(t));
        }
        assert!(!EventFilter::All.matches(EventType::Test));
        let only = EventFilter::only([EventType::IssueExported]);
        assert!(only.matches(EventType::IssueExported));
        assert!(!only.matches(EventType::DatasetComplete));
    }

    #[test]
    fn custom_header_values_are_redacted_in_debug() {
        let headers = CustomHeaders::new()
            .with("Authorization", "Bearer sk_live_123")
            .expect("valid");
        let shown = format!("{headers:?}");
        assert!(shown.contains("authorization"), "{shown}");
        assert!(!shown.contains("sk_live_123"), "{shown}");
    }

    #[test]
    fn previous_secret_signs_only_until_it_expires() {
        let now = Utc::now();
        let keys = SigningKeys {
            current: Secret::generate().expect("random"),
            created_at: now,
            previous: Some(PreviousSecret {
                secret: Secret::generate().expect("random"),
                expires_at: now + chrono::Duration::minutes(5),
            }),
        };
        assert_eq!(keys.valid_previous(now).len(), 1);
        assert!(keys
            .valid_previous(now + chrono::Duration::minutes(5))
            .is_empty());
    }
}
