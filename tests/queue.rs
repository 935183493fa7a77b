//! The `DeliveryQueue` conformance suite against every backend built in.

use dataops_webhooks::queue::{conformance, MemoryQueue};

#[tokio::test]
async fn memory_queue_passes_the_conformance_suite() {
    conformance::check_delivery_queue(|| async { MemoryQueue::new() }).await;
}
