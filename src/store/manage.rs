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
            profile: new.profile,
            previous_secret: None,
            rate_limit: new.rate_limit,
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
        if update.schemes.is_some() || update.profile.is_some() {
            let schemes = update.schemes.unwrap_or(webhook.schemes);
            let profile = update.profile.unwrap_or(webhook.profile);
            validate::secret_fits(webhook.secret.as_ref(), profile, schemes)?;
            (webhook.schemes, webhook.profile) = (schemes, profile);
        }
        if let Some(limit) = update.rate_limit {
            validate::rate_limit(limit.as_ref())?;
            webhook.rate_limit = limit;
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
        let secret = Secret::generate()?;
        self.replace_org_secret(org, secret.clone(), grace).await?;
        Ok(secret)
    }

    /// Sets the organization's secret to one that already exists at its receivers (a
    /// platform moving endpoints over keeps their secrets; see [`Secret::import`]), and
    /// returns nothing to show: the user has it. The previous secret, if any, keeps signing
    /// Standard Webhooks requests for `grace` (zero: it stops at once).
    ///
    /// Refused, with nothing changed, when the secret cannot make the signatures of one of
    /// the organization's webhooks that sign with it (a plain secret where a webhook uses
    /// Standard Webhooks, say): give that webhook its own secret, or change its schemes.
    ///
    /// # Errors
    /// [`ManageError::Invalid`] as above; [`ManageError::Store`].
    pub async fn import_org_secret(
        &self,
        org: &OrgId,
        secret: Secret,
        grace: Duration,
    ) -> Result<(), ManageError> {
        org_id(org)?;
        let mut query = WebhookQuery::new(org.clone()).limit(crate::store::MAX_PAGE_SIZE);
        loop {
            let page = self.store.list_webhooks(&query).await?;
            for webhook in page.items.iter().filter(|w| w.secret.is_none()) {
                validate::secret_fits(Some(&secret), webhook.profile, webhook.schemes)?;
            }
            match page.next {
                Some(cursor) => query = query.after(cursor),
                None => break,
            }
        }
        self.replace_org_secret(org, secret, grace).await
    }

    /// The organization's secret becomes `secret`; the old one signs for `grace`.
    async fn replace_org_secret(
        &self,
        org: &OrgId,
        secret: Secret,
        grace: Duration,
    ) -> Result<(), ManageError> {
        org_id(org)?;
        let now = now();
        let mut keys = SigningKeys::new(secret, now);
        if let Some(old) = self.store.signing_keys(org).await? {
            keys.previous = previous(old.current, now, grace);
        }
        self.store.put_signing_keys(org, &keys).await?;
        Ok(())
    }

    /// Gives a webhook a new secret of its own and returns it: show it once. `secret` is an
    /// existing one to import, or `None` to generate one of the same kind as the webhook's
    /// current secret (an asymmetric key for an asymmetric key, else `whsec_`).
    ///
    /// The replaced secret keeps signing for `grace`: under Standard Webhooks each request
    /// carries a signature by each secret until it ends, so a receiver holding only the old
    /// secret keeps verifying. The shared-secret header and hub signatures carry the new
    /// secret at once (a header holds one value; the platform's documentation says a new key
    /// replaces the old one at once). A webhook that signed with its organization's secret
    /// starts signing with its own. Rotating again within the grace period keeps only the
    /// latest replaced secret.
    ///
    /// # Errors
    /// [`ManageError::Invalid`] when the secret cannot sign the webhook's profile or schemes
    /// (nothing changed); as [`update`](Self::update).
    pub async fn rotate_secret(
        &self,
        id: &WebhookId,
        secret: Option<Secret>,
        grace: Duration,
    ) -> Result<Secret, ManageError> {
        let mut webhook = self.get(id).await?;
        let secret = match secret {
            Some(secret) => secret,
            None if webhook.secret.as_ref().is_some_and(Secret::is_asymmetric) => {
                Secret::generate_asymmetric()?
            }
            None => Secret::generate()?,
        };
        validate::secret_fits(Some(&secret), webhook.profile, webhook.schemes)?;
        let now = now();
        webhook.previous_secret = webhook
            .secret
            .replace(secret.clone())
            .and_then(|old| previous(old, now, grace));
        webhook.updated_at = now;
        let read_at = webhook.revision;
        webhook.revision = read_at.saturating_add(1);
        self.store.update_webhook(&webhook, read_at).await?;
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

/// `old` in its grace period from `now`, or nothing for a zero grace.
fn previous(old: Secret, now: DateTime<Utc>, grace: Duration) -> Option<PreviousSecret> {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    (grace > chrono::Duration::zero()).then(|| PreviousSecret {
        secret: old,
        expires_at: now
            .checked_add_signed(grace)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    })
}

/// Checks an organization id a call was given.
fn org_id(org: &OrgId) -> Result<(), WebhookError> {
    Ok(validate::storable("organization id", org.as_str())?)
}
