//! What the benchmarks share: the runtime, the loopback receiver and the event they send.
#![allow(dead_code)] // each benchmark uses its own subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use dataops_webhooks::event::{Dataset, Event};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

/// The project every benchmark webhook is configured on.
pub(crate) const PROJECT: &str = "traffic-signs";

/// A `dataset-complete` event of a realistic size for dataset `id`.
pub(crate) fn event(id: String) -> Event {
    Event::dataset_complete(
        PROJECT,
        Dataset {
            data_url: (0..8)
                .map(|i| format!("gs://aq-bucket/{id}/shard-{i:04}.jsonl"))
                .collect(),
            embeddings_url: Some(vec![format!("gs://aq-bucket/{id}/embeddings.npy")]),
            id,
            frame_count: 1_200,
            label_count: 5_400,
            dataflow_status: "DONE".into(),
            dataflow_status_postprocess: "DONE".into(),
            ..Default::default()
        },
    )
}

/// A runtime shaped like the development machine: two worker threads.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

/// How many requests a loopback receiver answered; wakes whoever waits for a count.
#[derive(Debug, Default)]
pub(crate) struct Received {
    count: AtomicUsize,
    changed: Notify,
}

impl Received {
    /// Requests so far.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until `target` requests have been answered.
    pub(crate) async fn until(&self, target: usize) {
        loop {
            let changed = self.changed.notified();
            if self.count() >= target {
                return;
            }
            changed.await;
        }
    }
}

/// A receiver on loopback that answers 204 to everything, counting.
pub(crate) async fn start_counting_receiver() -> (std::net::SocketAddr, Arc<Received>) {
    let received = Arc::new(Received::default());
    let counter = received.clone();
    let app = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.count.fetch_add(1, Ordering::SeqCst);
            counter.changed.notify_waiters();
            StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// A receiver on loopback that answers 204 to everything.
pub(crate) async fn start_receiver() -> std::net::SocketAddr {
    start_counting_receiver().await.0
}
