//! Durable delivery end to end on loopback: retries, `Retry-After`, 410, health, replay,
//! idempotency, shutdown and per-endpoint limits, with a compressed retry schedule.

#[path = "common/flaky.rs"]
mod flaky;
#[path = "common/server.rs"]
mod server;
#[path = "common/wrapped_queue.rs"]
mod wrapped_queue;

use std::time::Duration;

use chrono::Utc;
use dataops_webhooks::event::{Dataset, Event};
use dataops_webhooks::queue::{AttemptErrorKind, DeliveryQuery, DeliveryRecord, DeliveryStatus};
use dataops_webhooks::retry::RetryPolicy;
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, Scope, WebhookId, WebhookStatus};
use dataops_webhooks::{Dispatcher, Emit, HostEvent, WebhookDispatcher, WorkerOptions};
use flaky::{dropping_listener, Flaky};
use tokio::sync::broadcast;
use wrapped_queue::{FailsFirstSettle, Wrapped};

const MS: Duration = Duration::from_millis(1);

/// Four attempts 50 ms apart, no jitter.
fn fast_retries() -> RetryPolicy {
    RetryPolicy::new(vec![Duration::ZERO, 50 * MS, 50 * MS, 50 * MS]).jitter(0.0)
}

fn options() -> WorkerOptions {
    WorkerOptions::default()
        .retry(fast_retries())
        .poll_interval(20 * MS)
        .shutdown_grace(Duration::from_secs(5))
}

fn dispatcher() -> WebhookDispatcher {
    WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(300 * MS)
        .build()
        .expect("dispatcher")
}

/// A dispatcher over `queue`, otherwise as [`dispatcher`].
fn dispatcher_over(queue: FailsFirstSettle) -> WebhookDispatcher {
    WebhookDispatcher::builder()
        .queue(std::sync::Arc::new(queue))
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(300 * MS)
        .build()
        .expect("dispatcher")
}

fn event(n: usize) -> Event {
    Event::dataset_complete(
        "p",
        Dataset {
            id: format!("dataset-{n}"),
            ..Default::default()
        },
    )
}

async fn hook(d: &WebhookDispatcher, url: String) -> WebhookId {
    d.webhooks()
        .create(NewWebhook::new(Scope::Project("p".into()), url))
        .await
        .expect("create")
        .id
}

/// Every delivery of `webhook`, once none is pending (or panics after 30 s).
async fn settled(d: &WebhookDispatcher, webhook: WebhookId) -> Vec<DeliveryRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = d
            .deliveries()
            .list(&DeliveryQuery::new(webhook).limit(200))
            .await
            .expect("list");
        if page
            .items
            .iter()
            .all(|r| r.status != DeliveryStatus::Pending)
        {
            return page.items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries still pending: {:?}",
            page.items
        );
        tokio::time::sleep(20 * MS).await;
    }
}

