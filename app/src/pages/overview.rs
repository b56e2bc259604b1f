//! The program manager's overview: every migration and where its buckets stand.

use leptos::prelude::*;
use leptos_meta::Title;

use std::time::Duration;

use crate::components::accuracy_chart::AccuracyChart;
use crate::components::forecast::{BlockersPanel, ForecastStats};
use crate::components::guard::loaded;
use crate::components::layout::{can_operate, use_me};
use crate::components::live::use_tick;
use crate::components::old_system::OldSystemPanel;
use crate::components::phase_bar::PhaseBar;
use crate::error::AppError;
use crate::types::{MigrationCard, thousands};

/// Every migration with its buckets per phase, rows done, pace, ETA,
/// accuracy and what blocks it.
#[server]
pub async fn list_migrations() -> Result<Vec<MigrationCard>, AppError> {
    let me = crate::server::actor()?;
    let state = crate::server::state()?;
    let store = state.store;
    let lines = state.overview.lines(&store).await?;
    let readers = me.role.can_read_audit();
    let mut cards = Vec::with_capacity(lines.len());
    for l in lines.iter().cloned() {
        let id = l.summary.migration.id;
        let mut blockers = l.blockers;
        if !readers {
            // A client owner gets no link to a page they may not open: no
            // bucket pages, and only their own clients.
            for group in &mut blockers {
                for b in &mut group.first {
                    b.bucket = None;
                    if let Some(c) = b.client {
                        let theirs = match store.client(c).await {
                            Ok(client) => me.sees_client(&client.name),
                            Err(_) => false,
                        };
                        if !theirs {
                            b.client = None;
                        }
                    }
                }
            }
        }
        cards.push(MigrationCard {
            forecast: l.forecast.as_ref().map(crate::convert::forecast_view),
            blockers: crate::convert::blocker_views(id, blockers),
            accuracy: l.accuracy,
            accuracy_by_table: l
                .accuracy_by_table
                .into_iter()
                .map(|t| crate::types::TableSeries {
                    table: t.table,
                    points: t.points,
                })
                .collect(),
            running_jobs: l.running_jobs,
            can_open: readers,
            ..l.summary.into()
        });
    }
    Ok(cards)
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
            forecast: None,
            blockers: Vec::new(),
            accuracy: Vec::new(),
            accuracy_by_table: Vec::new(),
            running_jobs: 0,
            can_open: false,
        }
    }
}

#[component]
pub fn Overview() -> impl IntoView {
    // Live: the figures move while jobs run.
    let tick = use_tick(Duration::from_secs(3));
    let migrations = Resource::new_blocking(move || tick.get(), |_| list_migrations());
    view! {
        <Title text="Overview"/>
        <div class="page-head">
            <h1>"Overview"</h1>
            <p class="muted">"Every migration, its buckets per phase, how many rows have moved, how fast, and how accurate."</p>
            <NewMigrationButton/>
        </div>
        <OldSystemPanel/>
        <crate::components::source_of_truth::SourceOfTruthPanel/>
        <Transition fallback=|| view! { <p class="muted">"Loading migrations…"</p> }>
            {move || Suspend::new(async move {
                loaded(migrations.await, |v| match v {
                    list if list.is_empty() => view! { <EmptyOverview/> }.into_any(),
                    list => view! {
                        <div class="cards">
                            {list.into_iter().map(|m| view! { <MigrationCardView m/> }).collect_view()}
                        </div>
                    }.into_any(),
                })
            })}
        </Transition>
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
    // The migration page is for readers; a client owner's way in is the guide.
    let (href, title) = if m.can_open {
        (format!("/migrations/{}", m.id), m.name.clone())
    } else {
        (
            format!("/migrations/{}/guide", m.id),
            format!("{} · guide", m.name),
        )
    };
    view! {
        <article class="panel card" data-testid="migration-card">
            <header class="card-head">
                <h2><a href=href>{title}</a></h2>
                <span class=format!("status status-{}", m.status)>{m.status.clone()}</span>
            </header>
            <p class="muted">{m.description.clone()}</p>
            <PhaseBar phases=m.phases.clone() total=m.buckets/>
            <ForecastStats forecast=m.forecast.clone() running_jobs=m.running_jobs/>
            <dl class="stats">
                <div><dt>"Buckets"</dt><dd>{thousands(m.buckets)}</dd></div>
                <div><dt>"Accuracy"</dt><dd data-testid="card-accuracy">{m.accuracy.last().map(|(_, a)| format!("{a:.2}%")).unwrap_or_else(|| "not verified yet".into())}</dd></div>
            </dl>
            <BlockersPanel groups=m.blockers.clone()/>
            {(!m.accuracy_by_table.is_empty()).then(|| view! { <AccuracyChart tables=m.accuracy_by_table.clone()/> })}
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
                can_operate(me).await.then(|| view! {
                    <a class="button primary" href="/migrations/new" data-testid="new-migration">"New migration"</a>
                })
            })}
        </Suspense>
    }
}
