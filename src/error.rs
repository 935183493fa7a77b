//! The crate's error types.

#[cfg(feature = "dispatch")]
use std::error::Error as StdError;
use std::fmt;

use crate::EventType;

/// How much of a value taken from a payload an error message repeats: a hostile payload must
/// not turn into a megabyte-long log line.
const QUOTE_LIMIT: usize = 200;

/// An `event` string this version of the crate does not know.
///
/// Returned by [`EventType::from_str`](crate::EventType) and inside
/// [`ParseError::UnknownEvent`]. A receiver usually answers it with "not handled" rather than
/// an error: a newer platform may send event types this crate does not know yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type `{}`; known types are {}", Quoted(&self.name), KnownTypes)]
pub struct UnknownEventType {
    name: String,
}

impl UnknownEventType {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// The event type as it was received.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Why a webhook payload could not be read as an [`Event`](crate::Event).
///
/// Returned by [`Event::from_slice`](crate::Event::from_slice). Every variant says what is
/// wrong in its message; [`path`](Self::path) and [`line`](Self::line) locate it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is not well-formed JSON (or ends too early).
    #[error("webhook payload is not valid JSON at line {line}, column {column}: {reason}")]
    Syntax {
        /// What is wrong, without the position.
        reason: String,
        /// 1-based line of the fault.
        line: usize,
        /// 1-based column of the fault.
        column: usize,
        /// The JSON parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The `event` is not a type this crate knows.
    #[error("{0}")]
    UnknownEvent(UnknownEventType),
    /// The JSON is well-formed but does not match the event's schema.
    #[error("invalid webhook payload {}: {reason}", Location(path))]
    Invalid {
        /// Where the fault is, as a path from the top of the payload such as
        /// `issue.elements[3].frame_data.label_data[0].uuid`; `.` is the envelope itself.
        path: String,
        /// What is wrong, without the position.
        reason: String,
        /// The JSON parser's error, with the line and column.
        #[source]
        source: serde_json::Error,
    },
}

impl ParseError {
    /// Where in the payload the fault is, for [`Invalid`](Self::Invalid).
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The 1-based line of the fault, when it has a position.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Syntax { line, .. } => Some(*line),
            Self::Invalid { source, .. } => Some(source.line()),
            Self::UnknownEvent(_) => None,
        }
    }

    /// Builds the error for a failed parse, from the parser's error and the path it was at.
    pub(crate) fn from_json(path: String, source: serde_json::Error) -> Self {
        let full = source.to_string();
        let position = format!(" at line {} column {}", source.line(), source.column());
        let reason = Quoted(full.strip_suffix(&position).unwrap_or(&full)).to_string();
        if source.is_syntax() || source.is_eof() || source.is_io() {
            Self::Syntax {
                reason,
                line: source.line(),
                column: source.column(),
                source,
            }
        } else {
            Self::Invalid {
                path,
                reason,
                source,
            }
        }
    }
}

/// Every event type's wire name, from [`EventType`] itself so the message cannot drift.
struct KnownTypes;

impl fmt::Display for KnownTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = EventType::PLATFORM.into_iter().chain([EventType::Test]);
        for (i, event_type) in all.enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(event_type.as_str())?;
        }
        Ok(())
    }
}

struct Location<'a>(&'a str);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            "" | "." => f.write_str("envelope"),
            path => write!(f, "at `{path}`"),
        }
    }
}

/// Text from a payload, cut short past [`QUOTE_LIMIT`] characters.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(QUOTE_LIMIT) {
            Some((cut, _)) => write!(f, "{}… ({} bytes in all)", &self.0[..cut], self.0.len()),
            None => f.write_str(self.0),
        }
    }
}

#[cfg(feature = "dispatch")]
/// An error and every cause under it. An `io::Error`'s `source()` skips the error it wraps
/// (where rustls and hyper put theirs), so this descends into the wrapped error instead.
pub(crate) fn causes<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e: &&'a (dyn StdError + 'static)| match e
        .downcast_ref::<std::io::Error>()
    {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

#[cfg(feature = "dispatch")]
/// An error and its causes, joined: reqwest's own message alone rarely says what happened.
pub(crate) fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = String::new();
    for e in causes(error) {
        let part = e.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_unknown_name_is_cut_short_in_the_message() {
        let name = "x".repeat(10_000);
        let err = UnknownEventType::new(name.clone());
        let message = err.to_string();
        assert!(message.len() < 600, "{} bytes", message.len());
        assert!(message.contains("10000 bytes in all"), "{message}");
        assert_eq!(err.name(), name);
    }

    #[test]
    fn quoting_cuts_on_a_character_boundary() {
        let text = "é".repeat(QUOTE_LIMIT + 1);
        let shown = Quoted(&text).to_string();
        assert!(shown.starts_with(&"é".repeat(QUOTE_LIMIT)));
        assert!(shown.contains('…'));
    }
}