/// The host events told so far, waiting (up to 5 s) until `done` holds for them: a worker
/// tells the host just after it records the outcome, so a test that saw the record may be
/// a moment ahead of the event.
async fn told_until(
    events: &mut broadcast::Receiver<HostEvent>,
    done: impl Fn(&[HostEvent]) -> bool,
) -> Vec<HostEvent> {
    let mut told = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done(&told) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) => told.push(event),
            Ok(Err(error)) => panic!("host events: {error}"),
            Err(_) => break,
        }
    }
    told
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_receiver_ends_every_delivery_as_the_policy_says() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let worker = d.start_worker(options());
    let mut events = worker.events();
    let dropped = dropping_listener().await;
    let first_fails = hook(&d, server.url("/first-fails")).await;
    let slow = hook(&d, server.url("/slow")).await;
    let busy = hook(&d, server.url("/busy")).await;
    let gone = hook(&d, server.url("/gone")).await;
    let dropping = hook(&d, format!("http://{dropped}/")).await;
    for n in 0..10 {
        d.emit(event(n)).await.expect("emit");
    }

    let ok = settled(&d, first_fails).await;
    assert_eq!(ok.len(), 10);
    for r in &ok {
        assert_eq!(
            (r.status, r.attempts),
            (DeliveryStatus::Succeeded, 2),
            "{r:?}"
        );
        let log = d.deliveries().attempts(&r.id).await.expect("attempts");
        assert_eq!(log[0].status, Some(500));
        assert_eq!(log[0].response, "database is down", "the excerpt is logged");
        assert_eq!(log[1].status, Some(204));
    }
    // Both attempts of a delivery carried the same delivery id.
    let seen = server.requests("/first-fails");
    assert_eq!(seen.len(), 20);
    for r in &ok {
        let id = r.id.to_string();
        assert_eq!(seen.iter().filter(|(s, _)| *s == id).count(), 2);
    }

    for r in settled(&d, slow).await {
        assert_eq!((r.status, r.attempts), (DeliveryStatus::Dead, 4), "{r:?}");
        let log = d.deliveries().attempts(&r.id).await.expect("attempts");
        assert!(log
            .iter()
            .all(|a| a.error_kind == Some(AttemptErrorKind::Timeout)));
    }
    for r in settled(&d, dropping).await {
        assert_eq!((r.status, r.attempts), (DeliveryStatus::Dead, 4), "{r:?}");
    }

    let busy_deliveries = settled(&d, busy).await;
    for r in &busy_deliveries {
        assert_eq!(
            (r.status, r.attempts),
            (DeliveryStatus::Succeeded, 2),
            "{r:?}"
        );
    }
    let busy_seen = server.requests("/busy");
    for r in &busy_deliveries {
        let id = r.id.to_string();
        let times: Vec<_> = busy_seen
            .iter()
            .filter(|(s, _)| *s == id)
            .map(|(_, t)| *t)
            .collect();
        assert!(
            times[1] - times[0] >= Duration::from_millis(950),
            "Retry-After: 1 was honoured over the 50 ms schedule: {:?}",
            times[1] - times[0]
        );
    }

    let gone_deliveries = settled(&d, gone).await;
    assert!(gone_deliveries
        .iter()
        .all(|r| r.status == DeliveryStatus::Dead));
    assert!(
        gone_deliveries.iter().any(|r| r.attempts == 1),
        "410 ends a delivery at its first attempt"
    );
    let webhook = d.webhooks().get(&gone).await.expect("get");
    assert!(
        matches!(&webhook.status, WebhookStatus::Disabled { reason, .. } if reason.contains("410")),
        "{:?}",
        webhook.status
    );

    let disabled = HostEvent::WebhookDisabled {
        webhook_id: gone,
        reason: "the endpoint answered 410 Gone: it asked for no more deliveries".into(),
    };
    let exhausted_in = |told: &[HostEvent]| {
        told.iter()
            .filter(|e| matches!(e, HostEvent::DeliveryExhausted { .. }))
            .count()
    };
    let told = told_until(&mut events, |told| {
        told.contains(&disabled) && exhausted_in(told) >= 20 + gone_deliveries.len()
    })
    .await;
    assert!(told.contains(&disabled), "{told:?}");
    // Emits after the 410 find the webhook disabled and record no delivery for it.
    let dead = 20 + gone_deliveries.len();
    assert_eq!(
        exhausted_in(&told),
        dead,
        "every dead delivery is reported once"
    );

    // No worker is stalled: a new event is delivered at once.
    hook(&d, server.url("/ok")).await;
    let receipt = d.emit(event(99)).await.expect("emit");
    let outcomes = tokio::time::timeout(Duration::from_secs(5), receipt.outcomes())
        .await
        .expect("the worker is still working");
    assert!(outcomes.iter().any(|o| o.is_success()));
    worker.shutdown().await;
}

#[tokio::test]
async fn a_first_failure_reports_its_error_and_when_it_is_retried() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let _worker = d.start_worker(options());
    hook(&d, server.url("/first-fails")).await;
    let receipt = d.emit(event(0)).await.expect("emit");
    let outcome = &receipt.outcomes().await[0];
    assert_eq!(
        outcome.error_message().as_deref(),
        Some("the endpoint answered 500 Internal Server Error: database is down")
    );
    assert!(outcome.next_attempt_at.is_some(), "it will be retried");
}

#[tokio::test]
async fn a_webhook_failing_for_the_whole_window_is_disabled_then_recovers() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let worker = d.start_worker(
        options()
            .retry(RetryPolicy::new(vec![20 * MS; 100]).jitter(0.0))
            .health_window(300 * MS),
    );
    let mut events = worker.events();
    let failing = hook(&d, server.url("/failing")).await;
    let started = Utc::now();
    d.emit(event(0)).await.expect("emit");
    let dead = settled(&d, failing).await;
    assert_eq!(dead[0].status, DeliveryStatus::Dead, "{dead:?}");
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("webhook was disabled")),
        "once disabled, the rest of the schedule is abandoned: {:?}",
        dead[0].last_error
    );
    let webhook = d.webhooks().get(&failing).await.expect("get");
    let WebhookStatus::Disabled { reason, since } = &webhook.status else {
        panic!("disabled after the window: {:?}", webhook.status);
    };
    assert!(reason.contains("every delivery failed"), "{reason}");
    assert!(*since - started >= chrono::Duration::milliseconds(300));
    let disabled = |e: &HostEvent| matches!(e, HostEvent::WebhookDisabled { webhook_id, .. } if *webhook_id == failing);
    let told = told_until(&mut events, |told| told.iter().any(disabled)).await;
    assert!(told.iter().any(disabled), "{told:?}");

    // The user fixes the endpoint, re-enables the webhook and recovers what failed.
    server.heal();
    d.webhooks().reactivate(&failing).await.expect("reactivate");
    let before_started = d
        .deliveries()
        .recover(
            &failing,
            started - chrono::Duration::hours(1),
            Some(started),
        )
        .await
        .expect("recover");
    assert_eq!(
        before_started, 0,
        "`until` leaves out what was emitted after it"
    );
    let resent = d
        .deliveries()
        .recover(&failing, started, None)
        .await
        .expect("recover");
    assert_eq!(resent, 1);
    let done = settled(&d, failing).await;
    assert_eq!(done[0].status, DeliveryStatus::Succeeded);
    assert_eq!(done[0].id, dead[0].id, "the same delivery, redelivered");
    let recovered = HostEvent::WebhookRecovered {
        webhook_id: failing,
    };
    let told = told_until(&mut events, |told| told.contains(&recovered)).await;
    assert!(told.contains(&recovered), "{told:?}");
}

