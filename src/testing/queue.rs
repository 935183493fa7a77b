//! The behaviours every [`DeliveryQueue`] must have, one function each: what
//! [`delivery_queue_conformance!`](crate::delivery_queue_conformance) runs as one test each.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};

use crate::queue::{
    AttemptErrorKind, AttemptLog, ClaimRequest, DeliveryQuery, DeliveryQueue, DeliveryRecord,
    DeliveryStatus, Enqueued, Finish, NewDelivery, NewEvent, Next,
};
use crate::webhook::{DeliveryId, OrgId, WebhookId};
use crate::EventType;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0)
        .single()
        .unwrap_or_default()
}

const LEASE: Duration = Duration::from_secs(60);

fn event(at: i64, webhooks: &[WebhookId]) -> NewEvent {
    let payload = Bytes::from(format!(
        r#"{{"event":"dataset-complete","project":"p","dataset":{{"id":"d{at}"}}}}"#
    ));
    let mut event = NewEvent::new(
        OrgId::new("acme"),
        "p",
        EventType::DatasetComplete,
        payload,
        t(at),
    );
    event.deliveries = webhooks
        .iter()
        .map(|w| {
            NewDelivery::new(
                DeliveryId::new(),
                *w,
                format!("https://hooks.example.com/{w}"),
            )
        })
        .collect();
    event
}

fn failure(at: i64, status: u16) -> AttemptLog {
    AttemptLog::new(t(at), Some(status))
        .duration(Duration::from_millis(12))
        .response("database is down")
        .failed(
            AttemptErrorKind::HttpStatus,
            format!("the endpoint answered {status}"),
        )
}

fn success(at: i64) -> AttemptLog {
    AttemptLog::new(t(at), Some(204)).duration(Duration::from_millis(3))
}

async fn enqueue(queue: &impl DeliveryQueue, event: NewEvent) {
    let done = queue.enqueue(event).await.expect("enqueue");
    assert!(matches!(done, Enqueued::New), "enqueue: a new event is New");
}

async fn record(queue: &impl DeliveryQueue, id: &DeliveryId) -> DeliveryRecord {
    queue
        .get_delivery(id)
        .await
        .expect("get")
        .expect("the delivery is recorded")
}

async fn claim(queue: &impl DeliveryQueue, now: i64, limit: usize) -> Vec<crate::queue::Claim> {
    queue
        .claim(&ClaimRequest::new(t(now), LEASE, limit))
        .await
        .expect("claim")
}

/// An event's payload is stored once and every delivery of it claims the same bytes.
pub async fn stores_the_payload_once_and_hands_it_to_every_delivery<B: DeliveryQueue>(
    queue: Arc<B>,
) {
    let queue = &*queue;
    let hooks = [WebhookId::new(), WebhookId::new(), WebhookId::new()];
    let e = event(0, &hooks);
    let (payload, ids) = (
        e.payload.clone(),
        e.deliveries.iter().map(|d| d.id).collect::<Vec<_>>(),
    );
    enqueue(queue, e).await;
    let claims = claim(queue, 0, 10).await;
    assert_eq!(claims.len(), 3, "payload: every delivery is claimable");
    for c in &claims {
        assert_eq!(c.payload, payload, "payload: the exact bytes");
        assert!(ids.contains(&c.delivery.id), "payload: the recorded ids");
        assert_eq!(c.delivery.status, DeliveryStatus::Pending);
        assert_eq!(c.delivery.attempts, 0);
        assert_eq!(c.delivery.event_type, EventType::DatasetComplete);
        assert_eq!(c.delivery.org, OrgId::new("acme"));
    }
    let record = queue
        .get_delivery(&ids[0])
        .await
        .expect("get")
        .expect("payload: get_delivery finds it");
    assert_eq!(record.created_at, t(0));
}

/// A claim returns only deliveries due by its time, oldest due first, up to its limit.
pub async fn claims_only_what_is_due_oldest_first<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let hook = WebhookId::new();
    let late = event(100, &[hook]);
    let early = event(10, &[hook]);
    let early_id = early.deliveries[0].id;
    enqueue(queue, late).await;
    enqueue(queue, early).await;
    assert!(
        claim(queue, 5, 10).await.is_empty(),
        "due: nothing before its time"
    );
    let first = claim(queue, 200, 1).await;
    assert_eq!(first.len(), 1, "due: the limit holds");
    assert_eq!(first[0].delivery.id, early_id, "due: the oldest due first");
    assert_eq!(claim(queue, 200, 10).await.len(), 1, "due: then the other");
}

/// A claimed delivery is not handed out again until its lease expires; then it is.
pub async fn a_lease_hides_a_delivery_until_it_expires<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    enqueue(queue, event(0, &[WebhookId::new()])).await;
    let first = claim(queue, 0, 10).await;
    assert_eq!(first.len(), 1);
    assert!(
        claim(queue, 30, 10).await.is_empty(),
        "lease: a leased delivery is not handed out again"
    );
    let again = claim(queue, 61, 10).await;
    assert_eq!(
        again.len(),
        1,
        "lease: claimable again once the lease expired"
    );
    assert_eq!(again[0].delivery.id, first[0].delivery.id);
    assert_ne!(again[0].lease, first[0].lease, "lease: a new lease id");
}

