//! Signature schemes: the pure functions that sign a body and check a signature.
//!
//! No I/O here. The dispatcher calls [`signature_headers`] once per attempt; the receiver
//! (feature `receiver`) calls the `verify_*` functions. Three schemes exist, chosen per
//! webhook as a [`SignatureSchemes`] set:
//!
//! | scheme | headers | key |
//! |---|---|---|
//! | [`SharedSecret`](SignatureScheme::SharedSecret) | `X-Aquarium-Secret: <secret>` | the secret itself is sent; receivers compare it |
//! | [`StandardWebhooks`](SignatureScheme::StandardWebhooks) | `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` | HMAC-SHA256 of `id.timestamp.body` keyed by the decoded `whsec_` secret |
//! | [`HubSignature`](SignatureScheme::HubSignature) | `X-Hub-Signature: sha1=<hex>`, `X-Hub-Signature-256: sha256=<hex>` | HMAC of the body keyed by the secret's text (Labelbox, GitHub) |
//!
//! A `whsk_` secret (see [`Secret`]) makes the Standard Webhooks signature asymmetric:
//! `v1a,<base64 ed25519 signature of id.timestamp.body>`, which receivers check with the
//! `whpk_` public key. Such a key signs nothing else.
//!
//! The default set is shared secret + Standard Webhooks: the platform's documented receivers
//! (which compare `X-Aquarium-Secret`) keep working, and every Standard Webhooks verifier
//! library works too. During a secret-rotation grace period the Standard Webhooks header
//! carries one signature per valid secret; the other schemes use the newest secret only.
//!
//! A webhook's [`HeaderProfile`] names the id and event headers and, for the profiles of other
//! platforms, fixes the signature:
//!
//! | profile | delivery id | event type | signature |
//! |---|---|---|---|
//! | [`Aquarium`](HeaderProfile::Aquarium) (default) | `X-Aquarium-Delivery` | `X-Aquarium-Event` | the webhook's schemes |
//! | [`Labelbox`](HeaderProfile::Labelbox) | `X-Labelbox-Id` | `X-Labelbox-Event` | `X-Hub-Signature: sha1=…` only |
//! | [`GitHub`](HeaderProfile::GitHub) | `X-GitHub-Delivery` | `X-GitHub-Event` | `X-Hub-Signature-256: sha256=…` only |
//! | [`StandardWebhooks`](HeaderProfile::StandardWebhooks) | `webhook-id` | — | `webhook-timestamp`, `webhook-signature` only |
//!
//! The delivery id is the same across a delivery's retries in every profile.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha1::Sha1;
use sha2::Sha256;

use crate::secret::{PublicKey, Secret};

/// Header of the shared-secret scheme, as the platform's receivers read it.
pub const AQUARIUM_SECRET: &str = "x-aquarium-secret";
/// The delivery id, sent with every scheme; the same across retries of a delivery.
pub const AQUARIUM_DELIVERY: &str = "x-aquarium-delivery";
/// The event type, sent with every scheme.
pub const AQUARIUM_EVENT: &str = "x-aquarium-event";
/// Standard Webhooks: the message id (our delivery id).
pub const WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks: seconds since the Unix epoch when the attempt was signed.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks: space-separated `v1,<base64>` signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// Hub signature with HMAC-SHA1 (Labelbox).
pub const HUB_SIGNATURE: &str = "x-hub-signature";
/// Hub signature with HMAC-SHA256 (GitHub).
pub const HUB_SIGNATURE_256: &str = "x-hub-signature-256";
/// Labelbox profile: the delivery id.
pub const LABELBOX_ID: &str = "x-labelbox-id";
/// Labelbox profile: the event type.
pub const LABELBOX_EVENT: &str = "x-labelbox-event";
/// GitHub profile: the delivery id.
pub const GITHUB_DELIVERY: &str = "x-github-delivery";
/// GitHub profile: the event type.
pub const GITHUB_EVENT: &str = "x-github-event";
/// Every header that carries a delivery id, in the order a receiver looks for one.
pub const DELIVERY_ID_HEADERS: [&str; 4] =
    [WEBHOOK_ID, AQUARIUM_DELIVERY, LABELBOX_ID, GITHUB_DELIVERY];

