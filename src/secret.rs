//! Signing secrets: generation, parsing, importing and redaction; and the public keys of
//! asymmetric ones.
//!
//! A [`Secret`] is the text a customer is shown once and pastes into their receiver. Three
//! kinds exist, told apart by their text:
//!
//! | kind | text | signs |
//! |---|---|---|
//! | Standard Webhooks symmetric | `whsec_<base64 key>` (generated: 32 random bytes) | every scheme; Standard Webhooks `v1` with the decoded key |
//! | plain | any other printable text (Labelbox lets users pick any string) | the shared-secret header and hub signatures (keyed by the text) |
//! | Standard Webhooks asymmetric | `whsk_<base64 ed25519 seed>` | Standard Webhooks `v1a` only; receivers get its [`PublicKey`] (`whpk_…`) |
//!
//! Which bytes key the HMAC depends on the scheme, as each scheme's verifiers expect:
//! - Standard Webhooks: the base64-decoded part after `whsec_` ([`Secret::standard_key`]);
//! - hub signatures (`X-Hub-Signature`): the secret's text, as GitHub and Labelbox do;
//! - the shared-secret header (`X-Aquarium-Secret`): the secret's text is the header value.
//!
//! [`Secret::parse`] is for secrets typed into the platform: at least [`MIN_SECRET_LEN`]
//! characters, since shorter ones are guessable. [`Secret::import`] is for secrets that
//! already exist at a receiver (a platform moving endpoints over keeps their secrets): any
//! non-empty printable text. The length rule is then advice, not a refusal.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use subtle::ConstantTimeEq;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The prefix of a Standard Webhooks asymmetric signing key (ed25519).
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
/// The prefix of a Standard Webhooks public key (ed25519).
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// How many random bytes a generated secret holds (256 bits, as HMAC-SHA256 keys should).
const GENERATED_KEY_BYTES: usize = 32;
/// The shortest secret [`Secret::parse`] accepts: shorter ones are guessable. Advice only for
/// [`Secret::import`].
pub const MIN_SECRET_LEN: usize = 16;
/// The longest secret accepted: it is sent in a header by the shared-secret scheme.
pub const MAX_SECRET_LEN: usize = 512;

/// What a secret's text makes it.
#[derive(Clone)]
enum Key {
    /// `whsec_`: the decoded HMAC key.
    Standard(Vec<u8>),
    /// Any other text: keys hub signatures and is the shared-secret header.
    Plain,
    /// `whsk_`: an ed25519 signing key.
    Asymmetric(Box<SigningKey>),
}

/// A webhook signing secret. `Debug` and `Display` never show it; [`expose`](Self::expose)
/// does, for the one time it is shown to the user and for the shared-secret header.
#[derive(Clone)]
pub struct Secret {
    text: String,
    /// Decoded once rather than at every signature.
    key: Key,
}

impl Secret {
    /// A new secret from the operating system's cryptographic random number generator, in
    /// the form `whsec_<base64>`.
    ///
    /// # Errors
    /// When the operating system cannot supply random bytes (this does not happen on a
    /// working system; the error is returned rather than a weak secret made).
    pub fn generate() -> Result<Self, SecretError> {
        let key = random_bytes()?;
        Ok(Self {
            text: format!("{SECRET_PREFIX}{}", STANDARD.encode(key)),
            key: Key::Standard(key.to_vec()),
        })
    }

