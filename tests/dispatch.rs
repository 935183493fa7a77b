//! Emit, fan-out, filtering, signatures, test sends and previews against real HTTP servers on
//! 127.0.0.1.

#[path = "common/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dataops_webhooks::event::{Dataset, ExportedIssue};
use dataops_webhooks::receiver::Verifier;
use dataops_webhooks::secret::Secret;
use dataops_webhooks::signing::{SignatureScheme, SignatureSchemes};
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::transport::{
    Transport, TransportError, TransportErrorKind, TransportRequest, TransportResponse,
};
use dataops_webhooks::webhook::{EventFilter, NewWebhook, OrgId, Scope, WebhookId};
use dataops_webhooks::{
    AttemptResult, Dispatcher, Event, EventType, WebhookDispatcher, WorkerHandle, WorkerOptions,
};
use hmac::{Hmac, Mac};
use server::{Reply, TestServer};

/// A dispatcher for loopback endpoints, and its worker (deliveries stop when it is dropped).
fn dispatcher() -> (WebhookDispatcher, WorkerHandle) {
    let d = WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(Duration::from_secs(5))
        .build()
        .expect("dispatcher");
    let worker = d.start_worker(WorkerOptions::default());
    (d, worker)
}

fn project(name: &str) -> Scope {
    Scope::Project(name.into())
}

async fn add(d: &WebhookDispatcher, new: NewWebhook) -> WebhookId {
    d.webhooks().create(new).await.expect("create webhook").id
}

fn exported(project: &str) -> Event {
    Event::issue_exported(
        project,
        ExportedIssue {
            id: "issue-7".into(),
            ..Default::default()
        },
    )
}

fn dataset_complete(project: &str) -> Event {
    Event::dataset_complete(
        project,
        Dataset {
            id: "d-1".into(),
            ..Default::default()
        },
    )
}

#[tokio::test]
async fn fan_out_sends_the_same_bytes_to_every_endpoint() {
    let (d, _worker) = dispatcher();
    let servers = [
        TestServer::start(Reply::Status(200, "ok")).await,
        TestServer::start(Reply::Status(204, "")).await,
        TestServer::start(Reply::Status(202, "queued")).await,
    ];
    for s in &servers {
        add(&d, NewWebhook::new(project("p"), s.url("/hook"))).await;
    }
    let event = exported("p");
    let receipt = d.emit(event.clone()).await.expect("emit");
    assert_eq!(receipt.deliveries.len(), 3);
    assert!(!receipt.is_unhandled());

    let outcomes = receipt.outcomes().await;
    assert!(outcomes.iter().all(|o| o.is_success()), "{outcomes:?}");
    let expected_body = serde_json::to_vec(&event).expect("serialize");
    let mut delivery_ids = BTreeSet::new();
    for (server, ticket) in servers.iter().zip(&receipt.deliveries) {
        let got = server.wait_for(1).await;
        assert_eq!(got.len(), 1);
        let request = &got[0];
        assert_eq!(request.path, "/hook");
        assert_eq!(request.body.as_ref(), expected_body.as_slice());
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.header("user-agent"),
            Some(dataops_webhooks::USER_AGENT)
        );
        assert_eq!(request.header("x-aquarium-event"), Some("issue-exported"));
        assert_eq!(
            request.header("x-aquarium-delivery"),
            Some(ticket.delivery_id.to_string().as_str())
        );
        delivery_ids.insert(ticket.delivery_id);
    }
    assert_eq!(delivery_ids.len(), 3, "one delivery id per endpoint");
}

