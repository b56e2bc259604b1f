//! The program manager's overview: every migration and where its buckets stand.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::guard::ErrorPanel;
use crate::components::phase_bar::PhaseBar;
use crate::error::AppError;
use crate::types::{MigrationCard, thousands};

/// Every migration with its bucket counts per phase.
#[server]
pub async fn list_migrations() -> Result<Vec<MigrationCard>, AppError> {
    crate::server::actor()?;
    let summaries = crate::server::state()?.store.migration_summaries().await?;
    Ok(summaries.into_iter().map(MigrationCard::from).collect())
}

#[cfg(feature = "ssr")]
impl From<tern_control::migrations::MigrationSummary> for MigrationCard {
    fn from(s: tern_control::migrations::MigrationSummary) -> Self {
        MigrationCard {
            id: s.migration.id,
            name: s.migration.name,
            description: s.migration.description,
            status: s.migration.status,
            buckets: s.buckets,
            phases: s
                .phases
                .into_iter()
                .map(|(p, n)| crate::types::PhaseCount {
                    phase: p.as_str().to_string(),
                    count: n,
                })
                .collect(),
            planned_rows: s.planned_rows,
            rows_copied: s.rows_copied,
        }
    }
}

#[component]
pub fn Overview() -> impl IntoView {
    let migrations = Resource::new_blocking(|| (), |_| list_migrations());
    view! {
        <Title text="Overview"/>
        <div class="page-head">
            <h1>"Overview"</h1>
            <p class="muted">"Every migration, its buckets per phase, and how many rows have moved."</p>
        </div>
        <Suspense fallback=|| view! { <p class="muted">"Loading migrations…"</p> }>
            {move || Suspend::new(async move {
                match migrations.await {
                    Ok(list) if list.is_empty() => view! { <EmptyOverview/> }.into_any(),
                    Ok(list) => view! {
                        <div class="cards">
                            {list.into_iter().map(|m| view! { <MigrationCardView m/> }).collect_view()}
                        </div>
                    }.into_any(),
                    Err(e) => view! { <ErrorPanel error=e.to_string()/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn EmptyOverview() -> impl IntoView {
    view! {
        <section class="panel empty" data-testid="empty-overview">
            <h2>"No migrations yet"</h2>
            <p>"A migration names a source and a target database and a spec that maps one to the other."</p>
            <ol>
                <li>"Write a spec: start from " <code>"examples/"</code> " in the repository."</li>
                <li>"Check its buckets with " <code>"tern plan --spec your-spec.toml"</code> "."</li>
                <li>"Or try everything on sample data first: " <code>"cargo xtask demo"</code> "."</li>
            </ol>
        </section>
    }
}

#[component]
fn MigrationCardView(m: MigrationCard) -> impl IntoView {
    let pct = if m.planned_rows > 0 {
        (m.rows_copied as f64) * 100.0 / (m.planned_rows as f64)
    } else {
        0.0
    };
    let href = format!("/migrations/{}", m.id);
    view! {
        <article class="panel card" data-testid="migration-card">
            <header class="card-head">
                <h2><a href=href>{m.name.clone()}</a></h2>
                <span class=format!("status status-{}", m.status)>{m.status.clone()}</span>
            </header>
            <p class="muted">{m.description.clone()}</p>
            <PhaseBar phases=m.phases.clone() total=m.buckets/>
            <dl class="stats">
                <div><dt>"Buckets"</dt><dd>{thousands(m.buckets)}</dd></div>
                <div><dt>"Rows moved"</dt><dd>{format!("{} of {}", thousands(m.rows_copied), thousands(m.planned_rows))}</dd></div>
                <div><dt>"Progress"</dt><dd>{format!("{pct:.1}%")}</dd></div>
            </dl>
        </article>
    }
}
