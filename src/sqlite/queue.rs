//! [`DeliveryQueue`] over SQLite. Every write runs on the store's writer thread, atomically,
//! committed together with the writes that arrive beside it (see `writer`). A claim looks at
//! the first [`ClaimRequest::window`] due deliveries, lets the request choose, and moves the
//! chosen ones' `due_at` to the end of their lease.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{from_micros, micros, parsed, text, Failure, SqliteStore};
use crate::error::chain;
use crate::queue::AttemptErrorKind;
use crate::queue::{
    page_limit, AttemptLog, Claim, ClaimRequest, DeliveryPage, DeliveryQuery, DeliveryQueue,
    DeliveryRecord, DeliveryStats, DeliveryStatus, Enqueued, Finish, FinishReport, Health,
    LastError, LeaseId, NewEvent, PurgeReport, PurgeRequest, QueueDepth, QueueError, StatsQuery,
    WebhookStats,
};
use crate::webhook::{DeliveryId, EventId, WebhookId};

impl From<Failure> for QueueError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::DuplicateDelivery(id) => QueueError::Conflict(id),
            other => QueueError::backend(format!("SQLite: {}", chain(&other)), other),
        }
    }
}

/// The columns of a [`DeliveryRecord`], for [`record`].
const RECORD: &str = "d.id, d.event_id, e.org, e.event_type, d.webhook_id, d.url, d.status, \
     d.attempts, d.due_at, d.last_error, d.created_at, d.updated_at";

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let status: DeliveryStatus = parsed(row, 6)?;
    Ok(DeliveryRecord {
        id: parsed(row, 0)?,
        event_id: parsed(row, 1)?,
        org: row.get::<_, String>(2)?.into(),
        event_type: parsed(row, 3)?,
        webhook_id: parsed(row, 4)?,
        url: row.get(5)?,
        status,
        attempts: row.get(7)?,
        next_attempt_at: row.get::<_, Option<i64>>(8)?.map(from_micros),
        last_error: row.get(9)?,
        created_at: from_micros(row.get(10)?),
        updated_at: from_micros(row.get(11)?),
    })
}

