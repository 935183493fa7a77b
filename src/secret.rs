//! Signing secrets: generation, parsing and redaction.
//!
//! A [`Secret`] is the text a customer is shown once and pastes into their receiver. Secrets
//! this crate generates have the Standard Webhooks form `whsec_<base64 of 32 random bytes>`;
//! a secret a user chose (Labelbox lets users pick any string) is kept as typed.
//!
//! Which bytes key the HMAC depends on the scheme, as each scheme's verifiers expect:
//! - Standard Webhooks: the base64-decoded part after `whsec_` ([`Secret::standard_key`]);
//! - hub signatures (`X-Hub-Signature`): the secret's text, as GitHub and Labelbox do;
//! - the shared-secret header (`X-Aquarium-Secret`): the secret's text is the header value.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// How many random bytes a generated secret holds (256 bits, as HMAC-SHA256 keys should).
const GENERATED_KEY_BYTES: usize = 32;
/// The shortest secret accepted from a user: shorter ones are guessable.
pub const MIN_SECRET_LEN: usize = 16;
/// The longest secret accepted from a user: it is sent in a header by the shared-secret scheme.
pub const MAX_SECRET_LEN: usize = 512;

/// A webhook signing secret. `Debug` and `Display` never show it; [`expose`](Self::expose)
/// does, for the one time it is shown to the user and for the shared-secret header.
#[derive(Clone)]
pub struct Secret {
    text: String,
    /// The decoded Standard Webhooks key, decoded once rather than at every signature.
    standard_key: Option<Vec<u8>>,
}

impl Secret {
    /// A new secret from the operating system's cryptographic random number generator, in
    /// the form `whsec_<base64>`.
    ///
    /// # Errors
    /// When the operating system cannot supply random bytes (this does not happen on a
    /// working system; the error is returned rather than a weak secret made).
    pub fn generate() -> Result<Self, SecretError> {
        let mut key = [0u8; GENERATED_KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
        Ok(Self {
            text: format!("{SECRET_PREFIX}{}", STANDARD.encode(key)),
            standard_key: Some(key.to_vec()),
        })
    }

    /// Reads a secret a user typed or a host stored.
    ///
    /// A `whsec_` secret must carry valid base64 after the prefix (it keys Standard Webhooks
    /// signatures). Any other text is accepted as a plain secret when it is 16 to 512
    /// printable ASCII characters, so it can travel in a header.
    ///
    /// # Errors
    /// [`SecretError::TooShort`], [`SecretError::TooLong`], [`SecretError::NotPrintable`] or
    /// [`SecretError::BadBase64`]; the error never repeats the secret.
    pub fn parse(text: impl Into<String>) -> Result<Self, SecretError> {
        let text = text.into();
        if text.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                min: MIN_SECRET_LEN,
            });
        }
        if text.len() > MAX_SECRET_LEN {
            return Err(SecretError::TooLong {
                max: MAX_SECRET_LEN,
            });
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecretError::NotPrintable);
        }
        let standard_key = match text.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => match STANDARD.decode(encoded) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => return Err(SecretError::BadBase64),
            },
            None => None,
        };
        Ok(Self { text, standard_key })
    }

    /// The secret's text: show it to the user once, or send it as the shared-secret header.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The HMAC key of the Standard Webhooks scheme: the decoded bytes after `whsec_`, or
    /// `None` for a plain secret (which cannot sign that scheme).
    pub fn standard_key(&self) -> Option<&[u8]> {
        self.standard_key.as_deref()
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
}
