//! The grid table most pages list their records in.

use leptos::prelude::*;

/// A grid table: `head`'s cells, then the rows its children give
/// (`testid` names it for the browser tests).
#[component]
pub fn Grid(
    head: &'static [&'static str],
    #[prop(optional)] testid: Option<&'static str>,
    children: Children,
) -> impl IntoView {
    view! {
        <table class="grid" data-testid=testid>
            <thead><tr>{head.iter().map(|h| view! { <th>{*h}</th> }).collect_view()}</tr></thead>
            <tbody>{children()}</tbody>
        </table>
    }
}
