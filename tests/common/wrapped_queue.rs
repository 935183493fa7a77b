//! A queue that passes every call on to another queue, save what a test changes about its
//! claims and its settles ([`Around`]): the queue whose first settle fails, waits or panics
//! (for the tests of how backend failures are reported and of what a slow or panicking
//! settle holds up), and the worker tests' claim counter.
#![allow(dead_code)] // each test crate uses its own subset

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dataops_webhooks::queue::{
    AttemptLog, Claim, ClaimRequest, DeliveryPage, DeliveryQuery, DeliveryRecord, Enqueued, Finish,
    FinishReport, LeaseId, MemoryQueue, NewEvent, QueueError,
};
use dataops_webhooks::webhook::DeliveryId;
use dataops_webhooks::DeliveryQueue;
use tokio::sync::Semaphore;

/// What a test changes about a queue: how a claim and a settle are made of the inner queue.
/// Each passes straight on unless the test overrides it.
#[async_trait::async_trait]
pub(crate) trait Around: Send + Sync + std::fmt::Debug + 'static {
    async fn claim(
        &self,
        inner: &dyn DeliveryQueue,
        request: &ClaimRequest,
    ) -> Result<Vec<Claim>, QueueError> {
        inner.claim(request).await
    }

    async fn finish(
        &self,
        inner: &dyn DeliveryQueue,
        delivery: &DeliveryId,
        lease: LeaseId,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<FinishReport, QueueError> {
        inner.finish(delivery, lease, finish, now).await
    }
}

/// `inner`, with its claims and settles made through `around`.
#[derive(Debug)]
pub(crate) struct Wrapped<A> {
    inner: Arc<dyn DeliveryQueue>,
    pub(crate) around: A,
}

impl<A> Wrapped<A> {
    pub(crate) fn new(inner: Arc<dyn DeliveryQueue>, around: A) -> Self {
        Self { inner, around }
    }
}

#[async_trait::async_trait]
impl<A: Around> DeliveryQueue for Wrapped<A> {
    async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError> {
        self.inner.enqueue(event).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claim>, QueueError> {
        self.around.claim(self.inner.as_ref(), request).await
    }

    async fn finish(
        &self,
        delivery: &DeliveryId,
        lease: LeaseId,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<FinishReport, QueueError> {
        self.around
            .finish(self.inner.as_ref(), delivery, lease, finish, now)
            .await
    }

    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, QueueError> {
        self.inner.get_delivery(id).await
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, QueueError> {
        self.inner.list_deliveries(query).await
    }

    async fn attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptLog>, QueueError> {
        self.inner.attempts(id).await
    }

    async fn redeliver(&self, id: &DeliveryId, now: DateTime<Utc>) -> Result<bool, QueueError> {
        self.inner.redeliver(id, now).await
    }

    fn short_claims_take_everything(&self) -> bool {
        self.inner.short_claims_take_everything()
    }
}

/// A memory queue whose first settle fails (or, made with [`FailsFirstSettle::held`], waits
/// for the gate to open; made with [`FailsFirstSettle::panicking`], panics).
pub(crate) type FailsFirstSettle = Wrapped<FirstSettle>;

/// What [`FailsFirstSettle`] does to the first settle.
#[derive(Debug, Default)]
pub(crate) struct FirstSettle {
    failed: AtomicBool,
    gate: Option<Arc<Semaphore>>,
    panics: bool,
}

impl Default for FailsFirstSettle {
    fn default() -> Self {
        Self::new(Arc::new(MemoryQueue::new()), FirstSettle::default())
    }
}

impl FailsFirstSettle {
    /// A queue whose first settle succeeds only once `gate` has a permit (it takes it).
    pub(crate) fn held(gate: Arc<Semaphore>) -> Self {
        let first = FirstSettle {
            gate: Some(gate),
            ..FirstSettle::default()
        };
        Self::new(Arc::new(MemoryQueue::new()), first)
    }

    /// A queue whose first settle panics.
    pub(crate) fn panicking() -> Self {
        let first = FirstSettle {
            panics: true,
            ..FirstSettle::default()
        };
        Self::new(Arc::new(MemoryQueue::new()), first)
    }
}

#[async_trait::async_trait]
impl Around for FirstSettle {
    async fn finish(
        &self,
        inner: &dyn DeliveryQueue,
        delivery: &DeliveryId,
        lease: LeaseId,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<FinishReport, QueueError> {
        if !self.failed.swap(true, Ordering::SeqCst) {
            assert!(!self.panics, "the outbox panicked while settling");
            match &self.gate {
                Some(gate) => {
                    let _ = gate
                        .acquire()
                        .await
                        .map(tokio::sync::SemaphorePermit::forget);
                }
                None => {
                    return Err(QueueError::backend(
                        "the outbox is unreachable",
                        std::io::Error::other("connection refused"),
                    ))
                }
            }
        }
        inner.finish(delivery, lease, finish, now).await
    }
}
