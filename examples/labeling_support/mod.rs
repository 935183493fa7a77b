//! What the four labeling receivers share: configuration from the environment, the HTTP
//! client for the labeling service, its errors, and the record of steps already done.
#![allow(dead_code)] // each example uses its own subset

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use dataops_webhooks::labeling::ExportReceiver;
use dataops_webhooks::receiver::Verifier;
use dataops_webhooks::secret::Secret;
use serde_json::Value;

/// A labeling service's address and API key.
#[derive(Clone)]
pub(crate) struct Service {
    /// Its base URL.
    pub(crate) url: String,
    /// Its API key (never printed).
    pub(crate) api_key: String,
    /// How long one request may take.
    pub(crate) timeout: Duration,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// The service from the environment: `<url_var>` (or `default_url`), `<key_var>`, and
    /// `LABELING_TIMEOUT_SECS` (default 10).
    pub(crate) fn from_env(
        url_var: &str,
        default_url: Option<&str>,
        key_var: &str,
    ) -> Result<Self, Box<dyn Error>> {
        let url = match (std::env::var(url_var), default_url) {
            (Ok(url), _) => url,
            (Err(_), Some(default)) => default.to_owned(),
            (Err(_), None) => return Err(format!("set {url_var} to the labeling API's URL").into()),
        };
        let api_key =
            std::env::var(key_var).map_err(|_| format!("set {key_var} to your API key"))?;
        let timeout = match std::env::var("LABELING_TIMEOUT_SECS") {
            Ok(text) => Duration::from_secs(text.parse()?),
            Err(_) => Duration::from_secs(10),
        };
        Ok(Self {
            url,
            api_key,
            timeout,
        })
    }
}

/// The export receiver for the secret in `AQ_WEBHOOK_SECRET`.
pub(crate) fn receiver_from_env() -> Result<ExportReceiver, Box<dyn Error>> {
    let secret = std::env::var("AQ_WEBHOOK_SECRET")
        .map_err(|_| "set AQ_WEBHOOK_SECRET to the secret the platform showed you")?;
    Ok(ExportReceiver::new(Verifier::new(Secret::parse(secret)?)))
}

/// Serves `app` on 127.0.0.1:`PORT` (default `default_port`) until Ctrl-C.
pub(crate) async fn serve(
    app: Router,
    path: &str,
    default_port: u16,
) -> Result<(), Box<dyn Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(text) => text.parse().map_err(|_| "PORT must be a port number")?,
        Err(_) => default_port,
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{addr}{path}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Why the labeling service did not take a request. Any of these makes the receiver answer
/// non-2xx, so the platform retries the delivery.
#[derive(Debug)]
pub(crate) enum ServiceError {
    /// No answer in time.
    Timeout(String),
    /// No connection, or the request failed on the way.
    Transport(String),
    /// An answer other than success.
    Status(u16, String),
    /// A 2xx answer that reports an error (GraphQL `errors`) or lacks what was asked for.
    Answer(String),
    /// The export cannot be handed off as it is.
    Export(String),
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(what) => {
                write!(f, "the labeling service did not answer in time ({what})")
            }
            Self::Transport(what) => write!(f, "the labeling service is unreachable: {what}"),
            Self::Status(status, body) => {
                write!(f, "the labeling service answered {status}: {body}")
            }
            Self::Answer(what) => write!(f, "the labeling service reported an error: {what}"),
            Self::Export(what) => write!(f, "{what}"),
        }
    }
}

/// How a request authenticates.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// `Authorization: Bearer <key>`.
    Bearer(&'a str),
    /// HTTP basic auth with the key as user name and no password (Scale).
    BasicKey(&'a str),
}

/// A JSON POST to a labeling service; returns the answer's JSON (or `null` for none). With
/// `conflict_is_done`, a 409 (the thing exists already) counts as success.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    auth: Auth<'_>,
    idempotency_key: Option<&str>,
    body: &Value,
    conflict_is_done: bool,
) -> Result<Value, ServiceError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ServiceError::Export(e.to_string()))?;
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(bytes);
    request = match auth {
        Auth::Bearer(key) => request.bearer_auth(key),
        Auth::BasicKey(key) => request.basic_auth(key, Some("")),
    };
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            ServiceError::Timeout(url.to_owned())
        } else {
            ServiceError::Transport(e.to_string())
        }
    })?;
    let status = response.status();
    let text = response.text().await.map_err(|e| {
        if e.is_timeout() {
            ServiceError::Timeout(url.to_owned())
        } else {
            ServiceError::Transport(e.to_string())
        }
    })?;
    if status.as_u16() == 409 && conflict_is_done {
        return Ok(Value::Null);
    }
    if !status.is_success() {
        let excerpt: String = text.chars().take(300).collect();
        return Err(ServiceError::Status(status.as_u16(), excerpt));
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| ServiceError::Answer(format!("not JSON: {e}")))
}

/// An HTTP client for labeling services with `timeout` per request.
pub(crate) fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Which steps of which delivery are done, with what they produced (an id), so a retried
/// delivery does not repeat them. In memory: a restarted receiver relies on the service's
/// own idempotency (409s, unique ids) instead.
#[derive(Clone, Default)]
pub(crate) struct Progress {
    done: Arc<Mutex<HashMap<String, HashMap<String, Value>>>>,
}

impl Progress {
    /// Runs `step` of `delivery` unless it is done; returns its (recorded) result.
    pub(crate) async fn step<F, Fut>(
        &self,
        delivery: &str,
        step: &str,
        run: F,
    ) -> Result<Value, ServiceError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, ServiceError>>,
    {
        if let Some(value) = self.lock().get(delivery).and_then(|d| d.get(step)) {
            return Ok(value.clone());
        }
        let value = run().await?;
        self.lock()
            .entry(delivery.to_owned())
            .or_default()
            .insert(step.to_owned(), value.clone());
        Ok(value)
    }

    /// Forgets a delivery whose hand-off completed.
    pub(crate) fn finish(&self, delivery: &str) {
        self.lock().remove(delivery);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Value>>> {
        self.done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The elements that have an image, as (element id, image URL); the others are reported on
/// standard error and left out.
pub(crate) fn images(issue: &dataops_webhooks::event::ExportedIssue) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for element in &issue.elements {
        match element.image_url() {
            Ok(url) => found.push((element.element_id.clone(), url.to_owned())),
            Err(e) => eprintln!("skipped: {e}"),
        }
    }
    found
}
