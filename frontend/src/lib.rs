//! The browser entry point: hydrates the page the server rendered, so that its
//! controls respond without reloading. Built for `wasm32-unknown-unknown` by
//! `cargo xtask` (or cargo-leptos).

// The pages' view types are deep; the release build lays them out further.
#![recursion_limit = "256"]

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(tern_app::App);
    // Tells tests and the first-visit measurement that the page now answers
    // clicks (`<html data-hydrated>`).
    if let Some(html) = leptos::prelude::document().document_element() {
        let _ = html.set_attribute("data-hydrated", "");
    }
}
