//! The JSON API for the runbook: create migrations from specs, act on
//! buckets, control jobs, tune settings, plan batches — the same operations
//! and role checks as the pages (documented in `docs/api.md`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tern_app::server::CurrentUser;
use tern_app::state::AppState;
use tern_control::Actor;
use tern_control::buckets::Phase;
use tern_control::dashboard::BucketQuery;
use tern_control::migrations::MigrationSettings;
use tern_control::relay::RelayRampSpec;
use tern_control::runbook::BucketAction;

use crate::web::error::ApiError;

/// The runbook routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/migrations", post(create))
        .route("/api/v1/migrations/preview", post(preview))
        .route("/api/v1/migrations/{id}/board", get(board))
        .route("/api/v1/migrations/{id}/buckets/{idx}", get(bucket))
        .route("/api/v1/migrations/{id}/actions", post(bucket_action))
        .route("/api/v1/migrations/{id}/settings", put(settings))
        .route("/api/v1/migrations/{id}/archive", post(archive))
        .route("/api/v1/migrations/{id}/relay", get(relay).put(set_relay))
        .route("/api/v1/migrations/{id}/batches", post(batches))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/jobs/{id}/{action}", post(job_action))
        .route("/api/v1/jobs/{id}/rate", put(job_rate))
        .route("/api/v1/buckets/{id}/phase", post(bucket_phase))
        .route("/api/v1/buckets/{id}/repair", post(repair))
}

