//! [`DeliveryQueue`] over PostgreSQL. Every operation is one statement, so each costs one
//! round trip; settles that arrive together share one (see `settle`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::error::{violates, Failure};
use super::schema::Statements;
use super::settle::Settle;
use super::PostgresStore;
use crate::queue::{
    page_limit, AttemptErrorKind, AttemptLog, Claim, ClaimRequest, DeliveryPage, DeliveryQuery,
    DeliveryQueue, DeliveryRecord, DeliveryStats, DeliveryStatus, Enqueued, Finish, FinishReport,
    LeaseId, NewEvent, PurgeReport, PurgeRequest, QueueDepth, QueueError, StatsQuery, WebhookStats,
};
use crate::webhook::{DeliveryId, EventId, WebhookId};

/// A connection to run statements on: one from the store's pool (statements are prepared
/// once per connection), or the host's open transaction.
pub(super) enum Conn<'a> {
    Pooled(&'a deadpool_postgres::Object),
    /// A transaction of the store's own on a pooled connection (a group of emits).
    PooledTx(&'a deadpool_postgres::Transaction<'a>),
    Host(&'a tokio_postgres::Transaction<'a>),
}

type Params<'a> = [&'a (dyn ToSql + Sync)];

impl Conn<'_> {
    pub(super) async fn query(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, Failure> {
        Ok(match self {
            Self::Pooled(client) => {
                let statement = client.prepare_cached(sql).await?;
                client.query(&statement, params).await?
            }
            Self::PooledTx(tx) => {
                let statement = tx.prepare_cached(sql).await?;
                tx.query(&statement, params).await?
            }
            Self::Host(tx) => tx.query(sql, params).await?,
        })
    }

    async fn query_one(&self, sql: &str, params: &Params<'_>) -> Result<Row, Failure> {
        self.query(sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Failure::Corrupt("a statement returned no row".into()))
    }
}

/// Reads a text column through `FromStr` (ids, event types, statuses).
pub(super) fn parsed<T>(row: &Row, index: usize) -> Result<T, Failure>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    let text: &str = row.try_get(index)?;
    text.parse()
        .map_err(|e: T::Err| Failure::Corrupt(format!("column {index}: {e}")))
}

/// A `bigint` count column as a `u64`.
fn count(row: &Row, index: usize) -> Result<u64, Failure> {
    Ok(u64::try_from(row.try_get::<_, i64>(index)?).unwrap_or(0))
}

/// How many times a claim is made when each time every row it chose was held by another
/// worker's claim in flight (see the `claim` statement); each try passes over the rows the
/// ones before chose.
const CLAIM_TRIES: usize = 3;

fn record(row: &Row) -> Result<DeliveryRecord, Failure> {
    let attempts: i32 = row.try_get(7)?;
    Ok(DeliveryRecord {
        id: parsed(row, 0)?,
        event_id: parsed(row, 1)?,
        org: row.try_get::<_, String>(2)?.into(),
        event_type: parsed(row, 3)?,
        webhook_id: parsed(row, 4)?,
        url: row.try_get(5)?,
        status: parsed(row, 6)?,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        next_attempt_at: row.try_get(8)?,
        last_error: row.try_get(9)?,
        created_at: row.try_get(10)?,
        updated_at: row.try_get(11)?,
    })
}

/// Records `event` on `conn`: the event once, one pending delivery per entry, all in one
/// statement (so atomic on its own, and part of the host's transaction when `conn` is one).
pub(super) async fn enqueue_on(
    conn: &Conn<'_>,
    sql: &Statements,
    event: &NewEvent,
) -> Result<Enqueued, Failure> {
    let org = event.org.to_string();
    let (ids, webhooks, urls) = event.deliveries.iter().fold(
        (Vec::new(), Vec::new(), Vec::new()),
        |(mut ids, mut webhooks, mut urls), d| {
            ids.push(d.id.to_string());
            webhooks.push(d.webhook_id.to_string());
            urls.push(d.url.clone());
            (ids, webhooks, urls)
        },
    );
    let recorded = conn
        .query_one(
            &sql.enqueue,
            &[
                &event.id.to_string(),
                &org,
                &event.project,
                &event.event_type.as_str(),
                &&event.payload[..],
                &event.idempotency_key,
                &event.created_at,
                &ids,
                &webhooks,
                &urls,
            ],
        )
        .await;
    let recorded: i64 = match recorded {
        Ok(row) => row.try_get(0)?,
        Err(Failure::Db(e)) if violates(&e, "deliveries_pkey") => {
            return Err(match conn.query(&sql.existing_delivery, &[&ids]).await {
                Ok(rows) => match rows.first() {
                    Some(row) => Failure::DuplicateDelivery(parsed(row, 0)?),
                    None => Failure::Db(e),
                },
                // The host's transaction is aborted now; report the first error.
                Err(_) => Failure::Db(e),
            });
        }
        Err(other) => return Err(other),
    };
    if recorded > 0 {
        return Ok(Enqueued::New);
    }
    // The idempotency key was used before: hand back the first event.
    let first = conn
        .query_one(&sql.duplicate_event, &[&org, &event.idempotency_key])
        .await?;
    let event_id: EventId = parsed(&first, 0)?;
    let deliveries = conn
        .query(&sql.deliveries_of_event, &[&event_id.to_string()])
        .await?
        .iter()
        .map(record)
        .collect::<Result<_, _>>()?;
    Ok(Enqueued::Duplicate {
        event_id,
        deliveries,
    })
}

