//! Server-side helpers for server functions: the shared state and the signed-in
//! user, both taken from the request the function runs for.

use http::request::Parts;
use leptos::prelude::*;
use tern_control::{Actor, User};

use crate::error::AppError;
use crate::state::AppState;
pub use crate::status::set_status;
use crate::types::Me;

/// The signed-in user, put into the request by the server's session layer.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

/// The shared state.
pub fn state() -> Result<AppState, AppError> {
    use_context::<AppState>()
        .ok_or_else(|| AppError::Internal("the app state is missing from context".into()))
}

/// The store and the signed-in user as an actor: what a server function that
/// acts in the user's name starts from (the store checks the role again).
pub fn acting() -> Result<(tern_control::Store, Actor), AppError> {
    let me = actor()?;
    Ok((state()?.store, me))
}

/// The store, for a server function every signed-in user may call (the
/// store call itself needs no role): refused when no one is signed in.
pub fn signed_in_store() -> Result<tern_control::Store, AppError> {
    actor()?;
    Ok(state()?.store)
}

/// The signed-in user, if any.
pub fn current_user() -> Option<User> {
    use_context::<Parts>().and_then(|p| p.extensions.get::<CurrentUser>().map(|c| c.0.clone()))
}

/// The signed-in user as an actor, or `Unauthenticated`.
pub fn actor() -> Result<Actor, AppError> {
    current_user()
        .map(|u| Actor::from(&u))
        .ok_or(AppError::Unauthenticated)
}

impl From<&User> for Me {
    fn from(u: &User) -> Me {
        Me {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role.as_str().to_string(),
            can_operate: u.role.can_operate(),
            can_administer: u.role.can_administer(),
            can_read_audit: u.role.can_read_audit(),
            clients: u.clients.clone(),
        }
    }
}
