//! The retry policy: when the next attempt is due, as a value.
//!
//! Pure functions of their inputs (the random jitter is passed in), so the schedule is
//! unit-tested without clocks. [`decide`](super::decide) applies it to each attempt; the
//! table of what each answer means is there.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The documented default schedule: the delay before each attempt after the previous one
/// failed (the first is immediate). Eight attempts over about 28 hours.
pub const DEFAULT_SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The longest delay the crate schedules: a schedule step and the `Retry-After` limit are cut
/// to it (30 days), so no configuration can overflow a clock or a duration.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 86_400);

/// When to try again, as a value: the schedule, the jitter and the bounds on `Retry-After`.
///
/// The fields are private so the bounds always hold: every step and the `Retry-After` limit
/// are at most [`MAX_DELAY`], and the jitter share is within `0.0..=1.0`. Defaults: the
/// [`DEFAULT_SCHEDULE`] (eight attempts over about 28 hours), ±20% jitter, `Retry-After`
/// honoured up to 10 hours.
///
/// ```
/// use std::time::Duration;
/// use dataops_webhooks::retry::RetryPolicy;
///
/// // Tests and demos: three attempts, 10 ms apart, no jitter.
/// let fast = RetryPolicy::new(vec![Duration::ZERO, Duration::from_millis(10), Duration::from_millis(10)])
///     .jitter(0.0);
/// assert_eq!(fast.max_attempts(), 3);
/// assert_eq!(fast.next_delay(1, None, 0.5), Some(Duration::from_millis(10)));
/// assert_eq!(fast.next_delay(3, None, 0.5), None); // the third failure was the last
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
    jitter: f64,
    max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(DEFAULT_SCHEDULE.to_vec())
    }
}

impl RetryPolicy {
    /// A policy with this schedule, ±20% jitter and `Retry-After` honoured up to 10 hours.
    ///
    /// The delay before attempt `n + 1`, after attempt `n` failed, is `schedule[n]`; the first
    /// entry is the first attempt's own delay (zero). Its length is the number of attempts (at
    /// least one is always made). Steps longer than [`MAX_DELAY`] are cut to it.
    pub fn new(schedule: Vec<Duration>) -> Self {
        let schedule = if schedule.is_empty() {
            vec![Duration::ZERO]
        } else {
            schedule.into_iter().map(|d| d.min(MAX_DELAY)).collect()
        };
        Self {
            schedule,
            jitter: 0.2,
            max_retry_after: Duration::from_secs(10 * 3600),
        }
    }

