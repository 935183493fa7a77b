//! The process's copy of the configuration that every emit and every attempt reads: each
//! webhook with its organization's keys, and each project's active webhooks.
//!
//! It is used only while the store's `LISTEN` connection is up. Every change to the webhooks
//! or signing-keys tables notifies that connection (a statement trigger, in the changing
//! transaction, so the notice comes when it commits), and the notice drops the whole copy;
//! so does a change made through this store, at once. While the connection is down, or
//! before it listens, nothing is cached and every read goes to the database. A change is
//! therefore seen by emits and attempts that start after its notice arrives (well under a
//! millisecond after the commit on a healthy connection).
//!
//! A read that started before a drop must not put what it read back: each read takes the
//! copy's generation first, and its result is kept only if no drop happened meanwhile.
//!
//! Misses of one key are filled one at a time: callers that miss together (the first emits
//! of a busy process, or every emit right after a drop) wait for the first one's read and
//! then find its result, instead of each taking a connection of its own for the same row.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use tokio::sync::MutexGuard;

use crate::store::copy::ConfigCopy;
pub(super) use crate::store::copy::WithKeys;
use crate::webhook::{OrgId, Webhook, WebhookId};

/// Locks that misses of each kind take while they read, shared by key hash: a miss waits for
/// another key's read only when their hashes collide.
const FILL_LOCKS: usize = 16;

#[derive(Debug, Default)]
pub(super) struct ConfigCache {
    state: Mutex<State>,
    /// Held by the miss of a webhook reading it.
    webhook_fills: [tokio::sync::Mutex<()>; FILL_LOCKS],
    /// Held by the miss of a project's subscribers reading them.
    subscriber_fills: [tokio::sync::Mutex<()>; FILL_LOCKS],
}

#[derive(Debug, Default)]
struct State {
    /// Whether the listening connection is up (and so changes are heard).
    live: bool,
    /// Bumped at every drop.
    generation: u64,
    copy: ConfigCopy,
}

/// Taken before a database read: whether its result may be kept.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket(Option<u64>);

impl ConfigCache {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops everything cached; `live` says whether changes are heard from now on.
    pub(super) fn reset(&self, live: bool) {
        let mut state = self.state();
        state.live = live;
        state.generation = state.generation.wrapping_add(1);
        state.copy.clear();
    }

    /// Drops everything cached (a change was made or heard of).
    pub(super) fn invalidate(&self) {
        let live = self.state().live;
        self.reset(live);
    }

    /// A ticket for a read about to start.
    pub(super) fn ticket(&self) -> Ticket {
        let state = self.state();
        Ticket(state.live.then_some(state.generation))
    }

    /// Waits for the other misses of `key` (by hash) to finish their reads, while changes
    /// are heard; the caller looks in the copy again, and reads the database only if it is
    /// still not there. `None` (no waiting) while nothing is cached.
    async fn fill<'a>(
        &self,
        locks: &'a [tokio::sync::Mutex<()>; FILL_LOCKS],
        key: impl Hash,
    ) -> Option<MutexGuard<'a, ()>> {
        if !self.state().live {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        // The remainder is below FILL_LOCKS, so it fits a usize.
        let slot = usize::try_from(hasher.finish() % FILL_LOCKS as u64).unwrap_or(0);
        Some(locks[slot].lock().await)
    }

    /// Waits for the other misses of webhook `id` (see [`fill`](Self::fill)).
    pub(super) async fn fill_webhook(&self, id: &WebhookId) -> Option<MutexGuard<'_, ()>> {
        self.fill(&self.webhook_fills, id).await
    }

    /// Waits for the other misses of `org`'s subscribers in `project`.
    pub(super) async fn fill_subscribers(
        &self,
        org: &OrgId,
        project: &str,
    ) -> Option<MutexGuard<'_, ()>> {
        self.fill(&self.subscriber_fills, (org, project)).await
    }

    /// The cached webhook (`Some(None)`: known not to exist).
    pub(super) fn webhook(&self, id: &WebhookId) -> Option<Option<WithKeys>> {
        let state = self.state();
        if !state.live {
            return None;
        }
        state.copy.webhook(id)
    }

    /// Keeps what a read that took `ticket` found, unless the copy was dropped meanwhile.
    pub(super) fn put_webhook(&self, ticket: Ticket, id: WebhookId, found: Option<WithKeys>) {
        let mut state = self.state();
        if let Some(state) = state.current(ticket) {
            state.copy.put_webhook(id, found);
        }
    }

    /// The cached active webhooks of `org` for `project`.
    pub(super) fn subscribers(&self, org: &OrgId, project: &str) -> Option<Vec<Webhook>> {
        let state = self.state();
        if !state.live {
            return None;
        }
        state.copy.subscribers(org, project)
    }

    /// Keeps what a read that took `ticket` found, unless the copy was dropped meanwhile.
    pub(super) fn put_subscribers(
        &self,
        ticket: Ticket,
        org: &OrgId,
        project: &str,
        found: Vec<Webhook>,
    ) {
        let mut state = self.state();
        if let Some(state) = state.current(ticket) {
            state.copy.put_subscribers(org, project, found);
        }
    }
}

impl State {
    /// The state, if `ticket` was taken while live and since the last drop.
    fn current(&mut self, ticket: Ticket) -> Option<&mut Self> {
        (self.live && ticket.0 == Some(self.generation)).then_some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_kept_until_changes_are_heard() {
        let cache = ConfigCache::default();
        let id = WebhookId::new();
        cache.put_webhook(cache.ticket(), id, None);
        assert_eq!(cache.webhook(&id), None);
        cache.reset(true);
        cache.put_webhook(cache.ticket(), id, None);
        assert_eq!(cache.webhook(&id), Some(None));
        cache.reset(false);
        assert_eq!(cache.webhook(&id), None, "a lost connection drops the copy");
    }

    #[test]
    fn a_read_that_started_before_a_drop_is_not_kept() {
        let cache = ConfigCache::default();
        cache.reset(true);
        let stale = cache.ticket();
        cache.invalidate();
        let id = WebhookId::new();
        cache.put_webhook(stale, id, None);
        assert_eq!(cache.webhook(&id), None);
        let org = OrgId::new("acme");
        cache.put_subscribers(stale, &org, "p", Vec::new());
        assert_eq!(cache.subscribers(&org, "p"), None);
        let fresh = cache.ticket();
        cache.put_subscribers(fresh, &org, "p", Vec::new());
        assert_eq!(cache.subscribers(&org, "p"), Some(Vec::new()));
        cache.invalidate();
        assert_eq!(cache.subscribers(&org, "p"), None);
    }
}
