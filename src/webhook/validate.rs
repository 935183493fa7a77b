//! Validation of webhook configuration: pure functions, run before anything is written.

use std::net::IpAddr;

use url::{Host, Url};

#[cfg(doc)]
use super::CustomHeaders;
use super::{EventFilter, NewWebhook, RateLimit, Scope};
use crate::secret::Secret;
use crate::signing::{HeaderProfile, SignatureSchemes, SigningError};
use crate::transport::guard::{AddressPolicy, BlockedRange};
use crate::{EventType, UnknownEventType};

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// The most custom headers a webhook may have.
pub const MAX_CUSTOM_HEADERS: usize = 20;
/// The longest custom header value.
pub const MAX_HEADER_VALUE_LEN: usize = 4096;
/// The longest description.
pub const MAX_DESCRIPTION_LEN: usize = 1000;
/// The longest project name.
pub const MAX_PROJECT_LEN: usize = 256;

/// Header names the crate writes itself, or that would break the request: a custom header may
/// not use them, in any letter case. Names ending in `-` are prefixes.
///
/// Every signature header of every scheme is here, whether or not a webhook uses that scheme,
/// so a custom header can never pose as a signature. The transport's own headers (length,
/// host, framing) are here because replacing them would change what the endpoint receives:
/// a custom `Content-Length: 0` would send an empty body that is then logged as delivered.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "user-agent",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "proxy-",
    "x-aquarium-",
    "webhook-",
    "x-hub-signature",
    "x-hub-signature-256",
];

/// Text that no backend can store: it holds a NUL character (U+0000), which PostgreSQL's
/// `text` refuses. Checked before any backend is called, so every backend gives this same
/// answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {field} contains a NUL character (U+0000), which cannot be stored; remove it")]
pub struct UnstorableText {
    field: &'static str,
}

