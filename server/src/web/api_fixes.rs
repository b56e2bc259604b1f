//! The JSON API for data fixes (`/api/v1/fixes`): create from a job spec,
//! dry-run, run, change settings while running, read runs and failures —
//! the same operations and role checks as the pages.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tern_app::server::CurrentUser;
use tern_app::state::AppState;
use tern_control::Actor;
use tern_control::fixes::FixSettings;
use tern_datafix::PluginRegistry;

use crate::web::error::ApiError;

/// The data-fix routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/fixes", get(list).post(create))
        .route("/api/v1/fixes/template", get(template))
        .route("/api/v1/fixes/{id}", get(show))
        .route("/api/v1/fixes/{id}/dry-run", post(dry_run))
        .route("/api/v1/fixes/{id}/runs", post(start_run))
        .route("/api/v1/fixes/{id}/settings", put(settings))
        .route("/api/v1/fixes/{id}/runs/{run}/failures", get(failures))
}

fn actor(user: &CurrentUser) -> Actor {
    Actor::from(&user.0)
}

#[utoipa::path(
    get,
    path = "/api/v1/fixes",
    tag = "fixes",
    responses((status = 200, description = "every data fix", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let fixes: Vec<_> = state
        .store
        .list_fixes()
        .await?
        .into_iter()
        .map(tern_control::redact::fix)
        .collect();
    Ok(Json(json!(fixes)))
}

#[utoipa::path(
    get,
    path = "/api/v1/fixes/template",
    tag = "fixes",
    responses((status = 200, description = "a fix spec to start from", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn template() -> Json<Value> {
    Json(json!({ "spec": tern_datafix::EXAMPLE }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateBody {
    spec: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/fixes",
    tag = "fixes",
    request_body = CreateBody,
    responses((status = 201, description = "the fix created", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let fix = state.store.create_fix(&actor(&user), &body.spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!(tern_control::redact::fix(fix))),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/fixes/{id}",
    tag = "fixes",
    params(("id" = i64, Path, description = "its id")),
    responses((status = 200, description = "the fix and its runs", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn show(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let fix = tern_control::redact::fix(state.store.fix(id).await?);
    let runs = state.store.fix_runs(id).await?;
    let mut jobs = Vec::new();
    for r in &runs {
        if let Some(j) = r.job_id {
            jobs.push(state.store.job(j).await?);
        }
    }
    Ok(Json(json!({ "fix": fix, "runs": runs, "jobs": jobs })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct DryRunBody {
    #[serde(default = "ten")]
    limit: usize,
}

fn ten() -> usize {
    10
}

#[utoipa::path(
    post,
    path = "/api/v1/fixes/{id}/dry-run",
    tag = "fixes",
    params(("id" = i64, Path, description = "its id")),
    request_body = DryRunBody,
    responses((status = 200, description = "the changes the fix would make", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody), (status = 503, description = "a database cannot be reached", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn dry_run(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Json(body): Json<DryRunBody>,
) -> Result<Json<Value>, ApiError> {
    let records = state
        .store
        .dry_run_fix(&actor(&user), id, body.limit, &PluginRegistry::default())
        .await?;
    Ok(Json(json!(records)))
}

#[utoipa::path(
    post,
    path = "/api/v1/fixes/{id}/runs",
    tag = "fixes",
    params(("id" = i64, Path, description = "its id")),
    responses((status = 201, description = "the run started", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn start_run(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let run = state.store.start_fix_run(&actor(&user), id).await?;
    Ok((StatusCode::CREATED, Json(json!(run))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = FixSettingsBody)]
struct SettingsBody {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    settings: FixSettings,
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/fixes/{id}/settings",
    tag = "fixes",
    params(("id" = i64, Path, description = "its id")),
    request_body = SettingsBody,
    responses((status = 200, description = "the fix with its new settings", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn settings(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Json(body): Json<SettingsBody>,
) -> Result<Json<Value>, ApiError> {
    let fix = state
        .store
        .set_fix_settings(&actor(&user), id, &body.settings, &body.reason)
        .await?;
    Ok(Json(json!(tern_control::redact::fix(fix))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Limit {
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/fixes/{id}/runs/{run}/failures",
    tag = "fixes",
    params(("id" = i64, Path, description = "its id"), ("run" = i64, Path, description = "the run's id"), Limit),
    responses((status = 200, description = "a run's failed records", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn failures(
    State(state): State<AppState>,
    Path((id, run)): Path<(i64, i64)>,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    let r = state.store.fix_run(run).await?;
    if r.fix_id != id {
        return Err(ApiError::from(tern_control::ControlError::NotFound(
            format!("fix {id} has no run {run}"),
        )));
    }
    Ok(Json(json!(
        state
            .store
            .fix_failures(run, q.limit.unwrap_or(100).clamp(1, 1000))
            .await?
    )))
}