#[tokio::test]
async fn redeliver_sends_the_same_delivery_again() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let _worker = d.start_worker(options());
    let ok = hook(&d, server.url("/ok")).await;
    let receipt = d.emit(event(0)).await.expect("emit");
    receipt.outcomes().await;
    let id = receipt.deliveries[0].delivery_id;
    assert!(d.deliveries().redeliver(&id).await.expect("redeliver"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.requests("/ok").len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "redelivered");
        tokio::time::sleep(10 * MS).await;
    }
    let seen = server.requests("/ok");
    assert_eq!(seen[0].0, seen[1].0, "the same delivery id both times");
    let record = settled(&d, ok).await.remove(0);
    assert_eq!(
        (record.status, record.attempts),
        (DeliveryStatus::Succeeded, 2)
    );
    assert!(!d
        .deliveries()
        .redeliver(&dataops_webhooks::webhook::DeliveryId::new())
        .await
        .expect("redeliver"));
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_receipt() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let _worker = d.start_worker(options());
    hook(&d, server.url("/ok")).await;
    let first = d
        .emit_with(Emit::new(event(0)).idempotency_key("export-7"))
        .await
        .expect("emit");
    first.outcomes().await;
    let again = d
        .emit_with(Emit::new(event(0)).idempotency_key("export-7"))
        .await
        .expect("emit");
    assert_eq!(again.event_id, first.event_id);
    assert_eq!(
        again.deliveries[0].delivery_id,
        first.deliveries[0].delivery_id
    );
    assert!(
        again.outcomes().await[0].is_success(),
        "settled outcome at once"
    );
    tokio::time::sleep(100 * MS).await;
    assert_eq!(server.requests("/ok").len(), 1, "nothing sent twice");
    let err = d
        .emit_with(Emit::new(event(0)).idempotency_key(""))
        .await
        .expect_err("an empty key is refused");
    assert!(err.to_string().contains("idempotency key"), "{err}");
}

#[tokio::test]
async fn deliveries_for_a_deleted_or_inactive_webhook_end_dead_with_the_reason() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let deleted = hook(&d, server.url("/ok")).await;
    let inactive = hook(&d, server.url("/ok")).await;
    let receipt = d.emit(event(0)).await.expect("emit");
    d.webhooks().delete(&deleted).await.expect("delete");
    d.webhooks()
        .deactivate(&inactive)
        .await
        .expect("deactivate");
    let _worker = d.start_worker(options());
    for outcome in receipt.outcomes().await {
        assert!(!outcome.is_success());
    }
    let dead = settled(&d, inactive).await.remove(0);
    assert_eq!(dead.status, DeliveryStatus::Dead);
    assert!(dead
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("inactive")));
    assert!(server.requests("/ok").is_empty(), "nothing was sent");
}

#[tokio::test]
async fn shutdown_lets_attempts_finish_and_leaves_the_rest_queued() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let count = hook(&d, server.url("/count")).await;
    for n in 0..20 {
        d.emit(event(n)).await.expect("emit");
    }
    let worker = d.start_worker(options().per_endpoint(2));
    tokio::time::sleep(150 * MS).await;
    worker.shutdown().await;
    let records = d
        .deliveries()
        .list(&DeliveryQuery::new(count).limit(200))
        .await
        .expect("list");
    let done = records
        .items
        .iter()
        .filter(|r| r.status == DeliveryStatus::Succeeded)
        .count();
    let waiting = records
        .items
        .iter()
        .filter(|r| r.status == DeliveryStatus::Pending && r.attempts == 0)
        .count();
    assert!(done >= 2, "attempts in flight finished: {done}");
    assert_eq!(
        done + waiting,
        20,
        "the rest wait in the queue, unattempted"
    );
    assert!(waiting > 0);
    // A new worker finishes them.
    let worker = d.start_worker(options().per_endpoint(2));
    assert!(settled(&d, count)
        .await
        .iter()
        .all(|r| r.status == DeliveryStatus::Succeeded));
    assert_eq!(
        server.max_in_flight(),
        2,
        "at most 2 at once to one endpoint"
    );
    worker.shutdown().await;
}

/// `concurrency` bounds the attempts in flight across endpoints, however many endpoints have
/// free slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_bounds_attempts_in_flight_across_endpoints() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let mut hooks = Vec::new();
    for n in 0..5 {
        hooks.push(hook(&d, server.url(&format!("/count?endpoint={n}"))).await);
    }
    for n in 0..4 {
        d.emit(event(n)).await.expect("emit");
    }
    let worker = d.start_worker(options().concurrency(3));
    for webhook in hooks {
        assert!(settled(&d, webhook)
            .await
            .iter()
            .all(|r| r.status == DeliveryStatus::Succeeded));
    }
    assert_eq!(server.max_in_flight(), 3, "3 at once across 5 endpoints");
    worker.shutdown().await;
}

