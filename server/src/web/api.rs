//! The JSON API (`/api/v1/…`) for scripts and other tools: the same operations
//! and the same role checks as the pages. Documented in `docs/api.md`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tern_app::server::CurrentUser;
use tern_app::state::AppState;
use tern_control::audit::AuditFilter;
use tern_control::users::NewUser;

use crate::web::auth;
use crate::web::caller::{Answer, Caller, Created, created};
use crate::web::error::{Conflict, Invalid, NotFound};

/// The `/api/v1` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/session",
            post(auth::login_json).delete(auth::logout_json),
        )
        .route("/api/v1/me", get(me))
        .route("/api/v1/migrations", get(migrations))
        .route("/api/v1/migrations/{id}", get(migration))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/users", get(users).post(create_user))
}

#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "session",
    responses((status = 200, description = "the signed-in user", body = serde_json::Value)),
)]
async fn me(Extension(user): Extension<CurrentUser>) -> Json<Value> {
    let u = &user.0;
    Json(json!({
        "username": u.username,
        "display_name": u.display_name,
        "role": u.role,
        "clients": u.clients,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/migrations",
    tag = "migrations",
    responses((status = 200, description = "every migration with its buckets per phase", body = serde_json::Value)),
)]
async fn migrations(State(state): State<AppState>) -> Answer {
    let list = state.store.migration_summaries().await?;
    Ok(Json(json!(list
        .into_iter()
        .map(|s| json!({
            "id": s.migration.id,
            "name": s.migration.name,
            "description": s.migration.description,
            "status": s.migration.status,
            "buckets": s.buckets,
            "phases": s.phases.into_iter().map(|(p, n)| (p.as_str().to_string(), n)).collect::<std::collections::BTreeMap<_, _>>(),
            "planned_rows": s.planned_rows,
            "rows_copied": s.rows_copied,
        }))
        .collect::<Vec<_>>())))
}

#[utoipa::path(
    get,
    path = "/api/v1/migrations/{id}",
    tag = "migrations",
    responses((status = 200, description = "the migration (its spec without passwords) and its buckets", body = serde_json::Value), NotFound),
)]
async fn migration(State(state): State<AppState>, Path(id): Path<i64>) -> Answer {
    let m = tern_control::redact::migration(state.store.migration(id).await?);
    let buckets = state.store.list_buckets(id).await?;
    Ok(Json(json!({ "migration": m, "buckets": buckets })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    entity_kind: Option<String>,
    entity_id: Option<String>,
    since: Option<i64>,
    before_id: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses((status = 200, description = "audit events, newest first", body = serde_json::Value)),
)]
async fn audit(c: Caller, Query(q): Query<AuditQuery>) -> Answer {
    let filter = AuditFilter {
        actor: q.actor,
        action: q.action,
        entity_kind: q.entity_kind,
        entity_id: q.entity_id,
        since: q.since,
        before_id: q.before_id,
        limit: q.limit,
    };
    let events = c.state.store.list_audit(&c.actor, &filter).await?;
    Ok(Json(json!(events)))
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    responses((status = 200, description = "every user (no password hash)", body = serde_json::Value)),
)]
async fn users(c: Caller) -> Answer {
    c.actor.require_admin("listing users")?;
    Ok(Json(json!(c.state.store.list_users().await?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateUser {
    username: String,
    #[serde(default)]
    display_name: String,
    role: String,
    password: String,
    #[serde(default)]
    clients: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = CreateUser,
    responses((status = 201, description = "the user created", body = serde_json::Value), Conflict, Invalid),
)]
async fn create_user(c: Caller, Json(body): Json<CreateUser>) -> Answer<Created> {
    let new = NewUser {
        username: body.username,
        display_name: body.display_name,
        role: tern_control::Role::parse(&body.role)?,
        password: body.password,
        clients: body.clients,
    };
    let user = c.state.store.create_user(&c.actor, new).await?;
    created(user)
}
