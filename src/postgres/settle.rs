//! Group settles (see `group`): the `finish` calls that arrive while a settle statement is
//! running share the next one, so a busy process pays one round trip and one commit for
//! many attempts.
//!
//! A group runs in one statement and one transaction, taking its row locks in webhook then
//! delivery order, so that concurrent groups from other processes take them in the same
//! order. A group of distinct deliveries runs as set operations (the schema's `finish_set`
//! function: one insert of the attempts, one update of the deliveries, one health change per
//! webhook, decided by its latest attempt in the group; a function, so that its lasting plan
//! reads every table through its keys); a settle on its own, or a group that settles one
//! delivery twice, calls the schema's `finish` function per settle, in sequence, with the
//! same checks. When the database refuses a group (a row it cannot take, a deadlock victim)
//! nothing of it was written, and each settle runs again on its own: one bad settle never
//! holds back the others.

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::error::Failure;
use super::group::{self, Group, Reply};
use super::PostgresStore;
use crate::queue::{Finish, FinishReport, LastError, LeaseId, QueueError};
use crate::webhook::DeliveryId;

/// One `finish` call, as the schema function's arguments.
#[derive(Debug)]
pub(super) struct Settle {
    id: String,
    lease: i64,
    now: DateTime<Utc>,
    attempted: bool,
    attempted_at: Option<DateTime<Utc>>,
    status: Option<i32>,
    duration_us: Option<i64>,
    response: Option<String>,
    error_kind: Option<String>,
    error: Option<String>,
    next_status: &'static str,
    due: Option<DateTime<Utc>>,
    next_error: Option<String>,
}

impl Settle {
    pub(super) fn new(
        delivery: &DeliveryId,
        lease: LeaseId,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Self {
        let change = finish.transition(now);
        // The schema's `finish` applies the transition: `next_error` NULL keeps the last
        // error unless the status is `succeeded` or an attempt was made (whose own error,
        // NULL on success, then stands), which is what `LastError` says for each finish.
        let next_error = match change.last_error {
            LastError::Set(text) => Some(text),
            _ => None,
        };
        let (status, due) = (change.status, change.due);
        let attempt = match finish {
            Finish::Attempted { attempt, .. } => Some(attempt),
            _ => None,
        };
        Self {
            id: delivery.to_string(),
            lease: lease.0,
            now,
            attempted: attempt.is_some(),
            attempted_at: attempt.as_ref().map(|a| a.attempted_at),
            status: attempt.as_ref().and_then(|a| a.status.map(i32::from)),
            duration_us: attempt
                .as_ref()
                .map(|a| i64::try_from(a.duration.as_micros()).unwrap_or(i64::MAX)),
            response: attempt.as_ref().map(|a| storable(&a.response)),
            error_kind: attempt
                .as_ref()
                .and_then(|a| a.error_kind.map(|k| k.as_str().to_owned())),
            error: attempt.and_then(|a| a.error.as_deref().map(storable)),
            next_status: status.as_str(),
            due,
            next_error: next_error.as_deref().map(storable),
        }
    }
}

/// A group of settles as the settle statements' thirteen arrays, one element per settle.
pub(super) struct Columns<'a> {
    id: Vec<&'a str>,
    lease: Vec<i64>,
    now: Vec<DateTime<Utc>>,
    attempted: Vec<bool>,
    attempted_at: Vec<Option<DateTime<Utc>>>,
    status: Vec<Option<i32>>,
    duration_us: Vec<Option<i64>>,
    response: Vec<Option<&'a str>>,
    error_kind: Vec<Option<&'a str>>,
    error: Vec<Option<&'a str>>,
    next_status: Vec<&'static str>,
    due: Vec<Option<DateTime<Utc>>>,
    next_error: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    /// The arrays of `settles`, in their order.
    pub(super) fn of(settles: &[&'a Settle]) -> Self {
        fn column<'a, T>(settles: &[&'a Settle], field: impl Fn(&'a Settle) -> T) -> Vec<T> {
            settles.iter().map(|s| field(s)).collect()
        }
        Self {
            id: column(settles, |s| s.id.as_str()),
            lease: column(settles, |s| s.lease),
            now: column(settles, |s| s.now),
            attempted: column(settles, |s| s.attempted),
            attempted_at: column(settles, |s| s.attempted_at),
            status: column(settles, |s| s.status),
            duration_us: column(settles, |s| s.duration_us),
            response: column(settles, |s| s.response.as_deref()),
            error_kind: column(settles, |s| s.error_kind.as_deref()),
            error: column(settles, |s| s.error.as_deref()),
            next_status: column(settles, |s| s.next_status),
            due: column(settles, |s| s.due),
            next_error: column(settles, |s| s.next_error.as_deref()),
        }
    }