/// The most deliveries a worker holds claimed at once while `/count` works through 16 of
/// them, one at a time, sampled between the `answered.start`-th and `answered.end`-th
/// answer; with the deliveries once all are settled, and the server.
async fn most_claimed_between(
    options: WorkerOptions,
    answered: std::ops::Range<usize>,
) -> (u64, Vec<DeliveryRecord>, Flaky) {
    let server = Flaky::start().await;
    let d = dispatcher();
    let count = hook(&d, server.url("/count")).await;
    for n in 0..16 {
        d.emit(event(n)).await.expect("emit");
    }
    let worker = d.start_worker(options.per_endpoint(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let answers = || server.requests("/count").len();
    while answers() < answered.start && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(5 * MS).await;
    }
    let mut most = 0;
    while answers() < answered.end && tokio::time::Instant::now() < deadline {
        let depth = d.deliveries().depth().await.expect("depth");
        most = most.max(depth.in_flight);
        tokio::time::sleep(5 * MS).await;
    }
    let records = settled(&d, count).await;
    worker.shutdown().await;
    (most, records, server)
}

/// The most deliveries a worker holds claimed at once over the whole run.
async fn most_claimed_at_once(options: WorkerOptions) -> u64 {
    let (most, records, server) = most_claimed_between(options, 0..16).await;
    assert!(records
        .iter()
        .all(|r| r.status == DeliveryStatus::Succeeded));
    assert_eq!(server.max_in_flight(), 1, "one request at a time");
    most
}

/// A worker claims ahead of a busy endpoint, within `prefetch` and within
/// `AHEAD_PER_ENDPOINT` times the endpoint's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_claims_ahead_within_its_prefetch_and_the_endpoint_cap() {
    use dataops_webhooks::worker::AHEAD_PER_ENDPOINT;
    let capped = most_claimed_at_once(options().concurrency(1).prefetch(2)).await;
    assert_eq!(capped, 3, "one in flight and two waiting");
    let none = most_claimed_at_once(options().concurrency(1).prefetch(0)).await;
    assert_eq!(none, 1, "without prefetch only what can start is claimed");
    let per_endpoint = most_claimed_at_once(options()).await;
    assert_eq!(
        per_endpoint, AHEAD_PER_ENDPOINT as u64,
        "one endpoint holds at most {AHEAD_PER_ENDPOINT} × its limit"
    );
}

/// A slow endpoint is claimed for only as far ahead as its slots can start before the
/// claims' leases run short: here 100 ms requests, one at a time, and 250 ms a claim may
/// wait (half of an 800 ms lease less the 300 ms request timeout) hold 3 claims, not 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_is_claimed_for_only_as_far_ahead_as_its_leases_allow() {
    // The first claim knows nothing of the endpoint yet and takes up to 8: measure once
    // those are through.
    let (most, records, server) = most_claimed_between(options().lease(800 * MS), 8..14).await;
    assert!(records
        .iter()
        .all(|r| r.status == DeliveryStatus::Succeeded && r.attempts == 1));
    // One in flight, two waiting, and at most one more still being recorded.
    assert!((3..=4).contains(&most), "held {most} claims at once");
    assert_eq!(
        server.requests("/count").len(),
        16,
        "no claim ran out of lease and was sent twice"
    );
}

/// Claims waiting for a busy endpoint do not hold back another endpoint's delivery: it is
/// sent while the busy one still has most of its backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_endpoints_claimed_backlog_does_not_delay_another_endpoint() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let busy = hook(&d, server.url("/count")).await;
    let other = d
        .webhooks()
        .create(NewWebhook::new(
            Scope::Project("q".into()),
            server.url("/ok"),
        ))
        .await
        .expect("create")
        .id;
    for n in 0..20 {
        d.emit(event(n)).await.expect("emit");
    }
    let worker = d.start_worker(options().per_endpoint(1));
    while server.requests("/count").is_empty() {
        tokio::time::sleep(5 * MS).await;
    }
    let receipt = d
        .emit(Event::dataset_complete("q", Dataset::default()))
        .await
        .expect("emit");
    let outcomes = receipt.outcomes().await;
    assert!(outcomes[0].is_success(), "{outcomes:?}");
    let behind = d
        .deliveries()
        .list(&DeliveryQuery::new(busy).limit(200))
        .await
        .expect("list")
        .items
        .iter()
        .filter(|r| r.status == DeliveryStatus::Pending)
        .count();
    assert!(
        behind >= 10,
        "sent while the busy endpoint had {behind} of 20 left"
    );
    assert_eq!(settled(&d, other).await.len(), 1);
    worker.shutdown().await;
}

