//! A queue whose first settle fails, waits until the test lets it through, or panics, for the
//! tests of how backend failures are reported and of what a slow or panicking settle holds up.
#![allow(dead_code)] // each test crate uses its own subset

use dataops_webhooks::queue::{DeliveryQuery, DeliveryRecord};

/// A queue whose first settle fails (or, when made with [`FailsFirstSettle::held`], waits for
/// the gate to open), over a memory queue.
#[derive(Debug, Default)]
pub(crate) struct FailsFirstSettle {
    inner: dataops_webhooks::queue::MemoryQueue,
    failed: std::sync::atomic::AtomicBool,
    gate: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    panics: bool,
}

impl FailsFirstSettle {
    /// A queue whose first settle succeeds only once `gate` has a permit (it takes it).
    pub(crate) fn held(gate: std::sync::Arc<tokio::sync::Semaphore>) -> Self {
        Self {
            gate: Some(gate),
            ..Self::default()
        }
    }

    /// A queue whose first settle panics.
    pub(crate) fn panicking() -> Self {
        Self {
            panics: true,
            ..Self::default()
        }
    }
}

#[async_trait::async_trait]
impl dataops_webhooks::DeliveryQueue for FailsFirstSettle {
    async fn enqueue(
        &self,
        event: dataops_webhooks::queue::NewEvent,
    ) -> Result<dataops_webhooks::queue::Enqueued, dataops_webhooks::queue::QueueError> {
        self.inner.enqueue(event).await
    }
    async fn claim(
        &self,
        request: &dataops_webhooks::queue::ClaimRequest,
    ) -> Result<Vec<dataops_webhooks::queue::Claim>, dataops_webhooks::queue::QueueError> {
        self.inner.claim(request).await
    }
    async fn finish(
        &self,
        delivery: &dataops_webhooks::webhook::DeliveryId,
        lease: dataops_webhooks::queue::LeaseId,
        finish: dataops_webhooks::queue::Finish,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<dataops_webhooks::queue::FinishReport, dataops_webhooks::queue::QueueError> {
        if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            assert!(!self.panics, "the outbox panicked while settling");
            if let Some(gate) = &self.gate {
                let _ = gate
                    .acquire()
                    .await
                    .map(tokio::sync::SemaphorePermit::forget);
                return self.inner.finish(delivery, lease, finish, now).await;
            }
            return Err(dataops_webhooks::queue::QueueError::backend(
                "the outbox is unreachable",
                std::io::Error::other("connection refused"),
            ));
        }
        self.inner.finish(delivery, lease, finish, now).await
    }
    async fn get_delivery(
        &self,
        id: &dataops_webhooks::webhook::DeliveryId,
    ) -> Result<Option<DeliveryRecord>, dataops_webhooks::queue::QueueError> {
        self.inner.get_delivery(id).await
    }
    async fn list_deliveries(
        &self,
        query: &DeliveryQuery,
    ) -> Result<dataops_webhooks::queue::DeliveryPage, dataops_webhooks::queue::QueueError> {
        self.inner.list_deliveries(query).await
    }
    async fn attempts(
        &self,
        id: &dataops_webhooks::webhook::DeliveryId,
    ) -> Result<Vec<dataops_webhooks::queue::AttemptLog>, dataops_webhooks::queue::QueueError> {
        self.inner.attempts(id).await
    }
    async fn redeliver(
        &self,
        id: &dataops_webhooks::webhook::DeliveryId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, dataops_webhooks::queue::QueueError> {
        self.inner.redeliver(id, now).await
    }
}