/// Settling records the attempt and moves the delivery to succeeded, a retry at its time, or dead.
pub async fn settles_success_retry_and_death<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    enqueue(queue, event(0, &[WebhookId::new()])).await;
    let c = claim(queue, 0, 1).await.remove(0);
    let id = c.delivery.id;
    let report = queue
        .finish(
            &id,
            c.lease,
            Finish::Attempted {
                attempt: failure(0, 500),
                next: Next::RetryAt(t(300)),
            },
            t(1),
        )
        .await
        .expect("finish");
    assert!(!report.lease_lost, "settle: the lease was held");
    let d = record(queue, &id).await;
    assert_eq!(
        (d.status, d.attempts, d.next_attempt_at),
        (DeliveryStatus::Pending, 1, Some(t(300))),
        "settle: a retry is pending at its time with the attempt counted"
    );
    assert_eq!(d.last_error.as_deref(), Some("the endpoint answered 500"));
    assert!(
        claim(queue, 299, 1).await.is_empty(),
        "settle: not before the retry time"
    );
    let c = claim(queue, 300, 1).await.remove(0);
    assert_eq!(
        c.delivery.attempts, 1,
        "settle: the claim carries the attempt count"
    );
    queue
        .finish(
            &id,
            c.lease,
            Finish::Attempted {
                attempt: success(300),
                next: Next::Succeeded,
            },
            t(301),
        )
        .await
        .expect("finish");
    let d = record(queue, &id).await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Succeeded, 2));
    assert_eq!(
        d.next_attempt_at, None,
        "settle: a settled delivery is not due"
    );
    assert_eq!(d.last_error, None, "settle: success clears the error");
    let log = queue.attempts(&id).await.expect("attempts");
    assert_eq!(
        log,
        vec![failure(0, 500), success(300)],
        "settle: the log, oldest first"
    );
    assert!(
        claim(queue, 10_000, 10).await.is_empty(),
        "settle: never claimed again"
    );

    enqueue(queue, event(0, &[WebhookId::new()])).await;
    let c = claim(queue, 0, 1).await.remove(0);
    queue
        .finish(
            &c.delivery.id,
            c.lease,
            Finish::Attempted {
                attempt: failure(0, 503),
                next: Next::Dead,
            },
            t(1),
        )
        .await
        .expect("finish");
    let d = record(queue, &c.delivery.id).await;
    assert_eq!(d.status, DeliveryStatus::Dead, "settle: dead");
    assert_eq!(d.last_error.as_deref(), Some("the endpoint answered 503"));
    assert!(
        claim(queue, 10_000, 10).await.is_empty(),
        "settle: dead is not claimed"
    );
}

/// A settle under an expired lease records its attempt but leaves the state to the new holder.
pub async fn a_lost_lease_cannot_overwrite_the_new_holder<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    enqueue(queue, event(0, &[WebhookId::new()])).await;
    let stale = claim(queue, 0, 1).await.remove(0);
    let fresh = claim(queue, 100, 1).await.remove(0);
    let id = stale.delivery.id;
    queue
        .finish(
            &id,
            fresh.lease,
            Finish::Attempted {
                attempt: success(100),
                next: Next::Succeeded,
            },
            t(101),
        )
        .await
        .expect("finish");
    let report = queue
        .finish(
            &id,
            stale.lease,
            Finish::Attempted {
                attempt: failure(0, 500),
                next: Next::RetryAt(t(500)),
            },
            t(102),
        )
        .await
        .expect("finish");
    assert!(report.lease_lost, "lost lease: reported");
    let d = record(queue, &id).await;
    assert_eq!(
        d.status,
        DeliveryStatus::Succeeded,
        "lost lease: state untouched"
    );
    assert_eq!(
        queue.attempts(&id).await.expect("attempts").len(),
        2,
        "lost lease: the attempt is still logged"
    );
}

/// A released claim is due again at once with its attempts unchanged; an abandoned one is dead with its reason.
pub async fn release_and_abandon<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    enqueue(queue, event(0, &[WebhookId::new(), WebhookId::new()])).await;
    let mut claims = claim(queue, 0, 2).await;
    let b = claims.pop().expect("two");
    let a = claims.pop().expect("two");
    queue
        .finish(&a.delivery.id, a.lease, Finish::Released, t(5))
        .await
        .expect("release");
    let again = claim(queue, 5, 10).await;
    assert_eq!(again.len(), 1, "release: due again at once");
    assert_eq!(again[0].delivery.id, a.delivery.id);
    assert_eq!(again[0].delivery.attempts, 0, "release: no attempt counted");
    queue
        .finish(
            &b.delivery.id,
            b.lease,
            Finish::Abandoned {
                reason: "the webhook was deleted".into(),
            },
            t(6),
        )
        .await
        .expect("abandon");
    let d = record(queue, &b.delivery.id).await;
    assert_eq!(d.status, DeliveryStatus::Dead, "abandon: dead");
    assert_eq!(d.last_error.as_deref(), Some("the webhook was deleted"));
    assert!(queue
        .attempts(&b.delivery.id)
        .await
        .expect("attempts")
        .is_empty());
}