#[tokio::test]
async fn a_hard_stop_returns_claimed_deliveries_to_the_queue() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let slow = hook(&d, server.url("/slow")).await;
    d.emit(event(0)).await.expect("emit");
    let worker = d.start_worker(
        options()
            .shutdown_grace(50 * MS)
            .lease(Duration::from_secs(600)),
    );
    while server.requests("/slow").is_empty() {
        tokio::time::sleep(5 * MS).await;
    }
    worker.shutdown().await;
    let record = d
        .deliveries()
        .list(&DeliveryQuery::new(slow))
        .await
        .expect("list")
        .items
        .remove(0);
    assert_eq!(record.status, DeliveryStatus::Pending);
    assert_eq!(record.attempts, 0, "the cancelled attempt is not counted");
    assert!(
        record.next_attempt_at.is_some_and(|t| t <= Utc::now()),
        "due now, not at the end of its 10-minute lease: {:?}",
        record.next_attempt_at
    );
}

/// Claims that wait in the worker for a busy endpoint's slot go back to the queue at a stop,
/// due at once rather than when their leases end.
#[tokio::test]
async fn claims_waiting_for_a_slot_return_to_the_queue_at_a_stop() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let slow = hook(&d, server.url("/slow")).await;
    for n in 0..4 {
        d.emit(event(n)).await.expect("emit");
    }
    let worker = d.start_worker(
        options()
            .per_endpoint(1)
            .shutdown_grace(50 * MS)
            .lease(Duration::from_secs(600)),
    );
    while server.requests("/slow").is_empty() {
        tokio::time::sleep(5 * MS).await;
    }
    tokio::time::sleep(50 * MS).await;
    assert_eq!(server.requests("/slow").len(), 1, "one request at a time");
    worker.shutdown().await;
    let records = d
        .deliveries()
        .list(&DeliveryQuery::new(slow))
        .await
        .expect("list")
        .items;
    assert_eq!(records.len(), 4);
    for record in records {
        assert_eq!(record.status, DeliveryStatus::Pending);
        assert_eq!(record.attempts, 0);
        assert!(
            record.next_attempt_at.is_some_and(|t| t <= Utc::now()),
            "due now, not at the end of its 10-minute lease: {:?}",
            record.next_attempt_at
        );
    }
}

/// What the worker reports before the host asks for its events is not lost: the first
/// receiver has everything since the start, a later one only what follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_events_receiver_has_what_was_reported_before_it_was_asked_for() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let gone = hook(&d, server.url("/gone")).await;
    d.emit(event(0)).await.expect("emit");
    let worker = d.start_worker(options());
    let dead = settled(&d, gone).await;
    assert_eq!(dead[0].status, DeliveryStatus::Dead);
    // The worker tells right after it records: wait for both reports, not only the record.
    let mut first = worker.events();
    let told = told_until(&mut first, |told| {
        told.iter()
            .any(|e| matches!(e, HostEvent::WebhookDisabled { .. }))
            && told
                .iter()
                .any(|e| matches!(e, HostEvent::DeliveryExhausted { .. }))
    })
    .await;
    assert!(
        told.iter().any(|e| matches!(e,
            HostEvent::DeliveryExhausted { webhook_id, .. } if *webhook_id == gone)),
        "{told:?}"
    );
    assert!(
        told.iter().any(|e| matches!(e,
            HostEvent::WebhookDisabled { webhook_id, .. } if *webhook_id == gone)),
        "{told:?}"
    );
    assert!(
        worker.events().try_recv().is_err(),
        "a later receiver starts from now"
    );
    worker.shutdown().await;
}

/// Sixteen webhooks, each with eight deliveries answered 410 at the same time: each webhook is
/// disabled once and reported once (a read-check-write would report some twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_410s_disable_a_webhook_once_and_report_it_once() {
    disables_once(dispatcher()).await;
}

/// The same on SQLite, where reading and writing a webhook are separate round trips.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_410s_disable_a_webhook_once_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = std::sync::Arc::new(
        dataops_webhooks::sqlite::SqliteStore::open(dir.path().join("w.db"))
            .await
            .expect("open"),
    );
    let d = WebhookDispatcher::builder()
        .store(store.clone())
        .queue(store)
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(300 * MS)
        .build()
        .expect("dispatcher");
    disables_once(d).await;
}

async fn disables_once(d: WebhookDispatcher) {
    let server = Flaky::start().await;
    let mut hooks = Vec::new();
    for _ in 0..16 {
        hooks.push(hook(&d, server.url("/gone")).await);
    }
    // Queued before the worker starts, so each webhook's eight are claimed and sent together.
    for n in 0..8 {
        d.emit(event(n)).await.expect("emit");
    }
    let worker = d.start_worker(options());
    let mut events = worker.events();
    let exhausted = |told: &[HostEvent]| {
        told.iter()
            .filter(|e| matches!(e, HostEvent::DeliveryExhausted { .. }))
            .count()
    };
    let mut told = told_until(&mut events, |told| exhausted(told) >= 16 * 8).await;
    // Any late duplicate would follow within moments.
    tokio::time::sleep(200 * MS).await;
    while let Ok(event) = events.try_recv() {
        told.push(event);
    }
    assert_eq!(exhausted(&told), 16 * 8, "{told:?}");
    for id in &hooks {
        let reports = told
            .iter()
            .filter(
                |e| matches!(e, HostEvent::WebhookDisabled { webhook_id, .. } if webhook_id == id),
            )
            .count();
        assert_eq!(
            reports, 1,
            "webhook {id} was reported disabled {reports} times"
        );
        let webhook = d.webhooks().get(id).await.expect("get");
        assert!(matches!(webhook.status, WebhookStatus::Disabled { .. }));
    }
    worker.shutdown().await;
}

