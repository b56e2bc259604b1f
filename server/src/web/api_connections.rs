//! The JSON API for named connections (`/api/v1/connections`): engineers and
//! admins list them (specs name them); admins register, change and remove
//! them. A secret goes in (`secret`, or `secret_ref` = `env:NAME` /
//! `file:/path`) and never comes out: answers say `secret_set` and
//! `secret_source` only.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tern_app::state::AppState;
use tern_control::connections::{ConnectionInput, SecretInput};

use crate::web::caller::{Answer, Caller, Created, created};
use crate::web::error::{ApiError, Conflict, Invalid, NotFound};

/// The connection routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/connections", get(list).post(create))
        .route(
            "/api/v1/connections/{name}",
            get(show).put(update).delete(remove),
        )
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
    responses((status = 200, description = "every connection; secrets only as set / not set", body = serde_json::Value)),
)]
async fn list(c: Caller) -> Answer {
    Ok(Json(json!(c.state.store.list_connections(&c.actor).await?)))
}

#[utoipa::path(
    get,
    path = "/api/v1/connections/{name}",
    tag = "connections",
    params(("name" = String, Path, description = "the connection's name")),
    responses((status = 200, description = "the connection", body = serde_json::Value), NotFound),
)]
async fn show(c: Caller, Path(name): Path<String>) -> Answer {
    c.actor.require_operate("reading a connection")?;
    Ok(Json(json!(c.state.store.connection(&name).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/connections",
    tag = "connections",
    request_body = Body,
    responses((status = 201, description = "the connection registered", body = serde_json::Value), Conflict, Invalid),
)]
async fn create(c: Caller, Json(body): Json<Body>) -> Answer<Created> {
    let name = body.name.trim().to_string();
    let input = body.into_input(name)?;
    let connection = c.state.store.create_connection(&c.actor, input).await?;
    created(connection)
}

#[utoipa::path(
    put,
    path = "/api/v1/connections/{name}",
    tag = "connections",
    params(("name" = String, Path, description = "the connection's name")),
    request_body = Body,
    responses((status = 200, description = "the connection changed", body = serde_json::Value), NotFound, Invalid),
)]
async fn update(c: Caller, Path(name): Path<String>, Json(body): Json<Body>) -> Answer {
    let input = body.into_input(name)?;
    Ok(Json(json!(
        c.state.store.update_connection(&c.actor, input).await?
    )))
}

#[utoipa::path(
    delete,
    path = "/api/v1/connections/{name}",
    tag = "connections",
    params(("name" = String, Path, description = "the connection's name")),
    responses((status = 204, description = "removed"), NotFound, Conflict),
)]
async fn remove(c: Caller, Path(name): Path<String>) -> Answer<StatusCode> {
    c.state.store.remove_connection(&c.actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
