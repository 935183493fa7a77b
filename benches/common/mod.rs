//! What the benchmarks share: the runtime, the loopback receiver and the event they send.

use axum::http::StatusCode;
use axum::Router;
use dataops_webhooks::event::{Dataset, Event};
use tokio::runtime::Runtime;

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

/// A receiver on loopback that answers 204 to everything.
pub(crate) async fn start_receiver() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let app = Router::new().fallback(|| async { StatusCode::NO_CONTENT });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}
