//! The HTTP status of the response being rendered, set from a page or from an
//! error on its way out. Its own file so the error type and the server helpers
//! can both use it without depending on each other.

use leptos::prelude::*;

/// Sets the HTTP status of the page being rendered (or the server function
/// answering); does nothing outside a request.
pub fn set_status(code: u16) {
    if let (Some(res), Ok(status)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::StatusCode::from_u16(code),
    ) {
        res.set_status(status);
    }
}
