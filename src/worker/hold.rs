//! What a worker holds: claims waiting to start, and what is in flight per webhook.
//!
//! The worker's loop adds claims; the loop and attempts whose endpoint answered start them.
//! Everything here is behind the worker's one lock, so a claim is started, kept waiting or
//! counted by one party at a time.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::queue::{Claim, LeaseId};
use crate::webhook::{DeliveryId, IdMap, WebhookId};

/// A claim that could not start when it arrived: its endpoint had no free slot, or the
/// worker no free permit.
#[derive(Debug)]
pub(super) struct Held {
    /// Claim order across webhooks: the oldest claim starts first.
    order: u64,
    pub(super) claim: Claim,
    pub(super) lease_until: DateTime<Utc>,
}

/// The claims waiting to start, per webhook in the order they were claimed, and each
/// webhook's first claim by claim order. The worker's loop adds to it; the loop and
/// attempts whose endpoint answered start its claims.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    pub(super) claims: IdMap<WebhookId, VecDeque<Held>>,
    fronts: BTreeMap<u64, WebhookId>,
    pub(super) len: usize,
    next: u64,
}

impl Waiting {
    pub(super) fn of(&self, webhook: &WebhookId) -> usize {
        self.claims.get(webhook).map_or(0, VecDeque::len)
    }

    pub(super) fn push(&mut self, claim: Claim, lease_until: DateTime<Utc>) {
        let order = self.next;
        self.next += 1;
        self.len += 1;
        let webhook = claim.delivery.webhook_id;
        let queue = self.claims.entry(webhook).or_default();
        if queue.is_empty() {
            self.fronts.insert(order, webhook);
        }
        queue.push_back(Held {
            order,
            claim,
            lease_until,
        });
    }

    /// The first webhook, by its first claim, whose first claim came after `after`.
    pub(super) fn next_front(&self, after: Option<u64>) -> Option<(u64, WebhookId)> {
        let from = after.map_or(0, |order| order + 1);
        self.fronts.range(from..).next().map(|(o, w)| (*o, *w))
    }

    pub(super) fn front(&self, webhook: &WebhookId) -> Option<&Held> {
        self.claims.get(webhook).and_then(VecDeque::front)
    }

    pub(super) fn pop(&mut self, webhook: &WebhookId) -> Option<Held> {
        let queue = self.claims.get_mut(webhook)?;
        let held = queue.pop_front()?;
        self.len -= 1;
        self.fronts.remove(&held.order);
        match queue.front() {
            Some(next) => {
                self.fronts.insert(next.order, *webhook);
            }
            None => {
                self.claims.remove(webhook);
            }
        }
        Some(held)
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = Held> + '_ {
        self.len = 0;
        self.fronts.clear();
        self.claims.drain().flat_map(|(_, queue)| queue)
    }
}

/// Webhooks whose pace a worker remembers at most; past this it forgets them all and
/// learns again.
const PACES_KEPT: usize = 4096;

/// What a worker holds: requests in flight per webhook, attempts not yet recorded, the
/// claims to return at a hard stop, and the claims waiting to start.
#[derive(Debug, Default)]
pub(super) struct Busy {
    /// Endpoint slots taken, per webhook.
    pub(super) per_webhook: IdMap<WebhookId, usize>,
    /// Attempts started and not yet recorded (their requests in flight, or answered and
    /// being settled).
    pub(super) attempts: usize,
    /// The claims of those attempts.
    pub(super) claims: IdMap<DeliveryId, LeaseId>,
    /// The last claim left a webhook out, or claims wait for a slot or a permit: a slot
    /// given back without being passed on must wake the loop.
    pub(super) limited: bool,
    /// How long each webhook's requests hold their slot, averaged (the newest counts 1/8).
    pub(super) pace: IdMap<WebhookId, Duration>,
    /// Claims waiting for an endpoint slot or a permit.
    pub(super) waiting: Waiting,
    /// The loop waits for an attempt to be recorded: the worker holds all it may.
    pub(super) wants_room: bool,
    /// Webhooks the last claim left out for holding nearly their cap, each with how many
    /// claims (in flight and waiting) it may hold before the loop should claim for it again.
    pub(super) refill: IdMap<WebhookId, usize>,
}

impl Busy {
    /// The claims `webhook` holds in this worker: its requests in flight and its claims
    /// waiting.
    pub(super) fn held_by(&self, webhook: &WebhookId) -> usize {
        self.per_webhook
            .get(webhook)
            .copied()
            .unwrap_or(0)
            .saturating_add(self.waiting.of(webhook))
    }

