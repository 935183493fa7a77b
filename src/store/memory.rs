//! The in-memory config store: the default, for tests and single-process hosts that keep
//! configuration elsewhere. Nothing survives a restart.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;

use super::{ConfigStore, Page, StoreError, WebhookQuery};
use crate::webhook::{OrgId, SigningKeys, Webhook, WebhookId};
use crate::EventType;

/// A [`ConfigStore`] in process memory. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    webhooks: BTreeMap<WebhookId, Webhook>,
    keys: HashMap<OrgId, SigningKeys>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        // A panic while holding the lock cannot leave `State` half-written: every write
        // below is a single map operation.
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.write().unwrap_or_else(PoisonError::into_inner))
    }
}

#[async_trait]
impl ConfigStore for MemoryStore {
    async fn insert_webhook(&self, webhook: &Webhook) -> Result<(), StoreError> {
        self.write(|s| {
            if s.webhooks.contains_key(&webhook.id) {
                return Err(StoreError::Conflict(webhook.id));
            }
            s.webhooks.insert(webhook.id, webhook.clone());
            Ok(())
        })
    }

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        Ok(self.read(|s| s.webhooks.get(id).cloned()))
    }

    async fn update_webhook(
        &self,
        webhook: &Webhook,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        self.write(|s| match s.webhooks.get_mut(&webhook.id) {
            Some(stored) if stored.revision == expected_revision => {
                *stored = webhook.clone();
                Ok(())
            }
            Some(_) => Err(StoreError::Stale(webhook.id)),
            None => Err(StoreError::NotFound(webhook.id)),
        })
    }

    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        Ok(self.write(|s| s.webhooks.remove(id).is_some()))
    }

    async fn list_webhooks(&self, query: &WebhookQuery) -> Result<Page<Webhook>, StoreError> {
        let limit = query.limit.clamp(1, super::MAX_PAGE_SIZE);
        Ok(self.read(|s| {
            let start = query.after.map_or(Bound::Unbounded, Bound::Excluded);
            let mut items: Vec<Webhook> = s
                .webhooks
                .range((start, Bound::Unbounded))
                .map(|(_, w)| w)
                .filter(|w| query.selects(w))
                .take(limit + 1)
                .cloned()
                .collect();
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|w| w.id)
            } else {
                None
            };
            Page::new(items, next)
        }))
    }

    async fn subscribers(
        &self,
        org: &OrgId,
        project: &str,
        event_type: EventType,
    ) -> Result<Vec<Webhook>, StoreError> {
        Ok(self.read(|s| {
            s.webhooks
                .values()
                .filter(|w| &w.org == org && w.receives(project, event_type))
                .cloned()
                .collect()
        }))
    }

    async fn signing_keys(&self, org: &OrgId) -> Result<Option<SigningKeys>, StoreError> {
        Ok(self.read(|s| s.keys.get(org).cloned()))
    }

    async fn put_signing_keys(&self, org: &OrgId, keys: &SigningKeys) -> Result<(), StoreError> {
        self.write(|s| s.keys.insert(org.clone(), keys.clone()));
        Ok(())
    }
}
