//! Where webhook configuration and signing secrets live: the [`ConfigStore`] trait and its
//! in-memory implementation [`MemoryStore`].
//!
//! A host wires in its own database by implementing the seven required methods; the store
//! only persists what [`Webhooks`] has already validated. With the
//! `test-util` feature, [`config_store_conformance!`](crate::config_store_conformance)
//! checks an implementation against every behaviour the crate relies on, one test each.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod copy;
mod manage;
mod memory;

use std::fmt;

use async_trait::async_trait;

use crate::webhook::{OrgId, SigningKeys, Webhook, WebhookId};
use crate::EventType;

pub use manage::{ManageError, Webhooks};
pub use memory::MemoryStore;

/// The most webhooks one [`list_webhooks`](ConfigStore::list_webhooks) call returns.
pub const MAX_PAGE_SIZE: usize = 100;

/// Persistence for webhook configuration and organizations' signing secrets.
///
/// Implementations must be safe to share between tasks. Every write is all-or-nothing.
/// Records are serde-serializable, so a store may keep each webhook as one JSON document beside
/// the columns it filters on (as the SQLite and PostgreSQL stores do).
///
/// The required methods, in a store that audits writes and keeps the data in another store
/// (a host's own would talk to its database instead):
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use async_trait::async_trait;
/// use dataops_webhooks::store::{ConfigStore, MemoryStore, Page, StoreError, WebhookQuery};
/// use dataops_webhooks::webhook::{OrgId, SigningKeys, Webhook, WebhookId};
///
/// #[derive(Debug, Default)]
/// struct Audited {
///     data: MemoryStore,
///     writes: AtomicUsize,
/// }
///
/// #[async_trait]
/// impl ConfigStore for Audited {
///     async fn insert_webhook(&self, webhook: &Webhook) -> Result<(), StoreError> {
///         self.writes.fetch_add(1, Ordering::Relaxed);
///         self.data.insert_webhook(webhook).await
///     }
///     async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
///         self.data.get_webhook(id).await
///     }
///     async fn update_webhook(&self, webhook: &Webhook, expected_revision: u64) -> Result<(), StoreError> {
///         // Compare-and-set: only over `expected_revision`, else `StoreError::Stale`.
///         self.writes.fetch_add(1, Ordering::Relaxed);
///         self.data.update_webhook(webhook, expected_revision).await
///     }
///     async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
///         self.writes.fetch_add(1, Ordering::Relaxed);
///         self.data.delete_webhook(id).await
///     }
///     async fn list_webhooks(&self, query: &WebhookQuery) -> Result<Page<Webhook>, StoreError> {
///         self.data.list_webhooks(query).await
///     }
///     async fn signing_keys(&self, org: &OrgId) -> Result<Option<SigningKeys>, StoreError> {
///         self.data.signing_keys(org).await
///     }
///     async fn put_signing_keys(&self, org: &OrgId, keys: &SigningKeys) -> Result<(), StoreError> {
///         self.writes.fetch_add(1, Ordering::Relaxed);
///         self.data.put_signing_keys(org, keys).await
///     }
/// }
/// ```
///
/// Check an implementation with `config_store_conformance!` (feature `test-util`).
#[async_trait]
pub trait ConfigStore: Send + Sync + fmt::Debug {
    /// Stores a new webhook.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a webhook with its id exists.
    async fn insert_webhook(&self, webhook: &Webhook) -> Result<(), StoreError>;

    /// The webhook with `id`, if any.
    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError>;

    /// Replaces the stored webhook with `webhook` (same id) if, and only if, the stored one is
    /// still at `expected_revision`: a compare-and-set, atomic with respect to every other
    /// write. Callers read a webhook, change it, set `revision` to `expected_revision + 1` and
    /// write it back; a writer that lost the race is told so instead of undoing the winner's
    /// change (a user's URL change, a worker's disable). A stored record without a revision
    /// (written before revisions existed) is at revision 0.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when there is none to replace; [`StoreError::Stale`] when the
    /// stored webhook is at another revision (nothing is written).
    async fn update_webhook(
        &self,
        webhook: &Webhook,
        expected_revision: u64,
    ) -> Result<(), StoreError>;

    /// Deletes a webhook; `false` when there was none.
    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError>;

    /// One page of an organization's webhooks, in id order (which is creation order).
    async fn list_webhooks(&self, query: &WebhookQuery) -> Result<Page<Webhook>, StoreError>;

    /// The organization's signing secrets, if it has any.
    async fn signing_keys(&self, org: &OrgId) -> Result<Option<SigningKeys>, StoreError>;

