//! Custom headers can never replace or duplicate the crate's own: refused at the type through
//! every entry point on every backend, and a webhook stored before that rule still goes out
//! with its body, delivery id and signatures intact.

#[path = "common/pg.rs"]
mod pg;
#[path = "common/server.rs"]
mod server;

use std::sync::Arc;
use std::time::Duration;

use dataops_webhooks::event::{Dataset, Event};
use dataops_webhooks::receiver::Verifier;
use dataops_webhooks::sqlite::SqliteStore;
use dataops_webhooks::store::{ConfigStore, MemoryStore};
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::validate::RESERVED_HEADERS;
use dataops_webhooks::webhook::{CustomHeaders, NewWebhook, Scope, WebhookError, WebhookUpdate};
use dataops_webhooks::{Dispatcher, ManageError, WebhookDispatcher, Webhooks, WorkerOptions};
use server::{Reply, TestServer};

/// Each reserved name (a prefix with a tail added) in lower case, upper case and alternating
/// case.
fn spellings() -> Vec<String> {
    RESERVED_HEADERS
        .iter()
        .flat_map(|reserved| {
            let name = if reserved.ends_with('-') {
                format!("{reserved}Delivery")
            } else {
                (*reserved).to_owned()
            };
            let alternating: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
            [
                name.to_ascii_lowercase(),
                name.to_ascii_uppercase(),
                alternating,
            ]
        })
        .collect()
}

/// What the builder says about `name`: the message every other entry point must repeat.
fn builder_error(name: &str) -> String {
    match CustomHeaders::new().with(name, "0") {
        Err(error @ WebhookError::ReservedHeader(_)) => error.to_string(),
        other => panic!("{name}: the builder should refuse it as reserved, got {other:?}"),
    }
}