    /// A new ed25519 signing key, `whsk_<base64 of its 32-byte seed>`, for Standard Webhooks
    /// asymmetric (`v1a`) signatures. Give receivers its [`public_key`](Self::public_key).
    ///
    /// # Errors
    /// As [`generate`](Self::generate).
    pub fn generate_asymmetric() -> Result<Self, SecretError> {
        let seed = random_bytes()?;
        Ok(Self {
            text: format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(seed)),
            key: Key::Asymmetric(Box::new(SigningKey::from_bytes(&seed))),
        })
    }

    /// Reads a secret a user typed into the platform: [`import`](Self::import)'s rules, and
    /// at least [`MIN_SECRET_LEN`] characters.
    ///
    /// # Errors
    /// [`SecretError::TooShort`], or as [`import`](Self::import); the error never repeats
    /// the secret.
    pub fn parse(text: impl Into<String>) -> Result<Self, SecretError> {
        let text = text.into();
        if text.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                min: MIN_SECRET_LEN,
            });
        }
        Self::import(text)
    }

    /// Takes over a secret that already exists at a receiver, whatever its length: any
    /// non-empty text of up to [`MAX_SECRET_LEN`] printable ASCII characters without spaces
    /// (it may travel in a header). A `whsec_` secret must carry base64 after the prefix, a
    /// `whsk_` key the base64 of a 32-byte ed25519 seed (or of the 64-byte seed and public
    /// key). Short secrets are guessable: prefer generated ones for new endpoints.
    ///
    /// # Errors
    /// [`SecretError::Empty`], [`SecretError::TooLong`], [`SecretError::NotPrintable`],
    /// [`SecretError::BadBase64`] or [`SecretError::BadSigningKey`]; the error never repeats
    /// the secret.
    pub fn import(text: impl Into<String>) -> Result<Self, SecretError> {
        let text = text.into();
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        if text.len() > MAX_SECRET_LEN {
            return Err(SecretError::TooLong {
                max: MAX_SECRET_LEN,
            });
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecretError::NotPrintable);
        }
        let key = if let Some(encoded) = text.strip_prefix(SECRET_PREFIX) {
            match STANDARD.decode(encoded) {
                Ok(key) if !key.is_empty() => Key::Standard(key),
                _ => return Err(SecretError::BadBase64),
            }
        } else if let Some(encoded) = text.strip_prefix(SIGNING_KEY_PREFIX) {
            Key::Asymmetric(Box::new(signing_key(encoded)?))
        } else {
            Key::Plain
        };
        Ok(Self { text, key })
    }

    /// The secret's text: show it to the user once, or send it as the shared-secret header.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The HMAC key of the Standard Webhooks scheme: the decoded bytes after `whsec_`, or
    /// `None` for a plain secret or an asymmetric key.
    pub fn standard_key(&self) -> Option<&[u8]> {
        match &self.key {
            Key::Standard(key) => Some(key),
            _ => None,
        }
    }

    /// Whether this is an asymmetric (`whsk_`) signing key: it signs Standard Webhooks `v1a`
    /// and nothing else.
    pub fn is_asymmetric(&self) -> bool {
        matches!(self.key, Key::Asymmetric(_))
    }

    /// The public key of an asymmetric secret, to give receivers; `None` for symmetric ones.
    pub fn public_key(&self) -> Option<PublicKey> {
        match &self.key {
            Key::Asymmetric(key) => Some(PublicKey(key.verifying_key())),
            _ => None,
        }
    }

    /// The ed25519 signing key of an asymmetric secret.
    pub(crate) fn signing_key(&self) -> Option<&SigningKey> {
        match &self.key {
            Key::Asymmetric(key) => Some(key),
            _ => None,
        }
    }

    /// The HMAC key of the hub-signature schemes: the secret's text as bytes.
    pub fn hub_key(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// Compares with `other` in time independent of where they differ.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.text.as_bytes().ct_eq(other).into()
    }
}

fn random_bytes() -> Result<[u8; GENERATED_KEY_BYTES], SecretError> {
    let mut key = [0u8; GENERATED_KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(key)
}

/// The signing key in the base64 after `whsk_`: a 32-byte seed, or 64 bytes of seed and
/// public key (which must belong together).
fn signing_key(encoded: &str) -> Result<SigningKey, SecretError> {
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| SecretError::BadSigningKey)?;
    match bytes.len() {
        32 => {
            let seed: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadSigningKey)?;
            Ok(SigningKey::from_bytes(&seed))
        }
        64 => {
            let pair: [u8; 64] = bytes.try_into().map_err(|_| SecretError::BadSigningKey)?;
            SigningKey::from_keypair_bytes(&pair).map_err(|_| SecretError::BadSigningKey)
        }
        _ => Err(SecretError::BadSigningKey),
    }
}

/// A Standard Webhooks public key, `whpk_<base64 of the 32-byte ed25519 key>`: what a
/// receiver of asymmetric (`v1a`) signatures holds. Not a secret: `Debug` and `Display`
/// show it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads `whpk_<base64>`.
    ///
    /// # Errors
    /// [`SecretError::BadPublicKey`] when the text is not a `whpk_` ed25519 public key.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let bytes = text
            .strip_prefix(PUBLIC_KEY_PREFIX)
            .and_then(|encoded| STANDARD.decode(encoded).ok())
            .ok_or(SecretError::BadPublicKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadPublicKey)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| SecretError::BadPublicKey)
    }

    /// The ed25519 verifying key.
    pub(crate) fn key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PUBLIC_KEY_PREFIX}{}",
            STANDARD.encode(self.0.as_bytes())
        )
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other.text.as_bytes())
    }
}

impl Eq for Secret {}

