//! The SQLite backend (the conformance suites run in `tests/conformance.rs`): migrations,
//! deliveries surviving a restart, and writers sharing one file.

#[path = "common/events.rs"]
mod events;
#[path = "common/flaky.rs"]
mod flaky;

use std::sync::Arc;
use std::time::Duration;

use dataops_webhooks::event::{Dataset, Event};
use dataops_webhooks::queue::{DeliveryQuery, DeliveryQueue, DeliveryStatus, QueueError};
use dataops_webhooks::retry::RetryPolicy;
use dataops_webhooks::sqlite::{SqliteError, SqliteStore, SCHEMA_VERSION};
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, Scope};
use dataops_webhooks::{Dispatcher, Emit, HostEvent, WebhookDispatcher, WorkerOptions};
use events::six_events;
use flaky::Flaky;

#[tokio::test]
async fn opening_migrates_once_and_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let first = SqliteStore::open(&path).await.expect("create");
    drop(first);
    SqliteStore::open(&path)
        .await
        .expect("reopen an up-to-date file");
    // A newer crate has been here.
    rusqlite::Connection::open(&path)
        .and_then(|c| c.pragma_update(None, "user_version", SCHEMA_VERSION + 1))
        .expect("set the version");
    let err = SqliteStore::open(&path)
        .await
        .expect_err("a newer schema is refused");
    assert!(
        matches!(err, SqliteError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade the crate"), "{err}");

    let missing = dir.path().join("no-such-dir").join("state.db");
    let err = SqliteStore::open(&missing).await.expect_err("no directory");
    assert!(matches!(err, SqliteError::Open { .. }), "{err}");
}

#[tokio::test]
async fn deliveries_scheduled_for_later_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let server = Flaky::start().await;
    let build = |store: Arc<SqliteStore>| {
        WebhookDispatcher::builder()
            .store(store.clone())
            .queue(store)
            .address_policy(AddressPolicy::allow_private())
            .request_timeout(Duration::from_millis(300))
            .build()
            .expect("dispatcher")
    };
    // First life: the endpoint fails; the retry is scheduled 1.5 s out; the process "stops".
    let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
    let d = build(store);
    let hook = d
        .webhooks()
        .create(NewWebhook::new(
            Scope::Project("p".into()),
            server.url("/first-fails"),
        ))
        .await
        .expect("create")
        .id;
    let policy = RetryPolicy::new(vec![Duration::ZERO, Duration::from_millis(1500)]).jitter(0.0);
    let options = WorkerOptions::default()
        .retry(policy)
        .poll_interval(Duration::from_millis(20));
    let worker = d.start_worker(options.clone());
    let receipt = d
        .emit(Event::dataset_complete("p", Dataset::default()))
        .await
        .expect("emit");
    let first = receipt.outcomes().await.remove(0);
    assert!(!first.is_success());
    let due = first.next_attempt_at.expect("a retry is scheduled");
    worker.shutdown().await;
    drop(d);

    // Second life, same file: the retry is sent when due, not before.
    let d = build(Arc::new(SqliteStore::open(&path).await.expect("reopen")));
    let worker = d.start_worker(options);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        let page = d
            .deliveries()
            .list(&DeliveryQuery::new(hook))
            .await
            .expect("list");
        let record = page.items[0].clone();
        if record.status == DeliveryStatus::Succeeded {
            break record;
        }
        assert!(tokio::time::Instant::now() < deadline, "{record:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record.attempts, 2);
    let log = d.deliveries().attempts(&record.id).await.expect("attempts");
    assert!(
        log[1].attempted_at >= due,
        "sent when due ({due}), not before ({})",
        log[1].attempted_at
    );
    let seen = server.requests("/first-fails");
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].0, seen[1].0,
        "the same delivery id across the restart"
    );
    worker.shutdown().await;
}

/// Two stores on one file (two processes, or a host that opened it twice), each with 32
/// emitting tasks and a worker settling deliveries to three endpoints: every write waits for
/// the file's lock instead of failing with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_one_file_wait_for_the_lock_instead_of_failing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shared.db");
    let server = Flaky::start().await;
    let mut dispatchers = Vec::new();
    for _ in 0..2 {
        let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
        let d = WebhookDispatcher::builder()
            .backend(store)
            .address_policy(AddressPolicy::allow_private())
            .build()
            .expect("dispatcher");
        let worker =
            d.start_worker(WorkerOptions::default().poll_interval(Duration::from_millis(10)));
        let events = worker.events();
        dispatchers.push((d, worker, events));
    }
    for n in 0..3 {
        dispatchers[0]
            .0
            .webhooks()
            .create(NewWebhook::new(
                Scope::Project("p".into()),
                server.url(&format!("/ok?{n}")),
            ))
            .await
            .expect("create");
    }
    const TASKS: usize = 32;
    const EACH: usize = 8;
    let mut emitters = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let d = dispatchers[task % 2].0.clone();
        emitters.spawn(async move {
            for i in 0..EACH {
                let emit = Emit::new(Event::dataset_complete("p", Dataset::default()))
                    .idempotency_key(format!("t{task}-{i}"));
                d.emit_with(emit).await.expect("emit");
            }
        });
    }
    while let Some(done) = emitters.join_next().await {
        done.expect("an emitter failed");
    }
    let expected = TASKS * EACH * 3;
    let count = |status: &'static str| {
        let path = path.clone();
        move || -> usize {
            let conn = rusqlite::Connection::open(&path).expect("open");
            conn.query_row(
                "SELECT count(*) FROM deliveries WHERE status = ?1",
                [status],
                |r| r.get::<_, i64>(0),
            )
            .expect("count") as usize
        }
    };
    let succeeded = count("succeeded");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while succeeded() < expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {expected} deliveries succeeded",
            succeeded()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (_, worker, mut events) in dispatchers {
        worker.shutdown().await;
        while let Ok(event) = events.try_recv() {
            assert!(
                !matches!(event, HostEvent::BackendError { .. }),
                "a write failed instead of waiting: {event:?}"
            );
        }
    }
    assert_eq!(
        server.requests("/ok").len(),
        expected,
        "each delivery sent once (a settle that failed would send it again)"
    );
}

