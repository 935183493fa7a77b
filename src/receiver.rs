//! The receiving side: check that a request came from the platform, then read its event.
//!
//! Enabled by the `receiver` feature, which needs neither tokio nor reqwest: a receiver built
//! on any HTTP server passes the request headers (`http::HeaderMap`) and the raw body bytes.
//!
//! ```
//! use dataops_webhooks::receiver::Verifier;
//! use dataops_webhooks::secret::Secret;
//! use dataops_webhooks::signing;
//! use http::HeaderMap;
//!
//! let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let body = br#"{"event":"webhook-test","project":"p","test":{"message":"hi","sent_at":"2024-05-01T12:00:00Z"}}"#;
//! // What the platform sent, signed at Unix time 1714564800:
//! let key = secret.standard_key().unwrap_or_default();
//! let mut headers = HeaderMap::new();
//! headers.insert("webhook-id", "dlv_1".parse()?);
//! headers.insert("webhook-timestamp", "1714564800".parse()?);
//! headers.insert("webhook-signature", signing::standard_signature(key, "dlv_1", 1714564800, body).parse()?);
//!
//! let verifier = Verifier::new(secret).with_clock(|| 1714564800 + 30);
//! let received = verifier.receive(&headers, body)?;
//! assert_eq!(received.delivery_id.as_deref(), Some("dlv_1"));
//! assert_eq!(received.event.project(), "p");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A request may carry several schemes' headers. The verifier checks the strongest one it
//! accepts that is present — Standard Webhooks (signed, replay-limited), then
//! `X-Hub-Signature-256`, `X-Hub-Signature`, and last the shared-secret header — and that
//! one must pass: a bad signature is not rescued by a weaker scheme.
//!
//! Standard Webhooks signatures are `v1,…` (HMAC, with a `whsec_` secret) or `v1a,…`
//! (ed25519, checked with the sender's `whpk_` public key: [`Verifier::public_key`]); one
//! matching signature among those listed is enough. Requests made with the Labelbox or GitHub
//! [profile](crate::signing::HeaderProfile) verify by their hub signature.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use crate::secret::{PublicKey, Secret};
use crate::signing::{
    self, SignatureScheme, SignatureSchemes, AQUARIUM_SECRET, DELIVERY_ID_HEADERS, HUB_SIGNATURE,
    HUB_SIGNATURE_256, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
};
use crate::{Event, EventType, ParseError};

