//! [`ConfigStore`] over PostgreSQL: each webhook is a JSON record beside the columns that
//! listings and subscriber lookups filter on.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::error::Failure;
use super::queue::Conn;
use super::PostgresStore;
use crate::store::{ConfigStore, Page, ScopeFilter, StoreError, WebhookQuery};
use crate::webhook::{OrgId, SigningKeys, Webhook, WebhookId};
use crate::EventType;

type Params<'a> = [&'a (dyn tokio_postgres::types::ToSql + Sync)];

impl PostgresStore {
    /// Runs one statement on a pooled connection.
    async fn config_rows(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        let run = async {
            let client = self.client().await?;
            Conn::Pooled(&client).query(sql, params).await
        };
        run.await.map_err(|f| self.store_error(f))
    }

    /// Runs a statement that changes configuration, then drops the process's cached copy
    /// (whatever the outcome: a failed commit may still have committed).
    async fn config_write(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        let result = self.config_rows(sql, params).await;
        self.inner.cache.invalidate();
        result
    }

    fn store_error(&self, failure: Failure) -> StoreError {
        failure.into_store_error(self.schema())
    }

    /// Runs a changing statement that answers how many rows it changed.
    async fn count(&self, sql: &str, params: &Params<'_>) -> Result<i64, StoreError> {
        let rows = self.config_write(sql, params).await?;
        let changed: Option<i64> = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| self.store_error(e.into()))?;
        Ok(changed.unwrap_or_default())
    }

    /// Writes a webhook's row; returns how many rows changed.
    async fn write_webhook(&self, sql: &str, webhook: &Webhook) -> Result<i64, StoreError> {
        let record = serde_json::to_string(webhook).map_err(|e| self.store_error(e.into()))?;
        self.count(
            sql,
            &[
                &webhook.id.to_string(),
                &webhook.org.to_string(),
                &webhook.scope.project(),
                &webhook.status.is_active(),
                &record,
            ],
        )
        .await
    }

    /// The active webhooks of `org` for `project` from the database (or from the copy, when
    /// another miss read them meanwhile), kept in the copy.
    async fn read_subscribers(
        &self,
        org: &OrgId,
        project: &str,
    ) -> Result<Vec<Webhook>, StoreError> {
        let cache = self.config_cache().await;
        let _filling = cache.fill_subscribers(org, project).await;
        if let Some(active) = cache.subscribers(org, project) {
            return Ok(active);
        }
        let ticket = cache.ticket();
        let rows = self
            .config_rows(&self.inner.sql.subscribers, &[&org.to_string(), &project])
            .await?;
        let active = self.webhooks(&rows)?;
        cache.put_subscribers(ticket, org, project, active.clone());
        Ok(active)
    }

    fn webhooks(&self, rows: &[Row]) -> Result<Vec<Webhook>, StoreError> {
        rows.iter()
            .map(|row| {
                let record: &str = row.try_get(0)?;
                Ok(serde_json::from_str(record)?)
            })
            .collect::<Result<_, Failure>>()
            .map_err(|f| self.store_error(f))
    }
}

