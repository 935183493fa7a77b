//! The Webhooks tab, the send icon and the Export-to-labeling dialog, ready to mount: a JSON
//! API and a page, on axum (feature `management`).
//!
//! [`router`] gives an [`axum::Router`] that a host nests under a path of its own. It serves:
//!
//! - `GET /` — the page: the Webhooks tab of a project (list with active switches, create and
//!   edit forms, delete, the send icon with its result, the delivery log with attempts and a
//!   redeliver button), the organization secret (generated or rotated, shown once, with a copy
//!   button), and the Export-to-labeling dialog (payload preview, a prompt when no webhook
//!   handles `issue-exported`, the endpoint's error in the dialog). Its assets are embedded in
//!   the crate; no CDN, no build step. Restyle it with CSS variables (`--dw-accent`, `--dw-bg`,
//!   `--dw-fg`, `--dw-muted`, `--dw-danger`, `--dw-ok`, `--dw-radius`, `--dw-font`) in a
//!   stylesheet of the host's, linked by [`ManagementOptions::stylesheet`].
//! - `/api/...` — the JSON API the page uses, for any client: webhooks (list per organization
//!   and per project with cursor pagination, get, create, update, activate, deactivate,
//!   delete, rotate a webhook's own secret), the organization secret (status, generate,
//!   rotate), test sends, previews, subscribers of an event type, deliveries and their
//!   attempts, redelivery, recovery, and the export to labeling.
//! - `GET /openapi.json` — the API's OpenAPI 3.1 document, generated from the handlers (the
//!   crate's `docs/openapi.json` is a copy that CI keeps current).
//!
//! # Who may do what
//!
//! Every request goes first to the host's [`Authorizer`], which names the caller's
//! organization and the projects of it they may manage ([`Access`]). Ids of other
//! organizations' webhooks and deliveries answer 404, exactly as ids that do not exist; a
//! caller limited to some projects does not see the other projects' webhooks, nor the
//! organization-wide ones, and may not touch the organization's secret (403).
//!
//! The page, its assets and `/openapi.json` hold no data and are served to anyone; every
//! `/api` route asks the authorizer.
//!
//! # Cross-site requests
//!
//! Every request that changes something (any method but `GET`, `HEAD` and `OPTIONS`) must
//! carry `Content-Type: application/json` or an `X-Requested-With` header. A browser sends
//! neither from another site's form or script without a CORS preflight, and this router
//! never answers a preflight with a permission, so a cross-site form post cannot reach a
//! handler even when the browser attaches the user's cookies. As a second check, a request
//! whose `Origin` is not the host it was sent to (nor one of
//! [`ManagementOptions::allowed_origins`]), or whose `Sec-Fetch-Site` is `cross-site`, is
//! refused with 403. Request bodies are limited to [`ManagementOptions::max_body_bytes`].
//!
//! # Errors
//!
//! Every error is a problem document (RFC 9457, `application/problem+json`): a [`Problem`]
//! with a `type` URN, the status, a `detail` that says what to do, and for validation errors
//! the fields at fault as JSON pointers (`/url`, `/events/1`).
//!
//! # Mounting it
//!
//! ```no_run
//! use async_trait::async_trait;
//! use dataops_webhooks::management::{self, Access, Authorizer, Denied};
//! use dataops_webhooks::WebhookDispatcher;
//!
//! #[derive(Debug)]
//! struct Session;
//!
//! #[async_trait]
//! impl Authorizer for Session {
//!     async fn authorize(&self, request: &http::request::Parts) -> Result<Access, Denied> {
//!         // Look the session cookie up in the host's own session store.
//!         match request.headers.get("cookie") {
//!             Some(_) => Ok(Access::organization("acme")),
//!             None => Err(Denied::unauthenticated("sign in to manage webhooks")),
//!         }
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let dispatcher = WebhookDispatcher::builder().build()?;
//! let _worker = dispatcher.start_worker(Default::default());
//! let app = axum::Router::new().nest("/settings/webhooks", management::router(dispatcher, Session));
//! # let _ = app;
//! # Ok(()) }
//! ```

mod access;
mod csrf;
mod page;
mod problem;
mod routes;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use http::request::Parts;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use access::{Access, Authorizer, Denied};
pub use problem::{FieldProblem, Problem, PROBLEM_JSON};

