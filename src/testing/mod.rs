//! Test support for hosts (feature `test-util`): the conformance suites that every
//! [`ConfigStore`] and [`DeliveryQueue`] must pass — the crate's backends and a host's own —
//! and [`FakeDispatcher`], a test double for host code written against [`Dispatcher`].
//!
//! # Conformance suites
//!
//! Each suite is a macro that expands, in the module where it is called, into one `#[test]`
//! per behaviour (so a failure names the behaviour, and the next one still runs). A
//! [`Harness`] gives each test a fresh backend and cleans it up afterwards, pass or fail:
//!
//! ```
//! use async_trait::async_trait;
//! use dataops_webhooks::queue::MemoryQueue;
//! use dataops_webhooks::store::MemoryStore;
//! use dataops_webhooks::testing::Harness;
//!
//! struct Store;
//!
//! #[async_trait]
//! impl Harness for Store {
//!     type Backend = MemoryStore;
//!
//!     async fn setup(&self) -> MemoryStore {
//!         MemoryStore::new()
//!     }
//!     // `teardown` is where a database-backed store drops its table or schema.
//! }
//!
//! struct Queue;
//!
//! #[async_trait]
//! impl Harness for Queue {
//!     type Backend = MemoryQueue;
//!
//!     async fn setup(&self) -> MemoryQueue {
//!         MemoryQueue::new()
//!     }
//! }
//!
//! mod config_store {
//!     dataops_webhooks::config_store_conformance!(super::Store);
//! }
//! mod delivery_queue {
//!     dataops_webhooks::delivery_queue_conformance!(super::Queue);
//! }
//! # fn main() {}
//! ```
//!
//! The behaviours are the functions of [`store`] and [`queue`]; each takes the backend in an
//! `Arc` and panics with its own name when the backend misbehaves. Each test runs on a
//! current-thread tokio runtime of its own.
//!
//! [`ConfigStore`]: crate::ConfigStore
//! [`DeliveryQueue`]: crate::DeliveryQueue
//! [`Dispatcher`]: crate::Dispatcher

mod double;
pub mod queue;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

pub use double::FakeDispatcher;

/// Makes a fresh backend for one conformance test, and cleans it up after.
///
/// A harness value is made for each test (the macros take an expression), so it may hold
/// what one test needs: a temporary directory, a schema name. A backend that is both a
/// store and a queue serves both suites with one harness.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// The store or queue under test.
    type Backend: Send + Sync + 'static;

    /// A fresh, empty backend.
    async fn setup(&self) -> Self::Backend;

    /// Removes what the test left: called once the test's checks are done, pass or fail.
    /// The default does nothing.
    async fn teardown(&self, backend: &Self::Backend) {
        let _ = backend;
    }

    /// A reason not to run on this machine (a test database that is not configured): the
    /// test then passes without running, after printing the reason. The default runs.
    fn skip(&self) -> Option<String> {
        None
    }
}

/// Runs one conformance check: set up, check on a task of its own (so a panic is caught),
/// tear down, then fail the test if the check did. Used by the suites' macros.
#[doc(hidden)]
pub fn run<H, F, Fut>(harness: H, check: F)
where
    H: Harness,
    F: FnOnce(Arc<H::Backend>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Some(reason) = harness.skip() {
        eprintln!("skipped: {reason}");
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("could not start a tokio runtime for the test: {e}"));
    runtime.block_on(async move {
        let backend = Arc::new(harness.setup().await);
        let checked = tokio::spawn(check(backend.clone())).await;
        harness.teardown(&backend).await;
        if let Err(failed) = checked {
            match failed.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(other) => panic!("the check did not finish: {other}"),
            }
        }
    });
}

/// Expands into one `#[test]` per [`ConfigStore`](crate::ConfigStore) behaviour (the
/// functions of [`testing::store`](crate::testing::store)), each on a fresh store from the
/// [`Harness`] expression given. See the [module docs](crate::testing).
#[macro_export]
macro_rules! config_store_conformance {
    ($harness:expr) => {
        $crate::__conformance_tests!($harness, store:
            round_trips_every_field,
            refuses_a_duplicate_id,
            updates_and_deletes,
            updates_only_the_revision_they_read,
            concurrent_updates_of_one_revision_have_one_winner,
            pages_in_id_order_without_gaps,
            filters_by_organization_and_scope,
            keeps_signing_keys_per_organization,
            finds_a_webhook_with_its_keys,
            finds_subscribers,
            keeps_imported_and_rotated_secrets,
            text_it_cannot_store_is_refused_first
        );
    };
}

/// Expands into one `#[test]` per [`DeliveryQueue`](crate::DeliveryQueue) behaviour (the
/// functions of [`testing::queue`](crate::testing::queue)), each on a fresh queue from the
/// [`Harness`] expression given. See the [module docs](crate::testing).
#[macro_export]
macro_rules! delivery_queue_conformance {
    ($harness:expr) => {
        $crate::__conformance_tests!($harness, queue:
            stores_the_payload_once_and_hands_it_to_every_delivery,
            claims_only_what_is_due_oldest_first,
            a_lease_hides_a_delivery_until_it_expires,
            settles_success_retry_and_death,
            a_lost_lease_cannot_overwrite_the_new_holder,
            release_and_abandon,
            settles_at_once_each_on_its_own,
            skips_webhooks_at_their_limit,
            gives_each_webhook_at_most_its_room,
            a_skipped_webhooks_backlog_hides_no_other,
            a_short_claim_took_everything_if_the_queue_says_so,
            a_webhook_at_its_room_leaves_the_others_in_due_order,
            idempotency_keys_return_the_first_event,
            lists_newest_first_with_filters_and_cursors,
            redelivers_keeping_id_and_attempts,
            keeps_endpoint_health,
            statistics_count_statuses_and_the_windows_attempts,
            depth_counts_due_scheduled_and_in_flight,
            finds_the_deliveries_of_an_event,
            keeps_test_sends_settled,
            purges_settled_deliveries_past_retention,
            emits_of_text_it_cannot_store_are_refused_first
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($harness:expr, $suite:ident: $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::testing::run($harness, |backend| async move {
                    $crate::testing::$suite::$check(backend).await
                });
            }
        )+
    };
}