#[async_trait]
impl ConfigStore for PostgresStore {
    async fn insert_webhook(&self, webhook: &Webhook) -> Result<(), StoreError> {
        match self
            .write_webhook(&self.inner.sql.insert_webhook, webhook)
            .await?
        {
            0 => Err(StoreError::Conflict(webhook.id)),
            _ => Ok(()),
        }
    }

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        let rows = self
            .config_rows(&self.inner.sql.get_webhook, &[&id.to_string()])
            .await?;
        Ok(self.webhooks(&rows)?.into_iter().next())
    }

    async fn webhook_with_keys(
        &self,
        id: &WebhookId,
    ) -> Result<Option<(Webhook, Option<SigningKeys>)>, StoreError> {
        let cache = self.config_cache().await;
        if let Some(found) = cache.webhook(id) {
            return Ok(found);
        }
        let _filling = cache.fill_webhook(id).await;
        if let Some(found) = cache.webhook(id) {
            return Ok(found);
        }
        let ticket = cache.ticket();
        let rows = self
            .config_rows(&self.inner.sql.webhook_with_keys, &[&id.to_string()])
            .await?;
        let read = |row: &Row| -> Result<(Webhook, Option<SigningKeys>), Failure> {
            let webhook: Webhook = serde_json::from_str(row.try_get::<_, &str>(0)?)?;
            let keys = match (&webhook.secret, row.try_get::<_, Option<&str>>(1)?) {
                (None, Some(record)) => Some(serde_json::from_str(record)?),
                _ => None,
            };
            Ok((webhook, keys))
        };
        let found = rows
            .first()
            .map(read)
            .transpose()
            .map_err(|f| self.store_error(f))?;
        cache.put_webhook(ticket, *id, found.clone());
        Ok(found)
    }

    async fn update_webhook(
        &self,
        webhook: &Webhook,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        let record = serde_json::to_string(webhook).map_err(|e| self.store_error(e.into()))?;
        let expected = i64::try_from(expected_revision).unwrap_or(i64::MAX);
        let rows = self
            .config_write(
                &self.inner.sql.update_webhook,
                &[
                    &webhook.id.to_string(),
                    &webhook.org.to_string(),
                    &webhook.scope.project(),
                    &webhook.status.is_active(),
                    &record,
                    &expected,
                ],
            )
            .await?;
        let counts = rows
            .first()
            .map(|r| {
                Ok::<_, tokio_postgres::Error>((r.try_get::<_, i64>(0)?, r.try_get::<_, i64>(1)?))
            })
            .transpose()
            .map_err(|e| self.store_error(e.into()))?;
        match counts {
            Some((updated, _)) if updated > 0 => Ok(()),
            Some((_, existing)) if existing > 0 => Err(StoreError::Stale(webhook.id)),
            _ => Err(StoreError::NotFound(webhook.id)),
        }
    }

    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        let deleted = self
            .count(&self.inner.sql.delete_webhook, &[&id.to_string()])
            .await?;
        Ok(deleted > 0)
    }

    async fn list_webhooks(&self, query: &WebhookQuery) -> Result<Page<Webhook>, StoreError> {
        // scope: 0 all, 1 one project, 2 organization-wide
        let (scope, project): (i32, Option<&str>) = match &query.scope {
            ScopeFilter::Project(p) => (1, Some(p.as_str())),
            ScopeFilter::OrganizationWide => (2, None),
            _ => (0, None),
        };
        let limit = query.limit;
        let rows = self
            .config_rows(
                &self.inner.sql.list_webhooks,
                &[
                    &query.org.to_string(),
                    &query.after.map(|id| id.to_string()),
                    &scope,
                    &project,
                    &(limit as i64 + 1),
                ],
            )
            .await?;
        let mut items = self.webhooks(&rows)?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|w| w.id)
        } else {
            None
        };
        Ok(Page::new(items, next))
    }

    async fn signing_keys(&self, org: &OrgId) -> Result<Option<SigningKeys>, StoreError> {
        let rows = self
            .config_rows(&self.inner.sql.signing_keys, &[&org.to_string()])
            .await?;
        rows.first()
            .map(|row| -> Result<SigningKeys, Failure> {
                let record: &str = row.try_get(0)?;
                Ok(serde_json::from_str(record)?)
            })
            .transpose()
            .map_err(|f| self.store_error(f))
    }

    async fn put_signing_keys(&self, org: &OrgId, keys: &SigningKeys) -> Result<(), StoreError> {
        let record = serde_json::to_string(keys).map_err(|e| self.store_error(e.into()))?;
        self.config_write(
            &self.inner.sql.put_signing_keys,
            &[&org.to_string(), &record],
        )
        .await?;
        Ok(())
    }

    async fn subscribers(
        &self,
        org: &OrgId,
        project: &str,
        event_type: EventType,
    ) -> Result<Vec<Webhook>, StoreError> {
        let active = match self.config_cache().await.subscribers(org, project) {
            Some(active) => active,
            None => self.read_subscribers(org, project).await?,
        };
        Ok(active
            .into_iter()
            .filter(|w| w.receives(project, event_type))
            .collect())
    }
}