#[tokio::test]
async fn events_reach_only_active_subscribed_webhooks_of_their_project_or_organization() {
    let (d, _worker) = dispatcher();
    let exports = TestServer::start(Reply::Status(200, "")).await;
    let datasets = TestServer::start(Reply::Status(200, "")).await;
    let other_project = TestServer::start(Reply::Status(200, "")).await;
    let org_wide = TestServer::start(Reply::Status(200, "")).await;
    let inactive = TestServer::start(Reply::Status(200, "")).await;
    let other_org = TestServer::start(Reply::Status(200, "")).await;
    add(
        &d,
        NewWebhook::new(project("p"), exports.url("/"))
            .events(EventFilter::only([EventType::IssueExported])),
    )
    .await;
    add(
        &d,
        NewWebhook::new(project("p"), datasets.url("/"))
            .events(EventFilter::only([EventType::DatasetComplete])),
    )
    .await;
    add(&d, NewWebhook::new(project("q"), other_project.url("/"))).await;
    add(&d, NewWebhook::new(Scope::Organization, org_wide.url("/"))).await;
    add(
        &d,
        NewWebhook::new(project("p"), inactive.url("/")).inactive(),
    )
    .await;
    add(
        &d,
        NewWebhook::new(project("p"), other_org.url("/")).org("globex"),
    )
    .await;

    let receipt = d.emit(exported("p")).await.expect("emit");
    assert_eq!(receipt.deliveries.len(), 2);
    receipt.outcomes().await;
    let receipt = d.emit(dataset_complete("p")).await.expect("emit");
    assert_eq!(receipt.deliveries.len(), 2);
    receipt.outcomes().await;

    let events = |s: &TestServer| -> Vec<String> {
        s.requests()
            .iter()
            .filter_map(|r| r.header("x-aquarium-event").map(str::to_owned))
            .collect()
    };
    assert_eq!(events(&exports), ["issue-exported"]);
    assert_eq!(events(&datasets), ["dataset-complete"]);
    assert_eq!(events(&org_wide), ["issue-exported", "dataset-complete"]);
    assert!(events(&other_project).is_empty());
    assert!(events(&inactive).is_empty());
    assert!(events(&other_org).is_empty());
}

#[tokio::test]
async fn an_event_no_webhook_handles_gets_an_unhandled_receipt() {
    let (d, _worker) = dispatcher();
    let server = TestServer::start(Reply::Status(200, "")).await;
    add(
        &d,
        NewWebhook::new(project("p"), server.url("/"))
            .events(EventFilter::only([EventType::DatasetFailed])),
    )
    .await;
    let org = OrgId::default();
    assert!(d
        .subscribers(Some(&org), "p", EventType::IssueExported)
        .await
        .expect("store")
        .is_empty());
    let receipt = d.emit(exported("p")).await.expect("emit");
    assert!(receipt.is_unhandled());
    assert_eq!(receipt.event_type, EventType::IssueExported);
    assert!(receipt.outcomes().await.is_empty());
    assert!(server.requests().is_empty());
}

