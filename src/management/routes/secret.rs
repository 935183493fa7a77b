//! `/api/secret`: the organization's signing secret — whether it exists, generate it, rotate
//! it. A secret is in the answer of the call that made it, and in no other.

use axum::extract::State;
use axum::Json;
use http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ReadProblems, WriteProblems};
use crate::management::access::Access;
use crate::management::problem::{OptionalJson, Problem};
use crate::management::wire::{RotateBody, SecretStatus, SecretView};
use crate::management::{AppState, Caller};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status, generate))
        .routes(routes!(rotate))
}

fn whole_org(access: &Access) -> Result<(), Problem> {
    if access.is_org_wide() {
        Ok(())
    } else {
        Err(Problem::needs_org_access("the organization's secret"))
    }
}

/// Whether the organization has a signing secret (never the secret itself).
#[utoipa::path(get, path = "/api/secret", tag = "secret",
    responses((status = 200, description = "Whether it exists", body = SecretStatus), ReadProblems))]
async fn status(
    State(state): State<AppState>,
    Caller(access): Caller,
) -> Result<Json<SecretStatus>, Problem> {
    whole_org(&access)?;
    let exists = state
        .dispatcher()
        .webhooks()
        .has_org_secret(access.org())
        .await?;
    Ok(Json(SecretStatus { exists }))
}

/// Generates the organization's first secret and shows it, this once.
#[utoipa::path(post, path = "/api/secret", tag = "secret",
    responses((status = 201, description = "The secret, shown once", body = SecretView), WriteProblems))]
async fn generate(
    State(state): State<AppState>,
    Caller(access): Caller,
) -> Result<(StatusCode, Json<SecretView>), Problem> {
    whole_org(&access)?;
    let secret = state
        .dispatcher()
        .webhooks()
        .create_org_secret(access.org())
        .await?;
    Ok((StatusCode::CREATED, Json(SecretView::once(&secret))))
}

/// Replaces the organization's secret and shows the new one, this once. The old one stops
/// at once, or signs Standard Webhooks requests for `grace_seconds` more.
#[utoipa::path(post, path = "/api/secret/rotate", tag = "secret",
    request_body(content = Option<RotateBody>, description = "The grace period; the body may be left out"),
    responses((status = 200, description = "The new secret, shown once", body = SecretView), WriteProblems))]
async fn rotate(
    State(state): State<AppState>,
    Caller(access): Caller,
    OptionalJson(body): OptionalJson<RotateBody>,
) -> Result<Json<SecretView>, Problem> {
    whole_org(&access)?;
    let grace = body.grace();
    let secret = state
        .dispatcher()
        .webhooks()
        .rotate_org_secret(access.org(), grace)
        .await?;
    Ok(Json(SecretView::once(&secret)))
}