/// Concurrent settles of different deliveries each take effect on their own.
pub async fn settles_at_once_each_on_its_own<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let (ok, failing) = (WebhookId::new(), WebhookId::new());
    enqueue(
        queue,
        event(0, &[ok, ok, failing, failing, failing, failing]),
    )
    .await;
    let claims = claim(queue, 0, 6).await;
    let (oks, fails): (Vec<_>, Vec<_>) = claims.iter().partition(|c| c.delivery.webhook_id == ok);
    assert_eq!((oks.len(), fails.len()), (2, 4), "at once: six claims");
    let mut hostile = success(10);
    hostile.response = "ok\0\0".into();
    let settle = |c: &crate::queue::Claim, finish| {
        let (id, lease) = (c.delivery.id, c.lease);
        async move { queue.finish(&id, lease, finish, t(10)).await }
    };
    let attempted = |attempt, next| Finish::Attempted { attempt, next };
    let reason = "the webhook was deleted";
    let reports = tokio::join!(
        settle(oks[0], attempted(success(10), Next::Succeeded)),
        settle(oks[1], attempted(hostile.clone(), Next::Succeeded)),
        settle(fails[0], attempted(failure(10, 500), Next::RetryAt(t(300)))),
        settle(fails[1], attempted(failure(10, 503), Next::Dead)),
        settle(fails[2], Finish::Released),
        settle(
            fails[3],
            Finish::Abandoned {
                reason: reason.into()
            }
        ),
    );
    let reports = [
        reports.0, reports.1, reports.2, reports.3, reports.4, reports.5,
    ]
    .map(|r| r.expect("at once: every settle succeeds"));
    assert!(
        reports.iter().all(|r| !r.lease_lost),
        "at once: leases held"
    );
    assert_eq!(reports[0].failing_since, None, "at once: a healthy webhook");
    assert_eq!(reports[2].failing_since, Some(t(10)), "at once: own health");
    assert_eq!(reports[3].failing_since, Some(t(10)));
    let expected = [
        (oks[0], DeliveryStatus::Succeeded, 1, None),
        (oks[1], DeliveryStatus::Succeeded, 1, None),
        (
            fails[0],
            DeliveryStatus::Pending,
            1,
            Some("the endpoint answered 500"),
        ),
        (
            fails[1],
            DeliveryStatus::Dead,
            1,
            Some("the endpoint answered 503"),
        ),
        (fails[2], DeliveryStatus::Pending, 0, None),
        (fails[3], DeliveryStatus::Dead, 0, Some(reason)),
    ];
    for (c, status, attempts, error) in expected {
        let d = record(queue, &c.delivery.id).await;
        assert_eq!(
            (d.status, d.attempts, d.last_error.as_deref()),
            (status, attempts, error),
            "at once: each delivery has its own outcome"
        );
    }
    let log = queue.attempts(&oks[1].delivery.id).await.expect("attempts");
    let mut replaced = hostile.clone();
    replaced.response = "ok\u{FFFD}\u{FFFD}".into();
    assert!(
        log == [hostile.clone()] || log == [replaced],
        "at once: a response with NUL characters is recorded, got {log:?}"
    );
}

/// A claim leaves alone the webhooks it is asked to skip.
pub async fn skips_webhooks_at_their_limit<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let (busy, free) = (WebhookId::new(), WebhookId::new());
    enqueue(queue, event(0, &[busy, busy, free])).await;
    let claims = queue
        .claim(&ClaimRequest::new(t(0), LEASE, 10).skip(vec![busy]))
        .await
        .expect("claim");
    assert_eq!(claims.len(), 1, "skip: only the free webhook's delivery");
    assert_eq!(claims[0].delivery.webhook_id, free);
}

/// With a per-webhook cap, a claim gives each webhook at most its room (the cap less what
/// the caller has busy), none to a webhook at its cap, oldest due first.
pub async fn gives_each_webhook_at_most_its_room<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let (a, b, c) = (WebhookId::new(), WebhookId::new(), WebhookId::new());
    for at in 0..4 {
        enqueue(queue, event(at, &[a])).await;
    }
    enqueue(queue, event(4, &[b, c])).await;
    enqueue(queue, event(5, &[b])).await;
    let busy = [(a, 1), (c, 2)].into_iter().collect();
    let claims = queue
        .claim(&ClaimRequest::new(t(10), LEASE, 10).per_webhook(2, busy))
        .await
        .expect("claim");
    let got: Vec<WebhookId> = claims.iter().map(|c| c.delivery.webhook_id).collect();
    assert_eq!(
        got,
        vec![a, b, b],
        "room: one more of a (1 busy of 2), two of b, none of c (at its cap), oldest first"
    );
    let rest = claim(queue, 10, 10).await;
    assert_eq!(rest.len(), 4, "room: what was left is still claimable");
}

