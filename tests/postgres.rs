//! The PostgreSQL backend on a real server (the conformance suites run in
//! `tests/conformance.rs`): migrations (including
//! two processes' worth at once), clear errors, transactional emit, wake-ups across stores,
//! and grouped settles. Needs `DATAOPS_WEBHOOKS_TEST_POSTGRES` (CI sets it); skips with a message without.

#[path = "common/events.rs"]
mod events;
#[path = "common/flaky.rs"]
mod flaky;
#[path = "common/pg.rs"]
mod pg;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use dataops_webhooks::event::{Dataset, Event};
use dataops_webhooks::postgres::{PostgresError, PostgresOptions, PostgresStore, SCHEMA_VERSION};
use dataops_webhooks::queue::{
    AttemptLog, Claim, ClaimRequest, DeliveryQuery, DeliveryQueue, DeliveryStatus, Finish,
    FinishReport, NewDelivery, NewEvent, Next, QueueError,
};
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{DeliveryId, NewWebhook, OrgId, Scope, WebhookId, WebhookUpdate};
use dataops_webhooks::{
    AttemptResult, ConfigStore, Dispatcher, Emit, EventType, WebhookDispatcher, WorkerOptions,
};
use events::six_events;
use flaky::Flaky;
use pg::TestSchema;

fn dispatcher(store: &PostgresStore) -> WebhookDispatcher {
    let store = Arc::new(store.clone());
    WebhookDispatcher::builder()
        .store(store.clone())
        .queue(store)
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(Duration::from_secs(2))
        .build()
        .expect("dispatcher")
}

async fn webhook(d: &WebhookDispatcher, url: String) -> WebhookId {
    d.webhooks()
        .create(NewWebhook::new(Scope::Project("p".into()), url))
        .await
        .expect("create")
        .id
}

