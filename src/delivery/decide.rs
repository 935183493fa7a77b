//! What happens after an attempt: [`decide`], a pure function.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::StatusCode;

use super::outcome::AttemptResult;
use super::retry::RetryPolicy;
use crate::queue::Next;
use crate::transport::TransportErrorKind;

/// What happens after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// The delivery's next state.
    pub next: Next,
    /// The endpoint answered 410 Gone: its webhook is to be disabled.
    pub disable_webhook: bool,
}

impl Decision {
    /// A decision.
    pub fn new(next: Next, disable_webhook: bool) -> Self {
        Self {
            next,
            disable_webhook,
        }
    }

    /// When the next attempt is due, when there is one.
    pub fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        match self.next {
            Next::RetryAt(at) => Some(at),
            _ => None,
        }
    }
}

/// Decides what follows attempt number `attempt` (1 for the first) of a delivery: a pure
/// function of the result, the endpoint's `Retry-After` (read from a non-2xx answer), the
/// attempt's number, the policy, the time and `random`, a uniform sample in `0.0..1.0` that
/// places the jitter.
///
/// | result | decision |
/// |---|---|
/// | 2xx | delivered |
/// | 410 Gone | dead, and the webhook is disabled at once |
/// | any other 3xx, 4xx, 5xx (408 and 429 included) | retried on the schedule; `Retry-After` honoured as a floor |
/// | timeout, connect, DNS, TLS, blocked address, response too large | retried on the schedule |
/// | the transport cannot make the request | dead at once |
/// | the request cannot be built (a bad stored header or secret: `Misconfigured`), or was not attempted | dead at once |
/// | any failure after the schedule's last attempt | dead |
///
/// Other 4xx are retried on purpose: a 401, 403 or 404 is nearly always a receiver being
/// set up or redeployed, fixed within the hours the schedule spans; an endpoint that keeps
/// refusing is disabled by the health window instead of losing the events in between.
pub fn decide(
    result: &AttemptResult,
    retry_after: Option<Duration>,
    attempt: u32,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
    random: f64,
) -> Decision {
    let retry = |retry_after| {
        let next = policy
            .next_delay(attempt, retry_after, random)
            .map_or(Next::Dead, |delay| {
                Next::RetryAt(RetryPolicy::due_at(now, delay))
            });
        Decision::new(next, false)
    };
    match result {
        AttemptResult::Delivered { .. } => Decision::new(Next::Succeeded, false),
        AttemptResult::Rejected { status, .. } if *status == StatusCode::GONE => {
            Decision::new(Next::Dead, true)
        }
        AttemptResult::Rejected { .. } => retry(retry_after),
        AttemptResult::Failed(error) if error.kind() == TransportErrorKind::InvalidRequest => {
            Decision::new(Next::Dead, false)
        }
        AttemptResult::Failed(_) => retry(None),
        AttemptResult::Misconfigured { .. } | AttemptResult::NotAttempted { .. } => {
            Decision::new(Next::Dead, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportError;

    const NOW: i64 = 1_800_000_000;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(NOW, 0).unwrap_or_default()
    }

    fn rejected(status: u16) -> AttemptResult {
        AttemptResult::Rejected {
            status: StatusCode::from_u16(status).expect("status"),
            body: String::new(),
            duration: Duration::ZERO,
        }
    }

    fn failed(kind: TransportErrorKind) -> AttemptResult {
        AttemptResult::Failed(TransportError::new(kind, "x"))
    }

    /// Three attempts: 10 s, then 60 s after a failure; no jitter.
    fn policy() -> RetryPolicy {
        RetryPolicy::new(vec![
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(60),
        ])
        .jitter(0.0)
    }

    fn at(seconds: i64) -> Next {
        Next::RetryAt(now() + chrono::Duration::seconds(seconds))
    }

    #[test]
    fn every_row_of_the_table() {
        let decide = |result: &AttemptResult, retry_after: Option<u64>, attempt: u32| {
            let retry_after = retry_after.map(Duration::from_secs);
            decide(result, retry_after, attempt, &policy(), now(), 0.5)
        };
        let ok = AttemptResult::Delivered {
            status: StatusCode::NO_CONTENT,
            body: String::new(),
            duration: Duration::ZERO,
        };
        // 2xx: delivered, whatever the attempt.
        assert_eq!(decide(&ok, None, 3), Decision::new(Next::Succeeded, false));
        // 410: dead and the webhook disabled, even on the first attempt.
        assert_eq!(
            decide(&rejected(410), None, 1),
            Decision::new(Next::Dead, true)
        );
        // Other 3xx, 4xx, 5xx: retried on the schedule.
        for status in [301, 302, 400, 401, 403, 404, 408, 422, 429, 500, 502, 503] {
            assert_eq!(
                decide(&rejected(status), None, 1),
                Decision::new(at(10), false),
                "{status}"
            );
            assert_eq!(
                decide(&rejected(status), None, 2),
                Decision::new(at(60), false),
                "{status}"
            );
        }
        // Retry-After: a floor over the schedule, never under it.
        assert_eq!(
            decide(&rejected(429), Some(30), 1),
            Decision::new(at(30), false)
        );
        assert_eq!(
            decide(&rejected(503), Some(5), 1),
            Decision::new(at(10), false)
        );
        // Transport failures: retried on the schedule.
        for kind in [
            TransportErrorKind::Timeout,
            TransportErrorKind::Connect,
            TransportErrorKind::Dns,
            TransportErrorKind::Tls,
            TransportErrorKind::BlockedAddress,
            TransportErrorKind::ResponseTooLarge,
            TransportErrorKind::Other,
        ] {
            assert_eq!(
                decide(&failed(kind), None, 1),
                Decision::new(at(10), false),
                "{kind}"
            );
        }
        // An unbuildable request: dead at once.
        assert_eq!(
            decide(&failed(TransportErrorKind::InvalidRequest), None, 1),
            Decision::new(Next::Dead, false)
        );
        let misconfigured = AttemptResult::Misconfigured {
            message: "bad secret".into(),
        };
        assert_eq!(
            decide(&misconfigured, None, 1),
            Decision::new(Next::Dead, false)
        );
        // After the last attempt: dead, Retry-After or not.
        assert_eq!(
            decide(&rejected(500), None, 3),
            Decision::new(Next::Dead, false)
        );
        assert_eq!(
            decide(&rejected(429), Some(1), 3),
            Decision::new(Next::Dead, false)
        );
        assert_eq!(
            decide(&failed(TransportErrorKind::Timeout), None, 3),
            Decision::new(Next::Dead, false)
        );
    }

    #[test]
    fn the_random_sample_places_the_jitter() {
        let policy = policy().jitter(0.5);
        let early = decide(&rejected(500), None, 1, &policy, now(), 0.0);
        let late = decide(&rejected(500), None, 1, &policy, now(), 1.0);
        assert_eq!(early.next, at(5));
        assert_eq!(late.next, at(15));
        assert_eq!(
            late.next_attempt_at(),
            Some(now() + chrono::Duration::seconds(15))
        );
    }
}