fn hmac_hex<M: Mac + hmac::digest::KeyInit>(key: &[u8], body: &[u8]) -> String {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn every_scheme_passes_an_independent_verifier() {
    let (d, _worker) = dispatcher();
    let org = OrgId::default();
    let secret = d.webhooks().create_org_secret(&org).await.expect("secret");
    let server = TestServer::start(Reply::Status(200, "")).await;
    add(
        &d,
        NewWebhook::new(project("p"), server.url("/"))
            .schemes(SignatureSchemes::of(SignatureScheme::ALL)),
    )
    .await;
    d.emit(exported("p")).await.expect("emit").outcomes().await;
    let request = &server.wait_for(1).await[0];

    // The seeds' receivers compare the header with the secret they were shown.
    assert_eq!(request.header("x-aquarium-secret"), Some(secret.expose()));
    // The official Standard Webhooks library (its own HMAC implementation).
    let official = standardwebhooks::Webhook::new(secret.expose()).expect("official verifier");
    official
        .verify(&request.body, &request.headers)
        .expect("standardwebhooks verify");
    assert_eq!(
        request.header("webhook-id"),
        request.header("x-aquarium-delivery")
    );
    // Hub signatures, computed here from the raw body and the secret's text.
    let key = secret.expose().as_bytes();
    let sha1 = format!("sha1={}", hmac_hex::<Hmac<sha1::Sha1>>(key, &request.body));
    let sha256 = format!(
        "sha256={}",
        hmac_hex::<Hmac<sha2::Sha256>>(key, &request.body)
    );
    assert_eq!(request.header("x-hub-signature"), Some(sha1.as_str()));
    assert_eq!(request.header("x-hub-signature-256"), Some(sha256.as_str()));
    // And the crate's own receiver.
    let received = Verifier::new(secret)
        .receive(&request.headers, &request.body)
        .expect("receive");
    assert_eq!(received.event, exported("p"));
    assert_eq!(
        received.delivery_id.as_deref(),
        request.header("x-aquarium-delivery")
    );
}

#[tokio::test]
async fn rotation_with_grace_signs_with_both_secrets_and_without_grace_replaces_at_once() {
    let (d, _worker) = dispatcher();
    let org = OrgId::default();
    let old = d.webhooks().create_org_secret(&org).await.expect("secret");
    let server = TestServer::start(Reply::Status(200, "")).await;
    add(&d, NewWebhook::new(project("p"), server.url("/"))).await;

    let new = d
        .webhooks()
        .rotate_org_secret(&org, Duration::from_secs(3600))
        .await
        .expect("rotate");
    d.emit(exported("p")).await.expect("emit").outcomes().await;
    let during = server.wait_for(1).await[0].clone();
    assert_eq!(
        during
            .header("webhook-signature")
            .map(|s| s.split(' ').count()),
        Some(2)
    );
    for secret in [&old, &new] {
        standardwebhooks::Webhook::new(secret.expose())
            .expect("verifier")
            .verify(&during.body, &during.headers)
            .expect("verify");
    }
    assert_eq!(during.header("x-aquarium-secret"), Some(new.expose()));

    let newest = d
        .webhooks()
        .rotate_org_secret(&org, Duration::ZERO)
        .await
        .expect("rotate");
    d.emit(exported("p")).await.expect("emit").outcomes().await;
    let after = server.wait_for(2).await[1].clone();
    assert_eq!(
        after
            .header("webhook-signature")
            .map(|s| s.split(' ').count()),
        Some(1)
    );
    standardwebhooks::Webhook::new(newest.expose())
        .expect("verifier")
        .verify(&after.body, &after.headers)
        .expect("verify");
    let stale = standardwebhooks::Webhook::new(new.expose())
        .expect("verifier")
        .verify(&after.body, &after.headers);
    assert!(
        stale.is_err(),
        "the replaced secret must stop verifying at once"
    );
    assert_eq!(after.header("x-aquarium-secret"), Some(newest.expose()));
}

#[tokio::test]
async fn a_webhook_secret_overrides_the_organization_and_unsigned_is_unsigned() {
    let (d, _worker) = dispatcher();
    d.webhooks()
        .create_org_secret(&OrgId::default())
        .await
        .expect("org secret");
    let labelbox = TestServer::start(Reply::Status(200, "")).await;
    let own = Secret::parse("labelbox-style-secret").expect("secret");
    let hub_only = SignatureSchemes::NONE.with(SignatureScheme::HubSignature);
    add(
        &d,
        NewWebhook::new(project("p"), labelbox.url("/"))
            .secret(own.clone())
            .schemes(hub_only),
    )
    .await;
    d.emit(exported("p")).await.expect("emit").outcomes().await;
    let request = &labelbox.wait_for(1).await[0];
    let expected = format!(
        "sha1={}",
        hmac_hex::<Hmac<sha1::Sha1>>(b"labelbox-style-secret", &request.body)
    );
    assert_eq!(request.header("x-hub-signature"), Some(expected.as_str()));
    assert!(request.header("x-aquarium-secret").is_none());
    assert!(request.header("webhook-signature").is_none());

    // An organization that never generated a secret: requests go unsigned, as documented.
    let (fresh, _fresh_worker) = dispatcher();
    let server = TestServer::start(Reply::Status(200, "")).await;
    add(&fresh, NewWebhook::new(project("p"), server.url("/"))).await;
    fresh
        .emit(exported("p"))
        .await
        .expect("emit")
        .outcomes()
        .await;
    let unsigned = &server.wait_for(1).await[0];
    for name in ["x-aquarium-secret", "webhook-signature", "x-hub-signature"] {
        assert!(unsigned.header(name).is_none(), "{name}");
    }
    assert!(unsigned.header("x-aquarium-delivery").is_some());
}

#[tokio::test]
async fn custom_headers_are_sent() {
    let (d, _worker) = dispatcher();
    let server = TestServer::start(Reply::Status(200, "")).await;
    add(
        &d,
        NewWebhook::new(project("p"), server.url("/"))
            .header("Authorization", "Bearer gateway-key"),
    )
    .await;
    d.emit(exported("p")).await.expect("emit").outcomes().await;
    assert_eq!(
        server.wait_for(1).await[0].header("authorization"),
        Some("Bearer gateway-key")
    );
}

#[tokio::test]
async fn send_test_reports_success_and_each_failure_mode() {
    let d = WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(Duration::from_millis(300))
        .build()
        .expect("dispatcher");
    let ok = TestServer::start(Reply::Status(200, "thanks")).await;
    let failing = TestServer::start(Reply::Status(500, "database is down")).await;
    let slow = TestServer::start(Reply::Slow(Duration::from_secs(3), 200)).await;
    let refused_addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    }; // dropped: nothing listens there any more

    let ok_id = add(
        &d,
        NewWebhook::new(project("traffic-signs"), ok.url("/")).inactive(),
    )
    .await;
    let outcome = d.send_test(&ok_id).await.expect("send_test");
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(outcome.error_message(), None);
    let request = &ok.wait_for(1).await[0];
    match Event::from_slice(&request.body).expect("test event parses") {
        Event::Test(test) => assert_eq!(test.project, "traffic-signs"),
        other => panic!("expected the test event, got {other:?}"),
    }
    assert_eq!(request.header("x-aquarium-event"), Some("webhook-test"));

    let failing_id = add(&d, NewWebhook::new(project("p"), failing.url("/"))).await;
    let outcome = d.send_test(&failing_id).await.expect("send_test");
    assert_eq!(outcome.status().map(|s| s.as_u16()), Some(500));
    assert_eq!(
        outcome.error_message().as_deref(),
        Some("the endpoint answered 500 Internal Server Error: database is down")
    );

    let slow_id = add(&d, NewWebhook::new(project("p"), slow.url("/"))).await;
    let outcome = d.send_test(&slow_id).await.expect("send_test");
    assert!(
        matches!(&outcome.result, AttemptResult::Failed(e) if e.kind() == TransportErrorKind::Timeout),
        "{outcome:?}"
    );

    let refused_id = add(
        &d,
        NewWebhook::new(project("p"), format!("http://{refused_addr}/")),
    )
    .await;
    let outcome = d.send_test(&refused_id).await.expect("send_test");
    assert!(
        matches!(&outcome.result, AttemptResult::Failed(e) if e.kind() == TransportErrorKind::Connect),
        "{outcome:?}"
    );
    assert!(outcome.error_message().is_some());

    let missing = d.send_test(&WebhookId::new()).await;
    assert!(matches!(
        missing,
        Err(dataops_webhooks::DispatchError::WebhookNotFound(_))
    ));
}