    /// Sets the jitter share, clamped to 0.0..=1.0 (default 0.2: each delay moves by up to
    /// ±20%, so endpoints that failed together are not retried in lockstep).
    #[must_use]
    pub fn jitter(mut self, share: f64) -> Self {
        self.jitter = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Sets the longest `Retry-After` honoured (default 10 h, the schedule's longest step; at
    /// most [`MAX_DELAY`]); a longer one is cut to this.
    #[must_use]
    pub fn max_retry_after(mut self, limit: Duration) -> Self {
        self.max_retry_after = limit.min(MAX_DELAY);
        self
    }

    /// The schedule: the delay before each attempt after the previous one failed.
    pub fn schedule(&self) -> &[Duration] {
        &self.schedule
    }

    /// The jitter share, within `0.0..=1.0`.
    pub fn jitter_share(&self) -> f64 {
        self.jitter
    }

    /// The longest `Retry-After` honoured.
    pub fn retry_after_limit(&self) -> Duration {
        self.max_retry_after
    }

    /// How many attempts a delivery gets in all.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.schedule.len()).unwrap_or(u32::MAX)
    }

    /// The delay before the next attempt, after `failed_attempts` attempts have failed; `None`
    /// when that was the last. `retry_after` is the endpoint's own request; `random` is a
    /// uniform sample in `0.0..1.0` that places the jitter.
    ///
    /// The endpoint's `Retry-After` is honoured as a floor, up to
    /// [`max_retry_after`](Self::max_retry_after): the delivery is never retried earlier than
    /// the schedule says, nor earlier than the endpoint asked, within that bound.
    pub fn next_delay(
        &self,
        failed_attempts: u32,
        retry_after: Option<Duration>,
        random: f64,
    ) -> Option<Duration> {
        let step = self.schedule.get(usize::try_from(failed_attempts).ok()?)?;
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let factor = 1.0 + self.jitter * (2.0 * random - 1.0);
        // Steps are at most MAX_DELAY and the factor at most 2, so this cannot overflow; a
        // result that could not be represented is cut to the bound rather than a panic.
        let jittered = Duration::try_from_secs_f64(step.as_secs_f64() * factor.max(0.0))
            .unwrap_or(MAX_DELAY)
            .min(MAX_DELAY.saturating_mul(2));
        let asked = retry_after.map_or(Duration::ZERO, |d| d.min(self.max_retry_after));
        Some(jittered.max(asked))
    }

    /// When an attempt `delay` after `now` is due: never before `now`, and the latest time
    /// the clock can hold rather than an overflow.
    pub fn due_at(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
        chrono::TimeDelta::from_std(delay)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Reads a `Retry-After` value: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`, read relative to `now`; a past date is zero). `None`
/// when it is neither.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn the_default_schedule_is_the_documented_one() {
        let policy = RetryPolicy::default().jitter(0.0);
        assert_eq!(policy.max_attempts(), 8);
        let delays: Vec<_> = (1..8)
            .map(|n| policy.next_delay(n, None, 0.5).expect("more attempts"))
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(delays, [5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(policy.next_delay(8, None, 0.5), None);
        assert_eq!(policy.next_delay(0, None, 0.5), Some(Duration::ZERO));
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_spans_it() {
        let policy = RetryPolicy::default();
        let low = policy.next_delay(2, None, 0.0).expect("delay");
        let high = policy.next_delay(2, None, 1.0).expect("delay");
        let mid = policy.next_delay(2, None, 0.5).expect("delay");
        assert_eq!(low, Duration::from_secs(240));
        assert_eq!(high, Duration::from_secs(360));
        assert_eq!(mid, Duration::from_secs(300));
        for _ in 0..1000 {
            let d = policy
                .next_delay(2, None, crate::random::unit())
                .expect("delay");
            assert!(d >= low && d <= high, "{d:?}");
        }
        // A bad sample is treated as the middle, not as a panic or a huge delay.
        assert_eq!(policy.next_delay(2, None, f64::NAN), Some(mid));
    }

    #[test]
    fn retry_after_is_a_floor_within_bounds() {
        let policy = RetryPolicy::default().jitter(0.0);
        // Shorter than the schedule: the schedule wins.
        assert_eq!(
            policy.next_delay(2, Some(Duration::from_secs(10)), 0.5),
            Some(Duration::from_secs(300))
        );
        // Longer: honoured.
        assert_eq!(
            policy.next_delay(1, Some(Duration::from_secs(60)), 0.5),
            Some(Duration::from_secs(60))
        );
        // Absurd: cut to the bound.
        assert_eq!(
            policy.next_delay(1, Some(Duration::from_secs(30 * 86_400)), 0.5),
            Some(Duration::from_secs(36_000))
        );
        // Never revives a delivery whose attempts are spent.
        assert_eq!(
            policy.next_delay(8, Some(Duration::from_secs(1)), 0.5),
            None
        );
    }

    #[test]
    fn no_configuration_or_endpoint_can_overflow_the_arithmetic() {
        let huge = RetryPolicy::new(vec![Duration::ZERO, Duration::MAX, Duration::MAX])
            .max_retry_after(Duration::MAX)
            .jitter(f64::INFINITY);
        assert_eq!(huge.schedule()[1], MAX_DELAY);
        assert_eq!(huge.retry_after_limit(), MAX_DELAY);
        assert_eq!(huge.jitter_share(), 0.0);
        let loose = RetryPolicy::new(vec![Duration::ZERO, Duration::MAX]).jitter(1.0);
        for random in [0.0, 0.5, 1.0, f64::NAN] {
            let delay = loose
                .next_delay(1, Some(Duration::MAX), random)
                .expect("delay");
            assert!(delay <= MAX_DELAY * 2, "{delay:?}");
        }
        assert_eq!(
            huge.next_delay(1, Some(Duration::MAX), 1.0),
            Some(MAX_DELAY),
            "an endpoint's huge Retry-After is cut, not a panic"
        );
        let now = at("2026-10-21T07:28:00Z");
        assert_eq!(
            RetryPolicy::due_at(now, MAX_DELAY),
            now + chrono::Duration::days(30)
        );
        assert_eq!(
            RetryPolicy::due_at(now, Duration::MAX),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            RetryPolicy::due_at(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1)),
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = at("2026-10-21T07:28:00Z");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::from_secs(0)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        for junk in ["", "soon", "-5", "1.5", "Wed, 99 Oct 2026"] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk}");
        }
    }
}
