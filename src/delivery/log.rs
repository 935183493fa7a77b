//! The link between an attempt's result and its entry in the delivery log.

use chrono::{DateTime, Utc};
use http::StatusCode;

use super::outcome::AttemptResult;
use crate::queue::AttemptLog;
use crate::transport::{TransportError, TransportErrorKind};

/// The error kind of an attempt the endpoint answered with a status other than 2xx.
const HTTP_STATUS: &str = "http_status";

impl AttemptLog {
    /// The log entry of an attempt that started at `attempted_at`.
    pub fn of(result: &AttemptResult, attempted_at: DateTime<Utc>) -> Self {
        match result {
            AttemptResult::Delivered {
                status,
                body,
                duration,
            } => Self {
                attempted_at,
                status: Some(status.as_u16()),
                duration: *duration,
                response: body.clone(),
                error_kind: None,
                error: None,
            },
            AttemptResult::Rejected {
                status,
                body,
                duration,
            } => Self {
                attempted_at,
                status: Some(status.as_u16()),
                duration: *duration,
                response: body.clone(),
                error_kind: Some(HTTP_STATUS.into()),
                error: Some(format!("the endpoint answered {status}")),
            },
            AttemptResult::Failed(error) => Self {
                attempted_at,
                status: error.status().map(|s| s.as_u16()),
                duration: error.duration().unwrap_or_default(),
                response: String::new(),
                error_kind: Some(error.kind().as_str().into()),
                error: Some(error.message().to_owned()),
            },
        }
    }

    /// The attempt's result, rebuilt from the log (for receipts of an idempotent re-emit).
    pub fn to_result(&self) -> AttemptResult {
        let status = self.status.and_then(|s| StatusCode::from_u16(s).ok());
        match (status, self.error_kind.as_deref()) {
            (Some(status), None) => AttemptResult::Delivered {
                status,
                body: self.response.clone(),
                duration: self.duration,
            },
            (Some(status), Some(HTTP_STATUS)) => AttemptResult::Rejected {
                status,
                body: self.response.clone(),
                duration: self.duration,
            },
            (status, kind) => {
                let error = TransportError::new(
                    TransportErrorKind::from_name(kind.unwrap_or_default()),
                    self.error.clone().unwrap_or_default(),
                )
                .with_duration(self.duration);
                AttemptResult::Failed(match status {
                    Some(status) => error.with_status(status),
                    None => error,
                })
            }
        }
    }
}
