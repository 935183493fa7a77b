//! `/api/webhooks`: list, create, get, update, activate, deactivate, delete, and rotate a
//! webhook's own secret.

use axum::extract::{Path, State};
use axum::Json;
use http::StatusCode;
use std::collections::BTreeMap;
use std::str::FromStr;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{page_size, webhook, ReadProblems, WriteProblems};
use crate::management::access::Access;
use crate::management::problem::{ApiJson, ApiQuery, OptionalJson, Problem};
use crate::management::wire::{
    NewWebhookBody, RateLimitBody, RotateBody, SecretView, WebhookListQuery, WebhookPage,
    WebhookUpdateBody, WebhookView, ALL_EVENTS,
};
use crate::management::{AppState, Caller};
use crate::signing::HeaderProfile;
use crate::store::{ScopeFilter, WebhookQuery};
use crate::webhook::{
    validate, CustomHeaders, EventFilter, NewWebhook, RateLimit, Scope, WebhookId, WebhookUpdate,
};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(activate))
        .routes(routes!(deactivate))
        .routes(routes!(rotate_secret))
}

/// Lists the webhooks the caller may manage: all of them, one project's, or the
/// organization-wide ones, oldest first.
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks", params(WebhookListQuery),
    responses((status = 200, description = "One page of webhooks", body = WebhookPage), ReadProblems))]
async fn list(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiQuery(query): ApiQuery<WebhookListQuery>,
) -> Result<Json<WebhookPage>, Problem> {
    let limit = page_size(query.limit);
    let scope = match (query.project, query.scope.as_deref()) {
        (Some(project), None) => ScopeFilter::Project(project),
        (None, Some("organization")) => ScopeFilter::OrganizationWide,
        (None, None) => ScopeFilter::All,
        _ => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                crate::management::problem::kind::INVALID_INPUT,
                "give `project=<name>`, or `scope=organization`, or neither (all webhooks)",
            )
            .at("?scope"))
        }
    };
    let mut store_query = WebhookQuery::new(access.org().clone())
        .scope(scope)
        .limit(crate::store::MAX_PAGE_SIZE);
    if let Some(cursor) = &query.cursor {
        let after = WebhookId::from_str(cursor).map_err(|_| bad_cursor())?;
        store_query = store_query.after(after);
    }
    let webhooks = state.dispatcher().webhooks();
    let mut items = Vec::new();
    // A caller limited to some projects sees only theirs: read on until the page is full.
    loop {
        let page = webhooks.list(&store_query).await?;
        for w in page.items.iter().filter(|w| access.allows(w)) {
            if items.len() == limit {
                let next = items.last().map(|v: &WebhookView| v.id.clone());
                return Ok(Json(WebhookPage { items, next }));
            }
            items.push(WebhookView::from(w));
        }
        match page.next {
            Some(cursor) => store_query = store_query.after(cursor),
            None => return Ok(Json(WebhookPage { items, next: None })),
        }
    }
}

fn bad_cursor() -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        crate::management::problem::kind::INVALID_INPUT,
        "the cursor is not one this API gave; pass the `next` of the previous page",
    )
    .at("?cursor")
}

/// Creates a webhook.
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", request_body = NewWebhookBody,
    responses((status = 201, description = "The new webhook", body = WebhookView), WriteProblems))]
async fn create(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiJson(body): ApiJson<NewWebhookBody>,
) -> Result<(StatusCode, Json<WebhookView>), Problem> {
    let scope = match body.project {
        Some(project) => {
            may_manage(&access, &project)?;
            Scope::Project(project)
        }
        None if access.is_org_wide() => Scope::Organization,
        None => return Err(Problem::needs_org_access("an organization-wide webhook")),
    };
    let mut new = NewWebhook::new(scope, body.url)
        .org(access.org().clone())
        .events(events(&body.events)?)
        .headers(CustomHeaders::from_pairs(body.headers)?);
    if body.active == Some(false) {
        new = new.inactive();
    }
    if let Some(text) = body.description {
        new = new.description(text);
    }
    if let Some(profile) = body.profile {
        new = new.profile(profile_of(&profile)?);
    }
    if let Some(limit) = body.rate_limit {
        new = new.rate_limit(rate_limit(limit));
    }
    let created = state.dispatcher().webhooks().create(new).await?;
    Ok((StatusCode::CREATED, Json(WebhookView::from(&created))))
}

/// Gets one webhook.
#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 200, description = "The webhook", body = WebhookView), ReadProblems))]
async fn get(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, Problem> {
    let found = webhook(&state, &access, &id).await?;
    Ok(Json(WebhookView::from(&found)))
}

/// Changes a webhook: only the fields given.
#[utoipa::path(patch, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body = WebhookUpdateBody,
    responses((status = 200, description = "The changed webhook", body = WebhookView), WriteProblems))]