#[tokio::test]
async fn preview_is_what_is_sent() {
    let (d, _worker) = dispatcher();
    d.webhooks()
        .create_org_secret(&OrgId::default())
        .await
        .expect("secret");
    let server = TestServer::start(Reply::Status(200, "")).await;
    let id = add(
        &d,
        NewWebhook::new(project("p"), server.url("/hook")).header("x-team", "ml"),
    )
    .await;
    let event = exported("p");
    let preview = d.preview(&id, &event).await.expect("preview");
    assert!(server.requests().is_empty(), "preview must not send");
    d.emit(event).await.expect("emit").outcomes().await;
    let sent = &server.wait_for(1).await[0];

    assert_eq!(preview.body.as_ref(), sent.body.as_ref());
    assert_eq!(preview.url.as_str(), server.url("/hook"));
    let per_attempt = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-aquarium-delivery",
    ];
    let stable = |h: &axum::http::HeaderMap| -> Vec<(String, String)> {
        h.iter()
            .filter(|(n, _)| !per_attempt.contains(&n.as_str()))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect()
    };
    let mut sent_stable = stable(&sent.headers);
    sent_stable.retain(|(n, _)| !matches!(n.as_str(), "host" | "content-length" | "accept"));
    assert_eq!(stable(&preview.headers), sent_stable);
    for name in per_attempt {
        assert!(preview.headers.contains_key(name), "{name}");
    }
    // The preview's own signature is valid for its own id and timestamp.
    let secret = sent.header("x-aquarium-secret").expect("secret header");
    standardwebhooks::Webhook::new(secret)
        .expect("verifier")
        .verify(&preview.body, &preview.headers)
        .expect("verify");
    assert!(
        !format!("{preview:?}").contains(secret),
        "Debug must not show the secret"
    );
}