impl PostgresStore {
    /// Runs one statement on a pooled connection.
    async fn rows(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, QueueError> {
        let run = async {
            let client = self.client().await?;
            Conn::Pooled(&client).query(sql, params).await
        };
        run.await.map_err(|f| f.into_queue_error(self.schema()))
    }

    /// Runs one statement and reads its first row with `read` (the default without one).
    async fn first_row<T: Default>(
        &self,
        sql: &str,
        params: &Params<'_>,
        read: impl Fn(&Row) -> Result<T, Failure>,
    ) -> Result<T, QueueError> {
        let rows = self.rows(sql, params).await?;
        rows.first()
            .map(read)
            .transpose()
            .map_err(|f| self.queue_error(f))
            .map(Option::unwrap_or_default)
    }

    pub(super) fn queue_error(&self, failure: Failure) -> QueueError {
        failure.into_queue_error(self.schema())
    }
}

#[async_trait]
impl DeliveryQueue for PostgresStore {
    async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError> {
        self.enqueue_grouped(event).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claim>, QueueError> {
        let skip: Vec<String> = request.skip.iter().map(ToString::to_string).collect();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let (busy_webhooks, busy): (Vec<String>, Vec<i64>) = request
            .busy
            .iter()
            .map(|(webhook, n)| (webhook.to_string(), count(*n)))
            .unzip();
        let lease = LeaseId::random();
        let mut passed_over: Vec<String> = Vec::new();
        let mut tries = 0;
        let rows = loop {
            tries += 1;
            let sql = if tries == 1 {
                &self.inner.sql.claim
            } else {
                &self.inner.sql.claim_contended
            };
            let rows = self
                .rows(
                    sql,
                    &[
                        &request.now,
                        &skip,
                        &count(request.limit),
                        &request.lease_until(),
                        &lease.0,
                        &count(request.window()),
                        &busy_webhooks,
                        &busy,
                        &request.per_webhook.map(count),
                        &passed_over,
                    ],
                )
                .await?;
            // The statement's own row when it took nothing: the ids it had chosen.
            let chosen: Vec<String> = match rows.as_slice() {
                [only] if only.try_get::<_, Option<&str>>(0).ok().flatten().is_none() => only
                    .try_get::<_, Option<Vec<String>>>(13)
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                _ => break rows,
            };
            // Another worker's claim in flight held every row this one chose: claim again,
            // passing over those and whatever else is held.
            if chosen.is_empty() || tries >= CLAIM_TRIES {
                break Vec::new();
            }
            passed_over.extend(chosen);
        };
        // One copy of each event's payload, shared by its deliveries.
        let mut payloads: HashMap<EventId, Bytes> = HashMap::new();
        let mut claims = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut read = || -> Result<Claim, Failure> {
                let delivery = record(row)?;
                let payload = match payloads.get(&delivery.event_id) {
                    Some(p) => p.clone(),
                    None => {
                        let p = Bytes::copy_from_slice(row.try_get::<_, &[u8]>(12)?);
                        payloads.insert(delivery.event_id, p.clone());
                        p
                    }
                };
                Ok(Claim::new(delivery, payload, lease))
            };
            claims.push(read().map_err(|f| self.queue_error(f))?);
        }
        Ok(claims)
    }

    async fn finish(
        &self,
        delivery: &DeliveryId,
        lease: LeaseId,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<FinishReport, QueueError> {
        self.settle(Settle::new(delivery, lease, finish, now)).await
    }

    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, QueueError> {
        let rows = self
            .rows(&self.inner.sql.get_delivery, &[&id.to_string()])
            .await?;
        rows.first()
            .map(record)
            .transpose()
            .map_err(|f| self.queue_error(f))
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, QueueError> {
        let limit = page_limit(query.limit);
        let rows = self
            .rows(
                &self.inner.sql.list_deliveries,
                &[
                    &query.webhook_id.to_string(),
                    &query.before.map(|id| id.to_string()),
                    &query.status.map(DeliveryStatus::as_str),
                    &query.since,
                    &(limit as i64 + 1),
                    &query.until,
                ],
            )
            .await?;
        let mut items: Vec<DeliveryRecord> = rows
            .iter()
            .map(record)
            .collect::<Result<_, _>>()
            .map_err(|f| self.queue_error(f))?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|r| r.id)
        } else {
            None
        };
        Ok(DeliveryPage::new(items, next))
    }

