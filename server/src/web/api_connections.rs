//! The JSON API for named connections (`/api/v1/connections`): engineers and
//! admins list them (specs name them); admins register, change and remove
//! them. A secret goes in (`secret`, or `secret_ref` = `env:NAME` /
//! `file:/path`) and never comes out: answers say `secret_set` and
//! `secret_source` only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tern_app::server::CurrentUser;
use tern_app::state::AppState;
use tern_control::Actor;
use tern_control::connections::{ConnectionInput, SecretInput};

use crate::web::error::ApiError;

/// The connection routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/connections", get(list).post(create))
        .route(
            "/api/v1/connections/{name}",
            get(show).put(update).delete(remove),
        )
}

fn actor(user: &CurrentUser) -> Actor {
    Actor::from(&user.0)
}

/// A connection as sent: its fields, and its secret at most once.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ConnectionBody)]
struct Body {
    #[serde(default)]
    name: String,
    kind: String,
    #[serde(default)]
    host: String,
    port: Option<i64>,
    #[serde(default)]
    database: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    options: String,
    /// The password, to be encrypted.
    secret: Option<String>,
    /// Or where it lives: `env:NAME`, `file:/path`.
    secret_ref: Option<String>,
    /// Remove the stored secret.
    #[serde(default)]
    clear_secret: bool,
}

// No Debug: the body may hold a secret.

impl Body {
    fn into_input(self, name: String) -> Result<ConnectionInput, ApiError> {
        let secret = match (self.secret, self.secret_ref, self.clear_secret) {
            (Some(_), Some(_), _) | (Some(_), _, true) | (_, Some(_), true) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "give one of secret, secret_ref or clear_secret",
                ));
            }
            (Some(s), None, false) if !s.is_empty() => SecretInput::Value(s),
            (None, Some(r), false) if !r.is_empty() => SecretInput::Reference(r),
            (_, _, true) => SecretInput::Clear,
            _ => SecretInput::Keep,
        };
        Ok(ConnectionInput {
            name,
            kind: self.kind,
            host: self.host,
            port: self.port,
            database: self.database,
            username: self.username,
            options: self.options,
            secret,
        })
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/connections",
    tag = "connections",
    responses((status = 200, description = "every connection; secrets only as set / not set", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        state.store.list_connections(&actor(&user)).await?
    )))
}

#[utoipa::path(
    get,
    path = "/api/v1/connections/{name}",
    tag = "connections",
    params(("name" = String, Path, description = "the connection's name")),
    responses((status = 200, description = "the connection", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn show(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    actor(&user).require_operate("reading a connection")?;
    Ok(Json(json!(state.store.connection(&name).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/connections",
    tag = "connections",
    request_body = Body,
    responses((status = 201, description = "the connection registered", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Json(body): Json<Body>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = body.name.trim().to_string();
    let input = body.into_input(name)?;
    let c = state.store.create_connection(&actor(&user), input).await?;
    Ok((StatusCode::CREATED, Json(json!(c))))
}

#[utoipa::path(
    put,
    path = "/api/v1/connections/{name}",
    tag = "connections",
    params(("name" = String, Path, description = "the connection's name")),
    request_body = Body,
    responses((status = 200, description = "the connection changed", body = serde_json::Value), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 422, description = "the request is invalid: the message says how", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn update(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(name): Path<String>,
    Json(body): Json<Body>,
) -> Result<Json<Value>, ApiError> {
    let input = body.into_input(name)?;
    Ok(Json(json!(
        state.store.update_connection(&actor(&user), input).await?
    )))
}

#[utoipa::path(
    delete,
    path = "/api/v1/connections/{name}",
    tag = "connections",
    params(("name" = String, Path, description = "the connection's name")),
    responses((status = 204, description = "removed"), (status = 401, description = "not signed in (or no client token)", body = crate::web::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::web::error::ErrorBody), (status = 404, description = "no such record", body = crate::web::error::ErrorBody), (status = 409, description = "it clashes with the current state", body = crate::web::error::ErrorBody)),
    security(("session" = [])),
)]
async fn remove(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.remove_connection(&actor(&user), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