    /// Whether `webhook`, left out of the last claim, now holds few enough claims to be
    /// claimed for again; says so once.
    pub(super) fn refill_due(&mut self, webhook: &WebhookId) -> bool {
        let Some(&at) = self.refill.get(webhook) else {
            return false;
        };
        if self.held_by(webhook) > at {
            return false;
        }
        self.refill.remove(webhook);
        true
    }

    /// Gives back one of `webhook`'s endpoint slots, whose request held it for `held`.
    pub(super) fn free_slot(&mut self, webhook: WebhookId, held: Duration) {
        self.observe(webhook, held);
        if let Some(n) = self.per_webhook.get_mut(&webhook) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_webhook.remove(&webhook);
            }
        }
    }

    /// Notes that one of `webhook`'s requests held its slot for `held`.
    fn observe(&mut self, webhook: WebhookId, held: Duration) {
        if self.pace.len() >= PACES_KEPT && !self.pace.contains_key(&webhook) {
            self.pace.clear();
        }
        let pace = self.pace.entry(webhook).or_insert(held);
        *pace = pace.saturating_mul(7).saturating_add(held) / 8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::queue::claim_of as claim;

    /// Fronts come in claim order across webhooks, and a webhook's next claim takes its
    /// place by its own order once its first is popped.
    #[test]
    fn waiting_claims_come_out_oldest_first_across_webhooks() {
        let (a, b) = (WebhookId::new(), WebhookId::new());
        let mut waiting = Waiting::default();
        let claims = [claim(a), claim(b), claim(a)];
        let ids: Vec<DeliveryId> = claims.iter().map(|c| c.delivery.id).collect();
        for c in claims {
            waiting.push(c, Utc::now());
        }
        assert_eq!((waiting.len, waiting.of(&a), waiting.of(&b)), (3, 2, 1));
        let (first, webhook) = waiting.next_front(None).expect("a front");
        assert_eq!(webhook, a);
        assert_eq!(waiting.next_front(Some(first)).map(|(_, w)| w), Some(b));
        let popped = waiting.pop(&a).expect("a's first");
        assert_eq!(popped.claim.delivery.id, ids[0]);
        // b's claim is older than a's second.
        assert_eq!(waiting.next_front(None).map(|(_, w)| w), Some(b));
        assert_eq!(waiting.pop(&b).map(|h| h.claim.delivery.id), Some(ids[1]));
        assert_eq!(waiting.pop(&a).map(|h| h.claim.delivery.id), Some(ids[2]));
        assert!(waiting.pop(&a).is_none());
        assert_eq!(waiting.len, 0);
        assert!(waiting.next_front(None).is_none());
        assert!(waiting.claims.is_empty(), "an emptied webhook is not kept");
    }

    /// A webhook left out of a claim says once that it may be claimed for again, when what
    /// it holds in flight and waiting falls to its mark, and not before.
    #[test]
    fn a_refill_is_due_once_when_held_claims_fall_to_the_mark() {
        let (a, other) = (WebhookId::new(), WebhookId::new());
        let mut busy = Busy::default();
        busy.per_webhook.insert(a, 2);
        busy.waiting.push(claim(a), Utc::now());
        busy.refill.insert(a, 2);
        assert!(!busy.refill_due(&a), "holds 3, the mark is 2");
        assert!(!busy.refill_due(&other), "not left out");
        busy.free_slot(a, Duration::from_millis(5));
        assert_eq!(busy.per_webhook.get(&a), Some(&1));
        assert!(busy.refill_due(&a), "holds 2");
        assert!(!busy.refill_due(&a), "said once");
    }

    /// Freeing a webhook's last slot forgets it, and its pace is learnt with the newest
    /// request counting an eighth.
    #[test]
    fn freeing_slots_counts_down_and_learns_the_pace() {
        let a = WebhookId::new();
        let mut busy = Busy::default();
        busy.per_webhook.insert(a, 1);
        busy.free_slot(a, Duration::from_millis(80));
        assert!(busy.per_webhook.is_empty());
        assert_eq!(busy.pace.get(&a), Some(&Duration::from_millis(80)));
        busy.free_slot(a, Duration::from_millis(160));
        assert_eq!(busy.pace.get(&a), Some(&Duration::from_millis(90)));
        assert!(busy.per_webhook.is_empty(), "never below zero");
    }
}
