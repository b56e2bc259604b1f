//! Cross-site request forgery protection for every state-changing request
//! (anything but GET, HEAD and OPTIONS), server functions included.
//!
//! A browser always says where a request comes from (`Origin`, or at least
//! `Referer`), so: when it says, it must be this server (or a configured
//! origin). When it says nothing, the request is not a browser's; if it carries
//! a session cookie it must also carry that session's token in `X-CSRF-Token`,
//! and without a cookie there is no ambient authority to forge.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use crate::web::auth::CSRF_TOKEN;
use crate::web::error::ApiError;

/// The header scripts send their session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Origins accepted besides the request's own host.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(pub Arc<Vec<String>>);

fn origin_of(headers: &HeaderMap) -> Option<String> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        return Some(origin.trim_end_matches('/').to_string());
    }
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let scheme_end = referer.find("://")? + 3;
    let end = referer[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(referer.len());
    Some(referer[..end].to_string())
}

/// True when `origin` names this server: its host (and port) as the client reached it.
fn is_same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

fn forbidden(message: String) -> Response {
    tracing::warn!(%message, "refused a cross-site request");
    ApiError::new(StatusCode::FORBIDDEN, message).into_response()
}

/// The middleware.
pub async fn protect(
    State(allowed): State<AllowedOrigins>,
    session: Session,
    req: Request,
    next: Next,
) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let headers = req.headers();
    if let Some(origin) = origin_of(headers) {
        if is_same_origin(&origin, headers)
            || allowed.0.iter().any(|a| a.trim_end_matches('/') == origin)
        {
            return next.run(req).await;
        }
        return forbidden(format!(
            "request from {origin} refused: state-changing requests must come from Tern's own pages \
             (add the origin to `allowed_origins` if Tern sits behind a proxy)"
        ));
    }
    let has_cookie = headers.contains_key(header::COOKIE);
    if !has_cookie {
        return next.run(req).await;
    }
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let expected = session.get::<String>(CSRF_TOKEN).await.ok().flatten();
    match (sent, expected) {
        (Some(sent), Some(expected)) if constant_time_eq(sent.as_bytes(), expected.as_bytes()) => {
            next.run(req).await
        }
        _ => forbidden(
            "request refused: it carries a session cookie but no valid X-CSRF-Token header; \
             send the csrf_token that POST /api/v1/session answered"
                .into(),
        ),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn origin_comes_from_origin_or_referer() {
        let h = headers(&[(header::ORIGIN, "http://127.0.0.1:3000")]);
        assert_eq!(origin_of(&h).as_deref(), Some("http://127.0.0.1:3000"));
        let h = headers(&[(header::REFERER, "https://evil.example/page?x=1")]);
        assert_eq!(origin_of(&h).as_deref(), Some("https://evil.example"));
        assert_eq!(origin_of(&HeaderMap::new()), None);
    }

    #[test]
    fn same_origin_compares_with_host() {
        let h = headers(&[(header::HOST, "127.0.0.1:3000")]);
        assert!(is_same_origin("http://127.0.0.1:3000", &h));
        assert!(!is_same_origin("http://127.0.0.1:3001", &h));
        assert!(!is_same_origin("https://evil.example", &h));
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