#[tokio::test]
async fn one_slow_endpoint_does_not_hold_up_the_others() {
    let (d, _worker) = dispatcher();
    let stuck = TestServer::start(Reply::Gated).await;
    let fast = TestServer::start(Reply::Status(200, "")).await;
    add(&d, NewWebhook::new(project("p"), stuck.url("/"))).await;
    add(&d, NewWebhook::new(project("p"), fast.url("/"))).await;
    let receipt = d.emit(exported("p")).await.expect("emit");
    let fast_ticket = receipt
        .deliveries
        .iter()
        .find(|t| t.url.port() == Some(fast.addr.port()))
        .expect("ticket");
    let outcome = tokio::time::timeout(Duration::from_secs(10), fast_ticket.outcome())
        .await
        .expect("the fast delivery finished while the slow one was stuck");
    assert!(outcome.is_success());
    assert_eq!(
        stuck.wait_for(1).await.len(),
        1,
        "the stuck endpoint was reached and is still waiting"
    );
    stuck.open_gate();
    assert!(receipt.outcomes().await.iter().all(|o| o.is_success()));
}

/// A host's own transport: records requests, answers 200.
#[derive(Debug, Default)]
struct Recording(Mutex<Vec<TransportRequest>>);

#[async_trait]
impl Transport for Recording {
    async fn send(&self, request: TransportRequest) -> Result<TransportResponse, TransportError> {
        self.0.lock().expect("lock").push(request);
        Ok(TransportResponse::new(
            http::StatusCode::OK,
            http::HeaderMap::new(),
            bytes::Bytes::new(),
            Duration::ZERO,
        ))
    }
}

#[tokio::test]
async fn a_custom_transport_receives_the_signed_request() {
    let transport = Arc::new(Recording::default());
    let d = WebhookDispatcher::builder()
        .transport(transport.clone())
        .build()
        .expect("dispatcher");
    let _worker = d.start_worker(WorkerOptions::default());
    let secret = d
        .webhooks()
        .create_org_secret(&OrgId::default())
        .await
        .expect("secret");
    add(
        &d,
        NewWebhook::new(project("p"), "https://hooks.example.com/aq"),
    )
    .await;
    let receipt = d.emit(exported("p")).await.expect("emit");
    assert!(receipt.outcomes().await[0].is_success());
    let sent = transport.0.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].url.as_str(), "https://hooks.example.com/aq");
    standardwebhooks::Webhook::new(secret.expose())
        .expect("verifier")
        .verify(&sent[0].body, &sent[0].headers)
        .expect("verify");
}

#[tokio::test]
async fn a_non_finite_number_fails_the_emit_and_sends_nothing() {
    let (d, _worker) = dispatcher();
    let server = TestServer::start(Reply::Status(200, "")).await;
    add(&d, NewWebhook::new(project("p"), server.url("/"))).await;
    let mut issue = ExportedIssue {
        id: "i".into(),
        ..Default::default()
    };
    issue
        .elements
        .push(dataops_webhooks::event::ExportedElement::default());
    issue.elements[0]
        .frame_data
        .geo_data
        .insert("lat".into(), f64::NAN);
    let result = d.emit(Event::issue_exported("p", issue)).await;
    assert!(
        matches!(result, Err(dataops_webhooks::DispatchError::Serialize(_))),
        "{result:?}"
    );
    assert!(server.requests().is_empty());
}
