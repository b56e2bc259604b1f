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

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tern_app::state::AppState;
use tern_control::clients::{Client, RampState, Route, TokenGrant};
use tern_control::traffic::TrafficReport;

use crate::web::caller::{Answer, Caller, Created, created};
use crate::web::error::{ApiError, Conflict, Invalid, NotFound};

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

/// A client-API request's state and its bearer token's grant (401 without a
/// valid token).
pub(crate) struct Granted {
    pub state: AppState,
    pub grant: TokenGrant,
}

impl FromRequestParts<AppState> for Granted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let grant = grant(state, &parts.headers).await?;
        Ok(Granted {
            state: state.clone(),
            grant,
        })
    }
}

impl Granted {
    /// The ramp of `client`, when the token may act for it.
    async fn ramp(&self, migration: &str, client: &str) -> Result<RampState, ApiError> {
        self.grant.require(migration, client)?;
        Ok(self.state.store.ramp_state(migration, client).await?)
    }

    /// `client`, when the token may act for it.
    pub async fn client(&self, migration: &str, client: &str) -> Result<Client, ApiError> {
        self.grant.require(migration, client)?;
        Ok(self.state.store.client_by_name(migration, client).await?)
    }
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
    responses((status = 200, description = "the client's ramp", body = serde_json::Value), NotFound),
)]
async fn ramp(Query(q): Query<ClientQuery>, t: Granted) -> Answer {
    let r = t.ramp(&q.migration, &q.client).await?;
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
    responses((status = 200, description = "where one key reads and writes", body = serde_json::Value), NotFound),
)]
async fn route_one(Query(q): Query<RouteQuery>, t: Granted) -> Result<Response, ApiError> {
    let r = t.ramp(&q.migration, &q.client).await?;
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
    responses((status = 200, description = "where each key reads and writes", body = serde_json::Value), NotFound, Invalid),
)]
async fn route_batch(t: Granted, Json(b): Json<RouteBatch>) -> Answer {
    t.grant.require(&b.migration, &b.client)?;
    if b.keys.len() > 10_000 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{} keys in one batch: send at most 10,000", b.keys.len()),
        ));
    }
    let r = t.state.store.ramp_state(&b.migration, &b.client).await?;
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
    responses((status = 200, description = "how many reports were recorded", body = serde_json::Value), NotFound, Invalid),
)]
async fn traffic(t: Granted, Json(b): Json<TrafficBody>) -> Answer {
    for r in &b.reports {
        t.grant.require(&b.migration, &r.client)?;
    }
    let n = t.state.store.record_traffic(&t.grant, &b.reports).await?;
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
    responses((status = 200, description = "the shadow comparison", body = serde_json::Value), NotFound, Invalid),
)]
async fn shadow(t: Granted, Json(b): Json<ShadowBody>) -> Answer {
    let client = t.client(&b.migration, &b.client).await?;
    if !b.sampled && rand::random::<f64>() >= client.shadow_rate {
        return Ok(Json(json!({ "sampled": false })));
    }
    let rec = t
        .state
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
    responses((status = 200, description = "recorded", body = serde_json::Value), NotFound, Invalid),
)]
async fn access_log(t: Granted, Json(b): Json<AccessBody>) -> Answer {
    if t.grant.migration_name != b.migration {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this API token belongs to migration `{}`, not `{}`",
                t.grant.migration_name, b.migration
            ),
        ));
    }
    t.state
        .store
        .record_access(t.grant.migration_id, &b.job, &b.dataset, b.at)
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
    responses((status = 200, description = "the clients the user may see", body = serde_json::Value)),
)]
async fn list_clients(c: Caller, Query(q): Query<ListQuery>) -> Answer {
    let me = &c.actor;
    let mut clients = c.state.store.list_clients(me, q.migration_id).await?;
    clients.retain(|c| me.sees_client(&c.name));
    Ok(Json(json!(clients)))
}

#[utoipa::path(
    get,
    path = "/api/v1/clients/{id}",
    tag = "clients",
    responses((status = 200, description = "the client, its ramp, steps and checklist", body = serde_json::Value), NotFound),
)]
async fn client_detail(c: Caller, Path(id): Path<i64>) -> Answer {
    let client = c.state.store.client(id).await?;
    c.actor.require_client(&client.name, "reading a client")?;
    let gate = c
        .state
        .store
        .check_gates(&client, tern_ramp::Ramp::FULL)
        .await?;
    let steps = c.state.store.ramp_steps(id).await?;
    Ok(Json(
        json!({ "client": client, "gates": gate, "ramp_steps": steps }),
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
    request_body = RampBody,
    responses((status = 200, description = "the client with its new ramp", body = serde_json::Value), NotFound, Conflict, Invalid),
)]
async fn set_ramp(c: Caller, Path(id): Path<i64>, Json(b): Json<RampBody>) -> Answer {
    let ramp = tern_ramp::Ramp::parse(&b.ramp)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let client = c
        .state
        .store
        .set_ramp(&c.actor, id, ramp, &b.reason, b.override_reason.as_deref())
        .await?;
    Ok(Json(json!(client)))
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
    request_body = ReasonBody,
    responses((status = 200, description = "the client, rolled back to 0%", body = serde_json::Value), NotFound),
)]
async fn rollback(c: Caller, Path(id): Path<i64>, Json(b): Json<ReasonBody>) -> Answer {
    Ok(Json(json!(
        c.state.store.rollback(&c.actor, id, &b.reason).await?
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
    request_body = TokenBody,
    responses((status = 201, description = "the token (its secret shown this once)", body = serde_json::Value), NotFound, Invalid),
)]
async fn create_token(c: Caller, Path(id): Path<i64>, Json(b): Json<TokenBody>) -> Answer<Created> {
    let client = c.state.store.client(id).await?;
    let (listed, token) = c
        .state
        .store
        .create_token(&c.actor, client.migration_id, Some(id), &b.label)
        .await?;
    created(json!({ "id": listed.id, "token": token, "prefix": listed.prefix }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "clients",
    responses((status = 204, description = "revoked"), NotFound),
)]
async fn revoke_token(c: Caller, Path(id): Path<i64>) -> Answer<StatusCode> {
    c.state.store.revoke_token(&c.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
