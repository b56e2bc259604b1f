//! The JSON API for data fixes (`/api/v1/fixes`): create from a job spec,
//! dry-run, run, change settings while running, read runs and failures —
//! the same operations and role checks as the pages.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tern_app::state::AppState;
use tern_control::fixes::FixSettings;
use tern_datafix::PluginRegistry;

use crate::web::caller::{Answer, Caller, Created, created};
use crate::web::error::{ApiError, Conflict, Invalid, NotFound, Unavailable};

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

#[utoipa::path(
    get,
    path = "/api/v1/fixes",
    tag = "fixes",
    responses((status = 200, description = "every data fix", body = serde_json::Value)),
)]
async fn list(State(state): State<AppState>) -> Answer {
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
    responses((status = 200, description = "a fix spec to start from", body = serde_json::Value)),
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
    responses((status = 201, description = "the fix created", body = serde_json::Value), Conflict, Invalid),
)]
async fn create(c: Caller, Json(body): Json<CreateBody>) -> Answer<Created> {
    let fix = c.state.store.create_fix(&c.actor, &body.spec).await?;
    created(tern_control::redact::fix(fix))
}

#[utoipa::path(
    get,
    path = "/api/v1/fixes/{id}",
    tag = "fixes",
    responses((status = 200, description = "the fix and its runs", body = serde_json::Value), NotFound),
)]
async fn show(State(state): State<AppState>, Path(id): Path<i64>) -> Answer {
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
    request_body = DryRunBody,
    responses((status = 200, description = "the changes the fix would make", body = serde_json::Value), NotFound, Invalid, Unavailable),
)]
async fn dry_run(c: Caller, Path(id): Path<i64>, Json(body): Json<DryRunBody>) -> Answer {
    let records = c
        .state
        .store
        .dry_run_fix(&c.actor, id, body.limit, &PluginRegistry::default())
        .await?;
    Ok(Json(json!(records)))
}

#[utoipa::path(
    post,
    path = "/api/v1/fixes/{id}/runs",
    tag = "fixes",
    responses((status = 201, description = "the run started", body = serde_json::Value), NotFound, Conflict),
)]
async fn start_run(c: Caller, Path(id): Path<i64>) -> Answer<Created> {
    let run = c.state.store.start_fix_run(&c.actor, id).await?;
    created(run)
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
    request_body = SettingsBody,
    responses((status = 200, description = "the fix with its new settings", body = serde_json::Value), NotFound, Invalid),
)]
async fn settings(c: Caller, Path(id): Path<i64>, Json(body): Json<SettingsBody>) -> Answer {
    let fix = c
        .state
        .store
        .set_fix_settings(&c.actor, id, &body.settings, &body.reason)
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
    params(("run" = i64, Path, description = "the run's id"), Limit),
    responses((status = 200, description = "a run's failed records", body = serde_json::Value), NotFound),
)]
async fn failures(
    State(state): State<AppState>,
    Path((id, run)): Path<(i64, i64)>,
    Query(q): Query<Limit>,
) -> Answer {
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
