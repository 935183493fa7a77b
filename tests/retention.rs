//! Retention: a purge while the worker delivers loses no delivery; a SQLite file of 100,000
//! settled deliveries shrinks after a purge and `vacuum` (the purge rate is printed).

#[path = "common/server.rs"]
mod server;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use dataops_webhooks::event::{Dataset, Event};
use dataops_webhooks::queue::{NewDelivery, NewEvent, PurgeRequest, RetentionPolicy};
use dataops_webhooks::sqlite::SqliteStore;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, OrgId, Scope, WebhookId};
use dataops_webhooks::{DeliveryQueue, Dispatcher, EventType, WebhookDispatcher, WorkerOptions};
use server::{Reply, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_while_the_worker_delivers_loses_no_delivery() {
    let server = TestServer::start(Reply::Status(204, "")).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        SqliteStore::open(dir.path().join("w.db"))
            .await
            .expect("open"),
    );
    let d = WebhookDispatcher::builder()
        .backend(store.clone())
        .address_policy(AddressPolicy::allow_private())
        .build()
        .expect("dispatcher");
    d.webhooks()
        .create(NewWebhook::new(
            Scope::Project("p".into()),
            server.url("/hook"),
        ))
        .await
        .expect("create");
    // Succeeded deliveries are purged as soon as they settle, every 5 ms, 7 at a time.
    let eager = RetentionPolicy::default()
        .succeeded(Duration::ZERO)
        .batch(7)
        .interval(Duration::from_millis(5));
    let worker = d.start_worker(
        WorkerOptions::default()
            .retention(Some(eager))
            .poll_interval(Duration::from_millis(10)),
    );
    let mut ids = HashSet::new();
    for n in 0..300 {
        let event = Event::dataset_complete(
            "p",
            Dataset {
                id: format!("d{n}"),
                ..Default::default()
            },
        );
        let receipt = d.emit(event).await.expect("emit");
        ids.extend(receipt.deliveries.iter().map(|t| t.delivery_id.to_string()));
    }
    let arrived = server.wait_for(300).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = d.deliveries().depth().await.expect("depth");
        if left.due + left.scheduled + left.in_flight == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the queue drains: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
    let seen: HashSet<String> = arrived
        .iter()
        .filter_map(|r| r.header("x-aquarium-delivery").map(str::to_owned))
        .collect();
    assert_eq!(seen, ids, "every delivery arrived, none lost to the purge");
    // And the log was purged meanwhile: nothing succeeded is left.
    let rest = d
        .deliveries()
        .purge(&RetentionPolicy::default().succeeded(Duration::ZERO))
        .await
        .expect("purge");
    let hooks = d
        .webhooks()
        .list(&dataops_webhooks::store::WebhookQuery::new(OrgId::default()))
        .await
        .expect("list")
        .items;
    let stats = d
        .deliveries()
        .statistics(
            hooks.iter().map(|w| w.id).collect(),
            Duration::from_secs(60),
        )
        .await
        .expect("statistics");
    assert_eq!(
        (stats.overall.pending, stats.overall.succeeded),
        (0, 0),
        "purged while delivering (the last {} by the final call)",
        rest.deliveries
    );
}

/// File size on disk: the database and its write-ahead log.
fn size_on_disk(path: &std::path::Path) -> u64 {
    let wal = path.with_extension("db-wal");
    [path.to_path_buf(), wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_sqlite_file_shrinks_after_vacuum() {
    const EVENTS: usize = 1_000;
    const FAN_OUT: usize = 100; // 100,000 deliveries
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let webhooks: Vec<WebhookId> = (0..FAN_OUT).map(|_| WebhookId::new()).collect();
    let payload = Bytes::from(format!(
        r#"{{"event":"dataset-complete","pad":"{}"}}"#,
        "x".repeat(900)
    ));
    for _ in 0..EVENTS {
        let mut event = NewEvent::new(
            OrgId::new("acme"),
            "p",
            EventType::DatasetComplete,
            payload.clone(),
            Utc::now(),
        );
        event.deliveries = webhooks
            .iter()
            .map(|w| NewDelivery::new(Default::default(), *w, "http://h/"))
            .collect();
        store.enqueue(event).await.expect("enqueue");
    }
    // Settle them all long ago, behind the store's back: the test needs old settled rows,
    // not a month of waiting.
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.busy_timeout(Duration::from_secs(10)).expect("timeout");
        let settled = conn
            .execute(
                "UPDATE deliveries SET status = 'succeeded', due_at = NULL, updated_at = 0",
                [],
            )
            .expect("settle");
        assert_eq!(settled, EVENTS * FAN_OUT);
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpoint");
    }
    let before = size_on_disk(&path);

    let started = Instant::now();
    let request = PurgeRequest::new(Utc::now(), Utc::now(), 10_000);
    let (mut deliveries, mut events) = (0, 0);
    loop {
        let report = store.purge(&request).await.expect("purge");
        deliveries += report.deliveries;
        events += report.events;
        if !report.more {
            break;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(deliveries, (EVENTS * FAN_OUT) as u64);
    assert_eq!(
        events, EVENTS as u64,
        "every payload went with its last delivery"
    );
    println!(
        "purged {deliveries} deliveries and {events} events in {elapsed:?}: {:.0} deliveries/s (debug build)",
        deliveries as f64 / elapsed.as_secs_f64()
    );
    store.vacuum().await.expect("vacuum");
    let after = size_on_disk(&path);
    println!("file: {before} bytes before, {after} after purge + vacuum");
    assert!(
        after * 4 < before,
        "the file shrinks: {before} bytes before, {after} after"
    );
}