/// The header conventions a webhook's requests follow: which headers carry the delivery id
/// and the event type, and, for other platforms' conventions, which signature. See the
/// [module docs](self) for the table. Receivers written for those platforms work unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HeaderProfile {
    /// `X-Aquarium-Delivery`, `X-Aquarium-Event`, signed by the webhook's schemes.
    #[default]
    Aquarium,
    /// Labelbox's: `X-Labelbox-Id`, `X-Labelbox-Event`, `X-Hub-Signature: sha1=…`.
    Labelbox,
    /// GitHub's: `X-GitHub-Delivery`, `X-GitHub-Event`, `X-Hub-Signature-256: sha256=…`.
    #[serde(rename = "github")]
    GitHub,
    /// Standard Webhooks only: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    StandardWebhooks,
}

impl HeaderProfile {
    /// Every profile.
    pub const ALL: [HeaderProfile; 4] = [
        Self::Aquarium,
        Self::Labelbox,
        Self::GitHub,
        Self::StandardWebhooks,
    ];

    /// The profile's name in configuration: `aquarium`, `labelbox`, `github`,
    /// `standard-webhooks`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Aquarium => "aquarium",
            Self::Labelbox => "labelbox",
            Self::GitHub => "github",
            Self::StandardWebhooks => "standard-webhooks",
        }
    }

    /// The header carrying the delivery id.
    pub const fn id_header(self) -> &'static str {
        match self {
            Self::Aquarium => AQUARIUM_DELIVERY,
            Self::Labelbox => LABELBOX_ID,
            Self::GitHub => GITHUB_DELIVERY,
            Self::StandardWebhooks => WEBHOOK_ID,
        }
    }

    /// The header carrying the event type, if the profile has one.
    pub const fn event_header(self) -> Option<&'static str> {
        match self {
            Self::Aquarium => Some(AQUARIUM_EVENT),
            Self::Labelbox => Some(LABELBOX_EVENT),
            Self::GitHub => Some(GITHUB_EVENT),
            Self::StandardWebhooks => None,
        }
    }

    /// What signs a request under this profile: the webhook's own `schemes` for the
    /// platform's profile, the profile's fixed choice otherwise.
    pub fn signature(self, schemes: SignatureSchemes) -> Signature {
        match self {
            Self::Aquarium => Signature::Schemes(schemes),
            Self::Labelbox => Signature::HubSha1,
            Self::GitHub => Signature::HubSha256,
            Self::StandardWebhooks => {
                Signature::Schemes(SignatureSchemes::of([SignatureScheme::StandardWebhooks]))
            }
        }
    }
}

impl fmt::Display for HeaderProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for HeaderProfile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProfile(s.chars().take(64).collect()))
    }
}

/// A profile name this crate does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown header profile `{0}`; known profiles are aquarium, labelbox, github, standard-webhooks")]
pub struct UnknownProfile(String);

/// The signature headers a request carries, as its [`HeaderProfile`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signature {
    /// Each scheme of the set, as [`signature_headers`] writes them.
    Schemes(SignatureSchemes),
    /// `X-Hub-Signature: sha1=…` alone (Labelbox).
    HubSha1,
    /// `X-Hub-Signature-256: sha256=…` alone (GitHub).
    HubSha256,
}

impl Signature {
    /// Whether `secret` can make this signature: an asymmetric key makes only Standard
    /// Webhooks signatures, and Standard Webhooks needs a `whsec_` or `whsk_` secret.
    ///
    /// # Errors
    /// The [`SigningError`] a send would meet.
    pub fn check(self, secret: &Secret) -> Result<(), SigningError> {
        let standard = secret.standard_key().is_some() || secret.is_asymmetric();
        match self {
            Self::Schemes(schemes) => {
                if schemes.contains(SignatureScheme::StandardWebhooks) && !standard {
                    return Err(SigningError::NotAStandardSecret);
                }
                let others = schemes.contains(SignatureScheme::SharedSecret)
                    || schemes.contains(SignatureScheme::HubSignature);
                if others && secret.is_asymmetric() {
                    return Err(SigningError::AsymmetricKey);
                }
                Ok(())
            }
            Self::HubSha1 | Self::HubSha256 if secret.is_asymmetric() => {
                Err(SigningError::AsymmetricKey)
            }
            Self::HubSha1 | Self::HubSha256 => Ok(()),
        }
    }