/// The default Standard Webhooks timestamp tolerance: five minutes either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The default largest body [`Verifier::receive`] reads.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Checks requests against one or more secrets or public keys (several during a rotation).
#[derive(Clone)]
#[must_use]
pub struct Verifier {
    secrets: Vec<Secret>,
    public_keys: Vec<PublicKey>,
    schemes: SignatureSchemes,
    tolerance: Duration,
    max_body_bytes: usize,
    clock: Clock,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.secrets.len())
            .field("public_keys", &self.public_keys)
            .field("schemes", &self.schemes)
            .field("tolerance", &self.tolerance)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `secret` that accepts every scheme, with a five-minute tolerance and
    /// the system clock. An asymmetric (`whsk_`) secret verifies with its public key.
    pub fn new(secret: Secret) -> Self {
        Self::with_keys(Vec::new(), Vec::new()).also_accept(secret)
    }

    /// A verifier of Standard Webhooks asymmetric (`v1a`) signatures made with the key whose
    /// public half is `key` — what a receiver is given instead of a secret.
    pub fn public_key(key: PublicKey) -> Self {
        Self::with_keys(Vec::new(), vec![key])
    }

    fn with_keys(secrets: Vec<Secret>, public_keys: Vec<PublicKey>) -> Self {
        Self {
            secrets,
            public_keys,
            schemes: SignatureSchemes::of(SignatureScheme::ALL),
            tolerance: DEFAULT_TOLERANCE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            clock: Arc::new(unix_now),
        }
    }

    /// Also accepts `secret`: keep the old one here while the platform rotates.
    pub fn also_accept(mut self, secret: Secret) -> Self {
        match secret.public_key() {
            Some(key) => self.public_keys.push(key),
            None => self.secrets.push(secret),
        }
        self
    }

    /// Also accepts `v1a` signatures made with the key whose public half is `key`.
    pub fn also_accept_public_key(mut self, key: PublicKey) -> Self {
        self.public_keys.push(key);
        self
    }

    /// Accepts only these schemes. A request with none of their headers is refused with
    /// [`VerifyError::MissingSignature`].
    pub fn schemes(mut self, schemes: SignatureSchemes) -> Self {
        self.schemes = schemes;
        self
    }

    /// How far a Standard Webhooks timestamp may be from now (default five minutes).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The largest body [`receive`](Self::receive) accepts (default 16 MiB).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Uses `clock` (Unix seconds) instead of the system clock, for tests and replays.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the request's signature and returns the scheme that proved it.
    ///
    /// # Errors
    /// A [`VerifyError`] saying what failed.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<SignatureScheme, VerifyError> {
        let accepts = |s| self.schemes.contains(s);
        if accepts(SignatureScheme::StandardWebhooks) && headers.contains_key(WEBHOOK_SIGNATURE) {
            return self.verify_standard(headers, body);
        }
        if accepts(SignatureScheme::HubSignature) {
            for name in [HUB_SIGNATURE_256, HUB_SIGNATURE] {
                if let Some(value) = headers.get(name) {
                    let value = text(name, value)?;
                    return if self
                        .secrets
                        .iter()
                        .any(|s| signing::verify_hub(s.hub_key(), body, value))
                    {
                        Ok(SignatureScheme::HubSignature)
                    } else {
                        Err(VerifyError::BadSignature(SignatureScheme::HubSignature))
                    };
                }
            }
        }
        if accepts(SignatureScheme::SharedSecret) {
            if let Some(value) = headers.get(AQUARIUM_SECRET) {
                return if self.secrets.iter().any(|s| s.ct_eq(value.as_bytes())) {
                    Ok(SignatureScheme::SharedSecret)
                } else {
                    Err(VerifyError::BadSignature(SignatureScheme::SharedSecret))
                };
            }
        }
        Err(VerifyError::MissingSignature)
    }

    fn verify_standard(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<SignatureScheme, VerifyError> {
        let id = required(headers, WEBHOOK_ID)?;
        let timestamp_text = required(headers, WEBHOOK_TIMESTAMP)?;
        let signatures = required(headers, WEBHOOK_SIGNATURE)?;
        let timestamp: i64 =
            timestamp_text
                .trim()
                .parse()
                .map_err(|_| VerifyError::InvalidHeader {
                    header: WEBHOOK_TIMESTAMP,
                    reason: "not a whole number of seconds",
                })?;
        let now = (self.clock)();
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if now.saturating_sub(timestamp) > tolerance {
            return Err(VerifyError::TimestampTooOld {
                age_secs: now.saturating_sub(timestamp),
            });
        }
        if timestamp.saturating_sub(now) > tolerance {
            return Err(VerifyError::TimestampInFuture {
                ahead_secs: timestamp.saturating_sub(now),
            });
        }
        let keys: Vec<&[u8]> = self
            .secrets
            .iter()
            .filter_map(Secret::standard_key)
            .collect();
        if keys.is_empty() && self.public_keys.is_empty() {
            return Err(VerifyError::NoStandardSecret);
        }
        // Space-separated `v1,…` (HMAC) and `v1a,…` (ed25519) signatures: one match is enough.
        let valid = signatures.split(' ').any(|signature| {
            keys.iter()
                .any(|key| signing::verify_standard(key, id, timestamp, body, signature))
                || self
                    .public_keys
                    .iter()
                    .any(|key| signing::verify_asymmetric(key, id, timestamp, body, signature))
        });
        if valid {
            Ok(SignatureScheme::StandardWebhooks)
        } else {
            Err(VerifyError::BadSignature(SignatureScheme::StandardWebhooks))
        }
    }

    /// Verifies the request, then reads its body as an [`Event`], with its delivery id (the
    /// same across retries: drop duplicates by it) and the scheme that proved it.
    ///
    /// # Errors
    /// [`ReceiveError::BodyTooLarge`] (checked first, so a huge body costs nothing),
    /// [`ReceiveError::Verify`], or [`ReceiveError::Parse`].
    pub fn receive(&self, headers: &HeaderMap, body: &[u8]) -> Result<Received, ReceiveError> {
        if body.len() > self.max_body_bytes {
            return Err(ReceiveError::BodyTooLarge {
                actual: body.len(),
                limit: self.max_body_bytes,
            });
        }
        let scheme = self.verify(headers, body)?;
        let event = Event::from_slice(body)?;
        let delivery_id = DELIVERY_ID_HEADERS
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
            .map(str::to_owned);
        Ok(Received {
            delivery_id,
            event_type: event.event_type(),
            scheme,
            event,
        })
    }
}