/// A webhook left out of a claim cannot hide another's deliveries behind its own, however
/// many of its own are due first.
pub async fn a_skipped_webhooks_backlog_hides_no_other<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let (busy, other) = (WebhookId::new(), WebhookId::new());
    let backlog = [busy; 100];
    enqueue(queue, event(0, &backlog)).await;
    enqueue(queue, event(1, &[other])).await;
    let claims = queue
        .claim(&ClaimRequest::new(t(10), LEASE, 4).skip(vec![busy]))
        .await
        .expect("claim");
    let got: Vec<WebhookId> = claims.iter().map(|c| c.delivery.webhook_id).collect();
    assert_eq!(
        got,
        vec![other],
        "backlog: the other webhook's delivery is found"
    );
}

/// A queue whose [`short_claims_take_everything`](DeliveryQueue::short_claims_take_everything)
/// is true keeps its word: a claim that comes back short, with no webhook given all its
/// room, leaves nothing due that the same claim could take, even behind a skipped webhook's
/// backlog longer than the claim's window. (A queue that says `false` is not checked.)
pub async fn a_short_claim_took_everything_if_the_queue_says_so<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    if !queue.short_claims_take_everything() {
        return;
    }
    let (busy, a, b) = (WebhookId::new(), WebhookId::new(), WebhookId::new());
    let backlog = [busy; 100];
    enqueue(queue, event(0, &backlog)).await;
    enqueue(queue, event(1, &[a, b, a])).await;
    enqueue(queue, event(2, &[b])).await;
    enqueue(queue, event(30, &[a])).await; // not due yet
    let request = ClaimRequest::new(t(10), LEASE, 10)
        .skip(vec![busy])
        .per_webhook(3, [(b, 0)].into_iter().collect());
    let claims = queue.claim(&request).await.expect("claim");
    let mut got: Vec<WebhookId> = claims.iter().map(|c| c.delivery.webhook_id).collect();
    got.sort_unstable();
    let mut due = vec![a, a, b, b];
    due.sort_unstable();
    assert_eq!(got, due, "the claim takes every due delivery it may");
    assert!(
        claims.len() < request.limit,
        "the claim is short of its limit"
    );
    let again = queue.claim(&request).await.expect("claim again");
    assert!(
        again.is_empty(),
        "a short claim took everything: the same claim again found {}",
        again.len()
    );
}

/// A webhook whose room a claim fills first, with more of its deliveries due after, does not
/// change what the claim takes from the others: theirs, oldest due first, however the queue
/// looks past the backlog.
pub async fn a_webhook_at_its_room_leaves_the_others_in_due_order<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let (busy, b, c) = (WebhookId::new(), WebhookId::new(), WebhookId::new());
    let backlog = [busy; 40];
    enqueue(queue, event(0, &backlog)).await;
    enqueue(queue, event(1, &[c])).await;
    enqueue(queue, event(2, &[b])).await;
    enqueue(queue, event(3, &[c])).await;
    enqueue(queue, event(4, &[b])).await;
    let claims = queue
        .claim(
            &ClaimRequest::new(t(10), LEASE, 4).per_webhook(2, [(busy, 1)].into_iter().collect()),
        )
        .await
        .expect("claim");
    let got: Vec<(WebhookId, DateTime<Utc>)> = claims
        .iter()
        .map(|c| (c.delivery.webhook_id, c.delivery.created_at))
        .collect();
    assert_eq!(
        got,
        vec![(busy, t(0)), (c, t(1)), (b, t(2)), (c, t(3))],
        "room: one of the backlog (1 busy of 2), then the others' oldest due first, within the limit"
    );
}

/// A repeated idempotency key records nothing and returns the first event and its deliveries; keys are per organization.
pub async fn idempotency_keys_return_the_first_event<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let hook = WebhookId::new();
    let mut first = event(0, &[hook]);
    first.idempotency_key = Some("export-42".into());
    let (first_id, first_delivery) = (first.id, first.deliveries[0].id);
    enqueue(queue, first).await;
    let mut again = event(1, &[hook, WebhookId::new()]);
    again.idempotency_key = Some("export-42".into());
    match queue.enqueue(again).await.expect("enqueue") {
        Enqueued::Duplicate {
            event_id,
            deliveries,
        } => {
            assert_eq!(event_id, first_id, "idempotency: the first event");
            let ids: Vec<_> = deliveries.iter().map(|d| d.id).collect();
            assert_eq!(ids, vec![first_delivery], "idempotency: its deliveries");
        }
        Enqueued::New => panic!("idempotency: a repeated key must not record a new event"),
    }
    assert_eq!(
        claim(queue, 10, 10).await.len(),
        1,
        "idempotency: nothing new queued"
    );
    let mut other_org = event(2, &[hook]);
    other_org.idempotency_key = Some("export-42".into());
    other_org.org = OrgId::new("globex");
    enqueue(queue, other_org).await;
}