async fn refuses_reserved_names_everywhere(backend: &str, store: Arc<dyn ConfigStore>) {
    let webhooks = Webhooks::new(store).address_policy(AddressPolicy::allow_private());
    let kept = webhooks
        .create(
            NewWebhook::new(Scope::Project("p".into()), "http://127.0.0.1:9/hook")
                .header("X-Team", "ml"),
        )
        .await
        .unwrap_or_else(|e| panic!("{backend}: create: {e}"));
    for name in spellings() {
        let expected = builder_error(&name);
        // The builder of a new webhook reports it from create, and nothing is written.
        let created = webhooks
            .create(
                NewWebhook::new(Scope::Project("p".into()), "http://127.0.0.1:9/hook")
                    .header(&name, "0"),
            )
            .await;
        match created {
            Err(ManageError::Invalid(e)) => assert_eq!(e.to_string(), expected, "{backend}"),
            other => panic!("{backend}: {name}: create should be refused, got {other:?}"),
        }
        // JSON, as a create or update form sends it: refused with the same message.
        let json = serde_json::json!({ "x-ok": "1", name.as_str(): "0" });
        let parsed = serde_json::from_value::<CustomHeaders>(json);
        let message = parsed.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(message, expected, "{backend}: {name} from JSON");
        let raw = format!(r#"{{"{name}":"dlv_forged"}}"#);
        assert!(
            serde_json::from_str::<CustomHeaders>(&raw).is_err(),
            "{backend}: {name}"
        );
    }
    // An update with valid headers still works, and nothing else was created.
    let update = serde_json::from_str::<CustomHeaders>(r#"{"Authorization":"Bearer k"}"#)
        .expect("valid headers");
    let updated = webhooks
        .update(&kept.id, WebhookUpdate::new().headers(update))
        .await
        .unwrap_or_else(|e| panic!("{backend}: update: {e}"));
    assert_eq!(
        updated.headers.iter().collect::<Vec<_>>(),
        [("authorization", "Bearer k")],
        "{backend}"
    );
    let all = webhooks
        .list(&dataops_webhooks::store::WebhookQuery::new(
            kept.org.clone(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{backend}: list: {e}"));
    assert_eq!(
        all.items.len(),
        1,
        "{backend}: a refused create wrote something"
    );
}

#[tokio::test]
async fn reserved_names_are_refused_through_every_entry_point_on_every_backend() {
    refuses_reserved_names_everywhere("memory", Arc::new(MemoryStore::new())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(dir.path().join("h.db"))
        .await
        .expect("open");
    refuses_reserved_names_everywhere("sqlite", Arc::new(sqlite)).await;
    if let Some(schema) = pg::TestSchema::new("headers_entry") {
        refuses_reserved_names_everywhere("postgres", Arc::new(schema.store().await)).await;
    }
}

#[test]
fn names_differing_only_in_case_are_refused_and_the_count_is_bounded() {
    let twice = serde_json::from_str::<CustomHeaders>(r#"{"X-Team":"a","x-team":"b"}"#);
    assert!(
        twice
            .err()
            .is_some_and(|e| e.to_string().contains("given twice")),
        "a header given twice"
    );
    let many: Vec<(String, &str)> = (0..21).map(|i| (format!("x-h{i}"), "v")).collect();
    assert_eq!(
        CustomHeaders::from_pairs(many).err(),
        Some(WebhookError::TooManyHeaders(21))
    );
    let error = CustomHeaders::new().with("x-evil\r\nInjected", "v").err();
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        !message.contains('\r') && !message.contains('\n'),
        "{message:?}"
    );
}

/// A record as a version before this rule could store it: reserved names in any case.
const FORGED: &str = r#"{"Content-Length":"0","X-Aquarium-Delivery":"dlv_forged","Webhook-Id":"msg_forged","X-Hub-Signature":"sha1=forged","Host":"evil.example","Transfer-Encoding":"chunked","Content-Type":"text/plain","X-Team":"ml"}"#;

/// Rewrites the stored record of `id` in a SQLite file with the forged headers, behind the
/// store's back.
fn forge_sqlite_row(path: &std::path::Path, id: &str) {
    rusqlite::Connection::open(path)
        .and_then(|c| {
            c.execute(
                "UPDATE webhooks SET record = json_set(record, '$.headers', json(?2)) WHERE id = ?1",
                [id, FORGED],
            )
        })
        .expect("forge");
}

/// The same in a PostgreSQL schema.
async fn forge_postgres_row(schema: &pg::TestSchema, id: &str) {
    schema
        .execute(&format!(
            "UPDATE {}.webhooks SET record = jsonb_set(record, '{{headers}}', '{FORGED}'::jsonb) WHERE id = '{id}'",
            schema.name
        ))
        .await;
}

#[tokio::test]
async fn a_stored_row_with_reserved_headers_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad-row.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let webhooks =
        Webhooks::new(Arc::new(store.clone())).address_policy(AddressPolicy::allow_private());
    let created = webhooks
        .create(NewWebhook::new(Scope::Organization, "http://127.0.0.1:9/"))
        .await
        .expect("create");
    // A row written behind the crate's back, after the migration.
    forge_sqlite_row(&path, &created.id.to_string());
    let error = store.get_webhook(&created.id).await.expect_err("refused");
    assert!(
        error.to_string().contains("content-length")
            && error.to_string().contains("webhook engine"),
        "the message names the header: {error}"
    );

    if let Some(schema) = pg::TestSchema::new("headers_bad_row") {
        let store = schema.store().await;
        let webhooks =
            Webhooks::new(Arc::new(store.clone())).address_policy(AddressPolicy::allow_private());
        let created = webhooks
            .create(NewWebhook::new(Scope::Organization, "http://127.0.0.1:9/"))
            .await
            .expect("create");
        forge_postgres_row(&schema, &created.id.to_string()).await;
        let error = store.get_webhook(&created.id).await.expect_err("refused");
        assert!(
            error.to_string().contains("content-length"),
            "the message names the header: {error}"
        );
    }
}

#[tokio::test]
async fn the_migration_drops_reserved_headers_stored_before_and_requests_arrive_intact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("legacy.db");
    let server = TestServer::start(Reply::Status(204, "")).await;
    let store = SqliteStore::open(&path).await.expect("open");
    let webhooks = Webhooks::new(Arc::new(store)).address_policy(AddressPolicy::allow_private());
    let secret = webhooks
        .create_org_secret(&Default::default())
        .await
        .expect("secret");
    let created = webhooks
        .create(NewWebhook::new(
            Scope::Project("p".into()),
            server.url("/hook"),
        ))
        .await
        .expect("create");
    drop(webhooks);
    // As a file written before schema version 2.
    forge_sqlite_row(&path, &created.id.to_string());
    rusqlite::Connection::open(&path)
        .and_then(|c| c.pragma_update(None, "user_version", 1))
        .expect("version");

    let store = Arc::new(SqliteStore::open(&path).await.expect("reopen migrates"));
    let stored = store
        .get_webhook(&created.id)
        .await
        .expect("readable again")
        .expect("still there");
    assert_eq!(
        stored.headers.iter().collect::<Vec<_>>(),
        [("x-team", "ml")]
    );

    let d = WebhookDispatcher::builder()
        .store(store.clone())
        .queue(store)
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(Duration::from_secs(5))
        .build()
        .expect("dispatcher");
    let _worker = d.start_worker(WorkerOptions::default());
    let event = Event::dataset_complete("p", Dataset::default());
    let receipt = d.emit(event.clone()).await.expect("emit");
    let outcome = receipt.outcomes().await.remove(0);
    assert!(outcome.is_success(), "{outcome:?}");
    let request = &server.wait_for(1).await[0];
    let delivery = receipt.deliveries[0].delivery_id.to_string();
    assert_eq!(
        request.header("x-aquarium-delivery"),
        Some(delivery.as_str())
    );
    assert_eq!(request.header("webhook-id"), Some(delivery.as_str()));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-team"), Some("ml"));
    assert!(request.header("x-hub-signature").is_none());
    assert_eq!(
        request.body.len(),
        serde_json::to_vec(&event).expect("serialize").len(),
        "the whole body arrived"
    );
    let received = Verifier::new(secret)
        .receive(&request.headers, &request.body)
        .expect("the signatures verify");
    assert_eq!(received.event, event);
}

#[tokio::test]
async fn the_postgres_migration_drops_reserved_headers_stored_before() {
    let Some(schema) = pg::TestSchema::new("headers_migrate") else {
        return;
    };
    let store = schema.store().await;
    let webhooks = Webhooks::new(Arc::new(store)).address_policy(AddressPolicy::allow_private());
    let created = webhooks
        .create(NewWebhook::new(Scope::Organization, "http://127.0.0.1:9/"))
        .await
        .expect("create");
    // As a schema migrated before version 2.
    forge_postgres_row(&schema, &created.id.to_string()).await;
    schema
        .execute(&format!(
            "DELETE FROM {}.migrations WHERE version >= 2",
            schema.name
        ))
        .await;
    let store = schema.store().await;
    let stored = store
        .get_webhook(&created.id)
        .await
        .expect("readable again")
        .expect("still there");
    assert_eq!(
        stored.headers.iter().collect::<Vec<_>>(),
        [("x-team", "ml")]
    );
}
