//! A local stand-in for a labeling service: records every request and answers through a
//! function of the request and those before it; can fail or stall chosen requests.
#![allow(dead_code)] // each test crate uses its own subset

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use serde_json::Value;

/// One request the stand-in received.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) authorization: Option<String>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) body: Value,
}

/// What the stand-in does with the n-th request (0-based).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    /// Answer 500.
    Fail,
    /// Answer after this long.
    Stall(Duration),
}

type Answer = dyn Fn(&Recorded, &[Recorded]) -> (StatusCode, Value) + Send + Sync;

#[derive(Clone)]
pub(crate) struct StandIn {
    pub(crate) addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    faults: Arc<Mutex<HashMap<usize, Fault>>>,
}

impl StandIn {
    /// Starts a stand-in that answers with `answer(request, earlier requests)`.
    pub(crate) async fn start(
        answer: impl Fn(&Recorded, &[Recorded]) -> (StatusCode, Value) + Send + Sync + 'static,
    ) -> Self {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let faults: Arc<Mutex<HashMap<usize, Fault>>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let (log, planned) = (requests.clone(), faults.clone());
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (log, planned, answer) = (log.clone(), planned.clone(), answer.clone());
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let request = Recorded {
                        method: method.to_string(),
                        path: uri.path().to_owned(),
                        authorization: header("authorization"),
                        idempotency_key: header("idempotency-key"),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    };
                    let (n, earlier) = {
                        let mut log = log.lock().expect("lock");
                        let earlier = log.clone();
                        log.push(request.clone());
                        (earlier.len(), earlier)
                    };
                    let fault = planned.lock().expect("lock").get(&n).copied();
                    match fault {
                        Some(Fault::Fail) => {
                            return (StatusCode::INTERNAL_SERVER_ERROR, "stand-in failure")
                                .into_response()
                        }
                        Some(Fault::Stall(time)) => tokio::time::sleep(time).await,
                        None => {}
                    }
                    let (status, body) = answer(&request, &earlier);
                    let json = serde_json::to_string(&body).unwrap_or_default();
                    (status, [("content-type", "application/json")], json).into_response()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            requests,
            faults,
        }
    }

    /// The stand-in's URL for `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Makes the `n`-th request (0-based, counting all) fail or stall.
    pub(crate) fn fault(&self, n: usize, fault: Fault) {
        self.faults.lock().expect("lock").insert(n, fault);
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}
