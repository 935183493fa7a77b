//! Deliveries: a webhook's delivery log, a delivery and its attempts, redelivery, and
//! recovery of the dead deliveries of a time range.

use std::str::FromStr;

use axum::extract::{Path, State};
use axum::Json;
use http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{delivery, page_size, webhook, ReadProblems, WriteProblems};
use crate::management::problem::{kind, ApiJson, ApiQuery, Problem};
use crate::management::wire::{
    AttemptList, AttemptView, DeliveryListQuery, DeliveryPageView, DeliveryView, RecoverBody,
    RecoverResult,
};
use crate::management::{AppState, Caller};
use crate::queue::{DeliveryQuery, DeliveryStatus};
use crate::webhook::DeliveryId;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
        .routes(routes!(attempts))
        .routes(routes!(redeliver))
        .routes(routes!(recover))
}

/// A webhook's deliveries, newest first, filtered by status and emit time.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path, description = "The webhook's id"), DeliveryListQuery),
    responses((status = 200, description = "One page of deliveries", body = DeliveryPageView), ReadProblems))]
async fn list(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeliveryListQuery>,
) -> Result<Json<DeliveryPageView>, Problem> {
    let found = webhook(&state, &access, &id).await?;
    let mut listing = DeliveryQuery::new(found.id).limit(page_size(query.limit));
    if let Some(status) = &query.status {
        listing = listing.status(status_of(status)?);
    }
    if let Some(since) = query.since {
        listing = listing.since(since);
    }
    if let Some(until) = query.until {
        listing = listing.until(until);
    }
    if let Some(cursor) = &query.cursor {
        let before = DeliveryId::from_str(cursor).map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                kind::INVALID_INPUT,
                "the cursor is not one this API gave; pass the `next` of the previous page",
            )
            .at("?cursor")
        })?;
        listing = listing.before(before);
    }
    let page = state.dispatcher().deliveries().list(&listing).await?;
    Ok(Json(DeliveryPageView {
        items: page.items.iter().map(DeliveryView::from).collect(),
        next: page.next.map(|c| c.to_string()),
    }))
}

fn status_of(name: &str) -> Result<DeliveryStatus, Problem> {
    [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Dead,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
    .ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            kind::INVALID_INPUT,
            format!("unknown delivery status `{name}`; use pending, succeeded or dead"),
        )
        .at("?status")
    })
}

/// One delivery.
#[utoipa::path(get, path = "/api/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id")),
    responses((status = 200, description = "The delivery", body = DeliveryView), ReadProblems))]
async fn get(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, Problem> {
    let record = delivery(&state, &access, &id).await?;
    Ok(Json(DeliveryView::from(&record)))
}

/// A delivery's attempts, oldest first, with the endpoint's answers.
#[utoipa::path(get, path = "/api/deliveries/{id}/attempts", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id")),
    responses((status = 200, description = "The attempts", body = AttemptList), ReadProblems))]
async fn attempts(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
) -> Result<Json<AttemptList>, Problem> {
    let record = delivery(&state, &access, &id).await?;
    let log = state.dispatcher().deliveries().attempts(&record.id).await?;
    Ok(Json(AttemptList {
        items: log.iter().map(AttemptView::from).collect(),
    }))
}

/// Sends a delivery again now (same id, same bytes).
#[utoipa::path(post, path = "/api/deliveries/{id}/redeliver", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id")),
    responses((status = 202, description = "Queued to be sent again", body = DeliveryView), WriteProblems))]
async fn redeliver(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryView>), Problem> {
    let record = delivery(&state, &access, &id).await?;
    let deliveries = state.dispatcher().deliveries();
    if !deliveries.redeliver(&record.id).await? {
        return Err(Problem::not_found("delivery"));
    }
    let now = deliveries.get(&record.id).await?.unwrap_or(record);
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(&now))))
}

/// Sends again every dead delivery of a webhook emitted in a time range (after fixing the
/// endpoint, or turning the webhook back on).
#[utoipa::path(post, path = "/api/webhooks/{id}/recover", tag = "deliveries",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body = RecoverBody,
    responses((status = 200, description = "How many were queued again", body = RecoverResult), WriteProblems))]
async fn recover(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RecoverBody>,
) -> Result<Json<RecoverResult>, Problem> {
    let found = webhook(&state, &access, &id).await?;
    let redelivered = state
        .dispatcher()
        .deliveries()
        .recover(&found.id, body.since, body.until)
        .await?;
    Ok(Json(RecoverResult { redelivered }))
}