/// An emit with a NUL in its organization, project or idempotency key is refused before the queue is called.
pub async fn emits_of_text_it_cannot_store_are_refused_first<B: DeliveryQueue + 'static>(
    queue: Arc<B>,
) {
    use crate::dispatcher::{DispatchError, Dispatcher, Emit, WebhookDispatcher};
    use crate::event::{Dataset, Event};
    use crate::webhook::{NewWebhook, Scope};

    let name = "emits_of_text_it_cannot_store_are_refused_first";
    let dispatcher = WebhookDispatcher::builder()
        .queue(queue.clone())
        .build()
        .unwrap_or_else(|e| panic!("{name}: dispatcher: {e}"));
    let hook = dispatcher
        .webhooks()
        .create(NewWebhook::new(
            Scope::Organization,
            "https://hooks.example.com/a",
        ))
        .await
        .unwrap_or_else(|e| panic!("{name}: webhook: {e}"))
        .id;
    let event = |project: &str| Event::dataset_complete(project, Dataset::default());
    let cases = [
        ("project name", Emit::new(event("p\0x"))),
        (
            "organization id",
            Emit::new(event("p")).org(OrgId::new("acme\0")),
        ),
        (
            "idempotency key",
            Emit::new(event("p")).idempotency_key("k\0"),
        ),
    ];
    for (field, emit) in cases {
        match dispatcher.emit_with(emit).await {
            Err(DispatchError::UnstorableText(e)) => assert_eq!(e.field(), field, "{name}"),
            other => panic!("{name}: a NUL in the {field} should be refused, got {other:?}"),
        }
    }
    let page = queue
        .list_deliveries(&DeliveryQuery::new(hook))
        .await
        .unwrap_or_else(|e| panic!("{name}: list: {e}"));
    assert!(
        page.items.is_empty(),
        "{name}: a refused emit queued a delivery"
    );
}

/// Listings are newest first, filtered by status and time, and paged by cursor without gaps.
pub async fn lists_newest_first_with_filters_and_cursors<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let (hook, other) = (WebhookId::new(), WebhookId::new());
    let mut ids = Vec::new();
    for i in 0..5 {
        let e = event(i, &[hook, other]);
        ids.push(e.deliveries[0].id);
        enqueue(queue, e).await;
    }
    let c = queue
        .claim(&ClaimRequest::new(t(10), LEASE, 1).skip(vec![other]))
        .await
        .expect("claim")
        .remove(0);
    queue
        .finish(
            &c.delivery.id,
            c.lease,
            Finish::Attempted {
                attempt: failure(10, 500),
                next: Next::Dead,
            },
            t(11),
        )
        .await
        .expect("finish");
    let page = queue
        .list_deliveries(&DeliveryQuery::new(hook).limit(2))
        .await
        .expect("list");
    assert_eq!(
        page.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]],
        "list: newest first"
    );
    let cursor = page.next.expect("list: a cursor while more remain");
    let rest = queue
        .list_deliveries(&DeliveryQuery::new(hook).limit(10).before(cursor))
        .await
        .expect("list");
    assert_eq!(
        rest.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1], ids[0]],
        "list: the next page continues without gaps"
    );
    assert!(rest.next.is_none(), "list: no cursor on the last page");
    let dead = queue
        .list_deliveries(&DeliveryQuery::new(hook).status(DeliveryStatus::Dead))
        .await
        .expect("list");
    assert_eq!(dead.items.len(), 1, "list: status filter");
    assert_eq!(dead.items[0].id, c.delivery.id);
    let recent = queue
        .list_deliveries(&DeliveryQuery::new(hook).since(t(3)))
        .await
        .expect("list");
    assert_eq!(recent.items.len(), 2, "list: since filter");
    let window = queue
        .list_deliveries(&DeliveryQuery::new(hook).since(t(1)).until(t(3)))
        .await
        .expect("list");
    assert_eq!(
        window.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]],
        "list: since (inclusive) and until (exclusive)"
    );
}

/// Redelivering makes a settled delivery due again, keeping its id and its attempts.
pub async fn redelivers_keeping_id_and_attempts<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    enqueue(queue, event(0, &[WebhookId::new()])).await;
    let c = claim(queue, 0, 1).await.remove(0);
    queue
        .finish(
            &c.delivery.id,
            c.lease,
            Finish::Attempted {
                attempt: failure(0, 500),
                next: Next::Dead,
            },
            t(1),
        )
        .await
        .expect("finish");
    assert!(queue
        .redeliver(&c.delivery.id, t(50))
        .await
        .expect("redeliver"));
    assert!(!queue
        .redeliver(&DeliveryId::new(), t(50))
        .await
        .expect("redeliver"));
    let again = claim(queue, 50, 10).await;
    assert_eq!(again.len(), 1, "redeliver: due now");
    assert_eq!(again[0].delivery.id, c.delivery.id, "redeliver: same id");
    assert_eq!(again[0].delivery.attempts, 1, "redeliver: attempts kept");
    assert_eq!(again[0].payload, c.payload, "redeliver: same bytes");
}

