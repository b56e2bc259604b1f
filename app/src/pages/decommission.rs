//! The decommission checklist of a migration, computed from the store.

use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

use crate::components::guard::loaded;
use crate::components::page_head::PageHead;
use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecommissionData {
    pub migration: String,
    pub items: Vec<(String, bool, String)>,
    pub ready: bool,
}

#[server]
pub async fn decommission_view(id: i64) -> Result<DecommissionData, AppError> {
    let store = crate::server::signed_in_store()?;
    let m = store.migration(id).await?;
    let d = store.decommission(id).await?;
    Ok(DecommissionData {
        migration: m.name,
        items: d
            .items
            .into_iter()
            .map(|i| (i.label, i.done, i.detail))
            .collect(),
        ready: d.ready,
    })
}

#[component]
pub fn DecommissionPage() -> impl IntoView {
    let id = crate::pages::id_param();
    let data = Resource::new_blocking(id, decommission_view);
    view! {
        <Title text="Decommission"/>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                loaded(data.await, |d| view! {
                    <PageHead title=format!("Decommission {}", d.migration)>"Computed from the store: every line must hold before the old store is switched off."</PageHead>
                    <section class="panel">
                        <ul class="checklist" data-testid="decommission">
                            {d.items.into_iter().map(|(label, done, detail)| view! {
                                <li class:done=done data-testid="decommission-item">
                                    <span class="mark">{if done { "✔ " } else { "✘ " }}</span>
                                    <strong>{label}</strong>
                                    <span class="muted">{format!(" — {detail}")}</span>
                                </li>
                            }).collect_view()}
                        </ul>
                        <p class="big" data-testid="decommission-verdict">{if d.ready {
                            "The old store can be switched off."
                        } else {
                            "The old store is still needed."
                        }}</p>
                    </section>
                })
            })}
        </Suspense>
        {move || (id() > 0).then(|| view! {
            <crate::components::decommission_steps::DecommissionSteps migration_id=id()/>
        })}
    }
}