async fn update(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<WebhookUpdateBody>,
) -> Result<Json<WebhookView>, Problem> {
    let current = webhook(&state, &access, &id).await?;
    let mut update = WebhookUpdate::new();
    if let Some(url) = body.url {
        update = update.url(url);
    }
    if let Some(names) = &body.events {
        update = update.events(events(names)?);
    }
    if let Some(active) = body.active {
        update = update.active(active);
    }
    if let Some(text) = body.description {
        update = update.description(text);
    }
    if let Some(headers) = body.headers {
        update = update.headers(merged_headers(&current.headers, headers)?);
    }
    if let Some(profile) = body.profile {
        update = update.profile(profile_of(&profile)?);
    }
    if let Some(limit) = body.rate_limit {
        update = update.rate_limit(limit.map(rate_limit));
    }
    let changed = state
        .dispatcher()
        .webhooks()
        .update(&current.id, update)
        .await?;
    Ok(Json(WebhookView::from(&changed)))
}

/// Deletes a webhook.
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 204, description = "Deleted"), WriteProblems))]
async fn delete(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let found = webhook(&state, &access, &id).await?;
    state.dispatcher().webhooks().delete(&found.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Turns a webhook on (also one the system disabled).
#[utoipa::path(post, path = "/api/webhooks/{id}/activate", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 200, description = "The webhook, active", body = WebhookView), WriteProblems))]
async fn activate(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, Problem> {
    let found = webhook(&state, &access, &id).await?;
    let changed = state.dispatcher().webhooks().reactivate(&found.id).await?;
    Ok(Json(WebhookView::from(&changed)))
}

/// Turns a webhook off.
#[utoipa::path(post, path = "/api/webhooks/{id}/deactivate", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 200, description = "The webhook, inactive", body = WebhookView), WriteProblems))]
async fn deactivate(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, Problem> {
    let found = webhook(&state, &access, &id).await?;
    let changed = state.dispatcher().webhooks().deactivate(&found.id).await?;
    Ok(Json(WebhookView::from(&changed)))
}

/// Gives a webhook a new secret of its own and shows it, this once.
#[utoipa::path(post, path = "/api/webhooks/{id}/secret/rotate", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body(content = Option<RotateBody>, description = "The grace period; the body may be left out"),
    responses((status = 200, description = "The new secret, shown once", body = SecretView), WriteProblems))]
async fn rotate_secret(
    State(state): State<AppState>,
    Caller(access): Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RotateBody>,
) -> Result<Json<SecretView>, Problem> {
    let found = webhook(&state, &access, &id).await?;
    let grace = body.grace();
    let secret = state
        .dispatcher()
        .webhooks()
        .rotate_secret(&found.id, None, grace)
        .await?;
    Ok(Json(SecretView::once(&secret)))
}

/// 403 unless the caller may manage `project`.
pub(crate) fn may_manage(access: &Access, project: &str) -> Result<(), Problem> {
    if access.allows_project(project) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            crate::management::problem::kind::FORBIDDEN,
            format!("you may not manage the webhooks of project `{project}`"),
        ))
    }
}

/// An event filter from names, `["*"]` for all; each bad name pointed at.
fn events(names: &[String]) -> Result<EventFilter, Problem> {
    if names.len() == 1 && names[0] == ALL_EVENTS {
        return Ok(EventFilter::All);
    }
    let mut types = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let t = validate::subscribable(name)
            .map_err(|e| Problem::invalid(&format!("/events/{i}"), e.to_string()))?;
        types.push(t);
    }
    let filter = EventFilter::only(types);
    validate::event_filter(&filter)?;
    Ok(filter)
}

/// A profile by its configuration name.
fn profile_of(name: &str) -> Result<HeaderProfile, Problem> {
    HeaderProfile::ALL
        .into_iter()
        .find(|p| p.as_str() == name)
        .ok_or_else(|| {
            Problem::invalid(
                "/profile",
                format!(
                    "unknown header profile `{name}`; use one of: {}",
                    HeaderProfile::ALL.map(HeaderProfile::as_str).join(", ")
                ),
            )
        })
}

fn rate_limit(body: RateLimitBody) -> RateLimit {
    RateLimit::per_second(body.per_second).burst(body.burst.unwrap_or(1))
}

/// The new header set: a `null` value keeps the current value of that header.
fn merged_headers(
    current: &CustomHeaders,
    given: BTreeMap<String, Option<String>>,
) -> Result<CustomHeaders, Problem> {
    let mut pairs = Vec::with_capacity(given.len());
    for (name, value) in given {
        let value = match value {
            Some(v) => v,
            None => current.get(&name).map(str::to_owned).ok_or_else(|| {
                Problem::invalid(
                    &format!("/headers/{}", name.replace('~', "~0").replace('/', "~1")),
                    format!("the webhook has no header `{name}` whose value could be kept; give a value"),
                )
            })?,
        };
        pairs.push((name, value));
    }
    Ok(CustomHeaders::from_pairs(pairs)?)
}
