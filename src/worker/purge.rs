//! The worker's periodic purge of the delivery log, by its [`RetentionPolicy`].

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::queue::{DeliveryQueue, PurgeReport, QueueError, RetentionPolicy};

/// Purges by `policy` at once and then every `policy.interval` until `stopped`: batch after
/// batch while the queue says more is due, yielding between batches so deliveries go on. A
/// queue that does not purge is asked once; a failing one again at the next interval.
pub(super) async fn run(
    queue: Arc<dyn DeliveryQueue>,
    policy: RetentionPolicy,
    mut stopped: watch::Receiver<bool>,
) {
    let interval = policy.interval.max(Duration::from_millis(10));
    loop {
        let mut total = PurgeReport::default();
        loop {
            if *stopped.borrow() {
                return;
            }
            match queue.purge(&policy.request(Utc::now())).await {
                Ok(report) => {
                    crate::telemetry::purged(&report);
                    total.deliveries += report.deliveries;
                    total.attempts += report.attempts;
                    total.events += report.events;
                    if !report.more || report.deliveries == 0 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                Err(QueueError::Unsupported(_)) => {
                    tracing::debug!(target: "dataops_webhooks",
                        "the delivery queue does not purge; nothing is removed by age");
                    return;
                }
                Err(error) => {
                    tracing::warn!(target: "dataops_webhooks",
                        error = %crate::telemetry::chain(&error),
                        "purging the delivery log failed; trying again at the next interval");
                    break;
                }
            }
        }
        if total.deliveries > 0 {
            tracing::debug!(target: "dataops_webhooks", deliveries = total.deliveries,
                attempts = total.attempts, events = total.events, "purged the delivery log");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => return,
        }
    }
}
