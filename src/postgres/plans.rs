//! Tests: the hot statements read the tables through their keys however large the tables
//! are and however small they were when PostgreSQL planned the statement. A prepared
//! statement's lasting plan is made by its sixth execution and kept until the table is
//! analyzed again; each of its first five executions is planned with that call's own
//! values. A plan that read a small table whole went on reading it whole once it had grown.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use tokio_postgres::types::ToSql;

use super::schema::Statements;
use super::settle::{Columns, Settle};
use super::{PostgresOptions, PostgresStore};
use crate::event::EventType;
use crate::queue::{ClaimRequest, DeliveryQueue, Finish, NewDelivery, NewEvent};
use crate::webhook::{DeliveryId, OrgId, WebhookId};

/// The database the tests use, or `None` outside CI when none is configured.
fn database() -> Option<String> {
    let url = std::env::var("DATAOPS_WEBHOOKS_TEST_POSTGRES").ok();
    assert!(
        url.is_some() || std::env::var_os("CI").is_none(),
        "CI must run the PostgreSQL tests"
    );
    url
}

/// A store on one connection (so that the plans made on it are the ones measured) in a
/// fresh schema.
async fn store(url: &str, schema: &str) -> PostgresStore {
    let options = PostgresOptions::new(url)
        .expect("options")
        .schema(schema)
        .pool_size(1);
    let store = PostgresStore::connect(options).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// Adds 20,000 pending deliveries, each with its event and queue row, due at `due`.
async fn grow(store: &PostgresStore, due: &str) {
    let schema = store.schema();
    let client = store.pool().get().await.expect("client");
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.events (id, org, project, event_type, payload, created_at)
                 SELECT 'grown-' || i, 'acme', 'p', 'dataset-complete', '\\x7b7d', now()
                 FROM generate_series(1, 20000) i;
             INSERT INTO {schema}.deliveries
                 (id, event_id, webhook_id, url, status, due_at, created_at, updated_at)
                 SELECT 'grown-' || i, 'grown-' || i, 'w', 'http://h/', 'pending', {due},
                        now(), now()
                 FROM generate_series(1, 20000) i;
             INSERT INTO {schema}.queue (delivery_id, webhook_id, due_at)
                 SELECT 'grown-' || i, 'w', {due} FROM generate_series(1, 20000) i;"
        ))
        .await
        .expect("grow");
}

/// Runs `sql` with `params` in a transaction of its own on the store's connection and
/// returns its rows, and the table rows it read: by scanning whole tables, and in all.
async fn measured(
    store: &PostgresStore,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> (Vec<tokio_postgres::Row>, i64, i64) {
    // The counters of the session's pending statistics, before and after.
    const READ: &str = "SELECT coalesce(sum(seq_tup_read), 0)::bigint,
            coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)::bigint
        FROM pg_stat_xact_user_tables WHERE schemaname = $1";
    let schema = store.schema().to_owned();
    let mut client = store.pool().get().await.expect("client");
    let tx = client.transaction().await.expect("begin");
    let read = |row: tokio_postgres::Row| (row.get::<_, i64>(0), row.get::<_, i64>(1));
    let before = read(tx.query_one(READ, &[&schema]).await.expect("read"));
    let statement = tx.prepare_cached(sql).await.expect("prepare");
    let rows = tx.query(&statement, params).await.expect("statement");
    let after = read(tx.query_one(READ, &[&schema]).await.expect("read"));
    tx.commit().await.expect("commit");
    (rows, after.0 - before.0, after.1 - before.1)
}

async fn drop_schema(store: PostgresStore) {
    let client = store.pool().get().await.expect("client");
    client
        .batch_execute(&format!("DROP SCHEMA {} CASCADE", store.schema()))
        .await
        .expect("drop");
}

/// Emits one event with two deliveries to `webhook` and claims them.
async fn claim_two(store: &PostgresStore, webhook: WebhookId) -> Vec<Settle> {
    let mut event = NewEvent::new(
        OrgId::new("acme"),
        "p",
        EventType::DatasetComplete,
        Bytes::from_static(b"{}"),
        Utc::now(),
    );
    event.deliveries = (0..2)
        .map(|_| NewDelivery::new(DeliveryId::new(), webhook, "http://h/"))
        .collect();
    store.enqueue(event).await.expect("enqueue");
    let claims = store
        .claim(&ClaimRequest::new(Utc::now(), Duration::from_secs(600), 2))
        .await
        .expect("claim");
    assert_eq!(claims.len(), 2);
    let now = Utc::now();
    claims
        .iter()
        .map(|c| Settle::new(&c.delivery.id, c.lease, Finish::Released, now))
        .collect()
}