fn deliveries_of(conn: &Connection, event: &str) -> Result<Vec<DeliveryRecord>, Failure> {
    let sql = format!(
        "SELECT {RECORD} FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.event_id = ?1 ORDER BY d.id"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map([event], record)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Writes an event and its deliveries, pending and due at its creation.
fn insert_event(conn: &Connection, event: &NewEvent) -> Result<(), Failure> {
    let (event_id, at) = (event.id.to_string(), micros(event.created_at));
    conn.prepare_cached(
        "INSERT INTO events
         (id, org, project, event_type, payload, idempotency_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        event_id,
        event.org.to_string(),
        event.project,
        event.event_type.as_str(),
        &event.payload[..],
        event.idempotency_key,
        at
    ])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO deliveries
         (id, event_id, webhook_id, url, status, due_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)
         ON CONFLICT (id) DO NOTHING",
    )?;
    for d in &event.deliveries {
        let id = d.id.to_string();
        let webhook = d.webhook_id.to_string();
        if insert.execute(params![id, event_id, webhook, d.url, at])? == 0 {
            return Err(Failure::DuplicateDelivery(d.id));
        }
    }
    Ok(())
}

/// [`DeliveryQueue::statistics`] in one statement: per webhook, the counts by status and the
/// oldest pending delivery, and the window's attempts with nearest-rank percentiles; then one
/// row (webhook NULL) with the percentiles over all the attempts.
const STATISTICS: &str = "
WITH ids(w) AS (SELECT value FROM json_each(?1)),
counts AS (
    SELECT webhook_id AS w, sum(status = 'pending') AS p, sum(status = 'succeeded') AS s,
           sum(status = 'dead') AS dd, min(CASE WHEN status = 'pending' THEN created_at END) AS oldest
    FROM deliveries WHERE webhook_id IN (SELECT w FROM ids) GROUP BY webhook_id),
a AS (
    SELECT d.webhook_id AS w, t.duration_us AS us, t.error_kind IS NULL AS ok
    FROM deliveries d JOIN attempts t ON t.delivery_id = d.id
    WHERE d.webhook_id IN (SELECT w FROM ids) AND t.attempted_at BETWEEN ?2 AND ?3),
ranked AS (
    SELECT w, us, ok, row_number() OVER (PARTITION BY w ORDER BY us) AS r,
           count(*) OVER (PARTITION BY w) AS n FROM a
    UNION ALL
    SELECT NULL, us, ok, row_number() OVER (ORDER BY us), count(*) OVER () FROM a),
durations AS (
    SELECT w, max(n) AS n, sum(ok) AS ok,
           max(CASE WHEN r = (n * 50 + 99) / 100 THEN us END) AS p50,
           max(CASE WHEN r = (n * 95 + 99) / 100 THEN us END) AS p95
    FROM ranked GROUP BY w)
SELECT ids.w, c.p, c.s, c.dd, c.oldest, d.n, d.ok, d.p50, d.p95
FROM ids LEFT JOIN counts c ON c.w = ids.w LEFT JOIN durations d ON d.w = ids.w
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, n, ok, p50, p95 FROM durations WHERE w IS NULL";

/// A count column that may be NULL (no rows), as a `u64`.
fn count(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    Ok(u64::try_from(row.get::<_, Option<i64>>(index)?.unwrap_or(0)).unwrap_or(0))
}

/// A duration in microseconds that may be NULL.
fn micros_duration(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> rusqlite::Result<Option<std::time::Duration>> {
    Ok(row
        .get::<_, Option<i64>>(index)?
        .map(|us| std::time::Duration::from_micros(u64::try_from(us).unwrap_or(0))))
}

/// Records an attempt (the caller counts it in the delivery's row).
fn log_attempt(conn: &Connection, delivery: &str, attempt: &AttemptLog) -> Result<(), Failure> {
    conn.prepare_cached(
        "INSERT INTO attempts
         (delivery_id, attempted_at, status, duration_us, response, error_kind, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        delivery,
        micros(attempt.attempted_at),
        attempt.status,
        i64::try_from(attempt.duration.as_micros()).unwrap_or(i64::MAX),
        attempt.response,
        attempt.error_kind.map(AttemptErrorKind::as_str),
        attempt.error,
    ])?;
    Ok(())
}

/// Applies an attempt's effect on its webhook's health; returns (failing_since, recovered).
fn apply_health(
    conn: &Connection,
    webhook: &str,
    health: Health,
    now: DateTime<Utc>,
) -> Result<(Option<DateTime<Utc>>, bool), Failure> {
    match health {
        Health::Failing => {
            conn.prepare_cached(
                "INSERT INTO endpoint_health (webhook_id, failing_since) VALUES (?1, ?2)
                 ON CONFLICT (webhook_id) DO NOTHING",
            )?
            .execute(params![webhook, micros(now)])?;
            let since: i64 = conn
                .prepare_cached("SELECT failing_since FROM endpoint_health WHERE webhook_id = ?1")?
                .query_row([webhook], |r| r.get(0))?;
            Ok((Some(from_micros(since)), false))
        }
        Health::Healthy => {
            let recovered = conn
                .prepare_cached("DELETE FROM endpoint_health WHERE webhook_id = ?1")?
                .execute([webhook])?
                > 0;
            Ok((None, recovered))
        }
        _ => Ok((None, false)),
    }
}

/// Webhook ids as the rows spell them, parsed once per claim: a claim's candidates share a
/// few webhooks, and a text id costs an allocation and a parse per row otherwise.
#[derive(Default)]
struct WebhookNames(HashMap<String, WebhookId>);

impl WebhookNames {
    fn read(&mut self, row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<WebhookId> {
        let text = text(row, index)?;
        if let Some(webhook) = self.0.get(text) {
            return Ok(*webhook);
        }
        let webhook: WebhookId = parsed(row, index)?;
        self.0.insert(text.to_owned(), webhook);
        Ok(webhook)
    }
}

/// How many due rows in a row a claim may find it cannot take (their webhooks at their
/// limit) before it stops reading its window and probes each webhook with room instead: a
/// quarter of the window, at least 16. The result is the same either way; reading one
/// endpoint's backlog to the end of the window is what it saves.
fn backlog_run(window: usize) -> usize {
    (window / 4).max(16)
}

/// The deliveries `request` claims, oldest due first. The first [`ClaimRequest::window`] due
/// rows usually hold them; they are read until the request is full, and only the ids it
/// takes are copied out. When the window ends with room left, or a run of rows the request
/// cannot take ([`backlog_run`]) shows an endpoint's backlog filling it, the earliest due
/// rows of every webhook with pending deliveries and room left are looked at too (an index
/// probe per webhook), so an endpoint at its limit with a deep backlog cannot hide the
/// others' work.
fn choose(conn: &Connection, request: &ClaimRequest) -> Result<Vec<String>, Failure> {
    let now = micros(request.now);
    let window = request.window();
    let mut names = WebhookNames::default();
    let mut selection = request.selection();
    let mut chosen: Vec<(i64, String, WebhookId)> = Vec::new();
    let mut seen = 0;
    let mut backlog = false;
    {
        // `LIMIT (SELECT ?2)`, not `LIMIT ?2`: SQLite recompiles a statement whose plan read a
        // bound LIMIT each time it is bound again.
        let mut due = conn.prepare_cached(
            "SELECT due_at, id, webhook_id FROM deliveries INDEXED BY deliveries_due
             WHERE status = 'pending' AND due_at <= ?1
             ORDER BY due_at LIMIT (SELECT ?2)",
        )?;
        let mut rows = due.query(params![now, i64::try_from(window).unwrap_or(i64::MAX)])?;
        let (mut refused, give_up) = (0, backlog_run(window));
        while !selection.is_full() {
            let Some(row) = rows.next()? else { break };
            seen += 1;
            let webhook = names.read(row, 2)?;
            if selection.take(webhook) {
                chosen.push((row.get(0)?, row.get(1)?, webhook));
                refused = 0;
            } else {
                refused += 1;
                if refused >= give_up {
                    // Most likely one webhook's backlog at its limit: the probes below find
                    // the others' work without reading the rest of it.
                    backlog = true;
                    break;
                }
            }
        }
    }
    if selection.is_full() || (seen < window && !backlog) {
        return Ok(chosen.into_iter().map(|(_, id, _)| id).collect());
    }
    let mut webhooks = Vec::new();
    {
        let mut distinct = conn.prepare_cached(
            "WITH RECURSIVE hooks(w) AS (
                 SELECT (SELECT min(webhook_id) FROM deliveries WHERE status = 'pending')
                 UNION ALL
                 SELECT (SELECT min(webhook_id) FROM deliveries
                         WHERE status = 'pending' AND webhook_id > hooks.w)
                 FROM hooks WHERE hooks.w IS NOT NULL)
             SELECT w FROM hooks WHERE w IS NOT NULL",
        )?;
        let mut rows = distinct.query([])?;
        while let Some(row) = rows.next()? {
            let webhook = names.read(row, 0)?;
            if selection.room(&webhook) > 0 {
                webhooks.push(webhook);
            }
        }
    }
    if webhooks.is_empty() {
        return Ok(chosen.into_iter().map(|(_, id, _)| id).collect());
    }
    let mut earliest = conn.prepare_cached(
        "SELECT due_at, id FROM deliveries
         WHERE webhook_id = (SELECT ?1) AND status = 'pending' AND due_at <= ?2
         ORDER BY due_at LIMIT (SELECT ?3)",
    )?;
    // A webhook with room left had every one of its window rows taken: its earliest rows
    // begin with those.
    let known: std::collections::HashSet<String> =
        chosen.iter().map(|(_, id, _)| id.clone()).collect();
    let mut candidates = chosen;
    for webhook in webhooks {
        let room = selection.taken(&webhook) + selection.room(&webhook);
        let room = i64::try_from(room).unwrap_or(i64::MAX);
        let mut rows = earliest.query(params![webhook.to_string(), now, room])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(1)?;
            if !known.contains(&id) {
                candidates.push((row.get(0)?, id, webhook));
            }
        }
    }
    candidates.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(request.select(candidates.into_iter().map(|(_, id, w)| (w, id))))
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError> {
        Ok(self
            .call(move |conn| {
                let org = event.org.to_string();
                if let Some(key) = &event.idempotency_key {
                    let first: Option<String> = conn
                        .prepare_cached(
                            "SELECT id FROM events WHERE org = ?1 AND idempotency_key = ?2",
                        )?
                        .query_row(params![org, key], |r| r.get(0))
                        .optional()?;
                    if let Some(first) = first {
                        let deliveries = deliveries_of(conn, &first)?;
                        let event_id: EventId =
                            first.parse().map_err(|e: crate::webhook::BadId| {
                                rusqlite::Error::FromSqlConversionFailure(
                                    0,
                                    rusqlite::types::Type::Text,
                                    e.into(),
                                )
                            })?;
                        return Ok(Enqueued::Duplicate {
                            event_id,
                            deliveries,
                        });
                    }
                }
                insert_event(conn, &event)?;
                Ok(Enqueued::New)
            })
            .await?)
    }

    /// Claims run one at a time on the writer and see every due row (the probes find what
    /// a backlog hides), so a short one took them all.
    fn short_claims_take_everything(&self) -> bool {
        true
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claim>, QueueError> {
        let request = request.clone();
        let lease = LeaseId::random();
        Ok(self
            .call(move |conn| {
                let until = micros(request.lease_until());
                let chosen = choose(conn, &request)?;
                let mut claims = Vec::with_capacity(chosen.len());
                if chosen.is_empty() {
                    return Ok(claims);
                }
                let mut take = conn.prepare_cached(
                    "UPDATE deliveries SET due_at = ?1, lease = ?2 WHERE id = ?3",
                )?;
                // `(SELECT ?1)`: SQLite recompiles a join whose plan read a bound key, at
                // every call; a scalar subquery keeps the plan (and the index) fixed.
                let sql = format!(
                    "SELECT {RECORD}, e.payload
                     FROM deliveries d JOIN events e ON e.id = d.event_id
                     WHERE d.id = (SELECT ?1)"
                );
                let mut read = conn.prepare_cached(&sql)?;
                // One copy of each event's payload, shared by its deliveries.
                let mut payloads: HashMap<EventId, Bytes> = HashMap::new();
                for id in &chosen {
                    take.execute(params![until, lease.0, id])?;
                    let mut rows = read.query([id])?;
                    let Some(row) = rows.next()? else { continue };
                    let delivery = record(row)?;
                    let payload = match payloads.get(&delivery.event_id) {
                        Some(p) => p.clone(),
                        None => {
                            let p = Bytes::from(row.get::<_, Vec<u8>>(12)?);
                            payloads.insert(delivery.event_id, p.clone());
                            p
                        }
                    };
                    claims.push(Claim::new(delivery, payload, lease));
                }
                Ok(claims)
            })
            .await?)
    }

    async fn finish(
        &self,
        delivery: &DeliveryId,
        lease: LeaseId,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<FinishReport, QueueError> {
        let id = delivery.to_string();
        Ok(self
            .call(move |conn| {
                let found: Option<(String, String, Option<i64>)> = conn
                    .prepare_cached(
                        "SELECT webhook_id, status, lease FROM deliveries WHERE id = ?1",
                    )?
                    .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                let Some((webhook, status, held_by)) = found else {
                    return Ok(FinishReport::lost());
                };
                let held = held_by == Some(lease.0) && status == "pending";
                let change = finish.transition(now);
                if let Some(attempt) = finish.attempt() {
                    log_attempt(conn, &id, attempt)?;
                }
                let (failing_since, recovered) = apply_health(conn, &webhook, change.health, now)?;
                let report = if held {
                    FinishReport::held()
                } else {
                    FinishReport::lost()
                }
                .health(failing_since, recovered);
                let (keep, error) = match change.last_error {
                    LastError::Set(text) => (false, Some(text)),
                    LastError::Clear => (false, None),
                    _ => (true, None),
                };
                // One write of the row: the count, the error and, with the lease, the state.
                if change.attempted || held {
                    conn.prepare_cached(
                        "UPDATE deliveries SET attempts = attempts + ?2,
                             last_error = CASE WHEN ?3 THEN last_error ELSE ?4 END,
                             updated_at = ?5,
                             status = CASE WHEN ?6 THEN ?7 ELSE status END,
                             due_at = CASE WHEN ?6 THEN ?8 ELSE due_at END,
                             lease = CASE WHEN ?6 THEN NULL ELSE lease END
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        i64::from(finish.attempt().is_some()),
                        keep,
                        error,
                        micros(now),
                        held,
                        change.status.as_str(),
                        change.due.map(micros)
                    ])?;
                }
                Ok(report)
            })
            .await?)
    }

    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, QueueError> {
        let id = id.to_string();
        Ok(self
            .read(move |conn| {
                let sql = format!(
                    "SELECT {RECORD} FROM deliveries d JOIN events e ON e.id = d.event_id
                     WHERE d.id = ?1"
                );
                Ok(conn
                    .prepare_cached(&sql)?
                    .query_row([id], record)
                    .optional()?)
            })
            .await?)
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, QueueError> {
        let webhook = query.webhook_id.to_string();
        let status = query.status.map(DeliveryStatus::as_str);
        let since = query.since.map(micros);
        let until = query.until.map(micros);
        // Ids are prefix + fixed-width hex: text order is creation order; "~" sorts after.
        let before = query
            .before
            .map_or_else(|| "~".to_owned(), |id| id.to_string());
        let limit = page_limit(query.limit);
        Ok(self
            .read(move |conn| {
                let sql = format!(
                    "SELECT {RECORD} FROM deliveries d JOIN events e ON e.id = d.event_id
                     WHERE d.webhook_id = ?1 AND d.id < ?2
                       AND (?3 IS NULL OR d.status = ?3)
                       AND (?4 IS NULL OR d.created_at >= ?4)
                       AND (?6 IS NULL OR d.created_at < ?6)
                     ORDER BY d.id DESC LIMIT ?5"
                );
                let mut statement = conn.prepare_cached(&sql)?;
                let rows = statement.query_map(
                    params![webhook, before, status, since, limit as i64 + 1, until],
                    record,
                )?;
                let mut items: Vec<DeliveryRecord> = rows.collect::<Result<_, _>>()?;
                let next = if items.len() > limit {
                    items.truncate(limit);
                    items.last().map(|r| r.id)
                } else {
                    None
                };
                Ok(DeliveryPage::new(items, next))
            })
            .await?)
    }

    async fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptLog>, QueueError> {
        let id = id.to_string();
        Ok(self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT attempted_at, status, duration_us, response, error_kind, error
                     FROM attempts WHERE delivery_id = ?1 ORDER BY rowid",
                )?;
                let rows = statement.query_map([id], |r| {
                    Ok(AttemptLog {
                        attempted_at: from_micros(r.get(0)?),
                        status: r.get(1)?,
                        duration: std::time::Duration::from_micros(
                            u64::try_from(r.get::<_, i64>(2)?).unwrap_or_default(),
                        ),
                        response: r.get(3)?,
                        error_kind: r
                            .get::<_, Option<String>>(4)?
                            .map(|name| AttemptErrorKind::from_name(&name)),
                        error: r.get(5)?,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?)
    }

    async fn statistics(&self, query: &StatsQuery) -> Result<DeliveryStats, QueueError> {
        let ids: Vec<String> = query.webhooks.iter().map(ToString::to_string).collect();
        let ids = serde_json::to_string(&ids)
            .map_err(|e| QueueError::backend("SQLite: listing the webhooks failed", e))?;
        let (since, now) = (micros(query.since), micros(query.now));
        Ok(self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(STATISTICS)?;
                let mut rows = statement.query(params![ids, since, now])?;
                let mut webhooks = std::collections::BTreeMap::new();
                let mut overall = ((0, 0), (None, None));
                while let Some(row) = rows.next()? {
                    let attempts = (count(row, 5)?, count(row, 6)?);
                    let durations = (micros_duration(row, 7)?, micros_duration(row, 8)?);
                    match row.get::<_, Option<String>>(0)? {
                        None => overall = (attempts, durations),
                        Some(_) => {
                            let stats = WebhookStats::new(
                                (count(row, 1)?, count(row, 2)?, count(row, 3)?),
                                row.get::<_, Option<i64>>(4)?.map(from_micros),
                                attempts,
                                durations,
                            );
                            webhooks.insert(parsed::<WebhookId>(row, 0)?, stats);
                        }
                    }
                }
                Ok(DeliveryStats::new(webhooks, overall.0, overall.1))
            })
            .await?)
    }

    async fn depth(&self, now: DateTime<Utc>) -> Result<QueueDepth, QueueError> {
        let now = micros(now);
        Ok(self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT sum(due_at <= ?1), sum(due_at > ?1 AND lease IS NULL),
                                sum(due_at > ?1 AND lease IS NOT NULL),
                                min(CASE WHEN due_at <= ?1 THEN due_at END)
                         FROM deliveries INDEXED BY deliveries_due WHERE status = 'pending'",
                    )?
                    .query_row([now], |row| {
                        Ok(QueueDepth::new(
                            count(row, 0)?,
                            count(row, 1)?,
                            count(row, 2)?,
                            row.get::<_, Option<i64>>(3)?.map(from_micros),
                        ))
                    })?)
            })
            .await?)
    }

    async fn purge(&self, request: &PurgeRequest) -> Result<PurgeReport, QueueError> {
        let (succeeded, dead) = (
            micros(request.succeeded_before),
            micros(request.dead_before),
        );
        let limit = request.limit;
        Ok(self
            .call(move |conn| {
                let mut chosen: Vec<(String, String)> = Vec::new();
                {
                    let mut select = conn.prepare_cached(
                        "SELECT id, event_id FROM deliveries
                         WHERE (status = 'succeeded' AND updated_at < ?1)
                            OR (status = 'dead' AND updated_at < ?2)
                         LIMIT (SELECT ?3)",
                    )?;
                    let bound = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
                    let mut rows = select.query(params![succeeded, dead, bound])?;
                    while let Some(row) = rows.next()? {
                        chosen.push((row.get(0)?, row.get(1)?));
                    }
                }
                let more = chosen.len() > limit;
                chosen.truncate(limit);
                let mut report = PurgeReport::default();
                let mut events: Vec<&str> = Vec::with_capacity(chosen.len());
                for (id, event) in &chosen {
                    let attempts = conn
                        .prepare_cached("DELETE FROM attempts WHERE delivery_id = ?1")?
                        .execute([id])?;
                    report.attempts += u64::try_from(attempts).unwrap_or(0);
                    report.deliveries += u64::try_from(
                        conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?
                            .execute([id])?,
                    )
                    .unwrap_or(0);
                    events.push(event);
                }
                events.sort_unstable();
                events.dedup();
                for event in events {
                    let gone = conn
                        .prepare_cached(
                            "DELETE FROM events WHERE id = ?1
                             AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1)",
                        )?
                        .execute([event])?;
                    report.events += u64::try_from(gone).unwrap_or(0);
                }
                report.more = more;
                Ok(report)
            })
            .await?)
    }

    async fn event_deliveries(&self, event: &EventId) -> Result<Vec<DeliveryRecord>, QueueError> {
        let event = event.to_string();
        Ok(self.read(move |conn| deliveries_of(conn, &event)).await?)
    }

    async fn record_test(&self, event: NewEvent, attempt: AttemptLog) -> Result<(), QueueError> {
        let mut event = event;
        event.idempotency_key = None;
        Ok(self
            .call(move |conn| {
                insert_event(conn, &event)?;
                let status = if attempt.is_success() {
                    DeliveryStatus::Succeeded
                } else {
                    DeliveryStatus::Dead
                };
                for d in &event.deliveries {
                    let id = d.id.to_string();
                    conn.prepare_cached(
                        "UPDATE deliveries SET status = ?2, due_at = NULL, last_error = ?3,
                             updated_at = ?4, attempts = attempts + 1
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        status.as_str(),
                        attempt.error,
                        micros(attempt.attempted_at)
                    ])?;
                    log_attempt(conn, &id, &attempt)?;
                }
                Ok(())
            })
            .await?)
    }

    async fn redeliver(&self, id: &DeliveryId, now: DateTime<Utc>) -> Result<bool, QueueError> {
        let id = id.to_string();
        Ok(self
            .call(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE deliveries SET status = 'pending', due_at = ?2, lease = NULL,
                             updated_at = ?2
                         WHERE id = ?1",
                    )?
                    .execute(params![id, micros(now)])?
                    > 0)
            })
            .await?)
    }
}
