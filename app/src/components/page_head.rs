//! A page's heading: its title and, under it, what the page is for.

use leptos::prelude::*;

/// The heading most pages open with: `title`, then the children as the
/// muted line that says what the page is for.
#[component]
pub fn PageHead(#[prop(into)] title: String, children: Children) -> impl IntoView {
    view! {
        <div class="page-head">
            <h1>{title}</h1>
            <p class="muted">{children()}</p>
        </div>
    }
}