/// A host transport that panics on its first `panics` sends, then sends for real.
#[derive(Debug)]
struct PanicsFirst {
    left: std::sync::atomic::AtomicUsize,
    real: dataops_webhooks::transport::HttpTransport,
}

#[async_trait::async_trait]
impl dataops_webhooks::transport::Transport for PanicsFirst {
    async fn send(
        &self,
        request: dataops_webhooks::transport::TransportRequest,
    ) -> Result<
        dataops_webhooks::transport::TransportResponse,
        dataops_webhooks::transport::TransportError,
    > {
        use std::sync::atomic::Ordering;
        if self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("a host transport bug");
        }
        self.real.send(request).await
    }
}

/// More panics than the endpoint's limit: each frees its slot, is reported, and its delivery
/// is sent once the lease runs out; the endpoint is never left counted as busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_attempt_frees_its_endpoint_and_is_reported() {
    let server = Flaky::start().await;
    let transport = PanicsFirst {
        left: 3.into(),
        real: dataops_webhooks::transport::HttpTransport::builder()
            .address_policy(AddressPolicy::allow_private())
            .build()
            .expect("transport"),
    };
    let d = WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private())
        .transport(std::sync::Arc::new(transport))
        .request_timeout(300 * MS)
        .build()
        .expect("dispatcher");
    let hook = hook(&d, server.url("/ok")).await;
    let worker = d.start_worker(options().per_endpoint(2).lease(300 * MS));
    let mut events = worker.events();
    for n in 0..5 {
        d.emit(event(n)).await.expect("emit");
    }
    let records = settled(&d, hook).await;
    assert_eq!(records.len(), 5);
    assert!(
        records
            .iter()
            .all(|r| r.status == DeliveryStatus::Succeeded),
        "{records:?}"
    );
    let told = told_until(&mut events, |told| {
        told.iter()
            .filter(|e| matches!(e, HostEvent::AttemptPanicked { .. }))
            .count()
            >= 3
    })
    .await;
    let panicked = told
        .iter()
        .filter(
            |e| matches!(e, HostEvent::AttemptPanicked { webhook_id, .. } if *webhook_id == hook),
        )
        .count();
    assert_eq!(panicked, 3, "{told:?}");
    worker.shutdown().await;
}

/// The attempt log says what happened: a timeout took the time it took, and a 200 whose body
/// is over the limit is logged with its 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_logged_with_their_duration_and_status() {
    use server::{Reply, TestServer};
    let slow = TestServer::start(Reply::Slow(Duration::from_secs(3), 200)).await;
    let flood = TestServer::start(Reply::Big(2 * 1024 * 1024)).await;
    let d = dispatcher();
    let slow_hook = hook(&d, slow.url("/")).await;
    let flood_hook = hook(&d, flood.url("/")).await;
    let worker = d.start_worker(options());
    let receipt = d.emit(event(1)).await.expect("emit");
    let outcomes = receipt.outcomes().await;
    let log = |webhook: WebhookId| {
        let d = d.clone();
        async move {
            let page = d
                .deliveries()
                .list(&DeliveryQuery::new(webhook))
                .await
                .expect("list");
            let attempts = d
                .deliveries()
                .attempts(&page.items[0].id)
                .await
                .expect("attempts");
            attempts[0].clone()
        }
    };
    let timed_out = log(slow_hook).await;
    assert_eq!(
        timed_out.error_kind,
        Some(AttemptErrorKind::Timeout),
        "{timed_out:?}"
    );
    assert!(
        timed_out.duration >= 250 * MS && timed_out.duration < Duration::from_secs(3),
        "a 300 ms timeout is logged as {:?}",
        timed_out.duration
    );
    let too_large = log(flood_hook).await;
    assert_eq!(
        too_large.error_kind,
        Some(AttemptErrorKind::ResponseTooLarge),
        "{too_large:?}"
    );
    assert_eq!(too_large.status, Some(200), "{too_large:?}");
    assert!(too_large.duration > Duration::ZERO, "{too_large:?}");
    let flood_outcome = outcomes
        .iter()
        .find(|o| o.webhook_id == flood_hook)
        .expect("an outcome");
    assert_eq!(flood_outcome.status().map(|s| s.as_u16()), Some(200));
    worker.shutdown().await;
}

#[tokio::test]
async fn running_workers_says_whether_emits_will_be_sent_from_here() {
    let d = dispatcher();
    assert_eq!(d.running_workers(), 0, "emits now are recorded, not sent");
    let first = d.start_worker(options());
    assert_eq!(d.running_workers(), 1);
    let second = d.clone().start_worker(options());
    assert_eq!(d.running_workers(), 2, "clones share the count");
    first.shutdown().await;
    assert_eq!(d.running_workers(), 1);
    drop(second);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while d.running_workers() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dropped handle stops its worker"
        );
        tokio::time::sleep(10 * MS).await;
    }
}