/// Waits up to 10 s for the delivery list of `hook` to satisfy `done`.
async fn wait_for(
    d: &WebhookDispatcher,
    hook: WebhookId,
    done: impl Fn(&[DeliveryStatus]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = d
            .deliveries()
            .list(&DeliveryQuery::new(hook))
            .await
            .expect("list");
        let statuses: Vec<DeliveryStatus> = page.items.iter().map(|r| r.status).collect();
        if done(&statuses) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn concurrent_migrations_are_safe_and_versions_are_checked() {
    let Some(schema) = TestSchema::new("mig") else {
        return;
    };
    let connect = || async {
        PostgresStore::connect(schema.options())
            .await
            .expect("connect")
    };
    let store = connect().await;
    let missing = store
        .check_schema()
        .await
        .expect_err("nothing migrated yet");
    assert!(
        matches!(missing, PostgresError::SchemaMissing { .. }),
        "{missing}"
    );
    assert!(
        missing.to_string().contains("PostgresStore::migrate"),
        "{missing}"
    );
    // A queue call on the missing schema says what to do, too.
    let err = store
        .get_delivery(&dataops_webhooks::webhook::DeliveryId::new())
        .await
        .expect_err("no tables");
    assert!(
        err.to_string().contains("run PostgresStore::migrate"),
        "{err}"
    );

    // Four processes' worth of stores migrate at once: one does the work, all succeed.
    let stores = [
        connect().await,
        connect().await,
        connect().await,
        connect().await,
    ];
    let (a, b, c, d) = tokio::join!(
        stores[0].migrate(),
        stores[1].migrate(),
        stores[2].migrate(),
        stores[3].migrate()
    );
    let found = [a, b, c, d];
    for result in &found {
        assert!(result.is_ok(), "{result:?}");
    }
    let fresh = found.iter().filter(|r| matches!(r, Ok(0))).count();
    assert_eq!(
        fresh, 1,
        "exactly one migration found an empty schema: {found:?}"
    );
    store.check_schema().await.expect("migrated");
    assert_eq!(store.migrate().await.expect("again"), SCHEMA_VERSION);

    // A newer crate migrated the schema: refused with a clear message.
    schema
        .execute(&format!(
            "INSERT INTO {}.migrations (version) VALUES ({})",
            schema.name,
            SCHEMA_VERSION + 1
        ))
        .await;
    let err = store.migrate().await.expect_err("too new");
    assert!(matches!(err, PostgresError::SchemaTooNew { .. }), "{err}");
    assert!(err.to_string().contains("upgrade the crate"), "{err}");
    let err = store.check_schema().await.expect_err("too new");
    assert!(matches!(err, PostgresError::SchemaTooNew { .. }), "{err}");
}

#[tokio::test]
async fn unusable_settings_get_clear_errors() {
    // Nothing listens on port 1 of the loopback address.
    let options = PostgresOptions::new("postgres://app:hunter2@127.0.0.1:1/test")
        .expect("a valid URL")
        .connect_timeout(Duration::from_secs(2));
    let err = PostgresStore::connect(options)
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, PostgresError::Unreachable { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("127.0.0.1 port 1 database test"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");

    let err = PostgresOptions::new("postgres://a@b:notaport/x").expect_err("bad port");
    assert!(matches!(err, PostgresError::Config { .. }), "{err}");

    let options = PostgresOptions::new("postgres://127.0.0.1/test")
        .expect("URL")
        .schema("Robert'); DROP TABLE students;--");
    let err = PostgresStore::connect(options)
        .await
        .expect_err("bad schema");
    assert!(err.to_string().contains("schema name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_emits_only_when_it_commits() {
    let Some(schema) = TestSchema::new("tx") else {
        return;
    };
    let store = schema.store().await;
    let d = dispatcher(&store);
    let server = Flaky::start().await;
    let hook = webhook(&d, server.url("/ok")).await;
    schema
        .execute(&format!(
            "CREATE TABLE {}.datasets (id text PRIMARY KEY, state text NOT NULL)",
            schema.name
        ))
        .await;
    let insert = format!(
        "INSERT INTO {}.datasets VALUES ($1, 'complete')",
        schema.name
    );
    let worker = d.start_worker(WorkerOptions::default().poll_interval(Duration::from_secs(30)));
    let event = |id: &str| {
        Event::dataset_complete(
            "p",
            Dataset {
                id: id.into(),
                ..Default::default()
            },
        )
    };

    // Rolled back: neither the host's row nor the event exists, nothing is sent.
    let mut client = store.pool().get().await.expect("connection");
    let tx = client.transaction().await.expect("begin");
    tx.execute(insert.as_str(), &[&"rolled-back"])
        .await
        .expect("insert");
    let emitted = store
        .emit_in(&tx, &d, Emit::new(event("rolled-back")))
        .await
        .expect("emit in the transaction");
    assert_eq!(emitted.deliveries.len(), 1);
    let rolled_back = emitted.deliveries[0];
    tx.rollback().await.expect("rollback");
    assert!(store
        .get_delivery(&rolled_back)
        .await
        .expect("get")
        .is_none());

    // Committed: both exist, and the worker (woken by the commit's NOTIFY, not its 30 s
    // poll) delivers it.
    let tx = client.transaction().await.expect("begin");
    tx.execute(insert.as_str(), &[&"committed"])
        .await
        .expect("insert");
    let emitted = store
        .emit_in(
            &tx,
            &d,
            Emit::new(event("committed")).idempotency_key("ds-committed"),
        )
        .await
        .expect("emit in the transaction");
    let committed = emitted.deliveries[0];
    // Not visible outside the transaction before it commits.
    assert!(store.get_delivery(&committed).await.expect("get").is_none());
    tx.commit().await.expect("commit");
    wait_for(&d, hook, |s| s == [DeliveryStatus::Succeeded]).await;
    let seen: Vec<String> = server
        .requests("/ok")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        seen,
        vec![committed.to_string()],
        "only the committed event"
    );

    // The same key again, in another transaction: nothing new.
    let tx = client.transaction().await.expect("begin");
    let again = store
        .emit_in(
            &tx,
            &d,
            Emit::new(event("committed")).idempotency_key("ds-committed"),
        )
        .await
        .expect("emit again");
    tx.commit().await.expect("commit");
    assert!(again.repeated);
    assert_eq!(again.deliveries, vec![committed]);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_from_another_process_wakes_idle_workers() {
    let Some(schema) = TestSchema::new("wake") else {
        return;
    };
    // Two stores with their own pools stand in for two processes.
    let (worker_side, emitter_side) = (schema.store().await, schema.store().await);
    let server = Flaky::start().await;
    let (workers, emitter) = (dispatcher(&worker_side), dispatcher(&emitter_side));
    let hook = webhook(&emitter, server.url("/ok")).await;
    // Polling alone would take a minute.
    let worker =
        workers.start_worker(WorkerOptions::default().poll_interval(Duration::from_secs(60)));
    // Let the listener connect before emitting (it also wakes the workers when it does).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        emitter
            .emit(Event::dataset_complete("p", Dataset::default()))
            .await
            .expect("emit");
    }
    wait_for(&emitter, hook, |s| {
        s.len() == 3 && s.iter().all(|s| *s == DeliveryStatus::Succeeded)
    })
    .await;
    // A redelivery from the other side wakes them as well.
    let first = emitter
        .deliveries()
        .list(&DeliveryQuery::new(hook))
        .await
        .expect("list")
        .items[0]
        .id;
    emitter
        .deliveries()
        .redeliver(&first)
        .await
        .expect("redeliver");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.requests("/ok").len() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "redelivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn webhooks_and_secrets_persist_across_stores() {
    let Some(schema) = TestSchema::new("persist") else {
        return;
    };
    let d = dispatcher(&schema.store().await);
    let hook = webhook(&d, "http://127.0.0.1:9/hook".into()).await;
    d.webhooks()
        .create_org_secret(&Default::default())
        .await
        .expect("secret");
    // A second store (another process) sees both.
    let other = schema.store().await;
    let found = other.get_webhook(&hook).await.expect("get").expect("there");
    assert_eq!(found.url.as_str(), "http://127.0.0.1:9/hook");
    assert!(other
        .signing_keys(&Default::default())
        .await
        .expect("keys")
        .is_some());
}

/// Enqueues one event for six webhooks and claims its six deliveries.
async fn six_claims(store: &PostgresStore) -> Vec<Claim> {
    let mut event = NewEvent::new(
        OrgId::new("acme"),
        "p",
        EventType::DatasetComplete,
        Bytes::from_static(br#"{"event":"dataset-complete"}"#),
        Utc::now(),
    );
    event.deliveries = (0..6)
        .map(|i| NewDelivery::new(DeliveryId::new(), WebhookId::new(), format!("http://h/{i}")))
        .collect();
    store.enqueue(event).await.expect("enqueue");
    let claims = store
        .claim(&ClaimRequest::new(Utc::now(), Duration::from_secs(600), 6))
        .await
        .expect("claim");
    assert_eq!(claims.len(), 6);
    claims
}

/// Settles six claims at once, each as a 200 answered with its response body.
async fn settle_six(
    store: &PostgresStore,
    claims: &[Claim],
    bodies: [&str; 6],
) -> Vec<Result<FinishReport, QueueError>> {
    let settle = |i: usize| {
        let (id, lease) = (claims[i].delivery.id, claims[i].lease);
        let result = AttemptResult::Delivered {
            status: http::StatusCode::OK,
            body: bodies[i].to_owned(),
            duration: Duration::from_millis(1),
        };
        let attempt = AttemptLog::of(&result, Utc::now());
        async move {
            let finish = Finish::Attempted {
                attempt,
                next: Next::Succeeded,
            };
            store.finish(&id, lease, finish, Utc::now()).await
        }
    };
    let (a, b, c, d, e, f) = tokio::join!(
        settle(0),
        settle(1),
        settle(2),
        settle(3),
        settle(4),
        settle(5)
    );
    vec![a, b, c, d, e, f]
}

#[tokio::test]
async fn settles_arriving_together_share_a_transaction_and_one_refusal_holds_back_none() {
    let Some(schema) = TestSchema::new("group") else {
        return;
    };
    let store = schema.store().await;
    // Every recorded attempt notes its transaction; the body `refuse` is refused by the
    // database, as a constraint an operator added would be.
    schema
        .execute(&format!(
            "CREATE TABLE {s}.seen (tx bigint NOT NULL);
             CREATE FUNCTION {s}.watch() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.response = 'refuse' THEN
                     RAISE EXCEPTION 'refused by the test';
                 END IF;
                 INSERT INTO {s}.seen VALUES (txid_current());
                 RETURN NEW;
             END $$;
             CREATE TRIGGER watch BEFORE INSERT ON {s}.attempts
                 FOR EACH ROW EXECUTE FUNCTION {s}.watch();",
            s = schema.name
        ))
        .await;

    let claims = six_claims(&store).await;
    let reports = settle_six(&store, &claims, ["ok"; 6]).await;
    assert!(reports
        .iter()
        .all(|r| r.as_ref().is_ok_and(|r| !r.lease_lost)));
    let seen = |what: &str| format!("SELECT {what} FROM {}.seen", schema.name);
    assert_eq!(schema.number(&seen("count(*)")).await, 6);
    let transactions = schema.number(&seen("count(DISTINCT tx)")).await;
    assert!(
        transactions < 6,
        "six settles at once took {transactions} transactions"
    );

    let claims = six_claims(&store).await;
    let reports = settle_six(&store, &claims, ["ok", "ok", "ok", "refuse", "ok", "ok"]).await;
    for (i, (claim, report)) in claims.iter().zip(&reports).enumerate() {
        let record = store
            .get_delivery(&claim.delivery.id)
            .await
            .expect("get")
            .expect("recorded");
        if i == 3 {
            assert!(report.is_err(), "the refused settle reports its error");
            assert_eq!(
                (record.status, record.attempts),
                (DeliveryStatus::Pending, 0),
                "left to its lease, to be attempted again"
            );
        } else {
            assert!(report.is_ok(), "settle {i}: {report:?}");
            assert_eq!(
                (record.status, record.attempts),
                (DeliveryStatus::Succeeded, 1),
                "settle {i} was not held back"
            );
        }
    }
}

#[tokio::test]
async fn settles_without_a_connection_fail_clearly_and_write_nothing() {
    let Some(schema) = TestSchema::new("noconn") else {
        return;
    };
    drop(schema.store().await); // migrated
    let options = schema
        .options()
        .pool_size(1)
        .connect_timeout(Duration::from_millis(300));
    let store = PostgresStore::connect(options).await.expect("connect");
    let claims = six_claims(&store).await;
    let held = store.pool().get().await.expect("the only connection");
    let reports = settle_six(&store, &claims, ["ok"; 6]).await;
    drop(held);
    for report in &reports {
        let error = report.as_ref().expect_err("no connection to settle with");
        assert!(error.to_string().contains("unreachable"), "{error}");
    }
    for claim in &claims {
        let record = store
            .get_delivery(&claim.delivery.id)
            .await
            .expect("get")
            .expect("recorded");
        assert_eq!(
            (record.status, record.attempts),
            (DeliveryStatus::Pending, 0),
            "nothing written: left to its lease"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emits_arriving_together_share_a_transaction_and_one_refusal_holds_back_none() {
    let Some(schema) = TestSchema::new("emit_group") else {
        return;
    };
    let store = schema.store().await;
    // Every recorded event notes its transaction.
    schema
        .execute(&format!(
            "CREATE TABLE {s}.seen (tx bigint NOT NULL);
             CREATE FUNCTION {s}.watch() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO {s}.seen VALUES (txid_current());
                 RETURN NEW;
             END $$;
             CREATE TRIGGER watch BEFORE INSERT ON {s}.events
                 FOR EACH ROW EXECUTE FUNCTION {s}.watch();",
            s = schema.name
        ))
        .await;
    let first = six_events(None);
    let taken = first[0].deliveries[0].id;
    let emit_all = |events: Vec<NewEvent>| {
        let store = store.clone();
        async move {
            let tasks: Vec<_> = events
                .into_iter()
                .map(|e| {
                    let store = store.clone();
                    tokio::spawn(async move { store.enqueue(e).await })
                })
                .collect();
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.expect("task"));
            }
            results
        }
    };
    // Many rounds, so that at least one finds emits waiting for the same group.
    let mut grouped = false;
    for round in 0..20 {
        let events = if round == 0 {
            first.clone()
        } else {
            six_events(None)
        };
        let before = schema
            .number(&format!(
                "SELECT count(DISTINCT tx) FROM {}.seen",
                schema.name
            ))
            .await;
        for result in emit_all(events).await {
            assert!(result.is_ok(), "{result:?}");
        }
        let after = schema
            .number(&format!(
                "SELECT count(DISTINCT tx) FROM {}.seen",
                schema.name
            ))
            .await;
        grouped |= after - before < 6;
    }
    assert!(grouped, "six emits at once never shared a transaction");
    assert_eq!(
        schema
            .number(&format!("SELECT count(*) FROM {}.events", schema.name))
            .await,
        120
    );

    // One emit reuses a delivery id: it alone is refused, as a conflict.
    let results = emit_all(six_events(Some(taken))).await;
    for (i, result) in results.iter().enumerate() {
        if i == 3 {
            assert!(
                matches!(result, Err(QueueError::Conflict(id)) if *id == taken),
                "{result:?}"
            );
        } else {
            assert!(result.is_ok(), "emit {i} was held back: {result:?}");
        }
    }
    assert_eq!(
        schema
            .number(&format!("SELECT count(*) FROM {}.events", schema.name))
            .await,
        125
    );
}

/// 100,000 old settled deliveries (with their attempts and 1,000 events) are purged in
/// batches of 1,000; nothing younger is touched. Prints the purge rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_removes_old_settled_deliveries_in_batches() {
    let Some(schema) = TestSchema::new("purge") else {
        return;
    };
    let store = schema.store().await;
    let s = &schema.name;
    schema
        .execute(&format!(
            "INSERT INTO {s}.events (id, org, project, event_type, payload, created_at)
             SELECT 'evt_' || lpad(i::text, 32, '0'), 'acme', 'p', 'dataset-complete',
                    convert_to(repeat('x', 900), 'UTF8'), now() - interval '100 days'
             FROM generate_series(1, 1001) i;
             INSERT INTO {s}.deliveries
                 (id, event_id, webhook_id, url, status, attempts, created_at, updated_at)
             SELECT 'dlv_' || lpad((i * 1000 + j)::text, 32, '0'),
                    'evt_' || lpad(i::text, 32, '0'), 'wh_' || lpad(j::text, 32, '0'),
                    'http://h/', 'succeeded', 1,
                    now() - interval '100 days', now() - interval '100 days'
             FROM generate_series(1, 1000) i, generate_series(1, 100) j;
             -- One young delivery of its own event: kept.
             INSERT INTO {s}.deliveries
                 (id, event_id, webhook_id, url, status, attempts, created_at, updated_at)
             VALUES ('dlv_young', 'evt_' || lpad('1001', 32, '0'), 'wh_y', 'http://h/',
                     'succeeded', 1, now(), now());
             INSERT INTO {s}.attempts (delivery_id, attempted_at, status, duration_us, response)
             SELECT id, updated_at, 204, 1000, '' FROM {s}.deliveries;
             ANALYZE {s}.deliveries;"
        ))
        .await;
    let policy = dataops_webhooks::queue::RetentionPolicy::default();
    let started = std::time::Instant::now();
    let (mut deliveries, mut attempts, mut events, mut calls) = (0, 0, 0, 0);
    loop {
        let report = store
            .purge(&policy.request(Utc::now()))
            .await
            .expect("purge");
        assert!(report.deliveries <= 1_000, "a batch keeps to its limit");
        deliveries += report.deliveries;
        attempts += report.attempts;
        events += report.events;
        calls += 1;
        if !report.more {
            break;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "PostgreSQL purged {deliveries} deliveries, {attempts} attempts, {events} events in {calls} batches, {elapsed:?}: {:.0} deliveries/s",
        deliveries as f64 / elapsed.as_secs_f64()
    );
    assert_eq!((deliveries, attempts, events), (100_000, 100_000, 1_000));
    assert_eq!(
        schema
            .number(&format!("SELECT count(*) FROM {s}.deliveries"))
            .await,
        1,
        "the young delivery is kept"
    );
    assert_eq!(
        schema
            .number(&format!("SELECT count(*) FROM {s}.events"))
            .await,
        1,
        "and its event"
    );
}

/// The description `store` reads for `hook` through the path every attempt takes.
async fn description(store: &PostgresStore, hook: &WebhookId) -> Option<String> {
    let (webhook, _) = store
        .webhook_with_keys(hook)
        .await
        .expect("read")
        .expect("there");
    webhook.description
}

/// The statement that sets `hook`'s description to `text` in SQL.
fn set_description(schema: &TestSchema, text: &str) -> String {
    format!(
        "UPDATE {}.webhooks SET record = jsonb_set(record, '{{description}}', '\"{text}\"')",
        schema.name
    )
}

/// Waits until `store` caches what it reads: once it listens, a change that does not notify
/// (its trigger switched off) is not seen. Until then every read goes to the database.
async fn until_cached(schema: &TestSchema, store: &PostgresStore, hook: &WebhookId) {
    let table = format!("{}.webhooks", schema.name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut round = 0;
    loop {
        round += 1;
        let seen = description(store, hook).await;
        schema
            .execute(&format!(
                "ALTER TABLE {table} DISABLE TRIGGER webhooks_changed; {}; \
                 ALTER TABLE {table} ENABLE TRIGGER webhooks_changed;",
                set_description(schema, &format!("silent {round}"))
            ))
            .await;
        if description(store, hook).await == seen {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was ever cached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_configuration_follows_changes_made_anywhere() {
    let Some(schema) = TestSchema::new("cache") else {
        return;
    };
    let here = schema.store().await;
    let there = dispatcher(&schema.store().await);
    let hook = webhook(&there, "http://127.0.0.1:9/hook".into()).await;
    until_cached(&schema, &here, &hook).await;

    // Changes that notify are seen: another process's, through the API and directly in SQL.
    let eventually = |want: Option<String>| {
        let here = here.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while description(&here, &hook).await != want {
                assert!(tokio::time::Instant::now() < deadline, "never saw {want:?}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    there
        .webhooks()
        .update(
            &hook,
            WebhookUpdate::new().description(Some("from there".into())),
        )
        .await
        .expect("update");
    eventually(Some("from there".into())).await;
    schema
        .execute(&set_description(&schema, "by an operator"))
        .await;
    eventually(Some("by an operator".into())).await;

    // Subscribers (read by every emit) too: deactivated elsewhere, the webhook stops receiving.
    let subscribed = |store: PostgresStore| async move {
        store
            .subscribers(&OrgId::default(), "p", EventType::DatasetComplete)
            .await
            .expect("subscribers")
            .len()
    };
    assert_eq!(subscribed(here.clone()).await, 1);
    there
        .webhooks()
        .deactivate(&hook)
        .await
        .expect("deactivate");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while subscribed(here.clone()).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "still subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A change made through the same store is seen at once.
    here.delete_webhook(&hook).await.expect("delete");
    assert_eq!(here.webhook_with_keys(&hook).await.expect("read"), None);
}

/// Starts eight lookups of `hook` and eight of project `p`'s subscribers while another
/// transaction holds the webhooks table, so that each read of it waits on a lock, where it
/// can be counted; returns how many waited, once the lookups have all answered.
async fn reads_of_a_burst(schema: &TestSchema, store: &PostgresStore, hook: WebhookId) -> i64 {
    let locker = schema.connect().await;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {}.webhooks IN ACCESS EXCLUSIVE MODE",
            schema.name
        ))
        .await
        .expect("lock");
    let mut webhooks = Vec::new();
    let mut subscribers = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        webhooks.push(tokio::spawn(
            async move { s.webhook_with_keys(&hook).await },
        ));
        let s = store.clone();
        subscribers.push(tokio::spawn(async move {
            s.subscribers(&OrgId::default(), "p", EventType::DatasetComplete)
                .await
        }));
    }
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND query LIKE '%{}.webhooks%'",
        schema.name
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while schema.number(&waiting).await < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no read waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Time for any other read to arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reads = schema.number(&waiting).await;
    locker.batch_execute("COMMIT").await.expect("unlock");
    for lookup in webhooks {
        let found = lookup.await.expect("task").expect("read");
        assert_eq!(found.map(|(w, _)| w.id), Some(hook));
    }
    for lookup in subscribers {
        assert_eq!(lookup.await.expect("task").expect("subscribers").len(), 1);
    }
    reads
}

/// Lookups that miss the cached copy together wait for the first one's read, so a burst of
/// lookups of one webhook and of one project's subscribers sends one read of each to the
/// database (each caller taking a connection of its own for the same row would open up to
/// the whole pool at once): the first lookups of a store just connected (they wait for its
/// listener to be up, which the cache needs), and those right after a change dropped the
/// copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_that_miss_together_read_the_database_once() {
    let Some(schema) = TestSchema::new("fill") else {
        return;
    };
    let there = dispatcher(&schema.store().await);
    let hook = webhook(&there, "http://127.0.0.1:9/hook".into()).await;

    let store = schema.store().await;
    assert_eq!(
        reads_of_a_burst(&schema, &store, hook).await,
        2,
        "a store's first lookups: one read per key"
    );

    until_cached(&schema, &store, &hook).await;
    // A change through the store drops the copy at once.
    dispatcher(&store)
        .webhooks()
        .update(
            &hook,
            WebhookUpdate::new().description(Some("fresh".into())),
        )
        .await
        .expect("update");
    assert_eq!(
        reads_of_a_burst(&schema, &store, hook).await,
        2,
        "after a change: one read per key"
    );
    assert_eq!(description(&store, &hook).await.as_deref(), Some("fresh"));
}

/// `migrate` and `check_schema` leave four connections open with the hot statements
/// (emit, claim, settle, lookups) prepared, so the first calls after a start do not pay for
/// opening them and planning those statements.
#[tokio::test]
async fn a_checked_schema_leaves_connections_ready() {
    let Some(schema) = TestSchema::new("warm") else {
        return;
    };
    drop(schema.store().await); // creates the schema
    for check in ["migrate", "check_schema"] {
        let store = PostgresStore::connect(schema.options())
            .await
            .expect("connect");
        assert_eq!(store.pool().status().size, 1, "connect opens one");
        match check {
            "migrate" => drop(store.migrate().await.expect("migrate")),
            _ => store.check_schema().await.expect("check"),
        }
        assert_eq!(store.pool().status().size, 4, "{check} opens four");
        // Each connection, asked in turn (the pool hands out the one used last first, so
        // holding them all takes each once), has the statements prepared.
        let mut held = Vec::new();
        for _ in 0..4 {
            let client = store.pool().get().await.expect("connection");
            let prepared: i64 = client
                .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
                .await
                .expect("count")
                .get(0);
            assert!(prepared >= 5, "{check}: {prepared} statements prepared");
            held.push(client);
        }
    }
}

/// The pool hands out the connection used last: after a burst opened four, statements made
/// one at a time keep to one server process (handed out in turn, a steady load would spread
/// over every process, each with cold caches and buffers grown to its largest statement).
#[tokio::test]
async fn a_steady_load_keeps_to_the_connection_used_last() {
    let Some(schema) = TestSchema::new("lifo") else {
        return;
    };
    let store = schema.store().await;
    let pool = store.pool();
    async fn pid(client: &deadpool_postgres::Object) -> i32 {
        client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid")
            .get(0)
    }
    let mut burst = Vec::new();
    for _ in 0..4 {
        burst.push(pool.get().await.expect("connection"));
    }
    let mut opened = Vec::new();
    for client in &burst {
        opened.push(pid(client).await);
    }
    opened.sort_unstable();
    opened.dedup();
    assert_eq!(opened.len(), 4, "the burst had four connections");
    drop(burst);
    let mut steady = Vec::new();
    for _ in 0..8 {
        let client = pool.get().await.expect("connection");
        steady.push(pid(&client).await);
    }
    assert!(
        steady.iter().all(|p| *p == steady[0]),
        "one connection carried them all: {steady:?}"
    );
}

/// A schema at version 4 keeps its pending deliveries in the delivery rows; migrating moves
/// each to the queue with its due time and lease: a delivery another worker holds stays
/// held (its settle with that lease counts), a due one is claimable, a settled one stays out.
#[tokio::test]
async fn migrating_from_version_4_queues_pending_deliveries_with_their_leases() {
    let Some(schema) = TestSchema::new("mig_queue") else {
        return;
    };
    let store = schema.store().await;
    let mut event = NewEvent::new(
        OrgId::new("acme"),
        "p",
        EventType::DatasetComplete,
        Bytes::from_static(br#"{"event":"dataset-complete"}"#),
        Utc::now() - chrono::Duration::seconds(5),
    );
    let ids: Vec<DeliveryId> = (0..3).map(|_| DeliveryId::new()).collect();
    event.deliveries = ids
        .iter()
        .map(|id| NewDelivery::new(*id, WebhookId::new(), "http://h/"))
        .collect();
    store.enqueue(event).await.expect("enqueue");
    // Back to version 4's layout: the first delivery claimed by a worker under lease 77, the
    // third settled.
    let s = &schema.name;
    schema
        .execute(&format!(
            "DROP TABLE {s}.queue;
             CREATE INDEX deliveries_due ON {s}.deliveries (due_at) WHERE status = 'pending';
             ALTER TABLE {s}.deliveries ADD CONSTRAINT deliveries_event_id_fkey
                 FOREIGN KEY (event_id) REFERENCES {s}.events (id);
             ALTER TABLE {s}.attempts ADD CONSTRAINT attempts_delivery_id_fkey
                 FOREIGN KEY (delivery_id) REFERENCES {s}.deliveries (id);
             UPDATE {s}.deliveries SET due_at = now() + interval '10 minutes', lease = 77
                 WHERE id = '{}';
             UPDATE {s}.deliveries SET status = 'succeeded', due_at = NULL WHERE id = '{}';
             DELETE FROM {s}.migrations WHERE version >= 5;",
            ids[0], ids[2]
        ))
        .await;
    assert_eq!(store.migrate().await.expect("migrate"), 4);

    let claims = store
        .claim(&ClaimRequest::new(Utc::now(), Duration::from_secs(600), 10))
        .await
        .expect("claim");
    let claimed: Vec<DeliveryId> = claims.iter().map(|c| c.delivery.id).collect();
    assert_eq!(claimed, [ids[1]], "only the due one");
    let held = store
        .get_delivery(&ids[0])
        .await
        .expect("read")
        .expect("there");
    assert!(held.next_attempt_at > Some(Utc::now() + chrono::Duration::minutes(9)));
    let result = AttemptResult::Delivered {
        status: http::StatusCode::OK,
        body: String::new(),
        duration: Duration::from_millis(1),
    };
    let finish = Finish::Attempted {
        attempt: AttemptLog::of(&result, Utc::now()),
        next: Next::Succeeded,
    };
    let report = store
        .finish(
            &ids[0],
            dataops_webhooks::queue::LeaseId(77),
            finish,
            Utc::now(),
        )
        .await
        .expect("finish");
    assert!(
        !report.lease_lost,
        "the lease taken before the migration holds"
    );
    let depth = store.depth(Utc::now()).await.expect("depth");
    assert_eq!(
        (depth.due, depth.scheduled, depth.in_flight),
        (0, 0, 1),
        "only the delivery claimed after the migration is left"
    );
    for (id, status) in [
        (ids[0], DeliveryStatus::Succeeded),
        (ids[2], DeliveryStatus::Succeeded),
    ] {
        let record = store.get_delivery(&id).await.expect("read").expect("there");
        assert_eq!(record.status, status);
    }
}

/// A claim whose chosen rows are all held by another worker's claim in flight takes the
/// next due rows instead of coming back empty (which would leave its worker idle until the
/// next wake-up while work is due).
#[tokio::test]
async fn a_claim_passes_over_rows_another_claim_holds() {
    let Some(schema) = TestSchema::new("contended") else {
        return;
    };
    let store = schema.store().await;
    let claimed = six_claims(&store).await;
    // Back to due, in a known order: the first three are held elsewhere below.
    let ids: Vec<DeliveryId> = claimed.iter().map(|c| c.delivery.id).collect();
    for (i, id) in ids.iter().enumerate() {
        let due = Utc::now() - chrono::Duration::seconds(60 - i as i64);
        let client = schema.connect().await;
        client
            .execute(
                &format!(
                    "UPDATE {}.queue SET due_at = $2, lease = NULL WHERE delivery_id = $1",
                    schema.name
                ),
                &[&id.to_string(), &due],
            )
            .await
            .expect("due again");
    }
    // Another worker is claiming the three oldest: its transaction holds their rows.
    let other = schema.connect().await;
    // Should the test fail while it holds them, the server ends the session on its own, so
    // dropping the schema does not wait on it.
    other
        .batch_execute("SET idle_in_transaction_session_timeout = '3s'; BEGIN")
        .await
        .expect("begin");
    let held: Vec<String> = other
        .query(
            &format!(
                "SELECT delivery_id FROM {}.queue ORDER BY due_at LIMIT 3 FOR UPDATE",
                schema.name
            ),
            &[],
        )
        .await
        .expect("hold")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: Vec<String> = ids[..3].iter().map(ToString::to_string).collect();
    assert_eq!(held, expected);

    // A claim of two chooses the two oldest, both held; made again, it passes over every
    // held row (the third oldest too), not only the two it chose.
    let claim = |limit| ClaimRequest::new(Utc::now(), Duration::from_secs(600), limit);
    let next = store.claim(&claim(2)).await.expect("claim");
    let next: Vec<DeliveryId> = next.iter().map(|c| c.delivery.id).collect();
    assert_eq!(next, ids[3..5], "the two oldest rows nobody holds");

    other.batch_execute("ROLLBACK").await.expect("release");
    let rest = store.claim(&claim(6)).await.expect("claim");
    let rest: Vec<DeliveryId> = rest.iter().map(|c| c.delivery.id).collect();
    let expected_rest = [&ids[..3], &ids[5..]].concat();
    assert_eq!(
        rest, expected_rest,
        "the rows the other claim let go, and the last"
    );
}