    async fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptLog>, QueueError> {
        let rows = self
            .rows(&self.inner.sql.attempts, &[&id.to_string()])
            .await?;
        let read = |row: &Row| -> Result<AttemptLog, Failure> {
            let status: Option<i32> = row.try_get(1)?;
            let duration_us: i64 = row.try_get(2)?;
            Ok(AttemptLog {
                attempted_at: row.try_get(0)?,
                status: status.and_then(|s| u16::try_from(s).ok()),
                duration: std::time::Duration::from_micros(
                    u64::try_from(duration_us).unwrap_or_default(),
                ),
                response: row.try_get(3)?,
                error_kind: row
                    .try_get::<_, Option<&str>>(4)?
                    .map(AttemptErrorKind::from_name),
                error: row.try_get(5)?,
            })
        };
        rows.iter()
            .map(read)
            .collect::<Result<_, _>>()
            .map_err(|f| self.queue_error(f))
    }

    async fn redeliver(&self, id: &DeliveryId, now: DateTime<Utc>) -> Result<bool, QueueError> {
        let rows = self
            .rows(&self.inner.sql.redeliver, &[&id.to_string(), &now])
            .await?;
        let changed: i64 = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| self.queue_error(Failure::Db(e)))?
            .unwrap_or_default();
        Ok(changed > 0)
    }

    fn arrivals(&self) -> Option<Arc<Notify>> {
        Some(self.arrivals_signal())
    }

    async fn statistics(&self, query: &StatsQuery) -> Result<DeliveryStats, QueueError> {
        let ids: Vec<String> = query.webhooks.iter().map(ToString::to_string).collect();
        let rows = self
            .rows(
                &self.inner.sql.statistics,
                &[&ids, &query.since, &query.now],
            )
            .await?;
        let read = |rows: &[Row]| -> Result<DeliveryStats, Failure> {
            let count = |row: &Row, i: usize| -> Result<u64, Failure> {
                Ok(u64::try_from(row.try_get::<_, Option<i64>>(i)?.unwrap_or(0)).unwrap_or(0))
            };
            let duration = |row: &Row, i: usize| -> Result<Option<Duration>, Failure> {
                Ok(row
                    .try_get::<_, Option<i64>>(i)?
                    .map(|us| Duration::from_micros(u64::try_from(us).unwrap_or(0))))
            };
            let mut webhooks = BTreeMap::new();
            let mut overall = ((0, 0), (None, None));
            for row in rows {
                let attempts = (count(row, 5)?, count(row, 6)?);
                let durations = (duration(row, 7)?, duration(row, 8)?);
                if row.try_get::<_, Option<&str>>(0)?.is_none() {
                    overall = (attempts, durations);
                    continue;
                }
                let stats = WebhookStats::new(
                    (count(row, 1)?, count(row, 2)?, count(row, 3)?),
                    row.try_get(4)?,
                    attempts,
                    durations,
                );
                webhooks.insert(parsed::<WebhookId>(row, 0)?, stats);
            }
            Ok(DeliveryStats::new(webhooks, overall.0, overall.1))
        };
        read(&rows).map_err(|f| self.queue_error(f))
    }

    async fn depth(&self, now: DateTime<Utc>) -> Result<QueueDepth, QueueError> {
        self.first_row(&self.inner.sql.depth, &[&now], |row| {
            Ok(QueueDepth::new(
                count(row, 0)?,
                count(row, 1)?,
                count(row, 2)?,
                row.try_get(3)?,
            ))
        })
        .await
    }

    async fn purge(&self, request: &PurgeRequest) -> Result<PurgeReport, QueueError> {
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 3] =
            [&request.succeeded_before, &request.dead_before, &limit];
        self.first_row(&self.inner.sql.purge, &params, |row| {
            Ok(PurgeReport::new(
                count(row, 0)?,
                count(row, 1)?,
                count(row, 2)?,
                row.try_get(3)?,
            ))
        })
        .await
    }

    async fn event_deliveries(&self, event: &EventId) -> Result<Vec<DeliveryRecord>, QueueError> {
        let rows = self
            .rows(&self.inner.sql.deliveries_of_event, &[&event.to_string()])
            .await?;
        rows.iter()
            .map(record)
            .collect::<Result<_, _>>()
            .map_err(|f| self.queue_error(f))
    }

    async fn record_test(&self, event: NewEvent, attempt: AttemptLog) -> Result<(), QueueError> {
        let status = if attempt.is_success() {
            DeliveryStatus::Succeeded
        } else {
            DeliveryStatus::Dead
        };
        let ids: Vec<String> = event.deliveries.iter().map(|d| d.id.to_string()).collect();
        let webhooks: Vec<String> = event
            .deliveries
            .iter()
            .map(|d| d.webhook_id.to_string())
            .collect();
        let urls: Vec<&str> = event.deliveries.iter().map(|d| d.url.as_str()).collect();
        self.rows(
            &self.inner.sql.record_test,
            &[
                &event.id.to_string(),
                &event.org.to_string(),
                &event.project,
                &event.event_type.as_str(),
                &&event.payload[..],
                &event.created_at,
                &ids,
                &webhooks,
                &urls,
                &status.as_str(),
                &attempt.attempted_at,
                &attempt.status.map(i32::from),
                &i64::try_from(attempt.duration.as_micros()).unwrap_or(i64::MAX),
                &attempt.response,
                &attempt.error_kind.map(AttemptErrorKind::as_str),
                &attempt.error,
            ],
        )
        .await?;
        Ok(())
    }
}