fn actor(user: &CurrentUser) -> Actor {
    Actor::from(&user.0)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SpecBody {
    name: String,
    #[serde(default)]
    description: String,
    spec: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations/preview",
    tag = "migrations",
    request_body = SpecBody,
    responses((status = 200, description = "the buckets the spec would plan", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody), (status = 503, description = "a database cannot be reached", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn preview(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Json(body): Json<SpecBody>,
) -> Result<Json<Value>, ApiError> {
    actor(&user).require_operate("planning a migration")?;
    let plans = state
        .store
        .preview_spec(&body.spec, body.name.trim(), &state.runners.registry)
        .await?;
    Ok(Json(json!(plans)))
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations",
    tag = "migrations",
    request_body = SpecBody,
    responses((status = 201, description = "the migration created, its buckets planned", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody), (status = 503, description = "a database cannot be reached", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Json(body): Json<SpecBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let m = state
        .store
        .create_migration_from_spec(
            &actor(&user),
            body.name.trim(),
            &body.description,
            &body.spec,
            &state.runners.registry,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!(tern_control::redact::migration(m))),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct BoardQuery {
    phase: Option<String>,
    offset: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/migrations/{id}/board",
    tag = "migrations",
    params(("id" = i64, Path, description = "its id"), BoardQuery),
    responses((status = 200, description = "the migration's board", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn board(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<BoardQuery>,
) -> Result<Json<Value>, ApiError> {
    let query = BucketQuery {
        phase: q
            .phase
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(Phase::parse)
            .transpose()?,
        offset: q.offset.unwrap_or(0),
        limit: q.limit.unwrap_or(1000),
    };
    Ok(Json(json!(state.store.migration_board(id, &query).await?)))
}

#[utoipa::path(
    get,
    path = "/api/v1/migrations/{id}/buckets/{idx}",
    tag = "buckets",
    params(("id" = i64, Path, description = "its id"), ("idx" = i64, Path, description = "the bucket's index in the migration")),
    responses((status = 200, description = "the bucket, its jobs, runs and history", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn bucket(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path((id, idx)): Path<(i64, i64)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        state.store.bucket_board(&actor(&user), id, idx).await?
    )))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ActionBody {
    action: String,
    bucket_ids: Vec<i64>,
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/actions",
    tag = "buckets",
    params(("id" = i64, Path, description = "its id")),
    request_body = ActionBody,
    responses((status = 200, description = "what was started", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn bucket_action(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Json(body): Json<ActionBody>,
) -> Result<Json<Value>, ApiError> {
    let action = BucketAction::parse(&body.action)?;
    let message = state
        .store
        .bucket_action(&actor(&user), id, action, &body.bucket_ids, &body.reason)
        .await?;
    Ok(Json(json!({ "message": message })))
}

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
struct RepairBody {
    /// The engine run whose mismatches to re-copy; default: the bucket's
    /// latest verification run.
    #[serde(default)]
    engine_run: Option<String>,
}

/// Queues a repair of a bucket's mismatches (then they are re-verified).
#[utoipa::path(
    post,
    path = "/api/v1/buckets/{id}/repair",
    tag = "buckets",
    params(("id" = i64, Path, description = "its id")),
    request_body = RepairBody,
    responses((status = 200, description = "the repair job queued", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn repair(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    body: Option<Json<RepairBody>>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let job = state
        .store
        .repair_bucket(&actor(&user), id, body.engine_run.as_deref())
        .await?;
    Ok(Json(
        json!({ "job": job, "message": format!("repair job {job} queued") }),
    ))
}

/// The migration's relay: its job (if one is active) and its ramp.
#[utoipa::path(
    get,
    path = "/api/v1/migrations/{id}/relay",
    tag = "relay",
    params(("id" = i64, Path, description = "its id")),
    responses((status = 200, description = "the relay's ramp and job", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn relay(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let job = state.store.active_relay(id).await?;
    let ramp = state.store.relay_ramp(id).await?;
    Ok(Json(
        json!({ "ramp": ramp, "label": ramp.to_string(), "job": job }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RelayBody {
    /// `25%`, `off`, or `buckets` (with `bucket_ids`).
    ramp: String,
    #[serde(default)]
    bucket_ids: Vec<i64>,
    #[serde(default)]
    reason: String,
}

/// Starts the relay, or changes the running relay's ramp.
#[utoipa::path(
    put,
    path = "/api/v1/migrations/{id}/relay",
    tag = "relay",
    params(("id" = i64, Path, description = "its id")),
    request_body = RelayBody,
    responses((status = 200, description = "the relay job", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn set_relay(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Json(body): Json<RelayBody>,
) -> Result<Json<Value>, ApiError> {
    let ramp = RelayRampSpec::parse(&body.ramp, &body.bucket_ids)?;
    let job = state
        .store
        .set_relay_ramp(&actor(&user), id, ramp.clone(), &body.reason)
        .await?;
    Ok(Json(
        json!({ "ramp": ramp, "label": ramp.to_string(), "job": job }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = MigrationSettingsBody)]
struct SettingsBody {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    settings: MigrationSettings,
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/migrations/{id}/settings",
    tag = "migrations",
    params(("id" = i64, Path, description = "its id")),
    request_body = SettingsBody,
    responses((status = 200, description = "the migration's new settings", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn settings(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Json(body): Json<SettingsBody>,
) -> Result<Json<Value>, ApiError> {
    let m = state
        .store
        .update_migration_settings(&actor(&user), id, &body.settings, &body.reason)
        .await?;
    Ok(Json(json!(tern_control::redact::migration(m))))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = JobReasonBody)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/archive",
    tag = "migrations",
    params(("id" = i64, Path, description = "its id")),
    request_body = ReasonBody,
    responses((status = 200, description = "archived", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn archive(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    body: Option<Json<ReasonBody>>,
) -> Result<Json<Value>, ApiError> {
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let m = state
        .store
        .archive_migration(&actor(&user), id, &reason)
        .await?;
    Ok(Json(json!(tern_control::redact::migration(m))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct BatchBody {
    count: usize,
    #[serde(default)]
    bucket_ids: Vec<i64>,
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/batches",
    tag = "migrations",
    params(("id" = i64, Path, description = "its id")),
    request_body = BatchBody,
    responses((status = 201, description = "the batches planned", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn batches(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Json(body): Json<BatchBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let batches = state
        .store
        .plan_batches(&actor(&user), id, &body.bucket_ids, body.count)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(batches))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct JobsQuery {
    migration_id: Option<i64>,
    bucket_id: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    params(JobsQuery),
    responses((status = 200, description = "jobs, newest first", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn jobs(
    State(state): State<AppState>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        state
            .store
            .list_jobs(q.migration_id, q.bucket_id, q.limit.unwrap_or(100))
            .await?
    )))
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = i64, Path, description = "its id")),
    responses((status = 200, description = "the job", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn job(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.store.job(id).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/{action}",
    tag = "jobs",
    params(("id" = i64, Path, description = "its id"), ("action" = String, Path, description = "pause, resume or cancel")),
    request_body = ReasonBody,
    responses((status = 200, description = "the job with the request written on it", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn job_action(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path((id, action)): Path<(i64, String)>,
    body: Option<Json<ReasonBody>>,
) -> Result<Json<Value>, ApiError> {
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let a = actor(&user);
    let job = match action.as_str() {
        "pause" => state.store.pause_job(&a, id, &reason).await?,
        "resume" => state.store.resume_job(&a, id, &reason).await?,
        "cancel" => state.store.cancel_job(&a, id, &reason).await?,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no job action `{other}`: use pause, resume or cancel"),
            ));
        }
    };
    Ok(Json(json!(job)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RateBody {
    /// Rows per second; null for unthrottled.
    rate: Option<f64>,
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/jobs/{id}/rate",
    tag = "jobs",
    params(("id" = i64, Path, description = "its id")),
    request_body = RateBody,
    responses((status = 200, description = "the job with its new rate", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn job_rate(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Json(body): Json<RateBody>,
) -> Result<Json<Value>, ApiError> {
    let job = state
        .store
        .set_job_rate(&actor(&user), id, body.rate, &body.reason)
        .await?;
    Ok(Json(json!(job)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PhaseBody {
    to: String,
    #[serde(default)]
    reason: String,
    /// An admin's move without the job or verification run that earns the
    /// phase (audited with what was missing); needs a reason.
    #[serde(default, rename = "override")]
    override_evidence: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/buckets/{id}/phase",
    tag = "buckets",
    params(("id" = i64, Path, description = "its id")),
    request_body = PhaseBody,
    responses((status = 200, description = "the bucket in its new phase", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn bucket_phase(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Json(body): Json<PhaseBody>,
) -> Result<Json<Value>, ApiError> {
    let to = Phase::parse(&body.to)?;
    let store = &state.store;
    let b = if body.override_evidence {
        store
            .override_bucket_move(&actor(&user), id, to, &body.reason)
            .await?
    } else {
        store
            .move_bucket(&actor(&user), id, to, &body.reason)
            .await?
    };
    Ok(Json(json!(b)))
}
