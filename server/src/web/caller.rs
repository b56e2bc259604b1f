//! What a JSON handler starts from: the shared state and the signed-in user
//! as the control plane's `Actor` (one extractor instead of `State` +
//! `Extension<CurrentUser>` and a conversion in every handler), and the
//! answer type.

use axum::Json;
use axum::extract::{Extension, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tern_app::server::CurrentUser;
use tern_app::state::AppState;
use tern_control::Actor;

use crate::web::error::ApiError;

/// The state and the user a handler acts for.
pub struct Caller {
    pub state: AppState,
    pub actor: Actor,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = <Extension<CurrentUser> as FromRequestParts<AppState>>::Rejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Extension(user) = Extension::<CurrentUser>::from_request_parts(parts, state).await?;
        Ok(Caller {
            state: state.clone(),
            actor: Actor::from(&user.0),
        })
    }
}

/// A JSON handler's answer: a JSON value (or `T`), or an error.
pub type Answer<T = Json<Value>> = Result<T, ApiError>;

/// A 201 answer: the status and the record created.
pub type Created = (StatusCode, Json<Value>);

/// Answers 201 with `record` as JSON.
pub fn created(record: impl serde::Serialize) -> Answer<Created> {
    Ok((StatusCode::CREATED, Json(json!(record))))
}

/// One extractor run by hand inside another's `from_request_parts`, its
/// rejection answered as it would be from a handler.
pub async fn extract<T>(parts: &mut Parts, state: &AppState) -> Result<T, Response>
where
    T: FromRequestParts<AppState>,
    T::Rejection: IntoResponse,
{
    T::from_request_parts(parts, state)
        .await
        .map_err(IntoResponse::into_response)
}
