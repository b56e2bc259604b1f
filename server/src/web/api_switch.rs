//! The switch of the source of truth over HTTP (issue 17):
//!
//! - `GET  /api/v1/write-routing?migration=&client=&applied=&wait_ms=` (client token) —
//!   every bucket's write primary (`old`, `new`, `hold`) at a version; `applied` is the
//!   version the client applied (its acknowledgement), `wait_ms` makes it a long poll
//!   that answers as soon as the version passes `applied`;
//! - `GET  /api/v1/primary?migration=&client=&key=&table=` (client token) — where one
//!   key's writes go, beside `/api/v1/route` (where its reads go);
//! - `GET  /api/v1/migrations/{id}/switches` — history, hold times, client pickup, reverse paths;
//! - `POST /api/v1/migrations/{id}/switch` `{buckets: [idx], batch?, reason}` and
//!   `POST /api/v1/migrations/{id}/rollback` `{buckets: [idx], reason}`;
//! - `GET  /api/v1/migrations/{id}/decommission` — the steps, done or why not yet;
//!   `POST /api/v1/migrations/{id}/decommission/{step}` — run one (admins).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tern_app::state::AppState;
use tern_control::Actor;
use tern_control::switch::{Direction, RelayDrain, SwitchOptions};

use crate::web::api_clients::Granted;
use crate::web::caller::{Answer, Caller};
use crate::web::error::{Conflict, Invalid, NotFound, Unavailable};

/// Client-token routes.
pub fn token_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/write-routing", get(write_routing))
        .route("/api/v1/primary", get(primary))
}

/// Session routes.
pub fn session_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/migrations/{id}/switches", get(switches))
        .route("/api/v1/migrations/{id}/switch", post(switch))
        .route("/api/v1/migrations/{id}/rollback", post(rollback))
        .route("/api/v1/migrations/{id}/reverse-relay", post(reverse_relay))
        .route("/api/v1/migrations/{id}/decommission", get(decommission))
        .route(
            "/api/v1/migrations/{id}/decommission/{step}",
            post(decommission_step),
        )
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/reverse-relay",
    tag = "switch",
    params(("id" = i64, Path, description = "the migration's id")),
    responses((status = 200, description = "the reverse relay's job (started, or the one running)", body = serde_json::Value), NotFound, Conflict, Unavailable),
)]
async fn reverse_relay(c: Caller, Path(id): Path<i64>) -> Answer {
    Ok(Json(json!(
        c.state.store.start_reverse_relay(&c.actor, id).await?
    )))
}

