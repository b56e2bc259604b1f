//! The API client services call, authenticated with per-client API tokens
//! (`Authorization: Bearer tern_…`) instead of a session:
//!
//! - `GET  /api/v1/ramp?migration=&client=` — the ramp, salt and shadow rate (what `tern-client` polls);
//! - `GET  /api/v1/route?migration=&client=&key=` — `old` or `new` for one key;
//! - `POST /api/v1/route` `{migration, client, keys: [...]}` — the batch form;
//! - `POST /api/v1/traffic` `{migration, reports: [{client, at?, interval_ms?, old, new}]}`;
//! - `POST /api/v1/shadow` `{migration, client, key, old, new, sampled?}`;
//! - `POST /api/v1/access-log` `{migration, job, dataset, at?}`.
//!
//! These routes sit outside the session layers: the routing path checks the
//! token against a short-lived cache and writes nothing per request.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tern_app::server::CurrentUser;
use tern_app::state::AppState;
use tern_control::clients::{Route, TokenGrant};
use tern_control::traffic::TrafficReport;

use crate::web::error::ApiError;

/// The token-authenticated routes.
pub fn token_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ramp", get(ramp))
        .route("/api/v1/route", get(route_one).post(route_batch))
        .route("/api/v1/traffic", post(traffic))
        .route("/api/v1/shadow", post(shadow))
        .route("/api/v1/access-log", post(access_log))
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