use crate::WebhookDispatcher;

/// The default largest request body: 2 MiB (an exported issue can be large).
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// The default time an export waits for its deliveries' first attempts.
pub const DEFAULT_EXPORT_WAIT: Duration = Duration::from_secs(20);

/// Settings of the management router.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ManagementOptions {
    /// The largest request body accepted (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub max_body_bytes: usize,
    /// How long an export waits for the first attempts before it answers with those not
    /// finished as `pending` (default [`DEFAULT_EXPORT_WAIT`]).
    pub export_wait: Duration,
    /// Origins (`https://app.example.com`) besides the request's own host from which
    /// changes are accepted.
    pub allowed_origins: Vec<String>,
    /// An issue the page's export dialog starts with (the `issue` of an `issue-exported`
    /// payload); the host's own issue page would pass its issue instead.
    pub sample_issue: Option<crate::event::ExportedIssue>,
    /// The URL of a stylesheet of the host's, linked after the page's own (set the CSS
    /// variables there).
    pub stylesheet: Option<String>,
}

impl Default for ManagementOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            export_wait: DEFAULT_EXPORT_WAIT,
            allowed_origins: Vec::new(),
            sample_issue: None,
            stylesheet: None,
        }
    }
}

impl ManagementOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`max_body_bytes`](Self::max_body_bytes).
    #[must_use]
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Sets [`export_wait`](Self::export_wait).
    #[must_use]
    pub fn export_wait(mut self, wait: Duration) -> Self {
        self.export_wait = wait;
        self
    }

    /// Adds an allowed origin, such as `https://app.example.com`.
    #[must_use]
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into());
        self
    }

    /// Sets [`sample_issue`](Self::sample_issue).
    #[must_use]
    pub fn sample_issue(mut self, issue: crate::event::ExportedIssue) -> Self {
        self.sample_issue = Some(issue);
        self
    }

    /// Sets [`stylesheet`](Self::stylesheet).
    #[must_use]
    pub fn stylesheet(mut self, url: impl Into<String>) -> Self {
        self.stylesheet = Some(url.into());
        self
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

struct Shared {
    dispatcher: WebhookDispatcher,
    authorizer: Arc<dyn Authorizer>,
    options: ManagementOptions,
}

impl AppState {
    pub(crate) fn dispatcher(&self) -> &WebhookDispatcher {
        &self.0.dispatcher
    }

    pub(crate) fn options(&self) -> &ManagementOptions {
        &self.0.options
    }
}

/// The caller's [`Access`], from the host's [`Authorizer`]; a refusal answers 401 or 403.
pub(crate) struct Caller(pub(crate) Access);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        state
            .0
            .authorizer
            .authorize(parts)
            .await
            .map(Caller)
            .map_err(Problem::from)
    }
}

/// The API's OpenAPI description: title, version, and the shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "dataops-webhooks management API",
        description = "Webhooks, the organization secret, test sends, previews, deliveries and \
                       the export to labeling, scoped to the caller's organization. Errors are \
                       RFC 9457 problem documents."
    ),
    components(schemas(Problem, FieldProblem))
)]
struct ApiDoc;

/// The management router with the default [`ManagementOptions`]: nest it under a path of the
/// host's (see the [module docs](self)).
pub fn router(dispatcher: WebhookDispatcher, authorizer: impl Authorizer) -> axum::Router {
    router_with(dispatcher, authorizer, ManagementOptions::default())
}

/// The management router with these options.
pub fn router_with(
    dispatcher: WebhookDispatcher,
    authorizer: impl Authorizer,
    options: ManagementOptions,
) -> axum::Router {
    let limit = options.max_body_bytes;
    let state = AppState(Arc::new(Shared {
        dispatcher,
        authorizer: Arc::new(authorizer),
        options,
    }));
    let (api, doc) = api_router().with_state(state.clone()).split_for_parts();
    let doc = Arc::new(doc);
    axum::Router::new()
        .merge(api)
        .merge(page::router(state.clone(), doc))
        .layer(axum::middleware::from_fn_with_state(state, csrf::guard))
        .layer(DefaultBodyLimit::max(limit))
}

/// The API's routes with their OpenAPI operations.
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(routes::all())
}

/// The OpenAPI 3.1 document of the API, as `GET /openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}
