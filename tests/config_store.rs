//! The `ConfigStore` conformance suite against the in-memory store.

use dataops_webhooks::store::{conformance, MemoryStore};

#[tokio::test]
async fn memory_store_passes_the_conformance_suite() {
    conformance::check_config_store(|| async { MemoryStore::new() }).await;
}
