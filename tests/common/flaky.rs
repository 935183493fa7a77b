//! A loopback receiver whose behaviour depends on the path, and that counts what it saw:
//! the endpoints the durable-delivery tests need.
#![allow(dead_code)] // each test crate uses its own subset

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;

/// Path behaviours:
/// - `/ok`: 204;
/// - `/first-fails`: 500 with a message on each delivery's first request, then 204;
/// - `/slow`: answers after 2 s (longer than the tests' timeout);
/// - `/busy`: 429 with `Retry-After: 1` on each delivery's first request, then 204;
/// - `/gone`: 410;
/// - `/failing`: 500 while `failing` is set, then 204;
/// - `/count`: 204 after 100 ms, counting requests in flight.
#[derive(Clone)]
pub(crate) struct Flaky {
    pub addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// Every request: path, delivery id, when.
    log: Mutex<Vec<(String, String, Instant)>>,
    seen: Mutex<HashMap<(String, String), usize>>,
    failing: AtomicBool,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Flaky {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            failing: AtomicBool::new(true),
            ..State::default()
        });
        let shared = state.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let state = shared.clone();
            async move { answer(&state, uri.path(), &headers).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `/failing` answers 204 from now on.
    pub(crate) fn heal(&self) {
        self.state.failing.store(false, Ordering::SeqCst);
    }

    /// The requests to `path`: (delivery id, arrival).
    pub(crate) fn requests(&self, path: &str) -> Vec<(String, Instant)> {
        self.state
            .log
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, id, at)| (id.clone(), *at))
            .collect()
    }

    /// The path of every request, in the order they arrived.
    pub(crate) fn paths(&self) -> Vec<String> {
        self.state
            .log
            .lock()
            .expect("lock")
            .iter()
            .map(|(path, _, _)| path.clone())
            .collect()
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn answer(state: &State, path: &str, headers: &HeaderMap) -> Response {
    let id = headers
        .get("x-aquarium-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    state
        .log
        .lock()
        .expect("lock")
        .push((path.to_owned(), id.clone(), Instant::now()));
    let nth = {
        let mut seen = state.seen.lock().expect("lock");
        let n = seen.entry((path.to_owned(), id)).or_insert(0);
        *n += 1;
        *n
    };
    match path {
        "/first-fails" if nth == 1 => {
            (StatusCode::INTERNAL_SERVER_ERROR, "database is down").into_response()
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            StatusCode::NO_CONTENT.into_response()
        }
        "/busy" if nth == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        "/gone" => StatusCode::GONE.into_response(),
        "/failing" if state.failing.load(Ordering::SeqCst) => {
            (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response()
        }
        "/count" => {
            let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            state.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

/// An address that accepts connections and drops them without answering.
pub(crate) async fn dropping_listener() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    addr
}