/// Attempts keep each webhook's health: a failure starts `failing_since`, a success clears it and says it recovered.
pub async fn keeps_endpoint_health<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let hook = WebhookId::new();
    enqueue(queue, event(0, &[hook, hook, hook])).await;
    let mut claims = claim(queue, 0, 3).await;
    let mut settle = |at: i64, ok: bool| {
        let c = claims.remove(0);
        async move {
            let attempt = if ok { success(at) } else { failure(at, 500) };
            queue
                .finish(
                    &c.delivery.id,
                    c.lease,
                    Finish::Attempted {
                        attempt,
                        next: if ok { Next::Succeeded } else { Next::Dead },
                    },
                    t(at),
                )
                .await
                .expect("finish")
        }
    };
    let first = settle(10, false).await;
    assert_eq!(
        first.failing_since,
        Some(t(10)),
        "health: failing from the first failure"
    );
    let second = settle(20, false).await;
    assert_eq!(
        second.failing_since,
        Some(t(10)),
        "health: still from the first"
    );
    assert!(!second.recovered);
    let third = settle(30, true).await;
    assert!(
        third.recovered,
        "health: a success after failures is a recovery"
    );
    assert_eq!(third.failing_since, None);
}

/// Settles the claim of delivery `id` among `claims` with `attempt` and `next`.
async fn settle_one(
    queue: &impl DeliveryQueue,
    claims: &[crate::queue::Claim],
    id: DeliveryId,
    attempt: AttemptLog,
    next: Next,
) {
    let c = claims
        .iter()
        .find(|c| c.delivery.id == id)
        .expect("the delivery was claimed");
    let at = attempt.attempted_at;
    queue
        .finish(&id, c.lease, Finish::Attempted { attempt, next }, at)
        .await
        .expect("finish");
}

/// An attempt taking `ms` milliseconds, a success or a 500.
fn timed(at: i64, ms: u64, ok: bool) -> AttemptLog {
    let attempt = if ok { success(at) } else { failure(at, 500) };
    attempt.duration(Duration::from_millis(ms))
}

/// Statistics count each listed webhook's deliveries by status with the oldest pending one,
/// and the attempts of the window only, with their success rate and nearest-rank p50/p95;
/// the overall figures sum the counts and rank all the window's attempts together.
pub async fn statistics_count_statuses_and_the_windows_attempts<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let (a, b, quiet, other) = (
        WebhookId::new(),
        WebhookId::new(),
        WebhookId::new(),
        WebhookId::new(),
    );
    let early = event(-100, &[b]);
    let early_b = early.deliveries[0].id;
    enqueue(queue, early).await;
    let claims = claim(queue, -50, 10).await;
    // Before the window: counts as succeeded, not as an attempt of the window.
    settle_one(
        queue,
        &claims,
        early_b,
        timed(-50, 500, true),
        Next::Succeeded,
    )
    .await;

    let e1 = event(0, &[a, b, other]);
    let (a1, b1, other1) = (
        e1.deliveries[0].id,
        e1.deliveries[1].id,
        e1.deliveries[2].id,
    );
    let e2 = event(10, &[a]);
    let a2 = e2.deliveries[0].id;
    let e3 = event(20, &[a]);
    let a3 = e3.deliveries[0].id;
    for e in [e1, e2, e3] {
        enqueue(queue, e).await;
    }
    let claims = claim(queue, 100, 10).await;
    assert_eq!(claims.len(), 5, "statistics: everything due is claimed");
    settle_one(queue, &claims, a1, timed(101, 10, true), Next::Succeeded).await;
    settle_one(
        queue,
        &claims,
        b1,
        timed(102, 20, false),
        Next::RetryAt(t(500)),
    )
    .await;
    settle_one(queue, &claims, a2, timed(103, 30, false), Next::Dead).await;
    settle_one(queue, &claims, other1, timed(104, 1, true), Next::Succeeded).await;
    let c3 = claims
        .iter()
        .find(|c| c.delivery.id == a3)
        .expect("claimed");
    queue
        .finish(&a3, c3.lease, Finish::Released, t(105))
        .await
        .expect("release");

    let mut query = crate::queue::StatsQuery::new(vec![a, b, quiet, a], t(101), t(200));
    query.webhooks.push(b); // a duplicate added after `new`, too, counts once
    let stats = queue.statistics(&query).await.expect("statistics");
    let ms = |n: u64| Some(Duration::from_millis(n));
    let of = |w: &WebhookId| stats.webhooks.get(w).cloned().unwrap_or_default();
    assert_eq!(
        stats.webhooks.keys().copied().collect::<Vec<_>>().len(),
        3,
        "statistics: one entry per listed webhook, duplicates once, others left out: {stats:?}"
    );
    assert!(
        stats.webhooks.contains_key(&quiet),
        "statistics: a webhook without deliveries is listed"
    );
    let sa = of(&a);
    assert_eq!(
        (sa.pending, sa.succeeded, sa.dead),
        (1, 1, 1),
        "statistics: counts by status of webhook a"
    );
    assert_eq!(
        sa.oldest_pending,
        Some(t(20)),
        "statistics: oldest pending of a"
    );
    assert_eq!(
        (
            sa.attempts,
            sa.attempts_succeeded,
            sa.p50_duration,
            sa.p95_duration
        ),
        (2, 1, ms(10), ms(30)),
        "statistics: the window's attempts of a"
    );
    assert_eq!(sa.success_rate(), Some(0.5));
    let sb = of(&b);
    assert_eq!(
        (sb.pending, sb.succeeded, sb.dead, sb.oldest_pending),
        (1, 1, 0, Some(t(0))),
        "statistics: counts of b (its retry is pending)"
    );
    assert_eq!(
        (
            sb.attempts,
            sb.attempts_succeeded,
            sb.p50_duration,
            sb.p95_duration
        ),
        (1, 0, ms(20), ms(20)),
        "statistics: b's attempt before the window is left out"
    );
    assert_eq!(
        of(&quiet),
        crate::queue::WebhookStats::default(),
        "statistics: nothing for a quiet webhook"
    );
    assert_eq!(of(&quiet).success_rate(), None);
    let all = &stats.overall;
    assert_eq!(
        (all.pending, all.succeeded, all.dead, all.oldest_pending),
        (2, 2, 1, Some(t(0))),
        "statistics: overall counts"
    );
    assert_eq!(
        (
            all.attempts,
            all.attempts_succeeded,
            all.p50_duration,
            all.p95_duration
        ),
        (3, 1, ms(20), ms(30)),
        "statistics: overall percentiles rank every attempt of the window"
    );
    assert_eq!(
        all.oldest_pending_age(t(100)),
        Some(Duration::from_secs(100))
    );
}

