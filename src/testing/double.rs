//! [`FakeDispatcher`]: a [`Dispatcher`] for the host's own unit tests.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, StatusCode};
use url::Url;

use crate::delivery::{AttemptResult, DeliveryOutcome, DeliveryTicket, Preview};
use crate::dispatcher::{DispatchError, Dispatcher, Emit, Receipt};
use crate::webhook::{DeliveryId, EventId, WebhookId};
use crate::{Event, EventType};

/// A [`Dispatcher`] that sends nothing: it records every emit and answers with the outcome
/// the test chose. Cheap to clone; clones share what they record.
///
/// Host code written against `impl Dispatcher` (or `Arc<dyn Dispatcher>`) is unit-tested
/// with it, without a network or a worker:
///
/// ```
/// use dataops_webhooks::event::ExportedIssue;
/// use dataops_webhooks::testing::FakeDispatcher;
/// use dataops_webhooks::{AttemptResult, Dispatcher, Event};
/// use http::StatusCode;
///
/// /// The host's "Export to labeling" button: the dialog's message.
/// async fn export(dispatcher: &impl Dispatcher, project: &str, issue: ExportedIssue) -> String {
///     match dispatcher.emit(Event::issue_exported(project, issue)).await {
///         Err(error) => format!("not sent: {error}"),
///         Ok(receipt) if receipt.is_unhandled() => "create a webhook for issue-exported".into(),
///         Ok(receipt) => match receipt.outcomes().await.iter().find_map(|o| o.error_message()) {
///             Some(error) => error,
///             None => "exported".into(),
///         },
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let none = FakeDispatcher::new();
/// assert_eq!(export(&none, "signs", ExportedIssue::default()).await, "create a webhook for issue-exported");
///
/// let failing = FakeDispatcher::new()
///     .subscriber("https://labeling.example/hook")
///     .answer(AttemptResult::Rejected {
///         status: StatusCode::BAD_GATEWAY,
///         body: "labeling service down".into(),
///         duration: Default::default(),
///     });
/// let shown = export(&failing, "signs", ExportedIssue::default()).await;
/// assert_eq!(shown, "the endpoint answered 502 Bad Gateway: labeling service down");
/// assert_eq!(failing.emitted().len(), 1);
/// assert_eq!(failing.emitted()[0].event.project(), "signs");
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct FakeDispatcher {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    emitted: Vec<Emit>,
    subscribers: Vec<(WebhookId, Url)>,
    answer: Option<AttemptResult>,
    fail_next: Option<DispatchError>,
}

impl FakeDispatcher {
    /// A dispatcher with no webhooks: every emit is unhandled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a webhook at `url` that receives every event (and answers test sends).
    ///
    /// # Panics
    /// When `url` is not an absolute URL: a test's own mistake.
    #[must_use]
    pub fn subscriber(self, url: &str) -> Self {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("FakeDispatcher: `{url}`: {e}"));
        self.lock().subscribers.push((WebhookId::new(), url));
        self
    }

    /// The result every delivery and test send gets (default: `204 No Content`).
    #[must_use]
    pub fn answer(self, result: AttemptResult) -> Self {
        self.lock().answer = Some(result);
        self
    }

    /// Makes the next emit fail with `error` (and record nothing).
    pub fn fail_next_emit(&self, error: DispatchError) {
        self.lock().fail_next = Some(error);
    }

    /// Every emit so far, in order.
    pub fn emitted(&self) -> Vec<Emit> {
        self.lock().emitted.clone()
    }

    /// The event types emitted so far, in order.
    pub fn event_types(&self) -> Vec<EventType> {
        self.lock()
            .emitted
            .iter()
            .map(|e| e.event.event_type())
            .collect()
    }

    /// The ids of the webhooks added with [`subscriber`](Self::subscriber).
    pub fn webhook_ids(&self) -> Vec<WebhookId> {
        self.lock().subscribers.iter().map(|(id, _)| *id).collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn outcome(state: &State, webhook_id: WebhookId, url: &Url) -> DeliveryOutcome {
        let result = state.answer.clone().unwrap_or(AttemptResult::Delivered {
            status: StatusCode::NO_CONTENT,
            body: String::new(),
            duration: Duration::ZERO,
        });
        DeliveryOutcome::new(
            DeliveryId::new(),
            webhook_id,
            url.clone(),
            Utc::now(),
            result,
        )
    }

    fn webhook(&self, id: &WebhookId) -> Result<(WebhookId, Url), DispatchError> {
        self.lock()
            .subscribers
            .iter()
            .find(|(known, _)| known == id)
            .cloned()
            .ok_or(DispatchError::WebhookNotFound(*id))
    }
}

#[async_trait]
impl Dispatcher for FakeDispatcher {
    async fn emit_with(&self, emit: Emit) -> Result<Receipt, DispatchError> {
        let mut state = self.lock();
        if let Some(error) = state.fail_next.take() {
            return Err(error);
        }
        let event_type = emit.event.event_type();
        let project = emit.event.project().to_owned();
        let org = emit.org.clone().unwrap_or_default();
        let tickets = state
            .subscribers
            .iter()
            .map(|(id, url)| DeliveryTicket::resolved(Self::outcome(&state, *id, url)))
            .collect();
        state.emitted.push(emit);
        Ok(Receipt::new(
            EventId::new(),
            event_type,
            org,
            project,
            tickets,
        ))
    }

    async fn send_test(&self, webhook: &WebhookId) -> Result<DeliveryOutcome, DispatchError> {
        let (id, url) = self.webhook(webhook)?;
        Ok(Self::outcome(&self.lock(), id, &url))
    }

    async fn preview(&self, webhook: &WebhookId, event: &Event) -> Result<Preview, DispatchError> {
        let (id, url) = self.webhook(webhook)?;
        let body = serde_json::to_vec(event).map_err(DispatchError::Serialize)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            crate::signing::AQUARIUM_EVENT,
            HeaderValue::from_static(event.event_type().as_str()),
        );
        Ok(Preview::new(
            id,
            url,
            DeliveryId::new(),
            headers,
            Bytes::from(body),
        ))
    }
}
