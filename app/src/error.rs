//! The UI's one error type: what a server function can fail with, in words a
//! person can act on. On the server it is built from `ControlError`; in the
//! browser it arrives as JSON.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// Why a server function refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("your session has ended: sign in again")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("the server could not be reached or answered strangely: {0}")]
    Transport(String),
}

impl AppError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthenticated => 401,
            AppError::Forbidden(_) => 403,
            AppError::NotFound(_) => 404,
            AppError::Invalid(_) => 422,
            AppError::Conflict(_) => 409,
            AppError::Unavailable(_) => 503,
            AppError::Internal(_) | AppError::Transport(_) => 500,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }

    /// On the server, answers with the error's own status (422, 409, …)
    /// instead of a blanket 500, then encodes it as JSON.
    fn ser(&self) -> leptos::server_fn::Bytes {
        #[cfg(feature = "ssr")]
        crate::status::set_status(self.status());
        <JsonEncoding as leptos::server_fn::Encodes<AppError>>::encode(self).unwrap_or_else(|_| {
            leptos::server_fn::Bytes::from_static(
                br#"{"Internal":"the error could not be encoded"}"#,
            )
        })
    }
}

#[cfg(feature = "ssr")]
impl From<tern_control::ControlError> for AppError {
    fn from(e: tern_control::ControlError) -> Self {
        use tern_control::ControlError as C;
        match e {
            C::NotFound(m) => AppError::NotFound(m),
            C::Invalid(m) => AppError::Invalid(m),
            C::Forbidden(m) => AppError::Forbidden(m),
            C::Conflict(m) => AppError::Conflict(m),
            C::Engine(e) => {
                use tern_engine::EngineError as E;
                match e {
                    E::Spec { .. } | E::Schema { .. } | E::Row { .. } => {
                        AppError::Invalid(e.to_string())
                    }
                    E::Unreachable { .. } => AppError::Unavailable(e.to_string()),
                    e => {
                        tracing::error!(error = %e, "engine failed in a server function");
                        AppError::Internal(e.to_string())
                    }
                }
            }
            C::Datafix(e) => {
                use tern_datafix::DatafixError as D;
                match e {
                    D::Spec { .. } | D::Filter { .. } => AppError::Invalid(e.to_string()),
                    D::Unreachable { .. } => AppError::Unavailable(e.to_string()),
                    D::Stopped { .. } => AppError::Conflict(e.to_string()),
                    e => AppError::Internal(e.to_string()),
                }
            }
            e @ C::Unavailable { .. } => {
                tracing::warn!(error = %e, "control store unavailable");
                AppError::Unavailable(e.to_string())
            }
            e => {
                tracing::error!(error = %e, "server function failed");
                AppError::Internal(e.to_string())
            }
        }
    }
}
