//! Per-webhook rate limits on loopback: 1,000 deliveries to an endpoint limited to 200
//! requests a second are spread over about five seconds, while a second endpoint, without a
//! limit, gets its 1,000 long before. Asserted on counts and order, with only lower bounds on
//! time (a slow machine cannot make them fail).

#[path = "common/flaky.rs"]
mod flaky;

use std::time::{Duration, Instant};

use dataops_webhooks::event::{Dataset, Event};
use dataops_webhooks::transport::guard::AddressPolicy;
use dataops_webhooks::webhook::{NewWebhook, RateLimit, Scope, WebhookError, WebhookUpdate};
use dataops_webhooks::{Dispatcher, ManageError, WebhookDispatcher, WorkerOptions};
use flaky::Flaky;

const RATE: f64 = 200.0;
const BURST: u32 = 10;
const N: usize = 1_000;

/// Emits `n` dataset events to project `p`.
async fn emit_datasets(d: &WebhookDispatcher, n: usize) {
    for i in 0..n {
        let dataset = Dataset {
            id: format!("d{i}"),
            ..Default::default()
        };
        d.emit(Event::dataset_complete("p", dataset))
            .await
            .expect("emit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_endpoint_is_paced_and_an_unlimited_one_is_not_slowed() {
    let server = Flaky::start().await;
    let d = WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private())
        .build()
        .expect("dispatcher");
    let limited = NewWebhook::new(Scope::Project("p".into()), server.url("/limited"))
        .rate_limit(RateLimit::per_second(RATE).burst(BURST));
    d.webhooks().create(limited).await.expect("create");
    d.webhooks()
        .create(NewWebhook::new(
            Scope::Project("p".into()),
            server.url("/free"),
        ))
        .await
        .expect("create");
    let worker = d.start_worker(WorkerOptions::default().poll_interval(Duration::from_millis(20)));
    emit_datasets(&d, N).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.requests("/limited").len() < N {
        assert!(
            Instant::now() < deadline,
            "the limited endpoint gets everything in the end: {} of {N}",
            server.requests("/limited").len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown().await;

    let mut limited: Vec<Instant> = server
        .requests("/limited")
        .into_iter()
        .map(|(_, at)| at)
        .collect();
    let mut free: Vec<Instant> = server
        .requests("/free")
        .into_iter()
        .map(|(_, at)| at)
        .collect();
    limited.sort();
    free.sort();
    assert_eq!((limited.len(), free.len()), (N, N), "every delivery, once");

    // Paced: in any one second, at most the rate plus the burst (and the requests already on
    // their way), and the whole run takes at least (N - burst) / rate seconds.
    let slack = 8; // requests in flight per endpoint
    for (i, start) in limited.iter().enumerate() {
        let within = limited[i..]
            .iter()
            .take_while(|at| at.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(
            within <= RATE as usize + BURST as usize + slack,
            "{within} requests within one second from request {i}"
        );
    }
    let span = limited[N - 1].duration_since(limited[0]);
    let least = Duration::from_secs_f64((N as f64 - f64::from(BURST)) / RATE);
    assert!(
        span >= least.mul_f64(0.95),
        "1,000 at 200/s took only {span:?}"
    );

    // Not slowed: the unlimited endpoint had all of its deliveries before the limited one
    // had 80% of its own.
    assert!(
        free[N - 1] < limited[N * 8 / 10],
        "the unlimited endpoint waited for the limited one"
    );
}

#[tokio::test]
async fn rate_limits_are_checked_and_can_be_changed_or_removed() {
    let d = WebhookDispatcher::builder().build().expect("dispatcher");
    for bad in [
        RateLimit::per_second(0.0),
        RateLimit::per_second(f64::NAN),
        RateLimit::per_second(f64::INFINITY),
        RateLimit::per_second(10.0).burst(0),
    ] {
        let refused = d
            .webhooks()
            .create(
                NewWebhook::new(Scope::Project("p".into()), "https://hooks.example.com/x")
                    .rate_limit(bad),
            )
            .await;
        assert!(
            matches!(
                refused,
                Err(ManageError::Invalid(WebhookError::InvalidRateLimit))
            ),
            "{bad:?}: {refused:?}"
        );
    }
    let hook = d
        .webhooks()
        .create(
            NewWebhook::new(Scope::Project("p".into()), "https://hooks.example.com/x")
                .rate_limit(RateLimit::per_second(5.0)),
        )
        .await
        .expect("create");
    assert_eq!(hook.rate_limit, Some(RateLimit::per_second(5.0)));
    let changed = d
        .webhooks()
        .update(
            &hook.id,
            WebhookUpdate::new().rate_limit(Some(RateLimit::per_second(50.0).burst(5))),
        )
        .await
        .expect("update");
    assert_eq!(
        changed.rate_limit,
        Some(RateLimit::per_second(50.0).burst(5))
    );
    let removed = d
        .webhooks()
        .update(&hook.id, WebhookUpdate::new().rate_limit(None))
        .await
        .expect("update");
    assert_eq!(removed.rate_limit, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_beyond_the_lease_goes_back_to_the_queue_and_comes_again() {
    let server = Flaky::start().await;
    let d = WebhookDispatcher::builder()
        .address_policy(AddressPolicy::allow_private())
        .request_timeout(Duration::from_millis(300))
        .build()
        .expect("dispatcher");
    // Two a second: the third claimed delivery's turn (1 s away) is beyond what a 1 s lease
    // leaves once a request's 300 ms are counted, so it is returned and claimed again later.
    let slow = NewWebhook::new(Scope::Project("p".into()), server.url("/slow-rate"))
        .rate_limit(RateLimit::per_second(2.0));
    d.webhooks().create(slow).await.expect("create");
    let worker = d.start_worker(
        WorkerOptions::default()
            .lease(Duration::from_secs(1))
            .poll_interval(Duration::from_millis(20)),
    );
    emit_datasets(&d, 5).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.requests("/slow-rate").len() < 5 {
        assert!(Instant::now() < deadline, "all five arrive in the end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown().await;
    let mut arrivals: Vec<(String, Instant)> = server.requests("/slow-rate");
    arrivals.sort_by_key(|(_, at)| *at);
    let mut ids: Vec<&String> = arrivals.iter().map(|(id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (arrivals.len(), ids.len()),
        (5, 5),
        "each once: none failed, none twice"
    );
    for pair in arrivals.windows(2) {
        let gap = pair[1].1.duration_since(pair[0].1);
        assert!(gap >= Duration::from_millis(450), "paced at 2/s: {gap:?}");
    }
}
