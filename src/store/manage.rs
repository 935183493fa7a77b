//! [`Webhooks`]: managing webhooks and organization secrets: validate, then write through
//! the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{ConfigStore, Page, ScopeFilter, StoreError, WebhookQuery};
use crate::clock::now;
use crate::secret::{Secret, SecretError};
use crate::transport::guard::AddressPolicy;
use crate::webhook::{
    validate, NewWebhook, OrgId, PreviousSecret, SigningKeys, Webhook, WebhookError, WebhookId,
    WebhookStatus, WebhookUpdate,
};

/// The management operations of the platform's Webhooks tab and of Labelbox's SDK: create,
/// get, list, update, deactivate/reactivate, delete, and the organization's secret.
///
/// Every input is validated before anything is written, so a refused call changes nothing.
/// Get one from [`WebhookDispatcher::webhooks`](crate::WebhookDispatcher::webhooks) (which
/// shares the dispatcher's store, address policy and default organization) or build one over
/// a store with [`Webhooks::new`].
#[derive(Debug, Clone)]
pub struct Webhooks {
    store: Arc<dyn ConfigStore>,
    policy: AddressPolicy,
    default_org: OrgId,
}

/// A management call that was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// The input is invalid; nothing was written.
    #[error(transparent)]
    Invalid(#[from] WebhookError),
    /// No webhook has this id.
    #[error("webhook {0} does not exist")]
    NotFound(WebhookId),
    /// The webhook was changed by someone else (another user, or the worker disabling it)
    /// while this update was applied; nothing was written. Retry the call: it reads the
    /// webhook again.
    #[error(
        "webhook {0} was changed by someone else during this update; nothing was written, retry it"
    )]
    Conflict(WebhookId),
    /// [`Webhooks::create_org_secret`] on an organization that has one: rotate it instead.
    #[error(
        "organization `{0}` already has a signing secret; use rotate_org_secret to replace it"
    )]
    SecretExists(OrgId),
    /// A secret could not be generated.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => Self::NotFound(id),
            StoreError::Stale(id) => Self::Conflict(id),
            other => Self::Store(other),
        }
    }
}

impl ManageError {
    /// Whether the same call may succeed if made again: a [`Conflict`](Self::Conflict), or a
    /// store failure that may pass.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Conflict(_) => true,
            Self::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
}

impl Webhooks {
    /// Management over `store`, with the default address policy (public targets only) and
    /// the default organization.
    pub fn new(store: Arc<dyn ConfigStore>) -> Self {
        Self {
            store,
            policy: AddressPolicy::default(),
            default_org: OrgId::default(),
        }
    }

    /// Sets the address policy URLs are checked against.
    #[must_use]
    pub fn address_policy(mut self, policy: AddressPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the organization used when a [`NewWebhook`] names none.
    #[must_use]
    pub fn default_org(mut self, org: impl Into<OrgId>) -> Self {
        self.default_org = org.into();
        self
    }

    /// Validates and stores a new webhook.
    ///
    /// # Errors
    /// [`ManageError::Invalid`] naming the problem; [`ManageError::Store`].
    pub async fn create(&self, new: NewWebhook) -> Result<Webhook, ManageError> {
        let url = validate::new_webhook(&new, &self.policy)?;
        let org = new.org.unwrap_or_else(|| self.default_org.clone());
        org_id(&org)?;
        let now = now();
        let webhook = Webhook {
            id: WebhookId::new(),
            org,
            scope: new.scope,
            url,
            events: new.events,
            status: if new.active {
                WebhookStatus::Active
            } else {
                WebhookStatus::Inactive
            },
            description: new.description,
            headers: new.headers,
            secret: new.secret,
            schemes: new.schemes,
            created_at: now,
            updated_at: now,
            revision: 0,
        };
        self.store.insert_webhook(&webhook).await?;
        Ok(webhook)
    }

    /// The webhook with `id`.
    ///
    /// # Errors
    /// [`ManageError::NotFound`]; [`ManageError::Store`].
    pub async fn get(&self, id: &WebhookId) -> Result<Webhook, ManageError> {
        self.store
            .get_webhook(id)
            .await?
            .ok_or(ManageError::NotFound(*id))
    }

    /// One page of webhooks; pass [`Page::next`] to [`WebhookQuery::after`] for the next.
    ///
    /// # Errors
    /// [`ManageError::Store`].
    pub async fn list(&self, query: &WebhookQuery) -> Result<Page<Webhook>, ManageError> {
        org_id(&query.org)?;
        if let ScopeFilter::Project(project) = &query.scope {
            validate::storable("project name", project).map_err(WebhookError::from)?;
        }
        Ok(self.store.list_webhooks(query).await?)
    }

    /// Applies `update`; fields it leaves `None` stay as they are.
    ///
    /// The write is conditional on the webhook not having changed since this call read it, so
    /// a concurrent change (another user's, or the worker disabling the endpoint) is never
    /// silently undone.
    ///
    /// # Errors
    /// [`ManageError::Invalid`] (nothing changed); [`ManageError::NotFound`];
    /// [`ManageError::Conflict`] when it changed meanwhile (nothing changed; retry);
    /// [`ManageError::Store`].
    pub async fn update(
        &self,
        id: &WebhookId,
        update: WebhookUpdate,
    ) -> Result<Webhook, ManageError> {
        let mut webhook = self.get(id).await?;
        if let Some(url) = &update.url {
            webhook.url = validate::url(url, &self.policy)?;
        }
        if let Some(events) = update.events {
            validate::event_filter(&events)?;
            webhook.events = events;
        }
        if let Some(headers) = update.headers {
            webhook.headers = headers;
        }
        if let Some(description) = update.description {
            validate::description(description.as_deref())?;
            webhook.description = description;
        }
        if let Some(schemes) = update.schemes {
            validate::secret_fits(webhook.secret.as_ref(), schemes)?;
            webhook.schemes = schemes;
        }
        if let Some(active) = update.active {
            webhook.status = if active {
                WebhookStatus::Active
            } else {
                WebhookStatus::Inactive
            };
        }
        webhook.updated_at = now();
        let read_at = webhook.revision;
        webhook.revision = read_at.saturating_add(1);
        self.store.update_webhook(&webhook, read_at).await?;
        Ok(webhook)
    }

    /// Stops deliveries to the webhook until it is reactivated.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn deactivate(&self, id: &WebhookId) -> Result<Webhook, ManageError> {
        self.update(id, WebhookUpdate::new().active(false)).await
    }

