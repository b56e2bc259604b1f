//! The decommission checklist of a migration, computed from the store.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use serde::{Deserialize, Serialize};

use crate::components::guard::ErrorPanel;
use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecommissionData {
    pub migration: String,
    pub items: Vec<(String, bool, String)>,
    pub ready: bool,
}

#[server]
pub async fn decommission_view(id: i64) -> Result<DecommissionData, AppError> {
    crate::server::actor()?;
    let store = crate::server::state()?.store;
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
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").and_then(|s| s.parse::<i64>().ok()).unwrap_or(0));
    let data = Resource::new_blocking(id, decommission_view);
    view! {
        <Title text="Decommission"/>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(d) => view! {
                        <div class="page-head">
                            <h1>{format!("Decommission {}", d.migration)}</h1>
                            <p class="muted">"Computed from the store: every line must hold before the old store is switched off."</p>
                        </div>
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
                    }.into_any(),
                    Err(e) => view! { <ErrorPanel error=e.to_string()/> }.into_any(),
                }
            })}
        </Suspense>
        {move || (id() > 0).then(|| view! {
            <crate::components::decommission_steps::DecommissionSteps migration_id=id()/>
        })}
    }
}
