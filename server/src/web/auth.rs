//! Sign-in, sign-out, and the layer that puts the signed-in user into every
//! request (or turns the request away).
//!
//! The session holds only the user's id and a CSRF token; the user is re-read
//! from the store on each request, so a disabled account or a changed role
//! takes effect at once.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use rand::RngCore;
use serde::Deserialize;
use tern_app::server::CurrentUser;
use tern_app::state::AppState;
use tern_control::audit::{self, AuditEntry};
use tern_control::{Actor, User};
use tower_sessions::Session;

use crate::web::caller::extract;
use crate::web::error::{ApiError, Unauthorized};
use crate::web::sign_in_limit::SignInLimits;

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
            | "/api/v1/openapi.json"
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

/// Only same-origin paths are followed after sign-in (no open redirect): a
/// `next` must start with one `/` and hold no backslash, whitespace or control
/// character (browsers drop tab, CR and LF, so `/\t/evil.example` would become
/// `//evil.example`); its percent-decoded form may not start with `//` or `/\\`
/// nor hold a control character. Anything else is replaced by the overview.
fn safe_next(next: Option<&str>) -> String {
    fn local(p: &str) -> bool {
        p.starts_with('/')
            && !p.starts_with("//")
            && !p.contains('\\')
            && !p.chars().any(|c| c.is_control() || c.is_whitespace())
    }
    fn decoded_local(p: &str) -> bool {
        p.starts_with('/')
            && !p.starts_with("//")
            && !p.starts_with("/\\")
            && !p.chars().any(char::is_control)
    }
    match next {
        Some(n) if local(n) && decoded_local(&percent_decode(n)) => n.to_string(),
        _ => "/".to_string(),
    }
}

/// `%XX` sequences decoded (repeatedly, so `%2509` is seen as a tab too);
/// bytes that are not UTF-8 become U+FFFD.
fn percent_decode(s: &str) -> String {
    let mut current = s.to_string();
    for _ in 0..3 {
        let bytes = current.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes[i],
                bytes.get(i + 1).copied(),
                bytes.get(i + 2).copied(),
            ) {
                (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                    out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                    i += 3;
                }
                (b, _, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        let decoded = String::from_utf8_lossy(&out).into_owned();
        if decoded == current {
            break;
        }
        current = decoded;
    }
    current
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

/// A sign-in, as the form and the JSON API both make it: the attempt limit
/// (per user and per address), the password check, then the session and
/// its audit entry.
pub struct SignIn {
    state: AppState,
    limits: SignInLimits,
    address: Option<IpAddr>,
    session: Session,
}

/// What a sign-in came to.
enum SignedIn {
    /// Too many attempts: wait this long.
    Slowed(std::time::Duration),
    /// A wrong username or password.
    Refused,
    /// In, with the session's CSRF token.
    In(User, String),
}

impl FromRequestParts<AppState> for SignIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Extension(limits) = extract::<Extension<SignInLimits>>(parts, state).await?;
        let peer = extract::<Option<Extension<ConnectInfo<SocketAddr>>>>(parts, state).await?;
        let session = extract::<Session>(parts, state).await?;
        Ok(SignIn {
            state: state.clone(),
            limits,
            address: peer.map(|Extension(ConnectInfo(a))| a.ip()),
            session,
        })
    }
}

impl SignIn {
    async fn attempt(&self, username: &str, password: &str) -> Result<SignedIn, ApiError> {
        if let Err(wait) = self.limits.attempt(username, self.address) {
            tracing::warn!(user = %username, "sign-in slowed: too many attempts");
            return Ok(SignedIn::Slowed(wait));
        }
        let Some(user) = self
            .state
            .store
            .authenticate(username.trim(), password)
            .await?
        else {
            return Ok(SignedIn::Refused);
        };
        let token = start_session(&self.session, &user).await?;
        audit_sign(&self.state, &user, "session.sign-in").await;
        Ok(SignedIn::In(user, token))
    }
}

/// `POST /auth/login` (the sign-in form).
pub async fn login_form(sign_in: SignIn, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref().filter(|n| !n.is_empty()));
    match sign_in.attempt(&form.username, &form.password).await {
        Ok(SignedIn::Slowed(wait)) => Redirect::to(&format!(
            "/login?error=slow&wait={}&next={}",
            wait.as_secs().max(1),
            encode_query(&next)
        ))
        .into_response(),
        Ok(SignedIn::In(user, _)) => {
            tracing::info!(user = %user.username, role = %user.role, "signed in");
            Redirect::to(&next).into_response()
        }
        Ok(SignedIn::Refused) => {
            tracing::info!(user = %form.username, "sign-in refused");
            Redirect::to(&format!("/login?error=1&next={}", encode_query(&next))).into_response()
        }
        Err(e) => e.into_response(),
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginJson {
    username: String,
    password: String,
}

/// `POST /api/v1/session` — sign in from a script. Answers the user and the
/// CSRF token to send in `X-CSRF-Token` with every state-changing request.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "session",
    request_body = LoginJson,
    responses((status = 200, description = "the user and the CSRF token to send in X-CSRF-Token", body = serde_json::Value), Unauthorized, (status = 429, description = "too many attempts: wait and retry", body = crate::web::error::ErrorBody)),
)]
pub async fn login_json(
    sign_in: SignIn,
    Json(body): Json<LoginJson>,
) -> Result<Response, ApiError> {
    match sign_in.attempt(&body.username, &body.password).await? {
        SignedIn::Slowed(wait) => {
            let secs = wait.as_secs().max(1);
            let mut res = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many sign-in attempts: wait {secs} s and try again"),
            )
            .into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            Ok(res)
        }
        SignedIn::In(user, token) => Ok(Json(serde_json::json!({
            "username": user.username,
            "role": user.role,
            "csrf_token": token,
        }))
        .into_response()),
        SignedIn::Refused => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong username or password",
        )),
    }
}

/// `DELETE /api/v1/session` — sign out from a script.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "session",
    responses((status = 204, description = "signed out")),
    security(("session" = [])),
)]
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
        // Browsers drop tab, CR and LF: each would make `//evil.example`.
        for evil in [
            "/\t/evil.example/",
            "/\r/evil.example/",
            "/\n/evil.example/",
            "/%09/evil.example/",
            "/%0d%0a/evil.example/",
            "/%2F/evil.example/",
            "/%5Cevil.example/",
            "/%252F/evil.example/",
            "/ /evil.example/",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_next(Some("/fixes/3?tab=runs")), "/fixes/3?tab=runs");
        assert_eq!(safe_next(Some("/audit?actor=a%20b")), "/audit?actor=a%20b");
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
