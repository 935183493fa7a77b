//! Per-webhook request rates: a token bucket per rate-limited webhook, in one worker. An
//! attempt reserves its request's turn before sending and sleeps until then (no polling);
//! a turn further away than the claim's lease allows is given back, and the webhook is left
//! out of claims until then, so its deliveries wait in the queue.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::webhook::{IdMap, RateLimit, WebhookId};

/// One webhook's bucket: `tokens` may go below zero, each reservation taking one, so the
/// reservations queue up at the rate.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The worker's buckets, and the webhooks left out of claims until a time.
#[derive(Debug, Default)]
pub(super) struct Limiter {
    buckets: Mutex<IdMap<WebhookId, Bucket>>,
    paused: Mutex<IdMap<WebhookId, Instant>>,
}

/// How many webhooks' buckets a worker keeps; past that, full buckets are forgotten.
const KEPT: usize = 10_000;

impl Limiter {
    /// Reserves the next request to `webhook` under `limit` at `now`: how long to wait
    /// before sending it.
    pub(super) fn reserve(&self, webhook: WebhookId, limit: RateLimit, now: Instant) -> Duration {
        let rate = limit.per_second.max(f64::MIN_POSITIVE);
        let burst = f64::from(limit.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= KEPT {
            buckets.retain(|_, b| b.tokens < burst);
        }
        let bucket = buckets.entry(webhook).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(-bucket.tokens / rate).unwrap_or(Duration::MAX)
        }
    }

    /// Gives back a reservation that will not be used.
    pub(super) fn give_back(&self, webhook: WebhookId) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = buckets.get_mut(&webhook) {
            bucket.tokens += 1.0;
        }
    }

    /// Leaves `webhook` out of claims until `until`.
    pub(super) fn pause(&self, webhook: WebhookId, until: Instant) {
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        paused.insert(webhook, until);
    }

    /// The webhooks left out of claims at `now`.
    pub(super) fn paused(&self, now: Instant) -> Vec<WebhookId> {
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        paused.retain(|_, until| *until > now);
        paused.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_queue_up_at_the_rate_after_the_burst() {
        let limiter = Limiter::default();
        let hook = WebhookId::new();
        let limit = RateLimit::per_second(100.0).burst(3);
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..6).map(|_| limiter.reserve(hook, limit, t0)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3], "the burst goes at once");
        let ms = |d: Duration| (d.as_secs_f64() * 1000.0).round();
        assert_eq!(
            waits[3..].iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            [10.0, 20.0, 30.0]
        );
        // A second later the bucket is full again (and no fuller).
        let later = t0 + Duration::from_secs(1);
        assert_eq!(limiter.reserve(hook, limit, later), Duration::ZERO);
        limiter.give_back(hook);
        let other = WebhookId::new();
        assert_eq!(
            limiter.reserve(other, limit, t0),
            Duration::ZERO,
            "buckets are per webhook"
        );
    }

    #[test]
    fn paused_webhooks_come_back_at_their_time() {
        let limiter = Limiter::default();
        let hook = WebhookId::new();
        let t0 = Instant::now();
        limiter.pause(hook, t0 + Duration::from_secs(2));
        assert_eq!(limiter.paused(t0), vec![hook]);
        assert!(limiter.paused(t0 + Duration::from_secs(3)).is_empty());
    }
}