#[utoipa::path(
    get,
    path = "/api/v1/migrations/{id}/decommission",
    tag = "switch",
    params(("id" = i64, Path, description = "the migration's id")),
    responses((status = 200, description = "what blocks decommission and each step, done or why not yet", body = serde_json::Value), NotFound),
)]
async fn decommission(State(state): State<AppState>, Path(id): Path<i64>) -> Answer {
    Ok(Json(json!({
        "blockers": state.store.decommission_blockers(id).await?,
        "steps": state.store.decommission_steps(id).await?,
    })))
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/decommission/{step}",
    tag = "switch",
    params(("id" = i64, Path, description = "the migration's id"), ("step" = String, Path, description = "stop-relays, remove-capture, drop-columns, read-only or complete")),
    responses((status = 200, description = "what the step did", body = serde_json::Value), NotFound, Conflict, Invalid, Unavailable),
)]
async fn decommission_step(c: Caller, Path((id, step)): Path<(i64, String)>) -> Answer {
    let step = tern_control::decommission_steps::Step::parse(&step)?;
    let detail = c
        .state
        .store
        .run_decommission_step_detached(c.actor, id, step, c.state.runners.clone())
        .await?;
    Ok(Json(json!({ "step": step.as_str(), "detail": detail })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RoutingQuery {
    migration: String,
    client: String,
    /// The routing version the client applied (none on its first poll).
    applied: Option<i64>,
    /// Answer as soon as the version passes `applied`, or after this long.
    #[serde(default)]
    wait_ms: u64,
}

#[utoipa::path(
    get,
    path = "/api/v1/write-routing",
    tag = "client API",
    params(RoutingQuery),
    responses((status = 200, description = "every bucket's write primary at a routing version", body = serde_json::Value), NotFound, Invalid),
)]
async fn write_routing(Query(q): Query<RoutingQuery>, t: Granted) -> Answer {
    let client = t.client(&q.migration, &q.client).await?;
    let applied = q.applied.unwrap_or(-1);
    if applied >= 0 {
        t.state.store.ack_write_routing(client.id, applied).await?;
    }
    let routing = t
        .state
        .store
        .wait_write_routing(
            t.grant.migration_id,
            applied,
            Duration::from_millis(q.wait_ms.min(30_000)),
        )
        .await?;
    if applied < 0 {
        // A first poll counts the client as active at once.
        t.state.store.ack_write_routing(client.id, -1).await?;
    }
    Ok(Json(json!(routing)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PrimaryQuery {
    migration: String,
    client: String,
    key: String,
    table: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/primary",
    tag = "client API",
    params(PrimaryQuery),
    responses((status = 200, description = "where one key's writes go: old, new or hold", body = serde_json::Value), NotFound, Invalid),
)]
async fn primary(Query(q): Query<PrimaryQuery>, t: Granted) -> Answer {
    t.grant.require(&q.migration, &q.client)?;
    let routing = t.state.store.write_routing(t.grant.migration_id).await?;
    let p = routing.primary(q.table.as_deref(), &q.key)?;
    Ok(Json(
        json!({ "key": q.key, "primary": p.as_str(), "version": routing.version }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/migrations/{id}/switches",
    tag = "switch",
    params(("id" = i64, Path, description = "the migration's id")),
    responses((status = 200, description = "switch history, hold times, client pickup, reverse paths and drift", body = serde_json::Value), NotFound),
)]
async fn switches(State(state): State<AppState>, Path(id): Path<i64>) -> Answer {
    let s = &state.store;
    Ok(Json(json!({
        "switches": s.list_switches(id, 50).await?,
        "pickup": s.routing_pickup(id).await?,
        "reverse_paths": s.reverse_paths(id).await?,
        "drifted": s.drifted_buckets(id).await?,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SwitchBody {
    #[serde(default)]
    buckets: Vec<i64>,
    batch: Option<i64>,
    #[serde(default)]
    reason: String,
}

async fn run(
    state: &AppState,
    actor: &Actor,
    id: i64,
    body: SwitchBody,
    direction: Direction,
) -> Answer<(StatusCode, Json<Value>)> {
    let idxs = state
        .store
        .switch_targets(id, &body.buckets, body.batch)
        .await?;
    let drain = RelayDrain {
        store: state.store.clone(),
        ctx: state.runners.clone(),
    };
    let record = state
        .store
        .switch_buckets(
            actor,
            id,
            &idxs,
            direction,
            &body.reason,
            &drain,
            SwitchOptions::default(),
        )
        .await?;
    Ok((StatusCode::OK, Json(json!(record))))
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/switch",
    tag = "switch",
    params(("id" = i64, Path, description = "the migration's id")),
    request_body = SwitchBody,
    responses((status = 200, description = "the switch as it ran, with its hold time", body = serde_json::Value), NotFound, Conflict, Invalid, Unavailable),
)]
async fn switch(
    c: Caller,
    Path(id): Path<i64>,
    Json(body): Json<SwitchBody>,
) -> Answer<(StatusCode, Json<Value>)> {
    run(&c.state, &c.actor, id, body, Direction::Switch).await
}

#[utoipa::path(
    post,
    path = "/api/v1/migrations/{id}/rollback",
    tag = "switch",
    params(("id" = i64, Path, description = "the migration's id")),
    request_body = SwitchBody,
    responses((status = 200, description = "the rollback as it ran, with its hold time", body = serde_json::Value), NotFound, Conflict, Invalid, Unavailable),
)]
async fn rollback(
    c: Caller,
    Path(id): Path<i64>,
    Json(body): Json<SwitchBody>,
) -> Answer<(StatusCode, Json<Value>)> {
    run(&c.state, &c.actor, id, body, Direction::Rollback).await
}