/// The depth sample counts pending deliveries due now (also those whose lease ran out),
/// scheduled for later, and in flight under a lease. A queue keeping the trait's default
/// answers `Unsupported`.
pub async fn depth_counts_due_scheduled_and_in_flight<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let hook = WebhookId::new();
    for at in [0, 10, 20, 1_000] {
        enqueue(queue, event(at, &[hook])).await;
    }
    let done = event(5, &[hook]);
    let done_id = done.deliveries[0].id;
    enqueue(queue, done).await;
    let claims = claim(queue, 30, 2).await;
    assert_eq!(claims.len(), 2, "depth: two claimed");
    settle_one(queue, &claims, done_id, success(31), Next::Succeeded).await;
    let depth = match queue.depth(t(31)).await {
        Err(crate::queue::QueueError::Unsupported(_)) => return,
        other => other.expect("depth"),
    };
    assert_eq!(
        (
            depth.due,
            depth.scheduled,
            depth.in_flight,
            depth.oldest_due
        ),
        (2, 1, 1, Some(t(10))),
        "depth: while a lease holds"
    );
    let later = queue.depth(t(100)).await.expect("depth");
    assert_eq!(
        (
            later.due,
            later.scheduled,
            later.in_flight,
            later.oldest_due
        ),
        (3, 1, 0, Some(t(10))),
        "depth: a lease that ran out is due again"
    );
}

/// The deliveries of one event are found across its webhooks, oldest first; an unknown event
/// has none. A queue keeping the trait's default answers `Unsupported`.
pub async fn finds_the_deliveries_of_an_event<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let e1 = event(0, &[WebhookId::new(), WebhookId::new()]);
    let (id, mut ids) = (
        e1.id,
        e1.deliveries.iter().map(|d| d.id).collect::<Vec<_>>(),
    );
    enqueue(queue, e1).await;
    enqueue(queue, event(1, &[WebhookId::new()])).await;
    let found = match queue.event_deliveries(&id).await {
        Err(crate::queue::QueueError::Unsupported(_)) => return,
        other => other.expect("event deliveries"),
    };
    ids.sort();
    assert_eq!(
        found.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids,
        "event deliveries: both webhooks', oldest first"
    );
    assert!(found.iter().all(|r| r.event_id == id));
    let none = queue
        .event_deliveries(&crate::webhook::EventId::new())
        .await
        .expect("event deliveries");
    assert!(
        none.is_empty(),
        "event deliveries: none for an unknown event"
    );
}

