//! The program manager's overview: every migration and where its buckets stand.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::accuracy_chart::AccuracyChart;
use crate::components::guard::ErrorPanel;
use crate::components::layout::use_me;
use crate::components::old_system::OldSystemPanel;
use crate::components::phase_bar::PhaseBar;
use crate::error::AppError;
use crate::types::{MigrationCard, duration, rate, thousands};

/// Every migration with its buckets per phase, pace, ETA and accuracy.
#[server]
pub async fn list_migrations() -> Result<Vec<MigrationCard>, AppError> {
    crate::server::actor()?;
    let lines = crate::server::state()?.store.program_overview().await?;
    Ok(lines
        .into_iter()
        .map(|l| {
            let pace = l.pace.as_ref().map(|p| crate::types::PaceView {
                median: p.median,
                p10: p.p10,
                p90: p.p90,
                eta_seconds: l.eta.as_ref().map(|e| e.seconds),
                eta_fast: l.eta.as_ref().map(|e| e.seconds_fast),
                eta_slow: l.eta.as_ref().and_then(|e| e.seconds_slow),
            });
            MigrationCard {
                pace,
                accuracy: l.accuracy,
                running_jobs: l.running_jobs,
                ..l.summary.into()
            }
        })
        .collect())
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
            pace: None,
            accuracy: Vec::new(),
            running_jobs: 0,
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
            <p class="muted">"Every migration, its buckets per phase, how many rows have moved, how fast, and how accurate."</p>
            <NewMigrationButton/>
        </div>
        <OldSystemPanel/>
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
                <div><dt>"Pace"</dt><dd data-testid="card-pace">{m.pace.as_ref().map(|p| rate(p.median)).unwrap_or_else(|| if m.running_jobs > 0 { "measuring…".into() } else { "idle".into() })}</dd></div>
                <div><dt>"ETA"</dt><dd data-testid="card-eta">{m.pace.as_ref().and_then(|p| p.eta_seconds).map(duration).unwrap_or_else(|| "—".into())}</dd></div>
                <div><dt>"Accuracy"</dt><dd>{m.accuracy.last().map(|(_, a)| format!("{a:.2}%")).unwrap_or_else(|| "—".into())}</dd></div>
            </dl>
            {m.pace.as_ref().and_then(|p| p.eta_fast.zip(p.eta_slow)).map(|(fast, slow)| view! {
                <p class="muted small">{format!("ETA spread from measured pace: {} to {}", duration(fast), duration(slow))}</p>
            })}
            {(!m.accuracy.is_empty()).then(|| view! { <AccuracyChart points=m.accuracy.clone()/> })}
        </article>
    }
}

/// "New migration", for those who may create one.
#[component]
fn NewMigrationButton() -> impl IntoView {
    let me = use_me();
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                me.await.ok().flatten().filter(|m| m.can_operate).map(|_| view! {
                    <a class="button primary" href="/migrations/new" data-testid="new-migration">"New migration"</a>
                })
            })}
        </Suspense>
    }
}