/// Settles ten groups of two with `pick`'s statement while the tables hold a few rows,
/// grows the tables, and returns the rows the next group read by scanning whole tables.
async fn settle_after_growth(url: &str, schema: &str, pick: fn(&Statements) -> &String) -> i64 {
    let store = store(url, schema).await;
    let sql = pick(&store.inner.sql).clone();
    let webhook = WebhookId::new();
    for _ in 0..10 {
        let settles = claim_two(&store, webhook).await;
        let group: Vec<&Settle> = settles.iter().collect();
        store.run_settles(&sql, &group).await.expect("settle");
    }
    let settles = claim_two(&store, webhook).await;
    grow(&store, "now() + interval '1 hour'").await;
    let group: Vec<&Settle> = settles.iter().collect();
    let (rows, whole, _) = measured(&store, &sql, &Columns::of(&group).params()).await;
    let held: Vec<bool> = rows.iter().map(|r| r.get(2)).collect();
    assert_eq!(held, [true, true], "both settles held their lease");
    drop_schema(store).await;
    whole
}

/// Both settle statements read the tables through their keys even when their plans were
/// made while the tables were small.
#[tokio::test]
async fn settles_read_by_key_tables_that_grew_since_they_were_planned() {
    let Some(url) = database() else { return };
    let tag = std::process::id();
    let set = settle_after_growth(&url, &format!("plan_set_{tag}"), |sql| &sql.finish_set).await;
    let each = settle_after_growth(&url, &format!("plan_each_{tag}"), |sql| &sql.finish_many).await;
    assert_eq!((set, each), (0, 0), "rows read by scanning whole tables");
}

/// Runs a claim of 64 (no webhook skipped or busy, no cap) in a transaction of its own,
/// drops the schema, and returns how many it took and the rows it read (whole, in all).
async fn claim_64(store: PostgresStore) -> (usize, i64, i64) {
    let request = ClaimRequest::new(Utc::now(), Duration::from_secs(600), 64);
    let window = i64::try_from(request.window()).expect("window");
    let none: Vec<String> = Vec::new();
    let busy: Vec<i64> = Vec::new();
    let sql = store.inner.sql.claim.clone();
    let (rows, whole, all) = measured(
        &store,
        &sql,
        &[
            &request.now,
            &none,
            &64_i64,
            &request.lease_until(),
            &7_i64,
            &window,
            &none,
            &busy,
            &Option::<i64>::None,
            &none,
        ],
    )
    .await;
    drop_schema(store).await;
    (rows.len(), whole, all)
}

/// A claim reads its window and the rows it takes, not every due row: planned with its
/// own values while 20,000 rows are due (a first execution), and planned once for all
/// while a few were (a sixth), then run with 20,000 due.
#[tokio::test]
async fn a_claim_reads_its_window_not_the_queue() {
    let Some(url) = database() else { return };
    let tag = std::process::id();
    // Planned with 20,000 due.
    let fresh = store(&url, &format!("plan_claim_{tag}")).await;
    grow(&fresh, "now() - interval '1 minute'").await;
    let (taken, whole, all) = claim_64(fresh).await;
    assert_eq!(taken, 64);
    assert_eq!(whole, 0, "rows read by scanning whole tables");
    assert!(all < 2_000, "{all} rows read for a claim of 64");
    // Planned while a few were due.
    let planned = store(&url, &format!("plan_claim_kept_{tag}")).await;
    let webhook = WebhookId::new();
    for _ in 0..8 {
        claim_two(&planned, webhook).await;
    }
    grow(&planned, "now() - interval '1 minute'").await;
    let (taken, whole, all) = claim_64(planned).await;
    assert_eq!(taken, 64);
    assert_eq!(whole, 0, "rows read by scanning whole tables");
    assert!(all < 2_000, "{all} rows read for a claim of 64");
}