/// A verified request, read: what [`Verifier::receive`] returns.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Received {
    /// The delivery id from whichever header carries it (`webhook-id`,
    /// `X-Aquarium-Delivery`, `X-Labelbox-Id`, `X-GitHub-Delivery`, in that order); `None`
    /// when the request has none.
    pub delivery_id: Option<String>,
    /// The event's type.
    pub event_type: EventType,
    /// The scheme whose signature proved the request.
    pub scheme: SignatureScheme,
    /// The event.
    pub event: Event,
}

impl Received {
    /// The event alone.
    pub fn into_event(self) -> Event {
        self.event
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn required<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    let value = headers.get(name).ok_or(VerifyError::MissingHeader(name))?;
    text(name, value)
}

fn text<'a>(name: &'static str, value: &'a http::HeaderValue) -> Result<&'a str, VerifyError> {
    value.to_str().map_err(|_| VerifyError::InvalidHeader {
        header: name,
        reason: "not visible ASCII",
    })
}

/// Why a request's signature was refused. Answer all of them with 401 (or 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// None of the accepted schemes' headers is present.
    #[error("the request carries no signature of an accepted scheme")]
    MissingSignature,
    /// A header the scheme needs is missing.
    #[error("the `{0}` header is missing")]
    MissingHeader(&'static str),
    /// A header is malformed.
    #[error("the `{header}` header is invalid: {reason}")]
    InvalidHeader {
        /// The header.
        header: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The Standard Webhooks timestamp is older than the tolerance: a replay, or a clock off.
    #[error("the webhook timestamp is {age_secs} s old, beyond the tolerance: a replayed request, or a wrong clock")]
    TimestampTooOld {
        /// How old.
        age_secs: i64,
    },
    /// The Standard Webhooks timestamp is ahead of now by more than the tolerance.
    #[error("the webhook timestamp is {ahead_secs} s in the future, beyond the tolerance: check the clocks")]
    TimestampInFuture {
        /// How far ahead.
        ahead_secs: i64,
    },
    /// Standard Webhooks headers arrived, but no configured secret is a `whsec_` one.
    #[error("the request is signed with Standard Webhooks, which needs a `whsec_` secret; none is configured")]
    NoStandardSecret,
    /// The signature (or shared secret) does not match any configured secret.
    #[error("the {0} signature does not match: the request was not sent with this secret, or the body was changed")]
    BadSignature(SignatureScheme),
}

/// Why [`Verifier::receive`] refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The body is larger than the verifier accepts.
    #[error("the body is {actual} bytes; the limit is {limit}")]
    BodyTooLarge {
        /// Its size.
        actual: usize,
        /// The limit.
        limit: usize,
    },
    /// The signature check failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Verified, but the body is not a valid event.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const TS: i64 = 1_614_265_330;

    fn secret(text: &str) -> Secret {
        Secret::parse(text).expect("valid secret")
    }

    fn standard_headers(signature: &str, timestamp: i64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            WEBHOOK_ID,
            HeaderValue::from_static("msg_p5jXN8AQM9LWM0D4loKWxJek"),
        );
        h.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        h.insert(
            WEBHOOK_SIGNATURE,
            HeaderValue::from_str(signature).expect("ascii"),
        );
        h
    }

    fn at(now: i64) -> Verifier {
        Verifier::new(secret(SECRET)).with_clock(move || now)
    }

    const VECTOR: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn standard_webhooks_vector_verifies_within_tolerance() {
        let headers = standard_headers(VECTOR, TS);
        assert_eq!(
            at(TS).verify(&headers, BODY),
            Ok(SignatureScheme::StandardWebhooks)
        );
        assert_eq!(
            at(TS + 300).verify(&headers, BODY),
            Ok(SignatureScheme::StandardWebhooks)
        );
        assert_eq!(
            at(TS + 301).verify(&headers, BODY),
            Err(VerifyError::TimestampTooOld { age_secs: 301 })
        );
        assert_eq!(
            at(TS - 301).verify(&headers, BODY),
            Err(VerifyError::TimestampInFuture { ahead_secs: 301 })
        );
        let wide = at(TS + 3600).tolerance(Duration::from_secs(7200));
        assert!(wide.verify(&headers, BODY).is_ok());
    }