/// A settle that fails is reported with what failed, for which delivery, whether it may pass,
/// and the backend's error as the source; the delivery is sent again when its lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_settle_is_reported_with_its_operation_delivery_and_cause() {
    use dataops_webhooks::BackendOperation;
    let server = Flaky::start().await;
    let d = dispatcher_over(FailsFirstSettle::default());
    let hook = hook(&d, server.url("/ok")).await;
    let worker = d.start_worker(options().lease(300 * MS));
    let mut events = worker.events();
    let receipt = d.emit(event(1)).await.expect("emit");
    let id = receipt.deliveries[0].delivery_id;
    let told = told_until(&mut events, |told| {
        told.iter().any(|e| matches!(e, HostEvent::BackendError(_)))
    })
    .await;
    let failure = told
        .iter()
        .find_map(|e| match e {
            HostEvent::BackendError(failure) => Some(failure.clone()),
            _ => None,
        })
        .expect("a backend error was told");
    assert_eq!(failure.operation, BackendOperation::Settle);
    assert_eq!(failure.delivery_id, Some(id));
    assert!(failure.transient);
    let text = failure.to_string();
    assert!(
        text.contains("settle failed for delivery") && text.contains("unreachable"),
        "{text}"
    );
    let source = std::error::Error::source(&failure).map(|s| s.to_string());
    assert!(source.is_some_and(|s| s.contains("unreachable")));
    // Sent again once the lease ran out, and recorded this time.
    let records = settled(&d, hook).await;
    assert_eq!(records[0].status, DeliveryStatus::Succeeded);
    assert_eq!(
        server.requests("/ok").len(),
        2,
        "at least once: the unrecorded attempt is repeated"
    );
    worker.shutdown().await;
}

/// A full memory queue holds emits back until the worker makes room, and fails them with a
/// clear, retryable error when nobody does; nothing of a refused event is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_memory_queue_holds_emits_back_until_the_worker_catches_up() {
    use dataops_webhooks::queue::{MemoryQueue, QueueError};
    use dataops_webhooks::DispatchError;
    use server::{Reply, TestServer};
    use std::sync::Arc;
    let receiver = TestServer::start(Reply::Status(200, "ok")).await;
    let bounded = |wait: Duration| {
        WebhookDispatcher::builder()
            .address_policy(AddressPolicy::allow_private())
            .queue(Arc::new(MemoryQueue::new().max_unsent(3).full_wait(wait)))
            .build()
            .expect("dispatcher")
    };
    let d = bounded(200 * MS);
    let webhook = hook(&d, receiver.url("/")).await;
    for n in 0..3 {
        d.emit(event(n)).await.expect("room for three");
    }
    let error = d.emit(event(3)).await.expect_err("no worker, no room");
    assert!(
        matches!(
            error,
            DispatchError::Queue(QueueError::Full { limit: 3, .. })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("not accepted"), "{error}");
    let page = d
        .deliveries()
        .list(&DeliveryQuery::new(webhook))
        .await
        .expect("list");
    assert_eq!(page.items.len(), 3, "the refused event left nothing behind");
    // With a worker, 40 emits through a bound of 3 all go in, each waiting its turn.
    let d = bounded(Duration::from_secs(30));
    hook(&d, receiver.url("/")).await;
    let worker = d.start_worker(options());
    let emits: Vec<_> = (10..50)
        .map(|n| {
            let d = d.clone();
            tokio::spawn(async move { d.emit(event(n)).await })
        })
        .collect();
    for emit in emits {
        emit.await
            .expect("task")
            .expect("backpressure, not failure");
    }
    receiver.wait_for(40).await;
    worker.shutdown().await;
}

/// `concurrency` bounds requests, not recordings: while an answered attempt's settle is slow,
/// the worker's one permit goes to the next request; and the held settle still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_settle_does_not_hold_back_the_next_request() {
    let server = Flaky::start().await;
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let d = WebhookDispatcher::builder()
        .queue(std::sync::Arc::new(FailsFirstSettle::held(gate.clone())))
        .address_policy(AddressPolicy::allow_private())
        .build()
        .expect("dispatcher");
    let count = hook(&d, server.url("/count")).await;
    for n in 0..3 {
        d.emit(event(n)).await.expect("emit");
    }
    let worker = d.start_worker(options().concurrency(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.requests("/count").len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(5 * MS).await;
    }
    assert_eq!(
        server.requests("/count").len(),
        3,
        "every request was sent while the first settle waited"
    );
    assert_eq!(server.max_in_flight(), 1, "one request at a time");
    gate.add_permits(1);
    let records = settled(&d, count).await;
    assert!(records
        .iter()
        .all(|r| r.status == DeliveryStatus::Succeeded));
    worker.shutdown().await;
}

