//! The worker's periodic sample of the queue's depth, for the queue-depth gauges.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::queue::{DeliveryQueue, QueueError};

/// Samples `queue`'s depth every `interval` until `stopped`. A queue that does not report
/// its depth is asked once; a failing one is asked again at the next interval.
pub(super) async fn sample(
    queue: Arc<dyn DeliveryQueue>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let interval = interval.max(Duration::from_millis(10));
    loop {
        if *stopped.borrow() {
            return;
        }
        let now = Utc::now();
        match queue.depth(now).await {
            Ok(depth) => crate::telemetry::depth(&depth, now),
            Err(QueueError::Unsupported(_)) => {
                tracing::debug!(target: "dataops_webhooks",
                    "the delivery queue does not report its depth; no queue-depth gauges");
                return;
            }
            Err(error) => {
                tracing::debug!(target: "dataops_webhooks",
                    error = %crate::telemetry::chain(&error), "sampling the queue depth failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => return,
        }
    }
}
