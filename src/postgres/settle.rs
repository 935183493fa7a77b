//! Group settles (see `group`): the `finish` calls that arrive while a settle statement is
//! running share the next one, so a busy process pays one round trip and one commit for
//! many attempts.
//!
//! Each settle is still one call of the schema's `finish` function, with the same checks;
//! a group runs them in one statement and one transaction, ordered by webhook and delivery
//! so that concurrent groups from other processes take their row locks in the same order.
//! When the database refuses a group (a row it cannot take, a deadlock victim) nothing of it
//! was written, and each settle runs again on its own: one bad settle never holds back the
//! others.

use chrono::{DateTime, Utc};
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
        fn column<'a, T>(settles: &[&'a Settle], field: impl Fn(&'a Settle) -> T) -> Vec<T> {
            settles.iter().map(|s| field(s)).collect()
        }
        let client = self.client().await?;
        let statement = client.prepare_cached(&self.inner.sql.finish_many).await?;
        let rows = client
            .query(
                &statement,
                &[
                    &column(settles, |s| s.id.as_str()),
                    &column(settles, |s| s.lease),
                    &column(settles, |s| s.now),
                    &column(settles, |s| s.attempted),
                    &column(settles, |s| s.attempted_at),
                    &column(settles, |s| s.status),
                    &column(settles, |s| s.duration_us),
                    &column(settles, |s| s.response.as_deref()),
                    &column(settles, |s| s.error_kind.as_deref()),
                    &column(settles, |s| s.error.as_deref()),
                    &column(settles, |s| s.next_status),
                    &column(settles, |s| s.due),
                    &column(settles, |s| s.next_error.as_deref()),
                ],
            )
            .await?;
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

/// Reads a row of `finish_many`: `ordinal, o_found, o_held, o_failing_since, o_recovered`.
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

    #[test]
    fn nul_characters_become_replacement_characters() {
        assert_eq!(storable("ok\0\0done"), "ok\u{FFFD}\u{FFFD}done");
        assert_eq!(storable("plain"), "plain");
    }
}