    /// Stores the organization's signing secrets, replacing any before.
    async fn put_signing_keys(&self, org: &OrgId, keys: &SigningKeys) -> Result<(), StoreError>;

    /// A webhook and, when it signs with its organization's secret (it has none of its own),
    /// the organization's keys: what one attempt needs. The provided implementation makes
    /// the two lookups; a database store can answer with one query.
    async fn webhook_with_keys(
        &self,
        id: &WebhookId,
    ) -> Result<Option<(Webhook, Option<SigningKeys>)>, StoreError> {
        let Some(webhook) = self.get_webhook(id).await? else {
            return Ok(None);
        };
        let keys = match webhook.secret {
            Some(_) => None,
            None => self.signing_keys(&webhook.org).await?,
        };
        Ok(Some((webhook, keys)))
    }

    /// Every active webhook that receives `event_type` from `project`: the project's own and
    /// the organization-wide ones. The provided implementation pages through
    /// [`list_webhooks`](Self::list_webhooks); a database store can answer it with one query.
    async fn subscribers(
        &self,
        org: &OrgId,
        project: &str,
        event_type: EventType,
    ) -> Result<Vec<Webhook>, StoreError> {
        let mut found = Vec::new();
        for scope in [
            ScopeFilter::Project(project.to_owned()),
            ScopeFilter::OrganizationWide,
        ] {
            let mut query = WebhookQuery::new(org.clone())
                .scope(scope)
                .limit(MAX_PAGE_SIZE);
            loop {
                let page = self.list_webhooks(&query).await?;
                found.extend(
                    page.items
                        .into_iter()
                        .filter(|w| w.receives(project, event_type)),
                );
                match page.next {
                    Some(cursor) => query.after = Some(cursor),
                    None => break,
                }
            }
        }
        Ok(found)
    }
}

/// Which of an organization's webhooks a listing returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeFilter {
    /// All of them.
    All,
    /// Those scoped to this project (not the organization-wide ones).
    Project(String),
    /// The organization-wide ones.
    OrganizationWide,
}

/// A listing request: an organization, a scope filter, and a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookQuery {
    /// The organization.
    pub org: OrgId,
    /// Which webhooks.
    pub scope: ScopeFilter,
    /// Start after this id: the [`Page::next`] of the previous page.
    pub after: Option<WebhookId>,
    /// At most this many (1 to [`MAX_PAGE_SIZE`]).
    pub limit: usize,
}

impl WebhookQuery {
    /// The first page of all of `org`'s webhooks, 50 a page.
    pub fn new(org: impl Into<OrgId>) -> Self {
        Self {
            org: org.into(),
            scope: ScopeFilter::All,
            after: None,
            limit: 50,
        }
    }

    /// Only webhooks of `scope`.
    #[must_use]
    pub fn scope(mut self, scope: ScopeFilter) -> Self {
        self.scope = scope;
        self
    }

    /// Continue after `cursor`.
    #[must_use]
    pub fn after(mut self, cursor: WebhookId) -> Self {
        self.after = Some(cursor);
        self
    }

    /// Page size, clamped to 1..=[`MAX_PAGE_SIZE`].
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// Whether `webhook` belongs in this listing (ignoring the cursor).
    pub fn selects(&self, webhook: &Webhook) -> bool {
        webhook.org == self.org
            && match &self.scope {
                ScopeFilter::All => true,
                ScopeFilter::Project(p) => webhook.scope.project() == Some(p.as_str()),
                ScopeFilter::OrganizationWide => webhook.scope.project().is_none(),
            }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items, in order.
    pub items: Vec<T>,
    /// The cursor for the next page, or `None` on the last one.
    pub next: Option<WebhookId>,
}

impl<T> Page<T> {
    /// A page.
    pub fn new(items: Vec<T>, next: Option<WebhookId>) -> Self {
        Self { items, next }
    }
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record to change does not exist.
    #[error("webhook {0} does not exist")]
    NotFound(WebhookId),
    /// A record with the same id exists.
    #[error("webhook {0} already exists")]
    Conflict(WebhookId),
    /// The webhook was changed by another writer since it was read: read it again, apply
    /// the change again, and retry.
    #[error("webhook {0} was changed by someone else since it was read; read it again and retry the change")]
    Stale(WebhookId),
    /// The backend failed (database unreachable, I/O, corrupt record).
    #[error("the config store failed: {message}")]
    Backend {
        /// What happened, for the operator.
        message: String,
        /// The backend's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// Whether trying again may succeed: a [`Stale`](Self::Stale) write (after reading the
    /// webhook again) or a backend failure (the database may come back).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Stale(_) | Self::Backend { .. })
    }

    /// A backend failure with its cause, for store implementations.
    pub fn backend(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}
