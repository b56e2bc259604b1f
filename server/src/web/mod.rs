//! The web edge: one axum router for the pages (Leptos, server-rendered and
//! hydrated), the server functions, the JSON API, sign-in, health and metrics.
//!
//! Every request passes, outermost first: metrics → compression → session →
//! CSRF check (state-changing requests) → user lookup (and the sign-in wall) →
//! the access table (`access.rs`: which roles may reach the route).

pub mod access;
pub mod api;
pub mod api_clients;
pub mod api_connections;
pub mod api_fixes;
pub mod api_runbook;
pub mod api_switch;
pub mod auth;
pub mod caller;
pub mod charts;
pub mod csrf;
pub mod error;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod session_store;
pub mod sign_in_limit;

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use leptos::prelude::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tern_app::state::AppState;
use tern_app::{App, shell};
use tern_control::Store;
use tern_control::runners::RunnerContext;
use tower_http::compression::CompressionLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::settings::Settings;

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "tern_session";

/// Leptos's options, from our settings (not from a Cargo.toml at run time).
pub fn leptos_options(settings: &Settings) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("tern")
        .site_root(settings.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(settings.listen)
        .build()
}

/// The shared state for a store and settings.
pub fn app_state(store: Store, settings: &Settings, runners: RunnerContext) -> AppState {
    AppState {
        store,
        leptos_options: leptos_options(settings),
        runners,
        overview: Default::default(),
    }
}

/// The whole router.
pub fn router(state: AppState, settings: &Settings) -> Router {
    let routes = generate_route_list(App);
    let metrics = metrics::Metrics::default();
    let sessions =
        SessionManagerLayer::new(session_store::ControlSessionStore::new(state.store.clone()))
            .with_name(SESSION_COOKIE)
            .with_secure(settings.secure_cookies)
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_expiry(Expiry::OnInactivity(time::Duration::minutes(i64::from(
                settings.session_idle_minutes,
            ))));
    let allowed = csrf::AllowedOrigins(Arc::new(settings.allowed_origins.clone()));
    let leptos_options = state.leptos_options.clone();

    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::endpoint))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route("/auth/login", post(auth::login_form))
        .route("/auth/logout", post(auth::logout))
        .merge(api::routes())
        .merge(api_runbook::routes())
        .merge(api_fixes::routes())
        .merge(api_connections::routes())
        .merge(charts::routes())
        .merge(api_clients::session_routes())
        .merge(api_switch::session_routes())
        .leptos_routes(&state, routes, move || shell(leptos_options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        // Inside the user lookup: the access table needs the signed-in user.
        .layer(from_fn_with_state(state.clone(), access::enforce))
        .layer(from_fn_with_state(state.clone(), auth::require_user))
        .layer(from_fn_with_state(allowed, csrf::protect))
        .layer(sessions)
        // Token-authenticated client API: no session, no CSRF (no cookies).
        .merge(api_clients::token_routes())
        .merge(api_switch::token_routes())
        .layer(CompressionLayer::new())
        .layer(axum::Extension(metrics.clone()))
        .layer(axum::Extension(sign_in_limit::SignInLimits::default()))
        .layer(from_fn_with_state(metrics, metrics::track))
        .with_state(state)
}
