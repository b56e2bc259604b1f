//! The 404 page.

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    crate::server::set_status(404);
    view! {
        <Title text="Not found"/>
        <div class="app">
            <main class="content">
                <section class="panel error-page" data-testid="not-found">
                    <h1>"404 — no such page"</h1>
                    <p>"Nothing lives at this address. It may have been a migration that was archived, or a mistyped link."</p>
                    <p><a href="/">"Go to the overview"</a></p>
                </section>
            </main>
        </div>
    }
}
