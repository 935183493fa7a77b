//! Building the exact request of one attempt: headers, signatures, body. Used by sends and by
//! [`preview`](crate::Dispatcher::preview) alike, so a preview cannot drift from a send.

use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::signing::SigningSecrets;
use crate::transport::RedactedHeaders;
use crate::webhook::{validate, DeliveryId, SigningKeys, Webhook, WebhookId};
use crate::EventType;

/// The request a webhook would receive for an event, built without sending it.
///
/// The body is byte for byte what is sent. Headers are too, except the ones that belong to
/// one attempt: `webhook-id`/`X-Aquarium-Delivery` carry this preview's own delivery id, and
/// `webhook-timestamp` and the signatures are those of the moment it was made.
#[derive(Clone)]
#[non_exhaustive]
pub struct Preview {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// Where it would go.
    pub url: Url,
    /// The delivery id in the headers.
    pub delivery_id: DeliveryId,
    /// Every header that would be sent.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Preview {
    /// A preview of the request `url` would receive. For test doubles;
    /// [`Dispatcher::preview`](crate::Dispatcher::preview) makes the real ones.
    pub fn new(
        webhook_id: WebhookId,
        url: Url,
        delivery_id: DeliveryId,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        Self {
            webhook_id,
            url,
            delivery_id,
            headers,
            body,
        }
    }

    /// The body as text (it is always UTF-8 JSON).
    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or_default()
    }
}

impl fmt::Debug for Preview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preview")
            .field("webhook_id", &self.webhook_id)
            .field("url", &self.url.as_str())
            .field("delivery_id", &self.delivery_id)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The secrets that sign requests to `webhook` at `now`: its own, else the organization's
/// (with any still in their grace period), else none (the request goes unsigned, as the
/// platform does before an organization generates a secret).
pub(crate) fn secrets_for<'a>(
    webhook: &'a Webhook,
    org_keys: Option<&'a SigningKeys>,
    now: DateTime<Utc>,
) -> Option<SigningSecrets<'a>> {
    match (&webhook.secret, org_keys) {
        (Some(own), _) => Some(SigningSecrets {
            current: own,
            previous: webhook.valid_previous_secrets(now),
        }),
        (None, Some(keys)) => Some(SigningSecrets {
            current: &keys.current,
            previous: keys.valid_previous(now),
        }),
        (None, None) => None,
    }
}

/// Every header of one attempt, in a fixed order: content type, user agent, the delivery id
/// and event type headers of the webhook's [profile](crate::signing::HeaderProfile), the
/// webhook's custom headers, then the signatures the profile asks for.
///
/// The crate's own headers always win: a custom header whose name is reserved (in any letter
/// case) or already set is left out. [`CustomHeaders`](crate::webhook::CustomHeaders) cannot
/// hold such a name; this second check keeps a request intact whatever a store returns.
///
/// # Errors
/// [`RequestError`] when a stored custom header or secret cannot be
/// used (a custom store returned data the crate's validation would have refused).
pub(crate) fn headers(
    webhook: &Webhook,
    org_keys: Option<&SigningKeys>,
    delivery_id: DeliveryId,
    event_type: EventType,
    at: DateTime<Utc>,
    body: &[u8],
) -> Result<HeaderMap, RequestError> {
    let mut map = HeaderMap::with_capacity(10 + webhook.headers.len());
    map.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    map.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(crate::USER_AGENT),
    );
    let delivery = delivery_id.to_string();
    let profile = webhook.profile;
    insert(
        &mut map,
        HeaderName::from_static(profile.id_header()),
        delivery.clone(),
    )?;
    if let Some(name) = profile.event_header() {
        map.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(event_type.as_str()),
        );
    }
    for (name, value) in webhook.headers.iter() {
        if validate::is_reserved(name) {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| stored_header_error(name, "name"))?;
        if !map.contains_key(&name) {
            insert(&mut map, name, value.to_owned())?;
        }
    }
    if let Some(secrets) = secrets_for(webhook, org_keys, at) {
        let signed = profile
            .signature(webhook.schemes)
            .headers(secrets, &delivery, at.timestamp(), body)
            .map_err(|e| RequestError {
                message: format!("the secret cannot sign: {e}; fix it with Webhooks::update"),
            })?;
        for (name, value) in signed {
            insert(&mut map, HeaderName::from_static(name), value)?;
        }
    }
    Ok(map)
}

/// Inserts a header; every value but the two fixed ones is marked sensitive, so HTTP/2
/// compression never indexes a secret.
fn insert(map: &mut HeaderMap, name: HeaderName, value: String) -> Result<(), RequestError> {
    // From a `String`, the value takes the buffer over instead of copying it.
    let mut value =
        HeaderValue::try_from(value).map_err(|_| stored_header_error(name.as_str(), "value"))?;
    value.set_sensitive(true);
    map.insert(name, value);
    Ok(())
}

fn stored_header_error(name: &str, what: &str) -> RequestError {
    RequestError {
        message: format!(
            "the stored header `{}` has an invalid {what}; fix it with Webhooks::update",
            validate::escaped(name, 64)
        ),
    }
}

/// The stored webhook cannot make a valid request: a header or secret the crate's validation
/// refuses (a store returned what [`Webhooks`](crate::Webhooks) would not have written).
/// Nothing is sent; retrying cannot help until the webhook is fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::signing::{SignatureSchemes, AQUARIUM_DELIVERY};
    use crate::webhook::validate::tests::reserved_spellings;
    use crate::webhook::{CustomHeaders, EventFilter, OrgId, Scope, WebhookStatus};

    fn webhook_with(headers: CustomHeaders) -> Webhook {
        let now = Utc::now();
        Webhook {
            id: WebhookId::new(),
            org: OrgId::default(),
            scope: Scope::Organization,
            url: Url::parse("https://hooks.example.com/x").expect("url"),
            events: EventFilter::All,
            status: WebhookStatus::Active,
            description: None,
            headers,
            secret: Some(Secret::generate().expect("random")),
            schemes: SignatureSchemes::NONE.with(crate::signing::SignatureScheme::HubSignature),
            profile: crate::signing::HeaderProfile::default(),
            previous_secret: None,
            rate_limit: None,
            created_at: now,
            updated_at: now,
            revision: 0,
        }
    }

    #[test]
    fn custom_headers_never_replace_or_duplicate_the_crates_own() {
        // A webhook as a store could hand back one written before names were checked at the
        // type: every reserved name, in every spelling, with a forged value.
        for name in reserved_spellings() {
            let forged = CustomHeaders::unchecked([(name.as_str(), "forged"), ("x-team", "ml")]);
            let webhook = webhook_with(forged);
            let id = DeliveryId::new();
            let map = headers(
                &webhook,
                None,
                id,
                EventType::IssueExported,
                Utc::now(),
                b"{}",
            )
            .expect("builds");
            for (header, value) in &map {
                assert_ne!(value.as_bytes(), b"forged", "{name} went out as {header}");
            }
            assert_eq!(map.get_all(AQUARIUM_DELIVERY).iter().count(), 1, "{name}");
            assert_eq!(
                map.get(AQUARIUM_DELIVERY).and_then(|v| v.to_str().ok()),
                Some(id.to_string().as_str()),
                "{name}"
            );
            assert_eq!(
                map.get("content-type").map(|v| v.as_bytes()),
                Some(&b"application/json"[..])
            );
            assert_eq!(map.get("x-team").map(|v| v.as_bytes()), Some(&b"ml"[..]));
            assert!(map.get("x-hub-signature-256").is_some(), "{name}");
        }
    }
}