    /// The signature headers for one attempt, as `(lower-case name, value)` pairs.
    ///
    /// # Errors
    /// As [`check`](Self::check).
    pub fn headers(
        self,
        secrets: SigningSecrets<'_>,
        delivery_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, SigningError> {
        match self {
            Self::Schemes(schemes) => {
                signature_headers(schemes, secrets, delivery_id, timestamp, body)
            }
            Self::HubSha1 | Self::HubSha256 => {
                self.check(secrets.current)?;
                let key = secrets.current.hub_key();
                Ok(vec![if self == Self::HubSha1 {
                    (HUB_SIGNATURE, hub_sha1(key, body))
                } else {
                    (HUB_SIGNATURE_256, hub_sha256(key, body))
                }])
            }
        }
    }
}

/// One way of proving to a receiver that a request came from the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// `X-Aquarium-Secret: <secret>`: the receiver compares the header with its copy.
    SharedSecret,
    /// Standard Webhooks v1 (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
    /// `X-Hub-Signature: sha1=…` and `X-Hub-Signature-256: sha256=…`.
    HubSignature,
}

impl SignatureScheme {
    /// Every scheme, in the order their headers are written.
    pub const ALL: [SignatureScheme; 3] = [
        Self::SharedSecret,
        Self::StandardWebhooks,
        Self::HubSignature,
    ];

    /// The scheme's name in configuration: `shared-secret`, `standard-webhooks`,
    /// `hub-signature`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SharedSecret => "shared-secret",
            Self::StandardWebhooks => "standard-webhooks",
            Self::HubSignature => "hub-signature",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Self::SharedSecret => 1,
            Self::StandardWebhooks => 2,
            Self::HubSignature => 4,
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for SignatureScheme {
    type Err = UnknownScheme;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == s)
            .ok_or_else(|| UnknownScheme(s.chars().take(64).collect()))
    }
}

/// A scheme name this crate does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature scheme `{0}`; known schemes are shared-secret, standard-webhooks, hub-signature")]
pub struct UnknownScheme(String);

/// The set of schemes a webhook is signed with. [`Default`] is shared secret + Standard
/// Webhooks; see the [module docs](self).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureSchemes(u8);

impl SignatureSchemes {
    /// No scheme: requests carry no proof of origin. Allowed, but rarely wise.
    pub const NONE: Self = Self(0);

    /// Exactly the given schemes.
    pub fn of(schemes: impl IntoIterator<Item = SignatureScheme>) -> Self {
        Self(schemes.into_iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// This set with `scheme` added.
    #[must_use]
    pub const fn with(self, scheme: SignatureScheme) -> Self {
        Self(self.0 | scheme.bit())
    }

    /// Whether `scheme` is in the set.
    pub const fn contains(self, scheme: SignatureScheme) -> bool {
        self.0 & scheme.bit() != 0
    }

    /// The schemes in the set, in [`SignatureScheme::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = SignatureScheme> {
        SignatureScheme::ALL
            .into_iter()
            .filter(move |s| self.contains(*s))
    }
}

impl Default for SignatureSchemes {
    fn default() -> Self {
        Self::of([
            SignatureScheme::SharedSecret,
            SignatureScheme::StandardWebhooks,
        ])
    }
}

impl fmt::Debug for SignatureSchemes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for SignatureSchemes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(SignatureScheme::as_str))
    }
}

impl<'de> Deserialize<'de> for SignatureSchemes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|n| n.parse::<SignatureScheme>())
            .collect::<Result<Vec<_>, _>>()
            .map(Self::of)
            .map_err(serde::de::Error::custom)
    }
}

/// The secrets that sign one request: the newest first, then any older ones still in their
/// rotation grace period.
#[derive(Debug, Clone, Copy)]
pub struct SigningSecrets<'a> {
    /// The newest secret; the only one the shared-secret and hub schemes use.
    pub current: &'a Secret,
    /// Older secrets still valid; each adds a Standard Webhooks signature.
    pub previous: &'a [Secret],
}

