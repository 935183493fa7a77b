//! A process's copy of the configuration that every emit and every attempt reads: each
//! webhook with its organization's keys, and each project's active webhooks. The database
//! backends keep one each and decide, each in its own way, when it still holds (PostgreSQL
//! while its `LISTEN` connection hears changes, SQLite while the file's configuration counter
//! stays the same); this is only the bounded maps.

use std::collections::HashMap;

use crate::webhook::{OrgId, SigningKeys, Webhook, WebhookId};

/// At most this many entries of each kind; past it the copy of that kind starts over.
const MAX_ENTRIES: usize = 10_000;

/// A webhook and, when it signs with them, its organization's keys.
pub(crate) type WithKeys = (Webhook, Option<SigningKeys>);

#[derive(Debug, Default)]
pub(crate) struct ConfigCopy {
    webhooks: HashMap<WebhookId, Option<WithKeys>>,
    /// Active webhooks of an organization for a project (its own and organization-wide).
    subscribers: HashMap<(OrgId, String), Vec<Webhook>>,
}

impl ConfigCopy {
    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.webhooks.clear();
        self.subscribers.clear();
    }

    /// The webhook (`Some(None)`: known not to exist).
    pub(crate) fn webhook(&self, id: &WebhookId) -> Option<Option<WithKeys>> {
        self.webhooks.get(id).cloned()
    }

    pub(crate) fn put_webhook(&mut self, id: WebhookId, found: Option<WithKeys>) {
        if self.webhooks.len() >= MAX_ENTRIES {
            self.webhooks.clear();
        }
        self.webhooks.insert(id, found);
    }

    /// The active webhooks of `org` for `project`.
    pub(crate) fn subscribers(&self, org: &OrgId, project: &str) -> Option<Vec<Webhook>> {
        self.subscribers
            .get(&(org.clone(), project.to_owned()))
            .cloned()
    }

    pub(crate) fn put_subscribers(&mut self, org: &OrgId, project: &str, found: Vec<Webhook>) {
        if self.subscribers.len() >= MAX_ENTRIES {
            self.subscribers.clear();
        }
        self.subscribers
            .insert((org.clone(), project.to_owned()), found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_starts_over_past_its_bound() {
        let mut copy = ConfigCopy::default();
        let first = WebhookId::new();
        copy.put_webhook(first, None);
        for _ in 1..MAX_ENTRIES {
            copy.put_webhook(WebhookId::new(), None);
        }
        let org = OrgId::new("acme");
        copy.put_subscribers(&org, "p", Vec::new());
        assert_eq!(copy.webhook(&first), Some(None));
        copy.put_webhook(WebhookId::new(), None);
        assert_eq!(copy.webhook(&first), None, "full: started over");
        assert_eq!(
            copy.subscribers(&org, "p"),
            Some(Vec::new()),
            "the other kind stays"
        );
        copy.clear();
        assert_eq!(copy.subscribers(&org, "p"), None);
    }
}