    /// Resumes deliveries to an inactive or system-disabled webhook.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn reactivate(&self, id: &WebhookId) -> Result<Webhook, ManageError> {
        self.update(id, WebhookUpdate::new().active(true)).await
    }

    /// Deletes the webhook.
    ///
    /// # Errors
    /// [`ManageError::NotFound`]; [`ManageError::Store`].
    pub async fn delete(&self, id: &WebhookId) -> Result<(), ManageError> {
        if self.store.delete_webhook(id).await? {
            Ok(())
        } else {
            Err(ManageError::NotFound(*id))
        }
    }

    /// Generates the organization's first signing secret and returns it: show it to the user
    /// once. From then on every webhook of the organization without its own secret is signed
    /// with it.
    ///
    /// # Errors
    /// [`ManageError::SecretExists`] when it has one; [`ManageError::Store`].
    pub async fn create_org_secret(&self, org: &OrgId) -> Result<Secret, ManageError> {
        org_id(org)?;
        if self.store.signing_keys(org).await?.is_some() {
            return Err(ManageError::SecretExists(org.clone()));
        }
        let secret = Secret::generate()?;
        let keys = SigningKeys::new(secret.clone(), now());
        self.store.put_signing_keys(org, &keys).await?;
        Ok(secret)
    }

    /// Replaces the organization's secret with a new one and returns it: show it once.
    ///
    /// With a zero `grace` the old secret stops signing at once, as the platform documents.
    /// With a grace period, Standard Webhooks requests carry a signature by each secret until
    /// it ends, so receivers can switch without dropping deliveries. An organization without a
    /// secret gets its first one.
    ///
    /// # Errors
    /// [`ManageError::Store`]; [`ManageError::Secret`].
    pub async fn rotate_org_secret(
        &self,
        org: &OrgId,
        grace: Duration,
    ) -> Result<Secret, ManageError> {
        org_id(org)?;
        let now = now();
        let secret = Secret::generate()?;
        let mut keys = SigningKeys::new(secret.clone(), now);
        if let Some(old) = self.store.signing_keys(org).await? {
            let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
            if grace > chrono::Duration::zero() {
                keys.previous = Some(PreviousSecret {
                    secret: old.current,
                    expires_at: now
                        .checked_add_signed(grace)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                });
            }
        }
        self.store.put_signing_keys(org, &keys).await?;
        Ok(secret)
    }

    /// Whether the organization has a signing secret.
    ///
    /// # Errors
    /// [`ManageError::Store`].
    pub async fn has_org_secret(&self, org: &OrgId) -> Result<bool, ManageError> {
        org_id(org)?;
        Ok(self.store.signing_keys(org).await?.is_some())
    }
}

/// Checks an organization id a call was given.
fn org_id(org: &OrgId) -> Result<(), WebhookError> {
    Ok(validate::storable("organization id", org.as_str())?)
}
