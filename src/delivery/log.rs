//! The link between an attempt's result and its entry in the delivery log.

use chrono::{DateTime, Utc};
use http::StatusCode;

use super::outcome::AttemptResult;
use crate::queue::{AttemptErrorKind, AttemptLog};
use crate::transport::{TransportError, TransportErrorKind};

/// The log's kind of a transport failure.
fn logged_kind(kind: TransportErrorKind) -> AttemptErrorKind {
    match kind {
        TransportErrorKind::Timeout => AttemptErrorKind::Timeout,
        TransportErrorKind::Connect => AttemptErrorKind::Connect,
        TransportErrorKind::Dns => AttemptErrorKind::Dns,
        TransportErrorKind::Tls => AttemptErrorKind::Tls,
        TransportErrorKind::BlockedAddress => AttemptErrorKind::BlockedAddress,
        TransportErrorKind::ResponseTooLarge => AttemptErrorKind::ResponseTooLarge,
        TransportErrorKind::InvalidRequest => AttemptErrorKind::InvalidRequest,
        _ => AttemptErrorKind::Other,
    }
}

/// The transport failure a logged kind stands for, when it is one.
fn transport_kind(kind: AttemptErrorKind) -> TransportErrorKind {
    match kind {
        AttemptErrorKind::Timeout => TransportErrorKind::Timeout,
        AttemptErrorKind::Connect => TransportErrorKind::Connect,
        AttemptErrorKind::Dns => TransportErrorKind::Dns,
        AttemptErrorKind::Tls => TransportErrorKind::Tls,
        AttemptErrorKind::BlockedAddress => TransportErrorKind::BlockedAddress,
        AttemptErrorKind::ResponseTooLarge => TransportErrorKind::ResponseTooLarge,
        AttemptErrorKind::InvalidRequest => TransportErrorKind::InvalidRequest,
        _ => TransportErrorKind::Other,
    }
}

impl AttemptLog {
    /// The log entry of an attempt that started at `attempted_at`.
    pub fn of(result: &AttemptResult, attempted_at: DateTime<Utc>) -> Self {
        match result {
            AttemptResult::Delivered {
                status,
                body,
                duration,
            } => Self::new(attempted_at, Some(status.as_u16()))
                .duration(*duration)
                .response(body.clone()),
            AttemptResult::Rejected {
                status,
                body,
                duration,
            } => Self::new(attempted_at, Some(status.as_u16()))
                .duration(*duration)
                .response(body.clone())
                .failed(
                    AttemptErrorKind::HttpStatus,
                    format!("the endpoint answered {status}"),
                ),
            AttemptResult::Failed(error) => {
                Self::new(attempted_at, error.status().map(|s| s.as_u16()))
                    .duration(error.duration().unwrap_or_default())
                    .failed(logged_kind(error.kind()), error.message())
            }
            AttemptResult::Misconfigured { message } => Self::new(attempted_at, None)
                .failed(AttemptErrorKind::Misconfigured, message.clone()),
            AttemptResult::NotAttempted { reason } => {
                Self::new(attempted_at, None).failed(AttemptErrorKind::NotAttempted, reason.clone())
            }
        }
    }

    /// The attempt's result, rebuilt from the log (for receipts of an idempotent re-emit).
    pub fn to_result(&self) -> AttemptResult {
        let status = self.status.and_then(|s| StatusCode::from_u16(s).ok());
        let message = self.error.clone().unwrap_or_default();
        match (status, self.error_kind) {
            (Some(status), None) => AttemptResult::Delivered {
                status,
                body: self.response.clone(),
                duration: self.duration,
            },
            (Some(status), Some(AttemptErrorKind::HttpStatus)) => AttemptResult::Rejected {
                status,
                body: self.response.clone(),
                duration: self.duration,
            },
            (_, Some(AttemptErrorKind::Misconfigured)) => AttemptResult::Misconfigured { message },
            (_, Some(AttemptErrorKind::NotAttempted)) => {
                AttemptResult::NotAttempted { reason: message }
            }
            (status, kind) => {
                let kind = kind.map_or(TransportErrorKind::Other, transport_kind);
                let error = TransportError::new(kind, message).with_duration(self.duration);
                AttemptResult::Failed(match status {
                    Some(status) => error.with_status(status),
                    None => error,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_result_reads_back_from_its_log() {
        let at = Utc::now();
        let results = [
            AttemptResult::Delivered {
                status: StatusCode::NO_CONTENT,
                body: "ok".into(),
                duration: Duration::from_millis(3),
            },
            AttemptResult::Rejected {
                status: StatusCode::BAD_GATEWAY,
                body: "down".into(),
                duration: Duration::from_millis(4),
            },
            AttemptResult::Failed(
                TransportError::new(TransportErrorKind::ResponseTooLarge, "too big")
                    .with_status(StatusCode::OK)
                    .with_duration(Duration::from_millis(5)),
            ),
            AttemptResult::Misconfigured {
                message: "bad secret".into(),
            },
            AttemptResult::NotAttempted {
                reason: "deleted".into(),
            },
        ];
        for result in results {
            let log = AttemptLog::of(&result, at);
            let back = AttemptLog::of(&log.to_result(), at);
            assert_eq!(back, log, "{result:?}");
        }
        let timeout = AttemptLog::of(
            &AttemptResult::Failed(TransportError::new(TransportErrorKind::Timeout, "slow")),
            at,
        );
        assert_eq!(timeout.error_kind, Some(AttemptErrorKind::Timeout));
    }
}
