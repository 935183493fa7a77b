//! Serde helpers shared by the event types.
//!
//! Everything here is about the wire format only: how timestamps are written and read, why a
//! non-finite float is refused, how `null` collections are read, and the "known values plus
//! `Other`" string enums that keep a newer platform's values instead of failing on them.

use std::collections::BTreeMap;

use serde::{de, ser, Deserialize, Deserializer, Serialize, Serializer};

/// Timestamps: RFC 3339 in UTC on output; on input exactly RFC 3339 or the naive ISO form,
/// years 0001 to 9999 in UTC, so everything read is written back in a form read again.
pub(crate) mod timestamp {
    use std::fmt;

    use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, Utc};
    use serde::{de, Deserializer, Serializer};

    /// Writes `2024-05-01T12:00:00Z`, with as many fractional digits (0, 3, 6 or 9) as the
    /// value needs, so every instant round-trips exactly.
    pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(TimestampVisitor)
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS`, then an optional fraction of 1 to 9 digits, then an
    /// offset (`Z` or `±HH:MM`: RFC 3339, converted to UTC) or none (the naive form Python's
    /// `datetime.isoformat()` prints, read as UTC). A space may stand for the `T`. The instant
    /// must fall in the years 0001 to 9999 in UTC, the range the output form can write.
    pub(crate) fn parse(s: &str) -> Option<DateTime<Utc>> {
        let offset = shape(s.as_bytes())?;
        let t = if offset {
            DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc)
        } else {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
                .ok()?
                .and_utc()
        };
        (1..=9999).contains(&t.year()).then_some(t)
    }

    /// Checks the text's shape digit by digit (chrono's `%Y` and `%m` alone would take
    /// `4-3-18`, a sign or a five-digit year); says whether it ends in an offset.
    fn shape(b: &[u8]) -> Option<bool> {
        let digits = |range: std::ops::Range<usize>| {
            b.get(range)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        };
        let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
        let date_time = digits(0..4)
            && at(4, b"-")
            && digits(5..7)
            && at(7, b"-")
            && digits(8..10)
            && at(10, b"Tt ")
            && digits(11..13)
            && at(13, b":")
            && digits(14..16)
            && at(16, b":")
            && digits(17..19);
        if !date_time {
            return None;
        }
        let mut i = 19;
        if at(i, b".") {
            let fraction = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if !(1..=9).contains(&fraction) {
                return None;
            }
            i += 1 + fraction;
        }
        match b.get(i..)? {
            [] => Some(false),
            [b'Z' | b'z'] => Some(true),
            [b'+' | b'-', h1, h2, b':', m1, m2]
                if [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) =>
            {
                Some(true)
            }
            _ => None,
        }
    }

    struct TimestampVisitor;

    impl de::Visitor<'_> for TimestampVisitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "an RFC 3339 timestamp such as \"2024-05-01T12:00:00Z\" (or without an offset, \
                 read as UTC) in the years 0001 to 9999",
            )
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn exactly_the_documented_forms_are_read() {
            for good in [
                "2024-05-01T12:00:00Z",
                "2024-05-01t12:00:00z",
                "2024-05-01 12:00:00Z",
                "2024-05-01T12:00:00.5+02:00",
                "2024-05-01T12:00:00.123456789-05:30",
                "2024-05-01T12:00:00.123456",
                "2024-05-01 12:00:00",
                "0001-01-01T00:00:00Z",
                "0001-01-01T00:00:00-00:01",
                "9999-12-31T23:59:59.999999999Z",
                "9999-12-31T23:59:59+01:00",
            ] {
                assert!(parse(good).is_some(), "{good}");
            }
            for bad in [
                "4-3-181:1:00",
                "-0001-03-18T10:01:02",
                "+10000-01-01T00:00:00Z",
                "0000-01-01T00:00:00+00:01",
                "0000-12-31T23:59:59Z",
                "9999-12-31T23:59:59-00:01",
                "2024-05-01",
                "2024-5-01T12:00:00Z",
                "2024-05-01T12:00Z",
                "2024-05-01T12:00:00.Z",
                "2024-05-01T12:00:00.1234567890Z",
                "2024-05-01T12:00:00+0200",
                "2024-05-01T12:00:00 Z",
                "2024-05-01T12:00:00Zjunk",
                "2024-13-01T12:00:00Z",
                "",
            ] {
                assert_eq!(parse(bad), None, "{bad}");
            }
        }

        #[test]
        fn what_is_read_is_written_in_a_form_read_again() {
            for text in [
                "0001-01-01T00:00:00Z",
                "0001-01-01T01:00:00+01:00",
                "9999-12-31T23:59:59.999999999Z",
                "9999-12-31T22:59:59-01:00",
                "2024-05-01 12:00:00.5",
            ] {
                let t = parse(text).expect(text);
                let written = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
                assert_eq!(parse(&written), Some(t), "{text} -> {written}");
            }
        }
    }
}

/// Refuses NaN and infinities when serializing.
///
/// JSON has no spelling for them and serde_json would silently write `null`, which the same
/// schema then refuses to read back: an error at emit time is better than a payload that no
/// receiver can parse.
pub(crate) fn finite<T, S>(value: &T, s: S) -> Result<S::Ok, S::Error>
where
    T: Floats + Serialize,
    S: Serializer,
{
    value.check_finite().map_err(non_finite::<S::Error>)?;
    value.serialize(s)
}

pub(crate) fn non_finite<E: ser::Error>(v: f64) -> E {
    E::custom(format_args!(
        "cannot serialize the number {v}: JSON has no NaN or infinity"
    ))
}

/// Values that may hold floats, checked before they are written.
pub(crate) trait Floats {
    /// The first non-finite float found, if any.
    fn check_finite(&self) -> Result<(), f64>;
}

impl Floats for f64 {
    fn check_finite(&self) -> Result<(), f64> {
        if self.is_finite() {
            Ok(())
        } else {
            Err(*self)
        }
    }
}

impl<T: Floats> Floats for Option<T> {
    fn check_finite(&self) -> Result<(), f64> {
        self.as_ref().map_or(Ok(()), Floats::check_finite)
    }
}

impl<T: Floats> Floats for Vec<T> {
    fn check_finite(&self) -> Result<(), f64> {
        self.iter().try_for_each(Floats::check_finite)
    }
}

impl<K, T: Floats> Floats for BTreeMap<K, T> {
    fn check_finite(&self) -> Result<(), f64> {
        self.values().try_for_each(Floats::check_finite)
    }
}

/// Serializes a reference through [`finite`], for hand-written `Serialize` impls.
pub(crate) struct Finite<'a, T>(pub(crate) &'a T);

impl<T: Floats + Serialize> Serialize for Finite<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        finite(self.0, s)
    }
}

/// A timestamp as a value of its own, for hand-written (de)serializers and map values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timestamp(pub(crate) chrono::DateTime<chrono::Utc>);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        timestamp::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        timestamp::deserialize(d).map(Self)
    }
}

/// Stores a field's value, refusing a second occurrence of the same key.
pub(crate) fn set_once<T, E: de::Error>(
    slot: &mut Option<T>,
    name: &'static str,
    value: T,
) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(name));
    }
    Ok(())
}

/// A map that keeps the keys an entity does not type (an open map).
pub(crate) trait OpenMap {
    type Value;
    fn contains(&self, key: &str) -> bool;
    fn put(&mut self, key: String, value: Self::Value);
}

impl OpenMap for serde_json::Map<String, serde_json::Value> {
    type Value = serde_json::Value;
    fn contains(&self, key: &str) -> bool {
        self.contains_key(key)
    }
    fn put(&mut self, key: String, value: serde_json::Value) {
        self.insert(key, value);
    }
}

impl<V> OpenMap for BTreeMap<String, V> {
    type Value = V;
    fn contains(&self, key: &str) -> bool {
        self.contains_key(key)
    }
    fn put(&mut self, key: String, value: V) {
        self.insert(key, value);
    }
}

/// Stores a key of an open map, refusing a second occurrence: a JSON object that repeats a key
/// is ambiguous, and silently keeping one of the values would lose data.
pub(crate) fn insert_once<M: OpenMap, E: de::Error>(
    map: &mut M,
    key: String,
    value: M::Value,
) -> Result<(), E> {
    if map.contains(&key) {
        return Err(E::custom(format_args!("duplicate field `{key}`")));
    }
    map.put(key, value);
    Ok(())
}

/// Reads a list or map that may be absent or `null` as empty.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Declares a string enum whose wire values are listed, plus an `Other(String)` variant that
/// keeps any value a newer platform version sends, so it parses and is written back unchanged.
macro_rules! open_string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version of the crate does not know, kept as sent.
            Other(String),
        }

        impl $name {
            /// The value as written on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Other(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $( $wire => Self::$variant, )+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str($crate::event::wire::StrVisitor::new(
                    concat!("a ", stringify!($name), " string"),
                    |s: &str| Self::from(s),
                ))
            }
        }
    };
}
pub(crate) use open_string_enum;

/// A visitor that turns any JSON string into a value with a plain function, without
/// allocating for borrowed input.
pub(crate) struct StrVisitor<F> {
    expecting: &'static str,
    convert: F,
}

impl<F> StrVisitor<F> {
    pub(crate) fn new(expecting: &'static str, convert: F) -> Self {
        Self { expecting, convert }
    }
}

impl<T, F: FnOnce(&str) -> T> de::Visitor<'_> for StrVisitor<F> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok((self.convert)(v))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::timestamp::parse;

    #[test]
    fn parses_rfc3339_with_any_offset_into_utc() {
        let expected = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).single();
        assert_eq!(parse("2024-05-01T12:00:00Z"), expected);
        assert_eq!(parse("2024-05-01T14:00:00+02:00"), expected);
        assert_eq!(parse("2024-05-01T12:00:00.000+00:00"), expected);
    }

    #[test]
    fn reads_naive_iso_timestamps_as_utc() {
        let expected = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).single();
        assert_eq!(parse("2024-05-01T12:00:00"), expected);
        assert_eq!(parse("2024-05-01 12:00:00.000000"), expected);
    }

    #[test]
    fn refuses_what_is_not_a_timestamp() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "1714564800",
            "2024-05-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?} should not parse");
        }
    }
}
