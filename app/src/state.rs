//! The shared handles the server and the UI both receive (server only).

use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use tern_control::Store;
use tern_control::runners::RunnerContext;

/// One per process: the store, the Leptos options, and what the engines need
/// (the transformer plug-ins). Axum handlers take it as `State`; server
/// functions find it in context.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub leptos_options: LeptosOptions,
    pub runners: RunnerContext,
    /// The overview's lines, shared between requests for a moment.
    pub overview: std::sync::Arc<crate::overview_cache::OverviewCache>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