/// An endpoint that answers passes its permit on to the claim that has waited longest, not to
/// the next claim of its own webhook: with one permit, two webhooks of one project take turns
/// event by event, in the order their deliveries were claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_permit_goes_to_the_longest_waiting_claim_of_any_webhook() {
    let server = Flaky::start().await;
    let d = dispatcher();
    let a = hook(&d, server.url("/a")).await;
    let b = hook(&d, server.url("/b")).await;
    for n in 0..6 {
        d.emit(event(n)).await.expect("emit");
    }
    let worker = d.start_worker(options().concurrency(1));
    assert_eq!(settled(&d, a).await.len(), 6);
    assert_eq!(settled(&d, b).await.len(), 6);
    worker.shutdown().await;
    let paths = server.paths();
    assert_eq!(paths.len(), 12, "{paths:?}");
    for pair in paths.chunks(2) {
        assert_ne!(
            pair[0], pair[1],
            "one event's two deliveries go before the next event's: {paths:?}"
        );
    }
}

/// A panic while recording one outcome ends that attempt alone: the request the same task
/// made next is still sent and recorded once, and only the panicked delivery is reported and
/// attempted again when its lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_settle_ends_only_its_own_attempt() {
    let server = Flaky::start().await;
    let d = dispatcher_over(FailsFirstSettle::panicking());
    let count = hook(&d, server.url("/count")).await;
    for n in 0..2 {
        d.emit(event(n)).await.expect("emit");
    }
    let worker = d.start_worker(options().concurrency(1).lease(Duration::from_secs(1)));
    let mut events = worker.events();
    let records = settled(&d, count).await;
    assert!(
        records
            .iter()
            .all(|r| r.status == DeliveryStatus::Succeeded),
        "{records:?}"
    );
    let mut requests: Vec<usize> = records
        .iter()
        .map(|r| {
            let id = r.id.to_string();
            server
                .requests("/count")
                .iter()
                .filter(|(d, _)| *d == id)
                .count()
        })
        .collect();
    requests.sort_unstable();
    assert_eq!(
        requests,
        [1, 2],
        "only the panicked delivery was sent again"
    );
    worker.shutdown().await;
    let mut panicked = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let HostEvent::AttemptPanicked { delivery_id, .. } = event {
            panicked.push(delivery_id);
        }
    }
    assert_eq!(panicked.len(), 1, "{panicked:?}");
}

/// Counts the claims made of the queue it wraps, and those that found nothing.
#[derive(Debug, Default)]
struct CountingClaims {
    claims: std::sync::atomic::AtomicUsize,
    empty: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl wrapped_queue::Around for CountingClaims {
    async fn claim(
        &self,
        inner: &dyn dataops_webhooks::DeliveryQueue,
        request: &dataops_webhooks::queue::ClaimRequest,
    ) -> Result<Vec<dataops_webhooks::queue::Claim>, dataops_webhooks::queue::QueueError> {
        let claims = inner.claim(request).await?;
        self.claims
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if claims.is_empty() {
            self.empty.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(claims)
    }
}

/// Emits one event at a time, each delivered before the next, over `queue` (which `store`
/// configures); returns the claims the worker made and how many of them found nothing.
async fn claims_for_one_at_a_time(
    store: std::sync::Arc<dyn dataops_webhooks::ConfigStore>,
    queue: std::sync::Arc<dyn dataops_webhooks::DeliveryQueue>,
) -> (usize, usize) {
    let counting = std::sync::Arc::new(Wrapped::new(queue, CountingClaims::default()));
    let d = WebhookDispatcher::builder()
        .store(store)
        .queue(counting.clone())
        .address_policy(AddressPolicy::allow_private())
        .build()
        .expect("dispatcher");
    let receiver = server::TestServer::start(server::Reply::Status(200, "ok")).await;
    hook(&d, receiver.url("/one")).await;
    // A poll interval longer than the test: only emits and answers wake the worker.
    let worker = d.start_worker(options().poll_interval(Duration::from_secs(60)));
    const EVENTS: usize = 40;
    for n in 0..EVENTS {
        let receipt = d.emit(event(n)).await.expect("emit");
        let outcomes = receipt.outcomes().await;
        assert!(
            outcomes.iter().all(|o| o.is_success()),
            "event {n}: {outcomes:?}"
        );
    }
    worker.shutdown().await;
    let claims = counting
        .around
        .claims
        .load(std::sync::atomic::Ordering::SeqCst);
    let empty = counting
        .around
        .empty
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(claims >= EVENTS - empty, "{claims} claims, {empty} empty");
    (claims, empty)
}

/// A claim that came back short took everything due (the in-memory queue says so), so the
/// worker waits for the next emit instead of claiming again at once for nothing: one claim
/// per event, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_does_not_claim_again_after_a_short_claim_in_memory() {
    let queue = std::sync::Arc::new(dataops_webhooks::queue::MemoryQueue::default());
    let store = std::sync::Arc::new(dataops_webhooks::store::MemoryStore::default());
    let (claims, empty) = claims_for_one_at_a_time(store, queue).await;
    assert!(empty <= 4, "{empty} of {claims} claims found nothing");
}

/// The same on SQLite.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_does_not_claim_again_after_a_short_claim_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = std::sync::Arc::new(
        dataops_webhooks::sqlite::SqliteStore::open(dir.path().join("w.db"))
            .await
            .expect("open"),
    );
    let (claims, empty) = claims_for_one_at_a_time(store.clone(), store).await;
    assert!(empty <= 4, "{empty} of {claims} claims found nothing");
}