impl UnstorableText {
    /// The field, such as `"project name"` or `"organization id"`.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

/// Checks that `text`, the value of `field`, can be stored by every backend.
///
/// # Errors
/// [`UnstorableText`] naming the field.
pub fn storable(field: &'static str, text: &str) -> Result<(), UnstorableText> {
    if text.contains('\0') {
        return Err(UnstorableText { field });
    }
    Ok(())
}

/// Why a webhook configuration was refused. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL does not parse, or is not absolute.
    #[error("invalid webhook URL: {reason}; give an absolute http:// or https:// URL")]
    InvalidUrl {
        /// What the URL parser said.
        reason: String,
    },
    /// Not `http` or `https`.
    #[error("webhook URLs must use http or https, not `{0}`")]
    UnsupportedUrlScheme(String),
    /// User name or password in the URL: they would leak into logs. Use a custom header.
    #[error("webhook URLs may not contain credentials; send them in a custom header such as Authorization instead")]
    UrlHasCredentials,
    /// A `#fragment`, which is never sent and usually a typo.
    #[error("webhook URLs may not have a #fragment")]
    UrlHasFragment,
    /// Longer than [`MAX_URL_LEN`].
    #[error("the webhook URL is {len} bytes long; the limit is {MAX_URL_LEN}")]
    UrlTooLong {
        /// Its length.
        len: usize,
    },
    /// The URL's host is an address the address guard refuses.
    #[error("the webhook URL points at {host}, in the {range} range, which deliveries may not reach; use a public address, or allow private targets in the address policy for on-premise installs")]
    BlockedAddress {
        /// The host as written.
        host: String,
        /// The range it falls in.
        range: BlockedRange,
    },
    /// An event filter with no types.
    #[error(
        "a webhook must subscribe to at least one event; use EventFilter::All for every event"
    )]
    EmptyEventSet,
    /// An event name that is not a platform event.
    #[error("{0}")]
    UnknownEvent(UnknownEventType),
    /// The test event in a filter.
    #[error("`webhook-test` cannot be subscribed to: send_test reaches a webhook whatever it subscribes to")]
    TestEventNotSubscribable,
    /// A custom header with a name the crate writes itself (see [`RESERVED_HEADERS`]).
    #[error("the header `{0}` is set by the webhook engine and cannot be used as a custom header; choose another name")]
    ReservedHeader(String),
    /// A custom header that is not valid HTTP.
    #[error("invalid custom header `{name}`: {reason}")]
    InvalidHeader {
        /// The header's name, cut short, with control characters escaped.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Two custom headers whose names differ only in letter case.
    #[error("the custom header `{0}` is given twice (header names ignore letter case); keep one")]
    DuplicateHeader(String),
    /// More than [`MAX_CUSTOM_HEADERS`] custom headers.
    #[error("a webhook may have at most {MAX_CUSTOM_HEADERS} custom headers, not {0}")]
    TooManyHeaders(usize),
    /// A description over [`MAX_DESCRIPTION_LEN`] characters.
    #[error("the description is {0} characters long; the limit is {MAX_DESCRIPTION_LEN}")]
    DescriptionTooLong(usize),
    /// A project scope with an empty or overlong name.
    #[error("the project name must be 1 to {MAX_PROJECT_LEN} characters long")]
    InvalidProject,
    /// Text no backend can store (a NUL character), in the named field.
    #[error(transparent)]
    UnstorableText(#[from] UnstorableText),
    /// Standard Webhooks asked of a webhook whose own secret is a plain one.
    #[error("the Standard Webhooks scheme needs a `whsec_` secret or a `whsk_` key; generate one with Secret::generate, or leave that scheme out")]
    SecretNotStandard,
    /// An asymmetric (`whsk_`) key on a webhook whose profile or schemes also ask for the
    /// shared-secret header or a hub signature, which it cannot make.
    #[error("an asymmetric `whsk_` key signs only Standard Webhooks: choose the standard-webhooks scheme alone or the Standard Webhooks profile, or a symmetric secret")]
    SecretAsymmetric,
    /// A rate limit outside 0.001 to 1,000,000 requests a second, or a burst outside 1 to
    /// 1,000,000.
    #[error("invalid rate limit: give a rate of 0.001 to 1000000 requests per second, and a burst of 1 to 1000000")]
    InvalidRateLimit,
}

/// Checks a whole [`NewWebhook`] and returns its parsed URL.
///
/// # Errors
/// The first problem found, in the order URL, scope, events, headers, description, secret.
pub fn new_webhook(new: &NewWebhook, policy: &AddressPolicy) -> Result<Url, WebhookError> {
    let url = url(&new.url, policy)?;
    scope(&new.scope)?;
    event_filter(&new.events)?;
    if let Some(error) = &new.header_error {
        return Err(error.clone());
    }
    description(new.description.as_deref())?;
    secret_fits(new.secret.as_ref(), new.profile, new.schemes)?;
    rate_limit(new.rate_limit.as_ref())?;
    Ok(url)
}

/// Parses and checks a webhook URL: absolute `http`/`https`, no credentials or fragment, and
/// an IP-literal or `localhost` host only where `policy` allows it. Names are checked again
/// at every send, against every address they resolve to.
///
/// # Errors
/// See [`WebhookError`].
pub fn url(text: &str, policy: &AddressPolicy) -> Result<Url, WebhookError> {
    if text.len() > MAX_URL_LEN {
        return Err(WebhookError::UrlTooLong { len: text.len() });
    }
    let url = Url::parse(text.trim()).map_err(|e| WebhookError::InvalidUrl {
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WebhookError::UnsupportedUrlScheme(
            url.scheme().chars().take(32).collect(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::UrlHasCredentials);
    }
    if url.fragment().is_some() {
        return Err(WebhookError::UrlHasFragment);
    }
    let blocked = match url.host() {
        None => {
            return Err(WebhookError::InvalidUrl {
                reason: "the URL has no host".into(),
            })
        }
        Some(Host::Ipv4(ip)) => policy.check(IpAddr::V4(ip)).err(),
        Some(Host::Ipv6(ip)) => policy.check(IpAddr::V6(ip)).err(),
        Some(Host::Domain(name)) => policy.check_name(name).err(),
    };
    match blocked {
        Some(range) => Err(WebhookError::BlockedAddress {
            host: url.host_str().unwrap_or_default().to_owned(),
            range,
        }),
        None => Ok(url),
    }
}

/// Checks a scope: a project name must be 1 to [`MAX_PROJECT_LEN`] characters, without a NUL.
///
/// # Errors
/// [`WebhookError::InvalidProject`]; [`WebhookError::UnstorableText`].
pub fn scope(scope: &Scope) -> Result<(), WebhookError> {
    if let Some(project) = scope.project() {
        storable("project name", project)?;
    }
    match scope.project() {
        Some(p) if p.is_empty() || p.chars().count() > MAX_PROJECT_LEN => {
            Err(WebhookError::InvalidProject)
        }
        _ => Ok(()),
    }
}

/// Checks an event filter: not empty, platform events only.
///
/// # Errors
/// [`WebhookError::EmptyEventSet`] or [`WebhookError::TestEventNotSubscribable`].
pub fn event_filter(filter: &EventFilter) -> Result<(), WebhookError> {
    match filter {
        EventFilter::All => Ok(()),
        EventFilter::Only(types) if types.is_empty() => Err(WebhookError::EmptyEventSet),
        EventFilter::Only(types) if types.contains(&EventType::Test) => {
            Err(WebhookError::TestEventNotSubscribable)
        }
        EventFilter::Only(_) => Ok(()),
    }
}

/// Reads an event name a webhook may subscribe to.
///
/// # Errors
/// [`WebhookError::UnknownEvent`] or [`WebhookError::TestEventNotSubscribable`].
pub fn subscribable(name: &str) -> Result<EventType, WebhookError> {
    match name.parse::<EventType>() {
        Ok(EventType::Test) => Err(WebhookError::TestEventNotSubscribable),
        Ok(t) => Ok(t),
        Err(unknown) => Err(WebhookError::UnknownEvent(unknown)),
    }
}

/// Checks one custom header and returns its name in lower case: a valid HTTP name that is
/// not [reserved](RESERVED_HEADERS), and a value of visible ASCII and spaces, at most
/// [`MAX_HEADER_VALUE_LEN`] bytes. [`CustomHeaders`] runs it on every header it is given, so
/// a [`CustomHeaders`] value never holds a bad one, however it was made.
///
/// # Errors
/// [`WebhookError::InvalidHeader`] (the name quoted with control characters escaped, the value
/// never quoted: it may be a credential) or [`WebhookError::ReservedHeader`].
pub fn header(name: &str, value: &str) -> Result<String, WebhookError> {
    let invalid = |reason| WebhookError::InvalidHeader {
        name: escaped(name, 64),
        reason,
    };
    let Ok(parsed) = http::HeaderName::from_bytes(name.as_bytes()) else {
        return Err(invalid("not a valid header name"));
    };
    let lower = parsed.as_str();
    if is_reserved(lower) {
        return Err(WebhookError::ReservedHeader(lower.to_owned()));
    }
    if value.len() > MAX_HEADER_VALUE_LEN {
        return Err(invalid("the value is longer than 4096 bytes"));
    }
    if http::HeaderValue::from_str(value).is_err() {
        return Err(invalid(
            "the value must be visible ASCII or spaces, without line breaks",
        ));
    }
    Ok(lower.to_owned())
}

/// Whether a header name (any letter case) is one of [`RESERVED_HEADERS`].
pub fn is_reserved(name: &str) -> bool {
    RESERVED_HEADERS.iter().any(|reserved| {
        if reserved.ends_with('-') {
            name.get(..reserved.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(reserved))
        } else {
            name.eq_ignore_ascii_case(reserved)
        }
    })
}

/// A SQL condition, the same in SQLite and PostgreSQL, true when the text `expr` is a
/// reserved header name: what the migrations that clean up stored webhooks match on.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn reserved_header_sql(expr: &str) -> String {
    RESERVED_HEADERS
        .iter()
        .map(|reserved| match reserved.strip_suffix('-') {
            Some(_) => format!("lower({expr}) LIKE '{reserved}%'"),
            None => format!("lower({expr}) = '{reserved}'"),
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// `text` cut to `max` characters with every control character escaped (`\r`, `\n`,
/// `\u{..}`): safe to put in an error message or a log line.
pub(crate) fn escaped(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().take(max) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Checks a description's length and text.
///
/// # Errors
/// [`WebhookError::DescriptionTooLong`]; [`WebhookError::UnstorableText`].
pub fn description(text: Option<&str>) -> Result<(), WebhookError> {
    if let Some(text) = text {
        storable("description", text)?;
    }
    match text.map(|t| t.chars().count()) {
        Some(len) if len > MAX_DESCRIPTION_LEN => Err(WebhookError::DescriptionTooLong(len)),
        _ => Ok(()),
    }
}

/// Checks a rate limit: a rate from 0.001 (one request in about 17 minutes) to 1,000,000 a
/// second, a burst of 1 to 1,000,000.
///
/// # Errors
/// [`WebhookError::InvalidRateLimit`].
pub fn rate_limit(limit: Option<&RateLimit>) -> Result<(), WebhookError> {
    match limit {
        Some(l)
            if !((1e-3..=1e6).contains(&l.per_second) && (1..=1_000_000).contains(&l.burst)) =>
        {
            Err(WebhookError::InvalidRateLimit)
        }
        _ => Ok(()),
    }
}

/// Checks that a webhook's own secret can make the signatures its profile and schemes ask
/// for. (A webhook signed with its organization's secret is checked at each send: the
/// organization's secret may change.)
///
/// # Errors
/// [`WebhookError::SecretNotStandard`]; [`WebhookError::SecretAsymmetric`].
pub fn secret_fits(
    secret: Option<&Secret>,
    profile: HeaderProfile,
    schemes: SignatureSchemes,
) -> Result<(), WebhookError> {
    let Some(secret) = secret else {
        return Ok(());
    };
    match profile.signature(schemes).check(secret) {
        Ok(()) => Ok(()),
        Err(SigningError::AsymmetricKey) => Err(WebhookError::SecretAsymmetric),
        Err(_) => Err(WebhookError::SecretNotStandard),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::signing::SignatureScheme;

    fn guarded(text: &str) -> Result<Url, WebhookError> {
        url(text, &AddressPolicy::default())
    }

    #[test]
    fn good_urls_pass() {
        for text in [
            "https://hooks.example.com/aquarium",
            "http://hooks.example.com:8080/a?b=c",
            "https://[2606:4700::1111]/hook",
            "https://8.8.8.8/hook",
        ] {
            assert!(guarded(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        assert!(matches!(
            guarded("/relative/path"),
            Err(WebhookError::InvalidUrl { .. })
        ));
        assert!(matches!(
            guarded("not a url"),
            Err(WebhookError::InvalidUrl { .. })
        ));
        assert_eq!(
            guarded("ftp://files.example.com/x"),
            Err(WebhookError::UnsupportedUrlScheme("ftp".into()))
        );
        assert_eq!(
            guarded("https://user:pw@example.com/x"),
            Err(WebhookError::UrlHasCredentials)
        );
        assert_eq!(
            guarded("https://example.com/x#frag"),
            Err(WebhookError::UrlHasFragment)
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(
            guarded(&long),
            Err(WebhookError::UrlTooLong { .. })
        ));
    }

    #[test]
    fn private_literals_and_localhost_are_refused_unless_allowed() {
        for text in [
            "http://127.0.0.1:9000/hook",
            "http://10.1.2.3/hook",
            "http://[::1]/hook",
            "http://[::ffff:192.168.0.1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:3000/hook",
            "http://api.localhost/hook",
        ] {
            let err = guarded(text).err();
            assert!(
                matches!(err, Some(WebhookError::BlockedAddress { .. })),
                "{text}: {err:?}"
            );
            assert!(url(text, &AddressPolicy::allow_private()).is_ok(), "{text}");
        }
        let message = guarded("http://169.254.169.254/")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("link-local"), "{message}");
        // Every range reads well after "in the" (no "a IPv4-mapped", "a unspecified").
        for text in ["http://[::ffff:8.8.8.8]/", "http://0.0.0.0/"] {
            let message = guarded(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(", in the "), "{message}");
            assert!(
                !message.contains(" a IPv4") && !message.contains(" a unspecified"),
                "{message}"
            );
        }
    }

    /// Every reserved name, in the spellings an attacker would try.
    pub(crate) fn reserved_spellings() -> Vec<String> {
        let mut names = Vec::new();
        for reserved in RESERVED_HEADERS {
            let name = match reserved.strip_suffix('-') {
                Some(prefix) => format!("{prefix}-Anything"),
                None => (*reserved).to_owned(),
            };
            let title: String = name
                .split('-')
                .map(|part| {
                    let mut chars = part.chars();
                    chars
                        .next()
                        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("-");
            names.push(name.to_ascii_lowercase());
            names.push(name.to_ascii_uppercase());
            names.push(title);
        }
        names
    }

    #[test]
    fn every_reserved_name_is_refused_in_every_letter_case() {
        for name in reserved_spellings() {
            assert!(
                matches!(header(&name, "v"), Err(WebhookError::ReservedHeader(_))),
                "{name}"
            );
            assert!(is_reserved(&name), "{name}");
        }
        for fine in ["authorization", "X-Team", "x-aquarium", "webhook", "proxy"] {
            assert_eq!(header(fine, "v"), Ok(fine.to_ascii_lowercase()), "{fine}");
        }
    }

    #[test]
    fn bad_names_and_values_are_refused_and_quoted_safely() {
        assert!(matches!(
            header("bad name", "v"),
            Err(WebhookError::InvalidHeader { .. })
        ));
        let err = header("x-evil\r\nInjected: 1", "v").err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("x-evil\\r\\nInjected"), "{message}");
        assert!(
            !message.contains('\r') && !message.contains('\n'),
            "{message}"
        );
        let err = header("x-ok", "a\r\nx-evil: 1").err();
        assert!(matches!(err, Some(WebhookError::InvalidHeader { .. })));
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            !message.contains("x-evil"),
            "values are never quoted: {message}"
        );
        assert!(header("x-big", &"v".repeat(MAX_HEADER_VALUE_LEN + 1)).is_err());
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[test]
    fn the_sql_condition_names_every_reserved_header() {
        let sql = reserved_header_sql("k");
        for reserved in RESERVED_HEADERS {
            assert!(sql.contains(reserved), "{reserved}: {sql}");
        }
    }

    #[test]
    fn event_names_and_filters_are_checked() {
        assert_eq!(subscribable("issue-exported"), Ok(EventType::IssueExported));
        assert_eq!(subscribable("issue-update"), Ok(EventType::IssueUpdated));
        assert!(matches!(
            subscribable("label-created"),
            Err(WebhookError::UnknownEvent(_))
        ));
        assert_eq!(
            subscribable("webhook-test"),
            Err(WebhookError::TestEventNotSubscribable)
        );
        assert_eq!(
            EventFilter::from_names(Vec::<String>::new()),
            Err(WebhookError::EmptyEventSet)
        );
        assert_eq!(
            event_filter(&EventFilter::only([EventType::Test])),
            Err(WebhookError::TestEventNotSubscribable)
        );
    }

    #[test]
    fn scope_description_and_secret_are_checked() {
        assert_eq!(
            scope(&Scope::Project(String::new())),
            Err(WebhookError::InvalidProject)
        );
        assert_eq!(scope(&Scope::Organization), Ok(()));
        assert!(description(Some(&"x".repeat(1001))).is_err());
        let plain = Secret::parse("labelbox-style-secret").expect("valid");
        let aquarium = HeaderProfile::Aquarium;
        assert_eq!(
            secret_fits(Some(&plain), aquarium, SignatureSchemes::default()),
            Err(WebhookError::SecretNotStandard)
        );
        let hub = SignatureSchemes::NONE.with(SignatureScheme::HubSignature);
        assert_eq!(secret_fits(Some(&plain), aquarium, hub), Ok(()));
        // Labelbox's profile signs with the hub scheme whatever the schemes say.
        let labelbox = HeaderProfile::Labelbox;
        let short = Secret::import("CHANGE-ME").expect("imported");
        assert_eq!(
            secret_fits(Some(&short), labelbox, SignatureSchemes::default()),
            Ok(())
        );
        assert_eq!(
            secret_fits(Some(&plain), HeaderProfile::StandardWebhooks, hub),
            Err(WebhookError::SecretNotStandard)
        );
        let asymmetric = Secret::generate_asymmetric().expect("random");
        assert_eq!(
            secret_fits(Some(&asymmetric), aquarium, SignatureSchemes::default()),
            Err(WebhookError::SecretAsymmetric)
        );
        assert_eq!(
            secret_fits(Some(&asymmetric), labelbox, hub),
            Err(WebhookError::SecretAsymmetric)
        );
        let standard = SignatureSchemes::NONE.with(SignatureScheme::StandardWebhooks);
        assert_eq!(secret_fits(Some(&asymmetric), aquarium, standard), Ok(()));
        assert_eq!(
            secret_fits(Some(&asymmetric), HeaderProfile::StandardWebhooks, hub),
            Ok(())
        );
    }
}