/// Writes that arrive together are committed together, each atomic on its own: one that is
/// refused is rolled back alone, and the others are answered only once committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_arriving_together_commit_together_and_one_refusal_holds_back_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("group.db");
    let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
    let first = six_events(None);
    let taken = first[0].deliveries[0].id;
    for event in first {
        store.enqueue(event).await.expect("enqueue");
    }
    let events = six_events(Some(taken));
    let tasks: Vec<_> = events
        .into_iter()
        .map(|event| {
            let store = store.clone();
            tokio::spawn(async move { store.enqueue(event).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.expect("task");
        if i == 3 {
            assert!(
                matches!(result, Err(QueueError::Conflict(id)) if id == taken),
                "{result:?}"
            );
        } else {
            assert!(result.is_ok(), "write {i} was held back: {result:?}");
        }
    }
    // What was answered is on disk, as another connection sees it; the refused event
    // left nothing behind (its event row was rolled back with its delivery).
    let other = rusqlite::Connection::open(&path).expect("open again");
    let count = |table: &str| -> i64 {
        other
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    };
    assert_eq!((count("events"), count("deliveries")), (11, 11));
}

/// The configuration every emit and attempt reads is kept in the process while the file's
/// configuration counter holds: a change made anywhere — another store on the file (another
/// process), or SQL run by hand — is seen by the next lookup, with no waiting; a change that
/// leaves the counter alone (its trigger dropped) is not seen until the counter moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_configuration_follows_changes_made_anywhere() {
    use dataops_webhooks::webhook::{OrgId, WebhookUpdate};
    use dataops_webhooks::{ConfigStore, EventType};

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.db");
    let here = SqliteStore::open(&path).await.expect("open");
    let there = WebhookDispatcher::builder()
        .backend(Arc::new(
            SqliteStore::open(&path).await.expect("open again"),
        ))
        .build()
        .expect("dispatcher");
    let org = OrgId::default();
    there
        .webhooks()
        .create_org_secret(&org)
        .await
        .expect("secret");
    let hook = there
        .webhooks()
        .create(NewWebhook::new(
            Scope::Project("p".into()),
            "https://hooks.example.com/in",
        ))
        .await
        .expect("create")
        .id;
    let description = || async {
        let (webhook, keys) = here
            .webhook_with_keys(&hook)
            .await
            .expect("read")
            .expect("there");
        (webhook.description, keys.expect("org keys").current)
    };
    let subscribed = || async {
        here.subscribers(&org, "p", EventType::DatasetComplete)
            .await
            .expect("subscribers")
            .len()
    };
    let (_, first_key) = description().await;
    assert_eq!(subscribed().await, 1);

    // Another store's changes, through the API.
    there
        .webhooks()
        .update(
            &hook,
            WebhookUpdate::new().description(Some("from there".into())),
        )
        .await
        .expect("update");
    assert_eq!(description().await.0.as_deref(), Some("from there"));
    there
        .webhooks()
        .rotate_org_secret(&org, Duration::ZERO)
        .await
        .expect("rotate");
    assert_ne!(description().await.1, first_key, "the rotation is seen");
    there
        .webhooks()
        .deactivate(&hook)
        .await
        .expect("deactivate");
    assert_eq!(subscribed().await, 0, "the deactivation is seen");

    // SQL run by hand.
    let sql = rusqlite::Connection::open(&path).expect("open by hand");
    sql.execute(
        "UPDATE webhooks SET record = json_set(record, '$.description', 'by hand')",
        [],
    )
    .expect("update by hand");
    assert_eq!(description().await.0.as_deref(), Some("by hand"));

    // With the trigger gone, a change does not move the counter: the copy is still used.
    sql.execute_batch(
        "DROP TRIGGER webhooks_updated;
         UPDATE webhooks SET record = json_set(record, '$.description', 'silent');",
    )
    .expect("silent update");
    assert_eq!(description().await.0.as_deref(), Some("by hand"), "cached");
    sql.execute("UPDATE config_version SET version = version + 1", [])
        .expect("bump");
    assert_eq!(description().await.0.as_deref(), Some("silent"));
}
