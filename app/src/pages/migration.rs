//! One migration: its buckets and their phases.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::components::guard::ErrorPanel;
use crate::components::phase_bar::PhaseBar;
use crate::error::AppError;
use crate::types::{MigrationDetail, thousands};

/// A migration with its buckets.
#[server]
pub async fn get_migration(id: i64) -> Result<MigrationDetail, AppError> {
    use tern_control::clock::format_ms;
    crate::server::actor()?;
    let store = crate::server::state()?.store;
    let migration = store.migration(id).await?;
    let buckets = store.list_buckets(id).await?;
    let summary = store
        .migration_summaries()
        .await?
        .into_iter()
        .find(|s| s.migration.id == id)
        .ok_or_else(|| AppError::NotFound(format!("there is no migration {id}")))?;
    Ok(MigrationDetail {
        card: summary.into(),
        created_by: migration.created_by,
        created_at: format_ms(migration.created_at),
        spec: migration.spec,
        buckets: buckets
            .into_iter()
            .map(|b| crate::types::BucketRow {
                idx: b.idx,
                lo: b.lo.unwrap_or_else(|| "−∞".into()),
                hi: b.hi.unwrap_or_else(|| "+∞".into()),
                planned_rows: b.planned_rows,
                rows_copied: b.rows_copied,
                phase: b.phase.as_str().to_string(),
                updated_at: format_ms(b.updated_at),
            })
            .collect(),
    })
}

#[component]
pub fn MigrationPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").and_then(|s| s.parse::<i64>().ok()));
    let detail = Resource::new_blocking(id, |id| async move {
        match id {
            Some(id) => get_migration(id).await,
            None => Err(AppError::NotFound(
                "a migration id is a number, like /migrations/1".into(),
            )),
        }
    });
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(d) => view! { <MigrationView d/> }.into_any(),
                    Err(AppError::NotFound(m)) => {
                        #[cfg(feature = "ssr")]
                        crate::server::set_status(404);
                        view! { <ErrorPanel error=m/> }.into_any()
                    }
                    Err(e) => view! { <ErrorPanel error=e.to_string()/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn MigrationView(d: MigrationDetail) -> impl IntoView {
    let rows = d
        .buckets
        .into_iter()
        .map(|b| {
            view! {
                <tr data-testid="bucket-row">
                    <td class="num">{b.idx}</td>
                    <td class="mono">{format!("[{}, {})", b.lo, b.hi)}</td>
                    <td><span class=format!("chip phase-{}", b.phase)>{b.phase.clone()}</span></td>
                    <td class="num">{thousands(b.rows_copied)}</td>
                    <td class="num">{thousands(b.planned_rows)}</td>
                    <td class="mono muted">{b.updated_at}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <Title text=d.card.name.clone()/>
        <div class="page-head">
            <h1>{d.card.name.clone()}</h1>
            <p class="muted">{d.card.description.clone()}</p>
            <p class="muted small">{format!("created by {} at {}", d.created_by, d.created_at)}</p>
        </div>
        <section class="panel">
            <h2>"Buckets per phase"</h2>
            <PhaseBar phases=d.card.phases.clone() total=d.card.buckets/>
        </section>
        <section class="panel">
            <h2>"Buckets"</h2>
            <table class="grid">
                <thead><tr><th>"#"</th><th>"Key range"</th><th>"Phase"</th><th>"Rows copied"</th><th>"Rows planned"</th><th>"Updated"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
        <details class="panel">
            <summary>"Spec"</summary>
            <pre class="code">{d.spec}</pre>
        </details>
    }
}
