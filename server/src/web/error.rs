//! The web edge's error type: maps the control plane's errors to HTTP status
//! codes (not found 404, invalid input 422 — a spec, schema or row the engine
//! refuses included —, forbidden 403, conflict 409, the control store or a
//! migration's database unreachable 503, anything else 500) and to a JSON body
//! a person can act on: `{"error": "…", "status": 409}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tern_control::ControlError;
use tern_engine::EngineError;

/// The JSON body of every error answer, as the OpenAPI document shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong and what to do about it.
    pub error: String,
    /// The HTTP status again.
    pub status: u16,
}

pub use responses::{Conflict, Forbidden, Invalid, NotFound, Unauthorized, Unavailable};

/// The error answers of the OpenAPI document, one type a status: a handler
/// names those it can give after its own (`responses((status = 200, …),
/// NotFound, Conflict)`); `Unauthorized` and `Forbidden` follow from the
/// access table (`openapi.rs`). Only documented, never built: their
/// `ErrorBody` is the one `ApiError` answers.
#[allow(dead_code)]
mod responses {
    use super::ErrorBody;

    #[derive(utoipa::IntoResponses)]
    #[response(status = 401, description = "not signed in (or no client token)")]
    pub struct Unauthorized(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 403, description = "the role may not do this")]
    pub struct Forbidden(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 404, description = "no such record")]
    pub struct NotFound(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 409, description = "it clashes with the current state")]
    pub struct Conflict(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(
        status = 422,
        description = "the request is invalid: the message says how"
    )]
    pub struct Invalid(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 503, description = "a database cannot be reached")]
    pub struct Unavailable(ErrorBody);
}

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "sign in first: POST /api/v1/session with a username and password",
        )
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let status = match &e {
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::Forbidden(_) => StatusCode::FORBIDDEN,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Engine(e) => match e {
                EngineError::Spec { .. } | EngineError::Schema { .. } | EngineError::Row { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                EngineError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ControlError::Datafix(e) => match e {
                tern_datafix::DatafixError::Spec { .. }
                | tern_datafix::DatafixError::Filter { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                tern_datafix::DatafixError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                tern_datafix::DatafixError::Stopped { .. } => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message, "status": self.status.as_u16() })),
        )
            .into_response()
    }
}