/// Why a secret was refused. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No text at all.
    #[error("the secret is empty")]
    Empty,
    /// Starts with `whsk_` but is not the base64 of an ed25519 key.
    #[error("the secret starts with `whsk_` but the rest is not the base64 of a 32-byte ed25519 seed (or of the 64-byte seed and public key)")]
    BadSigningKey,
    /// Not a `whpk_` ed25519 public key.
    #[error("not a Standard Webhooks public key: expected `whpk_` and the base64 of a 32-byte ed25519 key")]
    BadPublicKey,
    /// Shorter than [`MIN_SECRET_LEN`].
    #[error("the secret is too short: use at least {min} characters")]
    TooShort {
        /// The least length accepted.
        min: usize,
    },
    /// Longer than [`MAX_SECRET_LEN`].
    #[error("the secret is too long: use at most {max} characters")]
    TooLong {
        /// The greatest length accepted.
        max: usize,
    },
    /// Holds spaces, control or non-ASCII characters.
    #[error("the secret must be printable ASCII without spaces")]
    NotPrintable,
    /// Starts with `whsec_` but what follows is not base64.
    #[error("the secret starts with `whsec_` but the rest is not valid base64")]
    BadBase64,
    /// The operating system's random number generator failed.
    #[error("could not generate a secret: the system random number generator failed: {0}")]
    Random(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_whsec_with_32_key_bytes_and_differ() {
        let a = Secret::generate().expect("random");
        let b = Secret::generate().expect("random");
        assert!(a.expose().starts_with(SECRET_PREFIX));
        assert_eq!(a.standard_key().map(<[u8]>::len), Some(32));
        assert_ne!(a, b);
        assert_eq!(Secret::parse(a.expose()).expect("reparse"), a);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::parse("a-user-chosen-secret-value").expect("valid");
        let shown = format!("{secret:?}");
        assert!(!shown.contains("user-chosen"), "{shown}");
    }

    #[test]
    fn plain_secrets_sign_hub_schemes_only() {
        let secret = Secret::parse("a-user-chosen-secret-value").expect("valid");
        assert!(secret.standard_key().is_none());
        assert_eq!(secret.hub_key(), b"a-user-chosen-secret-value");
    }

    #[test]
    fn bad_secrets_are_refused_without_repeating_them() {
        assert_eq!(
            Secret::parse("short").err(),
            Some(SecretError::TooShort { min: 16 })
        );
        assert_eq!(
            Secret::parse("x".repeat(513)).err(),
            Some(SecretError::TooLong { max: 512 })
        );
        assert_eq!(
            Secret::parse("has a space in the middle").err(),
            Some(SecretError::NotPrintable)
        );
        let bad = Secret::parse("whsec_not*base64*at*all!").err();
        assert_eq!(bad, Some(SecretError::BadBase64));
        assert!(!bad
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("not*base64"));
    }

    #[test]
    fn imported_secrets_may_be_short_but_not_empty_or_unprintable() {
        let short = Secret::import("CHANGE-ME").expect("Labelbox's sample secret");
        assert_eq!(short.expose(), "CHANGE-ME");
        assert!(short.standard_key().is_none() && !short.is_asymmetric());
        assert_eq!(
            Secret::parse("CHANGE-ME").err(),
            Some(SecretError::TooShort { min: 16 })
        );
        assert_eq!(Secret::import("").err(), Some(SecretError::Empty));
        assert_eq!(
            Secret::import("two words").err(),
            Some(SecretError::NotPrintable)
        );
        assert_eq!(
            Secret::import("x".repeat(513)).err(),
            Some(SecretError::TooLong { max: 512 })
        );
        assert_eq!(
            Secret::import("whsec_*").err(),
            Some(SecretError::BadBase64)
        );
    }

    #[test]
    fn asymmetric_keys_read_from_a_seed_or_a_keypair_and_nothing_else() {
        let generated = Secret::generate_asymmetric().expect("random");
        assert!(generated.expose().starts_with(SIGNING_KEY_PREFIX));
        assert!(generated.is_asymmetric() && generated.standard_key().is_none());
        let public = generated.public_key().expect("a public key");
        let again = Secret::import(generated.expose()).expect("reads back");
        assert_eq!(again.public_key(), Some(public));
        // The 64-byte form: seed then public key, as libsodium writes it.
        let seed = STANDARD
            .decode(&generated.expose()[SIGNING_KEY_PREFIX.len()..])
            .expect("base64");
        let mut pair = seed.clone();
        pair.extend_from_slice(
            &STANDARD
                .decode(&public.to_string()[PUBLIC_KEY_PREFIX.len()..])
                .expect("base64"),
        );
        let from_pair = Secret::import(format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(&pair)))
            .expect("keypair form");
        assert_eq!(from_pair.public_key(), Some(public));
        pair[40] ^= 1; // a public half that does not belong to the seed
        assert_eq!(
            Secret::import(format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(&pair))).err(),
            Some(SecretError::BadSigningKey)
        );
        for bad in ["whsk_", "whsk_AAAA", "whsk_***"] {
            assert_eq!(
                Secret::import(bad).err(),
                Some(SecretError::BadSigningKey),
                "{bad}"
            );
        }
        assert_eq!(
            PublicKey::parse("whpk_AAAA"),
            Err(SecretError::BadPublicKey)
        );
        assert_eq!(
            PublicKey::parse(generated.expose()),
            Err(SecretError::BadPublicKey)
        );
        assert!(!format!("{generated:?}").contains(&generated.expose()[6..]));
    }
}
