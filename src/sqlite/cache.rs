//! The process's copy of the configuration that every emit and every attempt reads: each
//! webhook with its organization's keys, and each project's active webhooks.
//!
//! The copy is checked against the file's configuration counter (`config_version`, one row),
//! which triggers bump in every transaction that changes a webhook or an organization's
//! signing keys, whoever makes it: this store, another process, or a statement run by hand.
//! A lookup reads the counter first, on the connection it then reads from, and uses only
//! what was read under that same counter; a higher counter drops the whole copy. So a change
//! is seen by every lookup that starts after it commits, and a lookup that finds its answer
//! costs one probe of a one-row table instead of reading and parsing JSON records.

use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;

use super::Failure;
use crate::store::copy::{ConfigCopy, WithKeys};
use crate::webhook::{OrgId, Webhook, WebhookId};

#[derive(Debug, Default)]
pub(super) struct ConfigCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The counter the entries were read under (`None`: nothing read yet).
    version: Option<i64>,
    copy: ConfigCopy,
}

impl State {
    /// The entries read under `version`, if those are the copy's; a newer counter drops the
    /// copy (and its entries start from nothing), an older one (a lookup that read it before
    /// another saw a change) leaves the copy alone and gets nothing.
    fn at(&mut self, version: i64) -> Option<&mut Self> {
        match self.version {
            Some(held) if held == version => Some(self),
            Some(held) if held > version => None,
            _ => {
                self.version = Some(version);
                self.copy.clear();
                Some(self)
            }
        }
    }
}

impl ConfigCache {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration counter as `conn` sees it now.
    pub(super) fn version(conn: &Connection) -> Result<i64, Failure> {
        Ok(conn
            .prepare_cached("SELECT version FROM config_version WHERE id = 1")?
            .query_row([], |r| r.get(0))?)
    }

    /// The webhook as read under `version` (`Some(None)`: known not to exist).
    pub(super) fn webhook(&self, version: i64, id: &WebhookId) -> Option<Option<WithKeys>> {
        self.state().at(version)?.copy.webhook(id)
    }

    /// Keeps what a lookup read under `version`, unless the copy has moved past it.
    pub(super) fn put_webhook(&self, version: i64, id: WebhookId, found: Option<WithKeys>) {
        if let Some(state) = self.state().at(version) {
            state.copy.put_webhook(id, found);
        }
    }

    /// The active webhooks of `org` for `project`, as read under `version`.
    pub(super) fn subscribers(
        &self,
        version: i64,
        org: &OrgId,
        project: &str,
    ) -> Option<Vec<Webhook>> {
        self.state().at(version)?.copy.subscribers(org, project)
    }

    /// Keeps what a lookup read under `version`, unless the copy has moved past it.
    pub(super) fn put_subscribers(
        &self,
        version: i64,
        org: &OrgId,
        project: &str,
        found: Vec<Webhook>,
    ) {
        if let Some(state) = self.state().at(version) {
            state.copy.put_subscribers(org, project, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_holds_only_for_the_counter_it_was_read_under() {
        let cache = ConfigCache::default();
        let id = WebhookId::new();
        cache.put_webhook(3, id, None);
        assert_eq!(cache.webhook(3, &id), Some(None));
        // A lookup that read an older counter neither sees nor drops the copy.
        assert_eq!(cache.webhook(2, &id), None);
        cache.put_webhook(2, WebhookId::new(), None);
        assert_eq!(cache.webhook(3, &id), Some(None));
        // A newer counter drops it.
        assert_eq!(cache.webhook(4, &id), None);
        assert_eq!(cache.webhook(3, &id), None);
        let org = OrgId::new("acme");
        cache.put_subscribers(4, &org, "p", Vec::new());
        assert_eq!(cache.subscribers(4, &org, "p"), Some(Vec::new()));
        assert_eq!(cache.subscribers(4, &org, "q"), None);
        assert_eq!(cache.subscribers(5, &org, "p"), None);
    }
}
