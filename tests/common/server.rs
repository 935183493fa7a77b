//! A real HTTP server on 127.0.0.1 that records every request and answers as told.
#![allow(dead_code)] // each test crate uses its own subset

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify, Semaphore};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How the server answers.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// This status and body.
    Status(u16, &'static str),
    /// This status and body after a delay.
    Slow(Duration, u16),
    /// A redirect to this location.
    Redirect(String),
    /// 200 with a body of this many bytes.
    Big(usize),
    /// Waits until [`TestServer::open_gate`], then 200.
    Gated,
}

struct Shared {
    reply: Reply,
    requests: Mutex<Vec<Recorded>>,
    arrived: Notify,
    gate: Semaphore,
}

pub(crate) struct TestServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl TestServer {
    pub(crate) async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            reply,
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            gate: Semaphore::new(0),
        });
        let state = shared.clone();
        let app = Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { handle(state, uri.path().to_owned(), headers, body).await }
            },
        );
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            shared,
            _stop: stop,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// Waits (at most 10 s) until `n` requests have arrived.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.shared.arrived.notified();
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "waited 10 s for {n} requests, got {}",
                    self.requests().len()
                );
            }
        }
    }

    pub(crate) fn open_gate(&self) {
        self.shared.gate.add_permits(1000);
    }
}

async fn handle(state: Arc<Shared>, path: String, headers: HeaderMap, body: Bytes) -> Response {
    state.requests.lock().expect("lock").push(Recorded {
        path,
        headers,
        body,
    });
    state.arrived.notify_waiters();
    let status = |code: u16| StatusCode::from_u16(code).expect("status");
    match &state.reply {
        Reply::Status(code, text) => (status(*code), *text).into_response(),
        Reply::Slow(delay, code) => {
            tokio::time::sleep(*delay).await;
            (status(*code), "slow").into_response()
        }
        Reply::Redirect(location) => {
            (StatusCode::FOUND, [("location", location.clone())], "moved").into_response()
        }
        Reply::Big(len) => (StatusCode::OK, vec![b'x'; *len]).into_response(),
        Reply::Gated => {
            let _permit = state.gate.acquire().await;
            (StatusCode::OK, "released").into_response()
        }
    }
}
