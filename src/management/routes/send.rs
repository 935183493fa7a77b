//! Sending and showing: the caller's access, the send icon (test send), previews, which
//! webhooks handle an event type, and the export to labeling.

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::extract::{Path, State};
use axum::Json;
use http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::webhooks::may_manage;
use super::{webhook, ReadProblems, WriteProblems};
use crate::management::problem::{kind, ApiJson, ApiQuery, Problem};
use crate::management::wire::{
    AccessView, ExportBody, ExportResult, OutcomeView, PreviewBody, PreviewView, SubscribersQuery,
    WebhookList, WebhookView,
};
use crate::management::{AppState, Caller};
use crate::{Dispatcher, Emit, Event, EventType};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(access))
        .routes(routes!(send_test))
        .routes(routes!(preview))
        .routes(routes!(subscribers))
        .routes(routes!(export))
}

/// The caller's organization and projects, and the event types a webhook can subscribe to.
#[utoipa::path(get, path = "/api/access", tag = "access",
    responses((status = 200, description = "The caller's access", body = AccessView), ReadProblems))]
async fn access(Caller(access): Caller) -> Json<AccessView> {
    Json(AccessView {
        org: access.org().to_string(),
        projects: access
            .allowed_projects()
            .map(|p| p.iter().cloned().collect()),
        event_types: EventType::PLATFORM
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
    })
}

/// Sends the test payload to a webhook, active or not, and tells how it went: the send icon.
#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "send",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 200, description = "The attempt's outcome (delivered or not)", body = OutcomeView), WriteProblems))]
async fn send_test(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
) -> Result<Json<OutcomeView>, Problem> {
    let found = webhook(&state, &access, &id).await?;
    let outcome = state.dispatcher().send_test(&found.id).await?;
    Ok(Json(OutcomeView::from(&outcome)))
}

/// The request a webhook would receive for an event, without sending it.
#[utoipa::path(post, path = "/api/webhooks/{id}/preview", tag = "send",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body = PreviewBody,
    responses((status = 200, description = "The request", body = PreviewView), WriteProblems))]
async fn preview(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PreviewBody>,
) -> Result<Json<PreviewView>, Problem> {
    let found = webhook(&state, &access, &id).await?;
    let preview = state.dispatcher().preview(&found.id, &body.event).await?;
    let headers: BTreeMap<String, String> = preview
        .headers
        .iter()
        .map(|(name, value)| {
            // The shared-secret header carries the secret itself; custom headers may carry
            // credentials. Signatures are shown: they reveal nothing of the secret.
            let secret = name.as_str() == crate::signing::AQUARIUM_SECRET;
            let shown = if secret || found.headers.get(name.as_str()).is_some() {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect();
    Ok(Json(PreviewView {
        url: preview.url.to_string(),
        headers,
        body: String::from_utf8_lossy(&preview.body).into_owned(),
    }))
}

/// The active webhooks that receive an event type from a project (the project's own and the
/// organization-wide ones): empty means "prompt the user to create one".
#[utoipa::path(get, path = "/api/subscribers", tag = "send", params(SubscribersQuery),
    responses((status = 200, description = "The webhooks", body = WebhookList), ReadProblems))]
async fn subscribers(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiQuery(query): ApiQuery<SubscribersQuery>,
) -> Result<Json<WebhookList>, Problem> {
    may_manage(&access, &query.project)?;
    let event_type = EventType::from_str(&query.event).map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, kind::INVALID_INPUT, e.to_string()).at("?event")
    })?;
    let found = state
        .dispatcher()
        .subscribers(Some(access.org()), &query.project, event_type)
        .await?;
    Ok(Json(WebhookList {
        items: found.iter().map(WebhookView::from).collect(),
    }))
}

/// Exports an issue to labeling: emits `issue-exported` for the project and answers with
/// each delivery's first attempt, or 409 `no-webhook` when no webhook handles it (nothing is
/// emitted then).
#[utoipa::path(post, path = "/api/projects/{project}/export", tag = "send",
    params(("project" = String, Path, description = "The project")),
    request_body = ExportBody,
    responses((status = 200, description = "The first attempts (`pending` where none finished in time)", body = ExportResult), WriteProblems))]
async fn export(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<ExportBody>,
) -> Result<Json<ExportResult>, Problem> {
    may_manage(&access, &project)?;
    let event = Event::issue_exported(project.clone(), body.issue);
    let receipt = state
        .dispatcher()
        .emit_with(Emit::new(event).org(access.org().clone()))
        .await?;
    if receipt.is_unhandled() {
        // An emit without an idempotency key that no webhook receives records nothing.
        return Err(no_webhook(&project));
    }
    let mut outcomes = Vec::with_capacity(receipt.deliveries.len());
    let deadline = tokio::time::Instant::now() + state.options().export_wait;
    for ticket in &receipt.deliveries {
        match tokio::time::timeout_at(deadline, ticket.outcome()).await {
            Ok(outcome) => outcomes.push(OutcomeView::from(&outcome)),
            Err(_) => outcomes.push(OutcomeView::pending(ticket)),
        }
    }
    Ok(Json(ExportResult {
        event_id: receipt.event_id.to_string(),
        outcomes,
    }))
}

fn no_webhook(project: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        kind::NO_WEBHOOK,
        format!(
            "no active webhook handles issue-exported in project `{project}`; \
             create one (or turn one on) to export issues to labeling"
        ),
    )
}