    /// The arrays in the statements' order (`$1` to `$13`).
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 13] {
        [
            &self.id,
            &self.lease,
            &self.now,
            &self.attempted,
            &self.attempted_at,
            &self.status,
            &self.duration_us,
            &self.response,
            &self.error_kind,
            &self.error,
            &self.next_status,
            &self.due,
            &self.next_error,
        ]
    }
}

/// PostgreSQL text cannot hold U+0000, and a response body is the endpoint's to choose: each
/// NUL is kept as U+FFFD so that a hostile body cannot make an attempt unrecordable.
fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// Settles waiting to share the next statement.
pub(super) type SettleGroup = Group<Settle, FinishReport>;

impl PostgresStore {
    /// Settles one claim, together with whatever other settles are waiting.
    pub(super) async fn settle(&self, settle: Settle) -> Result<FinishReport, QueueError> {
        let run = |batch| {
            let store = self.clone();
            async move { store.settle_batch(batch).await }
        };
        self.inner
            .settles
            .join(settle, run, || self.queue_error(Failure::Cancelled))
            .await
    }

    async fn settle_batch(&self, batch: Vec<(Settle, Reply<FinishReport>)>) {
        let error = |f| self.queue_error(f);
        let batch = if batch.len() > 1 {
            let settles: Vec<&Settle> = batch.iter().map(|(s, _)| s).collect();
            match self.settle_many(&settles).await {
                Ok(reports) => return group::answer(batch, reports, error),
                Err(failure) => match group::failed(batch, failure, error) {
                    Some(batch) => batch,
                    None => return,
                },
            }
        } else {
            batch
        };
        for (settle, reply) in batch {
            let _ = reply.send(self.settle_one(&settle).await);
        }
    }

    /// Settles one on its own.
    async fn settle_one(&self, settle: &Settle) -> Result<FinishReport, QueueError> {
        let report = match self.settle_many(&[settle]).await {
            Ok(mut reports) => reports.pop().unwrap_or_else(|| Err(no_row())),
            Err(failure) => Err(failure),
        };
        report.map_err(|f| self.queue_error(f))
    }

    /// Runs the settles in one statement (one transaction); the reports come back in the
    /// settles' order.
    async fn settle_many(
        &self,
        settles: &[&Settle],
    ) -> Result<Vec<Result<FinishReport, Failure>>, Failure> {
        // Set operations for distinct deliveries; the per-settle function keeps the exact
        // sequence when one delivery is settled twice in a group.
        let mut ids: Vec<&str> = settles.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        let distinct = ids.windows(2).all(|pair| pair[0] != pair[1]);
        let sql = if distinct && settles.len() > 1 {
            &self.inner.sql.finish_set
        } else {
            &self.inner.sql.finish_many
        };
        self.run_settles(sql, settles).await
    }

    /// Runs `sql` (`finish_set` or `finish_many`) over the settles.
    pub(super) async fn run_settles(
        &self,
        sql: &str,
        settles: &[&Settle],
    ) -> Result<Vec<Result<FinishReport, Failure>>, Failure> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        let columns = Columns::of(settles);
        let rows = client.query(&statement, &columns.params()).await?;
        let mut reports: Vec<Result<FinishReport, Failure>> =
            settles.iter().map(|_| Err(no_row())).collect();
        for row in &rows {
            let ordinal: i64 = row.try_get(0)?;
            let slot = usize::try_from(ordinal - 1)
                .ok()
                .and_then(|i| reports.get_mut(i))
                .ok_or_else(|| Failure::Corrupt(format!("finish returned row {ordinal}")))?;
            *slot = report(row);
        }
        Ok(reports)
    }
}

