//! The shared handles the server and the UI both receive (server only).

use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use tern_control::Store;

/// One per process: the store, the Leptos options, and (later) the worker handle.
/// Axum handlers take it as `State`; server functions find it in context.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub leptos_options: LeptosOptions,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
