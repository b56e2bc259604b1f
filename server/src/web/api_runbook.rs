//! The JSON API for the runbook: create migrations from specs, act on
//! buckets, control jobs, tune settings, plan batches — the same operations
//! and role checks as the pages (documented in `docs/api.md`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tern_app::state::AppState;
use tern_control::buckets::Phase;
use tern_control::dashboard::BucketQuery;
use tern_control::migrations::MigrationSettings;
use tern_control::relay::RelayRampSpec;
use tern_control::runbook::BucketAction;

use crate::web::caller::{Answer, Caller, Created, created};
use crate::web::error::{ApiError, Conflict, Invalid, NotFound, Unavailable};

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
    responses((status = 200, description = "the buckets the spec would plan", body = serde_json::Value), Invalid, Unavailable),
)]
async fn preview(c: Caller, Json(body): Json<SpecBody>) -> Answer {
    c.actor.require_operate("planning a migration")?;
    let plans = c
        .state
        .store
        .preview_spec(&body.spec, body.name.trim(), &c.state.runners.registry)
        .await?;
    Ok(Json(json!(plans)))
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations",
    tag = "migrations",
    request_body = SpecBody,
    responses((status = 201, description = "the migration created, its buckets planned", body = serde_json::Value), Conflict, Invalid, Unavailable),
)]
async fn create(c: Caller, Json(body): Json<SpecBody>) -> Answer<Created> {
    let m = c
        .state
        .store
        .create_migration_from_spec(
            &c.actor,
            body.name.trim(),
            &body.description,
            &body.spec,
            &c.state.runners.registry,
        )
        .await?;
    created(tern_control::redact::migration(m))
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
    params(BoardQuery),
    responses((status = 200, description = "the migration's board", body = serde_json::Value), NotFound),
)]
async fn board(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<BoardQuery>,
) -> Answer {
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
    params(("idx" = i64, Path, description = "the bucket's index in the migration")),
    responses((status = 200, description = "the bucket, its jobs, runs and history", body = serde_json::Value), NotFound),
)]
async fn bucket(c: Caller, Path((id, idx)): Path<(i64, i64)>) -> Answer {
    Ok(Json(json!(
        c.state.store.bucket_board(&c.actor, id, idx).await?
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
    request_body = ActionBody,
    responses((status = 200, description = "what was started", body = serde_json::Value), NotFound, Conflict, Invalid),
)]
async fn bucket_action(c: Caller, Path(id): Path<i64>, Json(body): Json<ActionBody>) -> Answer {
    let action = BucketAction::parse(&body.action)?;
    let message = c
        .state
        .store
        .bucket_action(&c.actor, id, action, &body.bucket_ids, &body.reason)
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
    request_body = RepairBody,
    responses((status = 200, description = "the repair job queued", body = serde_json::Value), NotFound, Conflict),
)]
async fn repair(c: Caller, Path(id): Path<i64>, body: Option<Json<RepairBody>>) -> Answer {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let job = c
        .state
        .store
        .repair_bucket(&c.actor, id, body.engine_run.as_deref())
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
    responses((status = 200, description = "the relay's ramp and job", body = serde_json::Value), NotFound),
)]
async fn relay(State(state): State<AppState>, Path(id): Path<i64>) -> Answer {
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
    request_body = RelayBody,
    responses((status = 200, description = "the relay job", body = serde_json::Value), NotFound, Conflict, Invalid),
)]
async fn set_relay(c: Caller, Path(id): Path<i64>, Json(body): Json<RelayBody>) -> Answer {
    let ramp = RelayRampSpec::parse(&body.ramp, &body.bucket_ids)?;
    let job = c
        .state
        .store
        .set_relay_ramp(&c.actor, id, ramp.clone(), &body.reason)
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
    request_body = SettingsBody,
    responses((status = 200, description = "the migration's new settings", body = serde_json::Value), NotFound, Invalid),
)]
async fn settings(c: Caller, Path(id): Path<i64>, Json(body): Json<SettingsBody>) -> Answer {
    let m = c
        .state
        .store
        .update_migration_settings(&c.actor, id, &body.settings, &body.reason)
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
    request_body = ReasonBody,
    responses((status = 200, description = "archived", body = serde_json::Value), NotFound, Conflict),
)]
async fn archive(c: Caller, Path(id): Path<i64>, body: Option<Json<ReasonBody>>) -> Answer {
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let m = c
        .state
        .store
        .archive_migration(&c.actor, id, &reason)
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
    request_body = BatchBody,
    responses((status = 201, description = "the batches planned", body = serde_json::Value), NotFound, Conflict, Invalid),
)]
async fn batches(c: Caller, Path(id): Path<i64>, Json(body): Json<BatchBody>) -> Answer<Created> {
    let batches = c
        .state
        .store
        .plan_batches(&c.actor, id, &body.bucket_ids, body.count)
        .await?;
    created(batches)
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
    responses((status = 200, description = "jobs, newest first", body = serde_json::Value)),
)]
async fn jobs(State(state): State<AppState>, Query(q): Query<JobsQuery>) -> Answer {
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
    responses((status = 200, description = "the job", body = serde_json::Value), NotFound),
)]
async fn job(State(state): State<AppState>, Path(id): Path<i64>) -> Answer {
    Ok(Json(json!(state.store.job(id).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/{action}",
    tag = "jobs",
    params(("action" = String, Path, description = "pause, resume or cancel")),
    request_body = ReasonBody,
    responses((status = 200, description = "the job with the request written on it", body = serde_json::Value), NotFound, Conflict, Invalid),
)]
async fn job_action(
    c: Caller,
    Path((id, action)): Path<(i64, String)>,
    body: Option<Json<ReasonBody>>,
) -> Answer {
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let a = &c.actor;
    let job = match action.as_str() {
        "pause" => c.state.store.pause_job(a, id, &reason).await?,
        "resume" => c.state.store.resume_job(a, id, &reason).await?,
        "cancel" => c.state.store.cancel_job(a, id, &reason).await?,
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
    request_body = RateBody,
    responses((status = 200, description = "the job with its new rate", body = serde_json::Value), NotFound, Conflict, Invalid),
)]
async fn job_rate(c: Caller, Path(id): Path<i64>, Json(body): Json<RateBody>) -> Answer {
    let job = c
        .state
        .store
        .set_job_rate(&c.actor, id, body.rate, &body.reason)
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
    request_body = PhaseBody,
    responses((status = 200, description = "the bucket in its new phase", body = serde_json::Value), NotFound, Conflict, Invalid),
)]
async fn bucket_phase(c: Caller, Path(id): Path<i64>, Json(body): Json<PhaseBody>) -> Answer {
    let to = Phase::parse(&body.to)?;
    let store = &c.state.store;
    let b = if body.override_evidence {
        store
            .override_bucket_move(&c.actor, id, to, &body.reason)
            .await?
    } else {
        store.move_bucket(&c.actor, id, to, &body.reason).await?
    };
    Ok(Json(json!(b)))
}
