//! A task that runs attempts one after another: when an endpoint answers, the task passes its
//! permit on to the longest-waiting claim that may start and makes that request next, while
//! the outcome it just had is recorded alongside.
//!
//! So a busy worker neither spawns a task nor wakes its loop per delivery: a task ends only
//! when no waiting claim may start, and the loop hears of it then. Recording never holds a
//! request slot: the next request is out while the last outcome is being settled. A panic in
//! one attempt (a host's transport or queue, most likely) ends that attempt alone, as if it
//! had its own task: the others the task runs go on.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use chrono::Utc;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::{EndpointSlot, InFlight, Worker};
use crate::queue::Claim;

/// A claim listed as in flight, its endpoint slot and a permit taken.
pub(super) struct Started {
    pub(super) claim: Claim,
    pub(super) slot: EndpointSlot,
}

impl Worker {
    /// Runs `started` and whatever its permit is passed on to, as one task of `tasks`.
    pub(super) fn spawn_runner(&self, started: Started, tasks: &mut JoinSet<()>) {
        let worker = self.clone();
        tasks.spawn(async move { worker.run_attempts(started).await });
    }

    /// Attempts `first`, then each claim its permit is passed on to, until none is; returns
    /// once every outcome is recorded.
    async fn run_attempts(&self, first: Started) {
        let mut settling = Settling::default();
        let mut next = Some(first);
        while let Some(Started { claim, slot }) = next.take() {
            let in_flight = InFlight::new(self, &claim);
            let span = attempt_span(&claim);
            let requested = settling
                .alongside(self.request(claim, slot).instrument(span.clone()))
                .await;
            match requested {
                // Its endpoint slot and permit went with the request.
                Err(Panicked) => in_flight.panicked(),
                Ok(None) => in_flight.settled(),
                Ok(Some((answered, slot))) => {
                    next = self.pass_on(slot);
                    settling.push(in_flight, self.record(answered).instrument(span));
                }
            }
        }
        settling.finish().await;
    }

    /// The endpoint of `slot`'s request answered: gives its slot back and passes its permit
    /// to the longest-waiting claim that may start now, which is returned for the caller to
    /// attempt. When none may, the permit goes back too, and the loop is woken if it waits
    /// for one. A waiting claim whose lease runs short is the loop's to return, so none is
    /// passed on while the oldest is.
    fn pass_on(&self, mut slot: EndpointSlot) -> Option<Started> {
        let permit = slot.permit.take()?;
        let margin = self.expiry_margin();
        let now = Utc::now();
        let mut busy = self.busy();
        busy.free_slot(slot.webhook, slot.taken.elapsed());
        let mut after = None;
        while let Some((order, webhook)) = busy.waiting.next_front(after) {
            if after.is_none()
                && busy
                    .waiting
                    .front(&webhook)
                    .is_some_and(|front| front.lease_until.signed_duration_since(now) <= margin)
            {
                break;
            }
            if self.take_slot(&mut busy, webhook) {
                if let Some(held) = busy.waiting.pop(&webhook) {
                    let started = self.begin(&mut busy, held.claim, permit);
                    let refill = busy.refill_due(&slot.webhook);
                    drop(busy);
                    if refill {
                        self.finished.notify_one();
                    }
                    return Some(started);
                }
            }
            after = Some(order);
        }
        drop(permit);
        let limited = busy.limited;
        drop(busy);
        if limited {
            self.finished.notify_one();
        }
        None
    }
}

/// The span of one attempt, from loading its webhook to recording its outcome.
fn attempt_span(claim: &Claim) -> tracing::Span {
    tracing::info_span!(
        target: "dataops_webhooks",
        "attempt",
        delivery_id = %claim.delivery.id,
        webhook_id = %claim.delivery.webhook_id,
        event_type = claim.delivery.event_type.as_str(),
        attempt = claim.delivery.attempts.saturating_add(1),
        url_host = tracing::field::Empty,
        status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
        error_kind = tracing::field::Empty,
        decision = tracing::field::Empty,
        retry_at = tracing::field::Empty,
        disabled = tracing::field::Empty,
    )
}

/// An attempt's future panicked.
struct Panicked;

/// Polls `future`, catching a panic in it, so that one attempt's panic does not end the
/// attempts its task runs alongside.
fn poll_caught<F: Future + ?Sized>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<Result<F::Output, Panicked>> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
        Err(_) => Poll::Ready(Err(Panicked)),
    }
}

/// A record being settled, and the attempt it ends.
type Record<'a> = (InFlight<'a>, Pin<Box<dyn Future<Output = ()> + Send + 'a>>);

/// Outcomes being recorded by one runner while its next request is out.
#[derive(Default)]
struct Settling<'a> {
    records: Vec<Record<'a>>,
}

impl<'a> Settling<'a> {
    /// Adds the record of `in_flight`'s outcome; it is first polled with the runner's next
    /// request.
    fn push(&mut self, in_flight: InFlight<'a>, record: impl Future<Output = ()> + Send + 'a) {
        self.records.push((in_flight, Box::pin(record)));
    }

    /// Polls every record, ending the attempts whose record is done; ready once none is left.
    fn poll_records(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut i = 0;
        while let Some((_, record)) = self.records.get_mut(i) {
            let Poll::Ready(recorded) = poll_caught(record.as_mut(), cx) else {
                i += 1;
                continue;
            };
            let (in_flight, _) = self.records.swap_remove(i);
            match recorded {
                Ok(()) => in_flight.settled(),
                Err(Panicked) => in_flight.panicked(),
            }
        }
        if self.records.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Runs `request` to its end (or its panic), settling records meanwhile.
    async fn alongside<T>(&mut self, request: impl Future<Output = T>) -> Result<T, Panicked> {
        let mut request = std::pin::pin!(request);
        std::future::poll_fn(|cx| {
            let _ = self.poll_records(cx);
            poll_caught(request.as_mut(), cx)
        })
        .await
    }

    /// Waits for every record to be settled.
    async fn finish(&mut self) {
        std::future::poll_fn(|cx| self.poll_records(cx)).await;
    }
}
