//! [`ConfigStore`] over SQLite: each webhook is a JSON record beside the columns that
//! listings and subscriber lookups filter on.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::cache::ConfigCache;
use super::{Failure, SqliteStore};
use crate::error::chain;
use crate::store::{ConfigStore, Page, ScopeFilter, StoreError, WebhookQuery};
use crate::webhook::{OrgId, SigningKeys, Webhook, WebhookId};
use crate::EventType;

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::DuplicateWebhook(id) => StoreError::Conflict(id),
            Failure::MissingWebhook(id) => StoreError::NotFound(id),
            Failure::StaleWebhook(id) => StoreError::Stale(id),
            other => StoreError::backend(format!("SQLite: {}", chain(&other)), other),
        }
    }
}

fn columns(webhook: &Webhook) -> Result<(String, Option<String>, bool, String), Failure> {
    Ok((
        webhook.id.to_string(),
        webhook.scope.project().map(str::to_owned),
        webhook.status.is_active(),
        serde_json::to_string(webhook)?,
    ))
}

fn read(record: &str) -> Result<Webhook, Failure> {
    Ok(serde_json::from_str(record)?)
}

#[async_trait]
impl ConfigStore for SqliteStore {
    async fn insert_webhook(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let (id, project, active, record) = columns(webhook)?;
        let (org, key) = (webhook.org.to_string(), webhook.id);
        Ok(self
            .call(move |conn| {
                let inserted = conn.execute(
                    "INSERT INTO webhooks (id, org, project, active, record)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
                    params![id, org, project, active, record],
                )?;
                if inserted == 0 {
                    return Err(Failure::DuplicateWebhook(key));
                }
                Ok(())
            })
            .await?)
    }

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        let id = id.to_string();
        Ok(self
            .read(move |conn| {
                conn.prepare_cached("SELECT record FROM webhooks WHERE id = ?1")?
                    .query_row([id], |r| r.get::<_, String>(0))
                    .optional()?
                    .map(|record| read(&record))
                    .transpose()
            })
            .await?)
    }

    async fn update_webhook(
        &self,
        webhook: &Webhook,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        let (id, project, active, record) = columns(webhook)?;
        let (org, key) = (webhook.org.to_string(), webhook.id);
        let expected = i64::try_from(expected_revision).unwrap_or(i64::MAX);
        Ok(self
            .call(move |conn| {
                let updated = conn.execute(
                    "UPDATE webhooks SET org = ?2, project = ?3, active = ?4, record = ?5
                     WHERE id = ?1 AND coalesce(json_extract(record, '$.revision'), 0) = ?6",
                    params![id, org, project, active, record, expected],
                )?;
                if updated == 0 {
                    let exists = conn
                        .query_row("SELECT 1 FROM webhooks WHERE id = ?1", [&id], |_| Ok(()))
                        .optional()?
                        .is_some();
                    return Err(if exists {
                        Failure::StaleWebhook(key)
                    } else {
                        Failure::MissingWebhook(key)
                    });
                }
                Ok(())
            })
            .await?)
    }

    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        let id = id.to_string();
        Ok(self
            .call(move |conn| Ok(conn.execute("DELETE FROM webhooks WHERE id = ?1", [&id])? > 0))
            .await?)
    }

    async fn list_webhooks(&self, query: &WebhookQuery) -> Result<Page<Webhook>, StoreError> {
        let org = query.org.to_string();
        let after = query.after.map(|id| id.to_string()).unwrap_or_default();
        let limit = query.limit;
        // scope: 0 all, 1 one project, 2 organization-wide
        let (scope, project) = match &query.scope {
            ScopeFilter::Project(p) => (1, p.clone()),
            ScopeFilter::OrganizationWide => (2, String::new()),
            _ => (0, String::new()),
        };
        Ok(self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT record FROM webhooks
                     WHERE org = ?1 AND id > ?2
                       AND (?3 = 0 OR (?3 = 1 AND project = ?4) OR (?3 = 2 AND project IS NULL))
                     ORDER BY id LIMIT ?5",
                )?;
                let rows = statement
                    .query_map(params![org, after, scope, project, limit as i64 + 1], |r| {
                        r.get::<_, String>(0)
                    })?;
                let mut items = Vec::with_capacity(limit + 1);
                for record in rows {
                    items.push(read(&record?)?);
                }
                let next = if items.len() > limit {
                    items.truncate(limit);
                    items.last().map(|w| w.id)
                } else {
                    None
                };
                Ok(Page::new(items, next))
            })
            .await?)
    }

    async fn signing_keys(&self, org: &OrgId) -> Result<Option<SigningKeys>, StoreError> {
        let org = org.to_string();
        Ok(self
            .read(move |conn| {
                conn.prepare_cached("SELECT record FROM signing_keys WHERE org = ?1")?
                    .query_row([org], |r| r.get::<_, String>(0))
                    .optional()?
                    .map(|record| Ok(serde_json::from_str(&record)?))
                    .transpose()
            })
            .await?)
    }

    async fn put_signing_keys(&self, org: &OrgId, keys: &SigningKeys) -> Result<(), StoreError> {
        let org = org.to_string();
        let record = serde_json::to_string(keys).map_err(Failure::from)?;
        Ok(self
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO signing_keys (org, record) VALUES (?1, ?2)
                     ON CONFLICT (org) DO UPDATE SET record = excluded.record",
                    params![org, record],
                )?;
                Ok(())
            })
            .await?)
    }

    async fn webhook_with_keys(
        &self,
        id: &WebhookId,
    ) -> Result<Option<(Webhook, Option<SigningKeys>)>, StoreError> {
        let (key, id) = (*id, id.to_string());
        let cache = self.config.clone();
        Ok(self
            .lookup(move |conn| {
                let version = ConfigCache::version(conn)?;
                if let Some(found) = cache.webhook(version, &key) {
                    return Ok(found);
                }
                let found: Option<(String, Option<String>)> = conn
                    .prepare_cached(
                        "SELECT w.record, k.record FROM webhooks w
                         LEFT JOIN signing_keys k ON k.org = w.org
                         WHERE w.id = (SELECT ?1)",
                    )?
                    .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let found = match found {
                    None => None,
                    Some((webhook, keys)) => {
                        let webhook = read(&webhook)?;
                        let keys = match (&webhook.secret, keys) {
                            (None, Some(keys)) => Some(serde_json::from_str(&keys)?),
                            _ => None,
                        };
                        Some((webhook, keys))
                    }
                };
                cache.put_webhook(version, key, found.clone());
                Ok(found)
            })
            .await?)
    }

    async fn subscribers(
        &self,
        org: &OrgId,
        project: &str,
        event_type: EventType,
    ) -> Result<Vec<Webhook>, StoreError> {
        let (key, org, owned) = (org.clone(), org.to_string(), project.to_owned());
        let cache = self.config.clone();
        let active = self
            .lookup(move |conn| {
                let version = ConfigCache::version(conn)?;
                if let Some(active) = cache.subscribers(version, &key, &owned) {
                    return Ok(active);
                }
                // Sorted here: with `ORDER BY`, SQLite would recompile the statement at each
                // call (its plan depends on the bound organization).
                let mut statement = conn.prepare_cached(
                    "SELECT id, record FROM webhooks
                     WHERE org = ?1 AND active AND (project = ?2 OR project IS NULL)",
                )?;
                let rows = statement.query_map(params![org, owned], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                let mut found = Vec::new();
                for row in rows {
                    let (id, record) = row?;
                    found.push((id, record));
                }
                found.sort_unstable();
                let active = found
                    .iter()
                    .map(|(_, record)| read(record))
                    .collect::<Result<Vec<_>, _>>()?;
                cache.put_subscribers(version, &key, &owned, active.clone());
                Ok(active)
            })
            .await?;
        Ok(active
            .into_iter()
            .filter(|w| w.receives(project, event_type))
            .collect())
    }
}
