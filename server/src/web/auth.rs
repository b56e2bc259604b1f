//! Sign-in, sign-out, and the layer that puts the signed-in user into every
//! request (or turns the request away).
//!
//! The session holds only the user's id and a CSRF token; the user is re-read
//! from the store on each request, so a disabled account or a changed role
//! takes effect at once.

use axum::Form;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use serde::Deserialize;
use tern_app::server::CurrentUser;
use tern_app::state::AppState;
use tern_control::audit::{self, AuditEntry};
use tern_control::{Actor, User};
use tower_sessions::Session;

use crate::web::error::ApiError;

/// Session key of the signed-in user's id.
const USER_ID: &str = "user_id";
/// Session key of the CSRF token scripts send back in `X-CSRF-Token`.
pub const CSRF_TOKEN: &str = "csrf_token";

/// Paths that answer without a session.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/login"
            | "/auth/login"
            | "/healthz"
            | "/readyz"
            | "/metrics"
            | "/favicon.ico"
            | "/api/v1/session"
    ) || path.starts_with("/pkg/")
}

/// API and server-function requests get 401; page loads are sent to sign-in.
fn wants_json(path: &str) -> bool {
    path.starts_with("/api/")
}

/// Loads the signed-in user into the request, or refuses a request that needs one.
pub async fn require_user(
    State(state): State<AppState>,
    session: Session,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    let user = match session.get::<i64>(USER_ID).await {
        Ok(Some(id)) => match state.store.user_by_id(id).await {
            Ok(Some(user)) if !user.disabled => Some(user),
            Ok(_) => {
                // Deleted or disabled since the session began.
                let _ = session.flush().await;
                None
            }
            Err(e) => return ApiError::from(e).into_response(),
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable session; treating as signed out");
            None
        }
    };
    match user {
        Some(user) => {
            req.extensions_mut().insert(CurrentUser(user));
            next.run(req).await
        }
        None if is_public(&path) => next.run(req).await,
        None if wants_json(&path) || req.method() != Method::GET => {
            ApiError::unauthorized().into_response()
        }
        None => {
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            Redirect::to(&format!("/login?next={}", encode_query(&target))).into_response()
        }
    }
}

fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Only local paths are followed after sign-in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts a session for `user`: a new session id (no fixation) and a new CSRF token.
async fn start_session(session: &Session, user: &User) -> Result<String, ApiError> {
    let failed = |e: tower_sessions::session::Error| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot start a session: {e}"),
        )
    };
    session.cycle_id().await.map_err(failed)?;
    session.insert(USER_ID, user.id).await.map_err(failed)?;
    let token = new_token();
    session.insert(CSRF_TOKEN, &token).await.map_err(failed)?;
    Ok(token)
}

async fn audit_sign(state: &AppState, user: &User, action: &str) {
    let result = async {
        let mut tx = state.store.begin().await?;
        audit::record(
            &mut tx,
            AuditEntry::new(&Actor::from(user), action, "user", &user.username),
        )
        .await?;
        tx.commit()
            .await
            .map_err(tern_control::ControlError::db("recording a sign-in"))
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, user = %user.username, "could not audit {action}");
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// `POST /auth/login` (the sign-in form).
pub async fn login_form(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref().filter(|n| !n.is_empty()));
    match state
        .store
        .authenticate(form.username.trim(), &form.password)
        .await
    {
        Ok(Some(user)) => match start_session(&session, &user).await {
            Ok(_) => {
                audit_sign(&state, &user, "session.sign-in").await;
                tracing::info!(user = %user.username, role = %user.role, "signed in");
                Redirect::to(&next).into_response()
            }
            Err(e) => e.into_response(),
        },
        Ok(None) => {
            tracing::info!(user = %form.username, "sign-in refused");
            Redirect::to(&format!("/login?error=1&next={}", encode_query(&next))).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /auth/logout`.
pub async fn logout(State(state): State<AppState>, session: Session, req: Request) -> Response {
    if let Some(CurrentUser(user)) = req.extensions().get::<CurrentUser>() {
        audit_sign(&state, user, "session.sign-out").await;
    }
    if let Err(e) = session.flush().await {
        tracing::warn!(error = %e, "could not delete a session");
    }
    Redirect::to("/login?signed_out=1").into_response()
}

#[derive(Debug, Deserialize)]
pub struct LoginJson {
    username: String,
    password: String,
}

/// `POST /api/v1/session` — sign in from a script. Answers the user and the
/// CSRF token to send in `X-CSRF-Token` with every state-changing request.
pub async fn login_json(
    State(state): State<AppState>,
    session: Session,
    Json(body): Json<LoginJson>,
) -> Result<Response, ApiError> {
    match state
        .store
        .authenticate(body.username.trim(), &body.password)
        .await?
    {
        Some(user) => {
            let token = start_session(&session, &user).await?;
            audit_sign(&state, &user, "session.sign-in").await;
            Ok(Json(serde_json::json!({
                "username": user.username,
                "role": user.role,
                "csrf_token": token,
            }))
            .into_response())
        }
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong username or password",
        )),
    }
}

/// `DELETE /api/v1/session` — sign out from a script.
pub async fn logout_json(session: Session) -> Response {
    let _ = session.flush().await;
    (
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "no-store")],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/audit?actor=x")), "/audit?actor=x");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn public_paths_are_few() {
        assert!(is_public("/login"));
        assert!(is_public("/pkg/tern.wasm"));
        assert!(!is_public("/"));
        assert!(!is_public("/api/v1/migrations"));
        assert!(!is_public("/admin/users"));
    }
}