fn no_row() -> Failure {
    Failure::Corrupt("finish returned no row".into())
}

/// Reads a row of `finish_many` or `finish_set`: `ordinal, found, held, failing_since,
/// recovered`.
fn report(row: &Row) -> Result<FinishReport, Failure> {
    let held: bool = row.try_get(2)?;
    Ok(FinishReport {
        lease_lost: !held,
        failing_since: row.try_get(3)?,
        recovered: row.try_get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::AttemptResult;
    use crate::event::EventType;
    use crate::postgres::PostgresOptions;
    use crate::queue::{AttemptLog, ClaimRequest, DeliveryQueue, NewDelivery, NewEvent, Next};
    use crate::webhook::{OrgId, WebhookId};
    use bytes::Bytes;
    use std::time::Duration;

    /// What one settle left behind: its report, and its delivery's status, attempts, last
    /// error, next attempt time and logged attempts.
    type Left = (
        Option<(bool, Option<DateTime<Utc>>, bool)>,
        Option<(String, i32, Option<String>, Option<DateTime<Utc>>, i64)>,
    );

    /// Settles a group of seven in a fresh schema with `sql`, and reads what each left and
    /// the endpoints' health.
    async fn settle_group(
        url: &str,
        schema: &str,
        pick: fn(&super::super::schema::Statements) -> &String,
        ids: &[DeliveryId],
        webhooks: &[WebhookId],
        now: DateTime<Utc>,
    ) -> (Vec<Left>, Vec<(String, DateTime<Utc>)>) {
        let store =
            PostgresStore::connect(PostgresOptions::new(url).expect("options").schema(schema))
                .await
                .expect("connect");
        store.migrate().await.expect("migrate");
        let client = store.pool().get().await.expect("client");
        let mut event = NewEvent::new(
            OrgId::new("acme"),
            "p",
            EventType::DatasetComplete,
            Bytes::from_static(b"{}"),
            now,
        );
        // Two deliveries to A, two to B, one each to C and D; the seventh id is unknown.
        event.deliveries = (0..6)
            .map(|i| NewDelivery::new(ids[i], webhooks[[0, 0, 1, 1, 2, 3][i]], "http://h/"))
            .collect();
        store.enqueue(event).await.expect("enqueue");
        let claims = store
            .claim(&ClaimRequest::new(now, Duration::from_secs(600), 6))
            .await
            .expect("claim");
        let lease = |i: usize| {
            claims
                .iter()
                .find(|c| c.delivery.id == ids[i])
                .map(|c| c.lease)
                .expect("claimed")
        };
        // A has been failing for an hour.
        client
            .execute(
                &format!("INSERT INTO {schema}.endpoint_health VALUES ($1, $2)"),
                &[
                    &webhooks[0].to_string(),
                    &(now - chrono::Duration::hours(1)),
                ],
            )
            .await
            .expect("health");
        let attempted = |ok: bool, next: Next| {
            let result = if ok {
                AttemptResult::Delivered {
                    status: http::StatusCode::OK,
                    body: "fine".into(),
                    duration: Duration::from_millis(3),
                }
            } else {
                AttemptResult::Rejected {
                    status: http::StatusCode::INTERNAL_SERVER_ERROR,
                    body: "down".into(),
                    duration: Duration::from_millis(4),
                }
            };
            Finish::Attempted {
                attempt: AttemptLog::of(&result, now),
                next,
            }
        };
        let settles = [
            Settle::new(&ids[0], lease(0), attempted(true, Next::Succeeded), now),
            Settle::new(&ids[1], lease(1), attempted(true, Next::Succeeded), now),
            Settle::new(
                &ids[2],
                lease(2),
                attempted(false, Next::RetryAt(now + chrono::Duration::hours(1))),
                now,
            ),
            Settle::new(&ids[3], lease(3), attempted(false, Next::Dead), now),
            // A lease that is not the delivery's: the attempt counts, the state stays.
            Settle::new(
                &ids[4],
                LeaseId(lease(4).0.wrapping_add(1)),
                attempted(true, Next::Succeeded),
                now,
            ),
            Settle::new(&ids[5], lease(5), Finish::Released, now),
            Settle::new(&ids[6], lease(0), attempted(true, Next::Succeeded), now),
        ];
        let group: Vec<&Settle> = settles.iter().collect();
        let reports = store
            .run_settles(pick(&store.inner.sql), &group)
            .await
            .expect("group");
        let mut left = Vec::new();
        for (id, report) in ids.iter().zip(reports) {
            let row = client
                .query_opt(
                    &format!(
                        "SELECT status, attempts, last_error, due_at,
                            (SELECT count(*) FROM {schema}.attempts a WHERE a.delivery_id = d.id)
                         FROM {schema}.deliveries d WHERE id = $1"
                    ),
                    &[&id.to_string()],
                )
                .await
                .expect("read");
            left.push((
                report
                    .ok()
                    .map(|r| (r.lease_lost, r.failing_since, r.recovered)),
                row.map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))),
            ));
        }
        let health = client
            .query(
                &format!(
                    "SELECT webhook_id, failing_since FROM {schema}.endpoint_health ORDER BY 1"
                ),
                &[],
            )
            .await
            .expect("health")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop");
        (left, health)
    }

    /// A group of distinct deliveries settled as set operations leaves exactly what the
    /// schema's `finish` function, called per settle, leaves: reports, deliveries, attempts
    /// and health.
    #[tokio::test]
    async fn set_settles_match_the_function_settle_by_settle() {
        let Ok(url) = std::env::var("DATAOPS_WEBHOOKS_TEST_POSTGRES") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the PostgreSQL tests"
            );
            return;
        };
        let ids: Vec<DeliveryId> = (0..7).map(|_| DeliveryId::new()).collect();
        let mut webhooks: Vec<WebhookId> = (0..4).map(|_| WebhookId::new()).collect();
        webhooks.sort_unstable();
        let now = Utc::now();
        let tag = std::process::id();
        let (set, set_health) = settle_group(
            &url,
            &format!("settle_set_{tag}"),
            |sql| &sql.finish_set,
            &ids,
            &webhooks,
            now,
        )
        .await;
        let (function, function_health) = settle_group(
            &url,
            &format!("settle_function_{tag}"),
            |sql| &sql.finish_many,
            &ids,
            &webhooks,
            now,
        )
        .await;
        assert_eq!(set, function);
        assert_eq!(set_health, function_health);
        let now_micros = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros());
        // A recovers once; B fails since now; C's stale attempt counts; D is released.
        assert_eq!(set[0].0, Some((false, None, true)));
        assert_eq!(set[1].0, Some((false, None, false)));
        assert_eq!(
            set[2].0.map(|r| (r.0, now_micros(r.1))),
            Some((false, Some(now.timestamp_micros())))
        );
        assert_eq!(
            set[3].0.map(|r| now_micros(r.1)),
            Some(Some(now.timestamp_micros()))
        );
        assert_eq!(set[4].0.map(|r| r.0), Some(true), "the lease was lost");
        let c = set[4].1.clone().expect("C");
        assert_eq!((c.0.as_str(), c.1, c.4), ("pending", 1, 1));
        let d = set[5].1.clone().expect("D");
        assert_eq!((d.0.as_str(), d.1, d.4), ("pending", 0, 0));
        assert_eq!(
            set[6],
            (Some((true, None, false)), None),
            "an unknown delivery"
        );
        assert_eq!(set[2].1.clone().expect("B").0, "pending");
        assert_eq!(set[3].1.clone().expect("B").0, "dead");
        assert_eq!(
            set_health.len(),
            1,
            "A recovered, B is failing: {set_health:?}"
        );
    }

    #[test]
    fn nul_characters_become_replacement_characters() {
        assert_eq!(storable("ok\0\0done"), "ok\u{FFFD}\u{FFFD}done");
        assert_eq!(storable("plain"), "plain");
    }
}
