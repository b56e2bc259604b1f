//! One file per page.

use leptos::prelude::*;

pub mod audit;
pub mod bucket;
pub mod client;
pub mod clients;
pub mod connections;
pub mod decommission;
pub mod fixes;
pub mod guide;
pub mod login;
pub mod migration;
pub mod new_migration;
pub mod not_found;
pub mod offline;
pub mod overview;
pub mod users;

/// The page address's `id`, or 0 when it is not a number (the server then
/// answers that there is no such record).
pub fn id_param() -> impl Fn() -> i64 + Copy + Send + Sync + 'static {
    let params = leptos_router::hooks::use_params_map();
    move || params.with(|p| p.get("id").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0))
}

/// How many times these actions have finished: a resource keyed on it loads
/// again after each of them.
pub fn finished(versions: &[RwSignal<usize>]) -> usize {
    versions.iter().map(|v| v.get()).sum()
}