/// The grant of the request's bearer token, or 401.
pub(crate) async fn grant(state: &AppState, headers: &HeaderMap) -> Result<TokenGrant, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            unauthorized("send the client's API token as `Authorization: Bearer tern_…` (create one on the client's page)")
        })?;
    state.store.check_token(token).await?.ok_or_else(|| {
        unauthorized(
            "this API token is wrong or was revoked: create a new one on the client's page",
        )
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ClientQuery {
    migration: String,
    client: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/ramp",
    tag = "client API",
    params(ClientQuery),
    responses((status = 200, description = "the client's ramp", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("token" = [])),
)]
async fn ramp(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ClientQuery>,
) -> Result<Json<Value>, ApiError> {
    let g = grant(&state, &headers).await?;
    g.require(&q.migration, &q.client)?;
    let r = state.store.ramp_state(&q.migration, &q.client).await?;
    Ok(Json(json!({
        "migration": q.migration,
        "client": q.client,
        "ramp_millipercent": r.ramp.millipercent(),
        "ramp": r.ramp.to_string(),
        "salt": r.salt,
        "shadow_rate": r.shadow_rate,
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RouteQuery {
    migration: String,
    client: String,
    key: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/route",
    tag = "client API",
    params(RouteQuery),
    responses((status = 200, description = "where one key reads and writes", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("token" = [])),
)]
async fn route_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<RouteQuery>,
) -> Result<Response, ApiError> {
    let g = grant(&state, &headers).await?;
    g.require(&q.migration, &q.client)?;
    let r = state.store.ramp_state(&q.migration, &q.client).await?;
    let route = Route::of(r.ramp, &r.salt, q.key.as_bytes());
    // A fixed shape, written by hand: this is the hottest path of the API.
    let body = format!(
        "{{\"route\":\"{}\",\"ramp_millipercent\":{}}}",
        route.as_str(),
        r.ramp.millipercent()
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RouteBatch {
    migration: String,
    client: String,
    keys: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/route",
    tag = "client API",
    request_body = RouteBatch,
    responses((status = 200, description = "where each key reads and writes", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("token" = [])),
)]
async fn route_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(b): Json<RouteBatch>,
) -> Result<Json<Value>, ApiError> {
    let g = grant(&state, &headers).await?;
    g.require(&b.migration, &b.client)?;
    if b.keys.len() > 10_000 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{} keys in one batch: send at most 10,000", b.keys.len()),
        ));
    }
    let r = state.store.ramp_state(&b.migration, &b.client).await?;
    let routes: Vec<Value> = b
        .keys
        .iter()
        .map(|k| json!({ "key": k, "route": Route::of(r.ramp, &r.salt, k.as_bytes()).as_str() }))
        .collect();
    Ok(Json(
        json!({ "ramp_millipercent": r.ramp.millipercent(), "routes": routes }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct TrafficBody {
    migration: String,
    #[schema(value_type = Vec<Object>)]
    reports: Vec<TrafficReport>,
}

#[utoipa::path(
    post,
    path = "/api/v1/traffic",
    tag = "client API",
    request_body = TrafficBody,
    responses((status = 200, description = "how many reports were recorded", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("token" = [])),
)]
async fn traffic(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(b): Json<TrafficBody>,
) -> Result<Json<Value>, ApiError> {
    let g = grant(&state, &headers).await?;
    for r in &b.reports {
        g.require(&b.migration, &r.client)?;
    }
    let n = state.store.record_traffic(&g, &b.reports).await?;
    Ok(Json(json!({ "recorded": n })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ShadowBody {
    migration: String,
    client: String,
    key: String,
    #[schema(value_type = Object)]
    old: Value,
    #[schema(value_type = Object)]
    new: Value,
    /// True when the caller already sampled (tern-client does); otherwise
    /// Tern samples by the client's shadow rate.
    #[serde(default)]
    sampled: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/shadow",
    tag = "client API",
    request_body = ShadowBody,
    responses((status = 200, description = "the shadow comparison", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("token" = [])),
)]
async fn shadow(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(b): Json<ShadowBody>,
) -> Result<Json<Value>, ApiError> {
    let g = grant(&state, &headers).await?;
    g.require(&b.migration, &b.client)?;
    let client = state.store.client_by_name(&b.migration, &b.client).await?;
    if !b.sampled && rand::random::<f64>() >= client.shadow_rate {
        return Ok(Json(json!({ "sampled": false })));
    }
    let rec = state
        .store
        .record_shadow(&client, &b.key, &b.old, &b.new)
        .await?;
    Ok(Json(json!({
        "sampled": true,
        "matched": rec.matched,
        "paths": rec.paths,
        "tree": rec.tree,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct AccessBody {
    migration: String,
    job: String,
    dataset: String,
    at: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/api/v1/access-log",
    tag = "client API",
    request_body = AccessBody,
    responses((status = 200, description = "recorded", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("token" = [])),
)]
async fn access_log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(b): Json<AccessBody>,
) -> Result<Json<Value>, ApiError> {
    let g = grant(&state, &headers).await?;
    if g.migration_name != b.migration {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this API token belongs to migration `{}`, not `{}`",
                g.migration_name, b.migration
            ),
        ));
    }
    state
        .store
        .record_access(g.migration_id, &b.job, &b.dataset, b.at)
        .await?;
    Ok(Json(json!({ "recorded": true })))
}

// ---- the same operations for people and scripts, behind the sign-in wall ----

/// Session-authenticated client management (`/api/v1/clients…`, `/api/v1/tokens/{id}`).
pub fn session_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/clients", get(list_clients))
        .route("/api/v1/clients/{id}", get(client_detail))
        .route("/api/v1/clients/{id}/ramp", post(set_ramp))
        .route("/api/v1/clients/{id}/rollback", post(rollback))
        .route("/api/v1/clients/{id}/tokens", post(create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(revoke_token))
}

fn actor(user: &CurrentUser) -> tern_control::Actor {
    tern_control::Actor::from(&user.0)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    migration_id: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/clients",
    tag = "clients",
    params(ListQuery),
    responses((status = 200, description = "the clients the user may see", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn list_clients(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let me = actor(&user);
    let mut clients = state.store.list_clients(&me, q.migration_id).await?;
    clients.retain(|c| me.sees_client(&c.name));
    Ok(Json(json!(clients)))
}

#[utoipa::path(
    get,
    path = "/api/v1/clients/{id}",
    tag = "clients",
    params(("id" = i64, Path, description = "its id")),
    responses((status = 200, description = "the client, its ramp, steps and checklist", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn client_detail(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let c = state.store.client(id).await?;
    actor(&user).require_client(&c.name, "reading a client")?;
    let gate = state.store.check_gates(&c, tern_ramp::Ramp::FULL).await?;
    let steps = state.store.ramp_steps(id).await?;
    Ok(Json(
        json!({ "client": c, "gates": gate, "ramp_steps": steps }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RampBody {
    /// `25%`, `0.5`, …
    ramp: String,
    reason: String,
    override_reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/clients/{id}/ramp",
    tag = "clients",
    params(("id" = i64, Path, description = "its id")),
    request_body = RampBody,
    responses((status = 200, description = "the client with its new ramp", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn set_ramp(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Json(b): Json<RampBody>,
) -> Result<Json<Value>, ApiError> {
    let ramp = tern_ramp::Ramp::parse(&b.ramp)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let c = state
        .store
        .set_ramp(
            &actor(&user),
            id,
            ramp,
            &b.reason,
            b.override_reason.as_deref(),
        )
        .await?;
    Ok(Json(json!(c)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ClientReasonBody)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/clients/{id}/rollback",
    tag = "clients",
    params(("id" = i64, Path, description = "its id")),
    request_body = ReasonBody,
    responses((status = 200, description = "the client, rolled back to 0%", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn rollback(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Json(b): Json<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        state.store.rollback(&actor(&user), id, &b.reason).await?
    )))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct TokenBody {
    #[serde(default)]
    label: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/clients/{id}/tokens",
    tag = "clients",
    params(("id" = i64, Path, description = "its id")),
    request_body = TokenBody,
    responses((status = 201, description = "the token (its secret shown this once)", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn create_token(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Json(b): Json<TokenBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let c = state.store.client(id).await?;
    let (listed, token) = state
        .store
        .create_token(&actor(&user), c.migration_id, Some(id), &b.label)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": listed.id, "token": token, "prefix": listed.prefix })),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "clients",
    params(("id" = i64, Path, description = "its id")),
    responses((status = 204, description = "revoked"), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn revoke_token(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    state.store.revoke_token(&actor(&user), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
