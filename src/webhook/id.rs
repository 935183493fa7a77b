//! Identifiers: time-ordered UUIDv7 with a readable prefix (`wh_…`, `dlv_…`, `evt_…`), and
//! the organization's id as the host names it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A map keyed by ids this crate makes (webhook, delivery and event ids), for the maps an
/// attempt touches in memory: the worker's bookkeeping, the in-memory queue, the outcome
/// waiters. Their keys are fixed-size UUIDs (made by this crate, or read back from a store),
/// not text of any length a caller chose, so they are hashed with foldhash, seeded per
/// process, instead of SipHash. SipHash took about 5% of the
/// in-memory sender's instructions per delivery (about 50 lookups each); foldhash cut the
/// total by 2.6%.
pub(crate) type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A set of ids this crate makes; see [`IdMap`].
pub(crate) type IdSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// An id that does not read as the kind expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a {kind} id: expected `{prefix}` followed by 32 hex digits")]
pub struct BadId {
    text: String,
    kind: &'static str,
    prefix: &'static str,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// The id's text prefix.
            pub const PREFIX: &'static str = $prefix;

            /// A new id; ids made later sort after ids made earlier.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The UUID inside, for stores that keep a native UUID column.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The id of a stored UUID.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Encoded on the stack: ids are formatted for every delivery's headers.
                let mut hex = [0u8; 32];
                f.write_str(Self::PREFIX)?;
                f.write_str(self.0.simple().encode_lower(&mut hex))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = BadId;

            fn from_str(s: &str) -> Result<Self, BadId> {
                s.strip_prefix(Self::PREFIX)
                    .filter(|hex| hex.len() == 32)
                    .and_then(|hex| Uuid::try_parse(hex).ok())
                    .map(Self)
                    .ok_or_else(|| BadId {
                        text: s.chars().take(80).collect(),
                        kind: $kind,
                        prefix: Self::PREFIX,
                    })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// A webhook's id, such as `wh_0192f3c4…`.
    WebhookId,
    "wh_",
    "webhook"
);
prefixed_id!(
    /// A delivery's id: one event to one webhook. It is the Standard Webhooks `webhook-id`
    /// and the `X-Aquarium-Delivery` header, and stays the same across retries, so receivers
    /// can drop duplicates by it.
    DeliveryId,
    "dlv_",
    "delivery"
);
prefixed_id!(
    /// An emitted event's id, shared by all its deliveries.
    EventId,
    "evt_",
    "event"
);

/// An organization, as the host application names it. Webhooks and signing secrets belong
/// to one. A host with a single organization can ignore it: the dispatcher's default is
/// `"default"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgId(String);

impl OrgId {
    /// An organization id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for OrgId {
    fn default() -> Self {
        Self::new("default")
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl From<&str> for OrgId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for OrgId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_sort_by_creation() {
        let first = WebhookId::new();
        let second = WebhookId::new();
        assert!(first < second);
        let text = first.to_string();
        assert!(text.starts_with("wh_") && text.len() == 35, "{text}");
        assert_eq!(text.parse::<WebhookId>(), Ok(first));
    }

    #[test]
    fn an_id_of_another_kind_is_refused() {
        let delivery = DeliveryId::new().to_string();
        let err = delivery.parse::<WebhookId>().err();
        assert!(err
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("not a webhook id"));
        assert!("wh_xyz".parse::<WebhookId>().is_err());
    }
}