/// Why a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// Standard Webhooks needs a `whsec_` secret (or a `whsk_` key); this webhook's secret is
    /// a plain one.
    #[error("the Standard Webhooks scheme needs a `whsec_` secret or a `whsk_` key, and this webhook's secret is a plain one: generate a new secret or drop the scheme")]
    NotAStandardSecret,
    /// An asymmetric (`whsk_`) key signs only Standard Webhooks; the webhook asks for the
    /// shared-secret header or a hub signature too.
    #[error("an asymmetric `whsk_` key signs only Standard Webhooks: use the standard-webhooks scheme alone (or the Standard Webhooks profile), or a symmetric secret")]
    AsymmetricKey,
}

/// The signature headers for one attempt, as `(lower-case name, value)` pairs in a fixed
/// order. `delivery_id` and `timestamp` (Unix seconds) are those of the attempt.
///
/// # Errors
/// [`SigningError::NotAStandardSecret`] when Standard Webhooks is asked of a plain secret.
pub fn signature_headers(
    schemes: SignatureSchemes,
    secrets: SigningSecrets<'_>,
    delivery_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, SigningError> {
    let mut headers = Vec::with_capacity(4);
    for scheme in schemes.iter() {
        match scheme {
            SignatureScheme::SharedSecret => {
                if secrets.current.is_asymmetric() {
                    return Err(SigningError::AsymmetricKey);
                }
                headers.push((AQUARIUM_SECRET, secrets.current.expose().to_owned()));
            }
            SignatureScheme::StandardWebhooks => {
                let mut value = String::new();
                for secret in std::iter::once(secrets.current).chain(secrets.previous) {
                    if !value.is_empty() {
                        value.push(' ');
                    }
                    if let Some(key) = secret.standard_key() {
                        value.push_str(&standard_signature(key, delivery_id, timestamp, body));
                    } else if let Some(key) = secret.signing_key() {
                        value.push_str(&asymmetric_signature(key, delivery_id, timestamp, body));
                    } else {
                        return Err(SigningError::NotAStandardSecret);
                    }
                }
                headers.push((WEBHOOK_ID, delivery_id.to_owned()));
                headers.push((WEBHOOK_TIMESTAMP, timestamp.to_string()));
                headers.push((WEBHOOK_SIGNATURE, value));
            }
            SignatureScheme::HubSignature => {
                if secrets.current.is_asymmetric() {
                    return Err(SigningError::AsymmetricKey);
                }
                let key = secrets.current.hub_key();
                headers.push((HUB_SIGNATURE, hub_sha1(key, body)));
                headers.push((HUB_SIGNATURE_256, hub_sha256(key, body)));
            }
        }
    }
    Ok(headers)
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, the Standard Webhooks signature.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = standard_mac(key, id, timestamp, body)
        .finalize()
        .into_bytes();
    let mut signature = String::with_capacity(3 + 44);
    signature.push_str("v1,");
    STANDARD.encode_string(digest, &mut signature);
    signature
}

/// `v1a,<base64 ed25519 signature of "{id}.{timestamp}.{body}">`, the Standard Webhooks
/// asymmetric signature.
pub fn asymmetric_signature(
    key: &ed25519_dalek::SigningKey,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    use ed25519_dalek::Signer as _;
    let signature = key.sign(&signed_content(id, timestamp, body));
    let mut text = String::with_capacity(4 + 88);
    text.push_str("v1a,");
    STANDARD.encode_string(signature.to_bytes(), &mut text);
    text
}

/// Checks one `v1a,<base64>` Standard Webhooks asymmetric signature with `key`. Signatures of
/// other versions, and malformed ones, do not match.
pub fn verify_asymmetric(
    key: &PublicKey,
    id: &str,
    timestamp: i64,
    body: &[u8],
    signature: &str,
) -> bool {
    let Some(encoded) = signature.strip_prefix("v1a,") else {
        return false;
    };
    let Ok(bytes) = STANDARD.decode(encoded) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(&bytes);
    key.key()
        .verify_strict(&signed_content(id, timestamp, body), &signature)
        .is_ok()
}

/// The Standard Webhooks signed content `{id}.{timestamp}.{body}`.
fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let timestamp = timestamp.to_string();
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// `sha1=<hex HMAC-SHA1 of body>`, the `X-Hub-Signature` value.
pub fn hub_sha1(key: &[u8], body: &[u8]) -> String {
    let mut mac = hmac_sha1(key);
    mac.update(body);
    prefixed_hex("sha1=", &mac.finalize().into_bytes())
}

/// `sha256=<hex HMAC-SHA256 of body>`, the `X-Hub-Signature-256` value.
pub fn hub_sha256(key: &[u8], body: &[u8]) -> String {
    let mut mac = hmac_sha256(key);
    mac.update(body);
    prefixed_hex("sha256=", &mac.finalize().into_bytes())
}

/// `prefix` then `digest` in lower-case hex, in one allocation.
fn prefixed_hex(prefix: &str, digest: &[u8]) -> String {
    let mut text = String::with_capacity(prefix.len() + 2 * digest.len());
    text.push_str(prefix);
    for byte in digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

/// Checks one `v1,<base64>` Standard Webhooks signature in constant time. Signatures of
/// other versions, and malformed ones, do not match.
pub fn verify_standard(key: &[u8], id: &str, timestamp: i64, body: &[u8], signature: &str) -> bool {
    let Some(encoded) = signature.strip_prefix("v1,") else {
        return false;
    };
    let Ok(expected) = STANDARD.decode(encoded) else {
        return false;
    };
    standard_mac(key, id, timestamp, body)
        .verify_slice(&expected)
        .is_ok()
}

/// Checks an `X-Hub-Signature` (`sha1=<hex>`) or `X-Hub-Signature-256` (`sha256=<hex>`)
/// value in constant time.
pub fn verify_hub(key: &[u8], body: &[u8], header: &str) -> bool {
    let (mut mac, hex_digest): (Box<dyn HubMac>, &str) =
        if let Some(h) = header.strip_prefix("sha256=") {
            (Box::new(hmac_sha256(key)), h)
        } else if let Some(h) = header.strip_prefix("sha1=") {
            (Box::new(hmac_sha1(key)), h)
        } else {
            return false;
        };
    let Ok(expected) = hex::decode(hex_digest.trim()) else {
        return false;
    };
    mac.feed(body);
    mac.check(&expected)
}

/// The two hub MACs behind one face, so [`verify_hub`] has one code path.
trait HubMac {
    fn feed(&mut self, data: &[u8]);
    fn check(self: Box<Self>, expected: &[u8]) -> bool;
}

impl<M: Mac> HubMac for M {
    fn feed(&mut self, data: &[u8]) {
        self.update(data);
    }
    fn check(self: Box<Self>, expected: &[u8]) -> bool {
        self.verify_slice(expected).is_ok()
    }
}

/// The MAC over the Standard Webhooks signed content `{id}.{timestamp}.{body}`.
fn standard_mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = hmac_sha256(key);
    for part in [
        id.as_bytes(),
        b".",
        timestamp.to_string().as_bytes(),
        b".",
        body,
    ] {
        mac.update(part);
    }
    mac
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn hmac_sha1(key: &[u8]) -> Hmac<Sha1> {
    <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> Vec<u8> {
        Secret::parse(secret)
            .ok()
            .and_then(|s| s.standard_key().map(<[u8]>::to_vec))
            .expect("whsec secret")
    }

    #[test]
    fn standard_webhooks_published_vectors() {
        let vectors = [
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                r#"{"test": 2432232314}"#,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            (
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                r#"{"email":"test@example.com","username":"test_user"}"#,
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ];
        for (secret, id, ts, body, expected) in vectors {
            let key = key(secret);
            assert_eq!(standard_signature(&key, id, ts, body.as_bytes()), expected);
            assert!(verify_standard(&key, id, ts, body.as_bytes(), expected));
            assert!(!verify_standard(
                &key,
                id,
                ts + 1,
                body.as_bytes(),
                expected
            ));
            assert!(!verify_standard(&key, id, ts, b"{}", expected));
            assert!(!verify_standard(
                &key,
                id,
                ts,
                body.as_bytes(),
                &expected.replace("v1,", "v2,")
            ));
        }
    }

    #[test]
    fn github_published_vector() {
        let key = b"It's a Secret to Everybody";
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(hub_sha256(key, b"Hello, World!"), expected);
        assert!(verify_hub(key, b"Hello, World!", expected));
        assert!(!verify_hub(key, b"Hello, World?", expected));
        assert!(!verify_hub(b"another key", b"Hello, World!", expected));
    }

    #[test]
    fn sha1_hub_signature_matches_a_known_hmac() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = hub_sha1(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        assert!(verify_hub(b"Jefe", b"what do ya want for nothing?", &sig));
        assert!(!verify_hub(
            b"Jefe",
            b"what do ya want for nothing?",
            "md5=00"
        ));
        assert!(!verify_hub(
            b"Jefe",
            b"what do ya want for nothing?",
            "sha1=zz"
        ));
    }

    #[test]
    fn one_standard_signature_per_valid_secret_during_rotation() {
        let new = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let old = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("valid");
        let secrets = SigningSecrets {
            current: &new,
            previous: std::slice::from_ref(&old),
        };
        let all = SignatureSchemes::of(SignatureScheme::ALL);
        let headers =
            signature_headers(all, secrets, "dlv_1", 1_700_000_000, b"{}").expect("signs");
        let names: Vec<_> = headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                AQUARIUM_SECRET,
                WEBHOOK_ID,
                WEBHOOK_TIMESTAMP,
                WEBHOOK_SIGNATURE,
                HUB_SIGNATURE,
                HUB_SIGNATURE_256
            ]
        );
        assert_eq!(
            headers[0].1,
            new.expose(),
            "the shared secret is the newest one"
        );
        let signatures: Vec<&str> = headers[3].1.split(' ').collect();
        assert_eq!(signatures.len(), 2);
        let keys = [key(new.expose()), key(old.expose())];
        for (sig, key) in signatures.iter().zip(&keys) {
            assert!(verify_standard(key, "dlv_1", 1_700_000_000, b"{}", sig));
        }
        assert_eq!(headers[4].1, hub_sha1(new.hub_key(), b"{}"));
    }

    #[test]
    fn a_plain_secret_cannot_sign_standard_webhooks() {
        let plain = Secret::parse("labelbox-style-secret").expect("valid");
        let secrets = SigningSecrets {
            current: &plain,
            previous: &[],
        };
        let standard = SignatureSchemes::NONE.with(SignatureScheme::StandardWebhooks);
        assert_eq!(
            signature_headers(standard, secrets, "id", 1, b"").err(),
            Some(SigningError::NotAStandardSecret)
        );
        let hub = SignatureSchemes::NONE.with(SignatureScheme::HubSignature);
        assert!(signature_headers(hub, secrets, "id", 1, b"").is_ok());
    }

    #[test]
    fn scheme_sets_round_trip_through_serde_and_refuse_unknown_names() {
        let set = SignatureSchemes::default();
        let json = serde_json::to_string(&set).expect("serializes");
        assert_eq!(json, r#"["shared-secret","standard-webhooks"]"#);
        assert_eq!(
            serde_json::from_str::<SignatureSchemes>(&json).ok(),
            Some(set)
        );
        let err = serde_json::from_str::<SignatureSchemes>(r#"["rot13"]"#).err();
        assert!(err
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("rot13"));
    }

    /// RFC 8032, test 1: the seed, and the public key it must give.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn rfc_key() -> Secret {
        let seed = hex::decode(RFC8032_SEED).expect("hex");
        Secret::import(format!("whsk_{}", STANDARD.encode(seed))).expect("whsk_ key")
    }

    #[test]
    fn a_whsk_key_gives_the_rfc_8032_public_key() {
        let public = rfc_key().public_key().expect("asymmetric");
        let expected = hex::decode(RFC8032_PUBLIC).expect("hex");
        assert_eq!(
            public.to_string(),
            format!("whpk_{}", STANDARD.encode(expected))
        );
        assert_eq!(PublicKey::parse(&public.to_string()), Ok(public));
    }

    #[test]
    fn v1a_signs_and_verifies_and_refuses_any_change() {
        let secret = rfc_key();
        let key = secret.signing_key().expect("asymmetric");
        let public = secret.public_key().expect("asymmetric");
        let (id, ts, body) = (
            "dlv_1",
            1_714_564_800,
            br#"{"event":"webhook-test"}"#.as_slice(),
        );
        let signature = asymmetric_signature(key, id, ts, body);
        assert!(signature.starts_with("v1a,"), "{signature}");
        assert_eq!(signature.len(), 4 + 88, "64 signature bytes in base64");
        assert!(verify_asymmetric(&public, id, ts, body, &signature));
        // Deterministic (ed25519 has no random nonce): the same input, the same signature.
        assert_eq!(asymmetric_signature(key, id, ts, body), signature);
        assert!(
            !verify_asymmetric(&public, "dlv_2", ts, body, &signature),
            "another id"
        );
        assert!(
            !verify_asymmetric(&public, id, ts + 1, body, &signature),
            "another time"
        );
        assert!(
            !verify_asymmetric(&public, id, ts, b"{}", &signature),
            "another body"
        );
        let other = Secret::generate_asymmetric().expect("random");
        let other = other.public_key().expect("asymmetric");
        assert!(
            !verify_asymmetric(&other, id, ts, body, &signature),
            "another key"
        );
        for bad in [
            "v1,abc",
            "v1a,not base64!",
            "v1a,AAAA",
            &signature.replacen("v1a", "v1", 1),
        ] {
            assert!(!verify_asymmetric(&public, id, ts, body, bad), "{bad}");
        }
    }

    #[test]
    fn rotation_from_symmetric_to_asymmetric_sends_v1_and_v1a() {
        let new = rfc_key();
        let old = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let secrets = SigningSecrets {
            current: &new,
            previous: std::slice::from_ref(&old),
        };
        let standard = SignatureSchemes::of([SignatureScheme::StandardWebhooks]);
        let headers =
            signature_headers(standard, secrets, "dlv_1", 1_714_564_800, b"{}").expect("signs");
        let value = headers
            .iter()
            .find(|(n, _)| *n == WEBHOOK_SIGNATURE)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let parts: Vec<&str> = value.split(' ').collect();
        assert_eq!(parts.len(), 2, "{value}");
        assert!(
            parts[0].starts_with("v1a,") && parts[1].starts_with("v1,"),
            "{value}"
        );
        let public = new.public_key().expect("asymmetric");
        assert!(verify_asymmetric(
            &public,
            "dlv_1",
            1_714_564_800,
            b"{}",
            parts[0]
        ));
        assert!(verify_standard(
            old.standard_key().unwrap_or_default(),
            "dlv_1",
            1_714_564_800,
            b"{}",
            parts[1]
        ));
    }

    #[test]
    fn an_asymmetric_key_signs_nothing_but_standard_webhooks() {
        let secret = rfc_key();
        let secrets = SigningSecrets {
            current: &secret,
            previous: &[],
        };
        for scheme in [SignatureScheme::SharedSecret, SignatureScheme::HubSignature] {
            assert_eq!(
                signature_headers(SignatureSchemes::of([scheme]), secrets, "d", 1, b""),
                Err(SigningError::AsymmetricKey),
                "{scheme}"
            );
        }
        for profile in [HeaderProfile::Labelbox, HeaderProfile::GitHub] {
            assert_eq!(
                profile
                    .signature(SignatureSchemes::default())
                    .headers(secrets, "d", 1, b""),
                Err(SigningError::AsymmetricKey),
                "{profile}"
            );
        }
        let standard = HeaderProfile::StandardWebhooks.signature(SignatureSchemes::default());
        assert!(standard.headers(secrets, "d", 1, b"").is_ok());
    }

    #[test]
    fn profiles_sign_as_their_platforms_do() {
        let secret = Secret::import("CHANGE-ME").expect("any text imports");
        let secrets = SigningSecrets {
            current: &secret,
            previous: &[],
        };
        let body = br#"{"a":1}"#;
        let labelbox = HeaderProfile::Labelbox
            .signature(SignatureSchemes::default())
            .headers(secrets, "d", 1, body)
            .expect("signs");
        assert_eq!(
            labelbox,
            vec![(HUB_SIGNATURE, hub_sha1(b"CHANGE-ME", body))]
        );
        let github = HeaderProfile::GitHub
            .signature(SignatureSchemes::default())
            .headers(secrets, "d", 1, body)
            .expect("signs");
        assert_eq!(
            github,
            vec![(HUB_SIGNATURE_256, hub_sha256(b"CHANGE-ME", body))]
        );
        assert_eq!(
            HeaderProfile::StandardWebhooks
                .signature(SignatureSchemes::default())
                .headers(secrets, "d", 1, body),
            Err(SigningError::NotAStandardSecret)
        );
        for profile in HeaderProfile::ALL {
            assert_eq!(profile.as_str().parse::<HeaderProfile>(), Ok(profile));
            let json = serde_json::to_string(&profile).expect("json");
            assert_eq!(json, format!("\"{}\"", profile.as_str()));
        }
    }
}