    #[test]
    fn any_listed_signature_passes_and_unknown_versions_are_ignored() {
        let headers = standard_headers(&format!("v2,abc v1,Zm9v {VECTOR}"), TS);
        assert!(at(TS).verify(&headers, BODY).is_ok());
        let only_bad = standard_headers("v1,Zm9v v2,abc", TS);
        assert_eq!(
            at(TS).verify(&only_bad, BODY),
            Err(VerifyError::BadSignature(SignatureScheme::StandardWebhooks))
        );
    }

    #[test]
    fn tampered_body_and_wrong_secret_fail() {
        let headers = standard_headers(VECTOR, TS);
        assert!(at(TS).verify(&headers, b"{\"test\": 1}").is_err());
        let other =
            Verifier::new(secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")).with_clock(|| TS);
        assert!(other.verify(&headers, BODY).is_err());
        let rotated = other.also_accept(secret(SECRET));
        assert!(rotated.verify(&headers, BODY).is_ok());
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let mut headers = standard_headers(VECTOR, TS);
        headers.remove(WEBHOOK_ID);
        assert_eq!(
            at(TS).verify(&headers, BODY),
            Err(VerifyError::MissingHeader(WEBHOOK_ID))
        );
        let mut headers = standard_headers(VECTOR, TS);
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from_static("yesterday"));
        assert!(matches!(
            at(TS).verify(&headers, BODY),
            Err(VerifyError::InvalidHeader {
                header: WEBHOOK_TIMESTAMP,
                ..
            })
        ));
        assert_eq!(
            at(TS).verify(&HeaderMap::new(), BODY),
            Err(VerifyError::MissingSignature)
        );
    }

    #[test]
    fn hub_and_shared_secret_schemes() {
        let plain = secret("labelbox-style-secret");
        let verifier = Verifier::new(plain.clone());
        let mut headers = HeaderMap::new();
        headers.insert(
            HUB_SIGNATURE,
            HeaderValue::from_str(&signing::hub_sha1(plain.hub_key(), BODY)).expect("ascii"),
        );
        assert_eq!(
            verifier.verify(&headers, BODY),
            Ok(SignatureScheme::HubSignature)
        );
        assert!(verifier.verify(&headers, b"other").is_err());

        let mut shared = HeaderMap::new();
        shared.insert(
            AQUARIUM_SECRET,
            HeaderValue::from_static("labelbox-style-secret"),
        );
        assert_eq!(
            verifier.verify(&shared, BODY),
            Ok(SignatureScheme::SharedSecret)
        );
        shared.insert(
            AQUARIUM_SECRET,
            HeaderValue::from_static("labelbox-style-secreT"),
        );
        assert_eq!(
            verifier.verify(&shared, BODY),
            Err(VerifyError::BadSignature(SignatureScheme::SharedSecret))
        );
        let standard_only = Verifier::new(plain)
            .schemes(SignatureSchemes::NONE.with(SignatureScheme::StandardWebhooks));
        assert_eq!(
            standard_only.verify(&shared, BODY),
            Err(VerifyError::MissingSignature)
        );
    }

    #[test]
    fn a_bad_strong_signature_is_not_rescued_by_a_weaker_scheme() {
        let mut headers = standard_headers("v1,Zm9v", TS);
        headers.insert(AQUARIUM_SECRET, HeaderValue::from_static(SECRET));
        assert_eq!(
            at(TS).verify(&headers, BODY),
            Err(VerifyError::BadSignature(SignatureScheme::StandardWebhooks))
        );
    }

    #[test]
    fn receive_checks_size_then_signature_then_body() {
        let verifier = at(TS).max_body_bytes(10);
        let headers = standard_headers(VECTOR, TS);
        assert!(matches!(
            verifier.receive(&headers, BODY),
            Err(ReceiveError::BodyTooLarge { limit: 10, .. })
        ));
        // A valid signature over a body that is not an event.
        assert!(matches!(
            at(TS).receive(&headers, BODY),
            Err(ReceiveError::Parse(_))
        ));
    }
}