/// A test send is kept settled with its one attempt — succeeded or dead — and is never
/// claimed; it reads back like any delivery. A queue keeping the trait's default answers
/// `Unsupported`.
pub async fn keeps_test_sends_settled<B: DeliveryQueue>(queue: Arc<B>) {
    let queue = &*queue;
    let hook = WebhookId::new();
    let test = |at: i64| {
        let mut e = event(at, &[hook]);
        e.event_type = EventType::Test;
        e
    };
    let (ok, bad) = (test(0), test(10));
    let (ok_id, bad_id) = (ok.deliveries[0].id, bad.deliveries[0].id);
    match queue.record_test(ok, success(0)).await {
        Err(crate::queue::QueueError::Unsupported(_)) => return,
        other => other.expect("record a test send"),
    }
    queue
        .record_test(bad, failure(10, 503))
        .await
        .expect("record a failed test send");
    let ok = record(queue, &ok_id).await;
    assert_eq!(
        (ok.status, ok.attempts, ok.event_type, ok.next_attempt_at),
        (DeliveryStatus::Succeeded, 1, EventType::Test, None),
        "test sends: a success is kept succeeded"
    );
    let bad = record(queue, &bad_id).await;
    assert_eq!(
        (bad.status, bad.attempts, bad.last_error.as_deref()),
        (DeliveryStatus::Dead, 1, Some("the endpoint answered 503")),
        "test sends: a failure is kept dead with its error"
    );
    assert_eq!(
        queue.attempts(&bad_id).await.expect("attempts"),
        vec![failure(10, 503)],
        "test sends: the attempt is in the log"
    );
    assert!(
        claim(queue, 10_000, 10).await.is_empty(),
        "test sends: never claimed"
    );
    let listed = queue
        .list_deliveries(&DeliveryQuery::new(hook))
        .await
        .expect("list");
    assert_eq!(
        listed.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![bad_id, ok_id],
        "test sends: listed with the webhook's deliveries"
    );
}

/// A purge removes settled deliveries past their retention with their attempts, and an
/// event only once none of its deliveries is left; it never touches pending deliveries, and
/// it keeps to its limit, saying when more remain. A queue keeping the trait's default
/// answers `Unsupported`.
pub async fn purges_settled_deliveries_past_retention<B: DeliveryQueue>(queue: Arc<B>) {
    use crate::queue::{PurgeRequest, QueueError};
    let queue = &*queue;
    let (hook, other) = (WebhookId::new(), WebhookId::new());
    let alone = event(0, &[hook]);
    let shared = event(1, &[hook, other]);
    let dies = event(2, &[hook]);
    let young = event(3, &[hook]);
    let (alone_id, shared_done, shared_waiting, dies_id, young_id) = (
        alone.deliveries[0].id,
        shared.deliveries[0].id,
        shared.deliveries[1].id,
        dies.deliveries[0].id,
        young.deliveries[0].id,
    );
    let shared_payload = shared.payload.clone();
    for e in [alone, shared, dies, young] {
        enqueue(queue, e).await;
    }
    let claims = queue
        .claim(&ClaimRequest::new(t(10), LEASE, 10).skip(vec![other]))
        .await
        .expect("claim");
    settle_one(queue, &claims, alone_id, success(10), Next::Succeeded).await;
    settle_one(queue, &claims, shared_done, success(10), Next::Succeeded).await;
    settle_one(queue, &claims, dies_id, failure(20, 500), Next::Dead).await;
    settle_one(queue, &claims, young_id, success(500), Next::Succeeded).await;

    let first = match queue.purge(&PurgeRequest::new(t(100), t(15), 10)).await {
        Err(QueueError::Unsupported(_)) => return,
        other => other.expect("purge"),
    };
    assert_eq!(
        (first.deliveries, first.attempts, first.events, first.more),
        (2, 2, 1, false),
        "purge: the two old successes and the one event left with nothing: {first:?}"
    );
    for gone in [alone_id, shared_done] {
        assert!(
            queue.get_delivery(&gone).await.expect("get").is_none(),
            "purge: gone"
        );
        assert!(queue.attempts(&gone).await.expect("attempts").is_empty());
    }
    for kept in [dies_id, young_id, shared_waiting] {
        assert!(
            queue.get_delivery(&kept).await.expect("get").is_some(),
            "purge: kept"
        );
    }
    let waiting = claim(queue, 20, 10).await;
    assert_eq!(waiting.len(), 1, "purge: the pending delivery is still due");
    assert_eq!(waiting[0].delivery.id, shared_waiting);
    assert_eq!(
        waiting[0].payload, shared_payload,
        "purge: a payload stays while a delivery needs it"
    );
    settle_one(
        queue,
        &waiting,
        shared_waiting,
        success(600),
        Next::Succeeded,
    )
    .await;

    // Everything is old now: one at a time, each call says whether more remain.
    let everything = PurgeRequest::new(t(10_000), t(10_000), 1);
    let mut removed = 0;
    let mut events = 0;
    loop {
        let report = queue.purge(&everything).await.expect("purge");
        assert!(report.deliveries <= 1, "purge: the limit holds");
        removed += report.deliveries;
        events += report.events;
        if !report.more {
            break;
        }
    }
    assert_eq!(
        (removed, events),
        (3, 3),
        "purge: the rest, and their events"
    );
    let none = queue
        .list_deliveries(&DeliveryQuery::new(hook))
        .await
        .expect("list");
    assert!(none.items.is_empty(), "purge: nothing left of the webhook");
}
