//! The API's handlers, one file per resource, and the look-ups that scope every id to the
//! caller's [`Access`].

mod deliveries;
mod secret;
mod send;
mod webhooks;

use std::str::FromStr;

use utoipa_axum::router::OpenApiRouter;

use super::access::Access;
use super::problem::Problem;
use super::AppState;
use crate::queue::DeliveryRecord;
use crate::store::ManageError;
use crate::webhook::{DeliveryId, Webhook, WebhookId};

/// Every API route.
pub(super) fn all() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(webhooks::routes())
        .merge(secret::routes())
        .merge(send::routes())
        .merge(deliveries::routes())
}

/// The problem documents a reading route may answer with, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, unreachable_pub)]
pub(crate) enum ReadProblems {
    /// Invalid query parameters.
    #[response(
        status = 400,
        description = "Invalid query parameters",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    /// The authorizer refused: not signed in.
    #[response(
        status = 401,
        description = "Not signed in",
        content_type = "application/problem+json"
    )]
    Unauthenticated(Problem),
    /// The authorizer refused, or the caller manages only some projects.
    #[response(
        status = 403,
        description = "Not allowed",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    /// No such resource in the caller's organization and projects.
    #[response(
        status = 404,
        description = "No such resource in the caller's scope",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    /// The backend failed.
    #[response(
        status = 500,
        description = "The backend failed",
        content_type = "application/problem+json"
    )]
    Internal(Problem),
    /// The backend is unavailable for a moment.
    #[response(
        status = 503,
        description = "Unavailable for a moment; try again",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// The problem documents a changing route may answer with, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, unreachable_pub)]
pub(crate) enum WriteProblems {
    /// The body is not JSON of the expected shape (`errors` points at the field).
    #[response(
        status = 400,
        description = "The body is not JSON of the expected shape",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    /// The authorizer refused: not signed in.
    #[response(
        status = 401,
        description = "Not signed in",
        content_type = "application/problem+json"
    )]
    Unauthenticated(Problem),
    /// The authorizer refused, the caller manages only some projects, or the request came
    /// from another site.
    #[response(
        status = 403,
        description = "Not allowed, or a cross-site request",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    /// No such resource in the caller's organization and projects.
    #[response(
        status = 404,
        description = "No such resource in the caller's scope",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    /// Changed by someone else meanwhile, or in a state that refuses the change.
    #[response(
        status = 409,
        description = "A conflict; the detail says which",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    /// The body is over the size limit.
    #[response(
        status = 413,
        description = "The body is too large",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    /// The body is not declared as JSON.
    #[response(
        status = 415,
        description = "The body is not declared as JSON",
        content_type = "application/problem+json"
    )]
    UnsupportedMedia(Problem),
    /// A field is invalid (`errors` points at it); nothing was changed.
    #[response(
        status = 422,
        description = "A field is invalid; nothing was changed",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
    /// The backend failed.
    #[response(
        status = 500,
        description = "The backend failed",
        content_type = "application/problem+json"
    )]
    Internal(Problem),
    /// The backend is unavailable for a moment.
    #[response(
        status = 503,
        description = "Unavailable for a moment; try again",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// The webhook `id` names, if the caller may see it; 404 otherwise, whether it is another
/// organization's, another project's or none at all.
pub(crate) async fn webhook(
    state: &AppState,
    access: &Access,
    id: &str,
) -> Result<Webhook, Problem> {
    let Ok(id) = WebhookId::from_str(id) else {
        return Err(Problem::not_found("webhook"));
    };
    match state.dispatcher().webhooks().get(&id).await {
        Ok(webhook) if access.allows(&webhook) => Ok(webhook),
        Ok(_) | Err(ManageError::NotFound(_)) => Err(Problem::not_found("webhook")),
        Err(e) => Err(e.into()),
    }
}

/// The delivery `id` names, if the caller may see its webhook (a deleted webhook's
/// deliveries: callers of the whole organization); 404 otherwise.
pub(crate) async fn delivery(
    state: &AppState,
    access: &Access,
    id: &str,
) -> Result<DeliveryRecord, Problem> {
    let not_found = || Problem::not_found("delivery");
    let id = DeliveryId::from_str(id).map_err(|_| not_found())?;
    let record = state
        .dispatcher()
        .deliveries()
        .get(&id)
        .await?
        .filter(|r| &r.org == access.org())
        .ok_or_else(not_found)?;
    let visible = match state.dispatcher().webhooks().get(&record.webhook_id).await {
        Ok(webhook) => access.allows(&webhook),
        Err(ManageError::NotFound(_)) => access.is_org_wide(),
        Err(e) => return Err(e.into()),
    };
    if visible {
        Ok(record)
    } else {
        Err(not_found())
    }
}

/// A page size from a query: 1 to 100, default 50.
pub(crate) fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(50).clamp(1, 100)
}
