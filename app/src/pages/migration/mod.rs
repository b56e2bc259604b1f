//! One migration: where its buckets stand, what runs, how fast, and the
//! engineer's controls. The live part refreshes itself every two seconds; the
//! settings only after a change.

mod batches;
mod grid;
mod jobs;
mod relay;
mod settings;
mod switch;

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::components::forecast::{BlockersPanel, ForecastStats};
use crate::components::guard::found;
use crate::components::live::use_tick;
use crate::components::phase_bar::PhaseBar;
use crate::error::AppError;
use crate::types::MigrationBoardView;

pub use batches::StartBatch;
pub use grid::RunBucketAction;
pub use jobs::{ControlJob, SetJobRate};
pub use relay::{InstallCapture, SetRelayRamp};
pub use settings::{ArchiveMigration, MigrationSettings, PlanBatches, SaveSettings};

/// Buckets listed per page of the grid.
pub const PAGE_SIZE: i64 = 100;

/// The migration page's live data: one page of buckets (of one phase, or
/// all), jobs, pace, accuracy and batches.
#[server]
pub async fn migration_board(
    id: i64,
    phase: String,
    offset: i64,
    chart_width: u32,
) -> Result<MigrationBoardView, AppError> {
    let me = crate::server::actor()?;
    let query = tern_control::dashboard::BucketQuery {
        phase: (!phase.is_empty())
            .then(|| tern_control::buckets::Phase::parse(&phase))
            .transpose()?,
        offset,
        limit: PAGE_SIZE,
    };
    let store = &crate::server::state()?.store;
    let board = store.migration_board(id, &query).await?;
    let blockers = store.blockers(&me, id, 5).await?;
    let mut view = board_view(&board, me.role.can_operate());
    view.card.blockers = crate::convert::blocker_views(id, blockers);
    view.accuracy_svg = crate::charts::accuracy_by_table_svg(
        &board.accuracy_by_table,
        crate::charts::width_of(chart_width),
    )
    .map_err(|e| AppError::Internal(format!("drawing the accuracy chart failed: {e}")))?;
    Ok(view)
}

#[cfg(feature = "ssr")]
fn board_view(
    b: &tern_control::dashboard::MigrationBoard,
    can_operate: bool,
) -> MigrationBoardView {
    use crate::convert::{bucket_line, job_row};
    use crate::types::BatchRow;
    use tern_control::clock::format_ms;
    let m = &b.summary.migration;
    let idx_of = |bucket_id: Option<i64>| {
        bucket_id.and_then(|id| b.buckets.iter().find(|x| x.id == id).map(|x| x.idx))
    };
    let seq_of = |batch: Option<i64>| {
        batch.and_then(|id| b.batches.iter().find(|x| x.id == id).map(|x| x.seq))
    };
    MigrationBoardView {
        can_operate,
        created_by: m.created_by.clone(),
        created_at: format_ms(m.created_at),
        buckets: b
            .buckets
            .iter()
            .map(|bucket| {
                let job = b
                    .bucket_jobs
                    .iter()
                    .find(|(id, _)| *id == bucket.id)
                    .map(|(_, j)| j);
                bucket_line(bucket, job, seq_of(bucket.batch_id))
            })
            .collect(),
        buckets_matching: b.buckets_matching,
        offset: b.query.offset,
        page_size: b.query.limit,
        jobs: b
            .jobs
            .iter()
            .map(|j| job_row(j, idx_of(j.bucket_id)))
            .collect(),
        accuracy: b.accuracy.clone(),
        accuracy_svg: String::new(),
        batches: b
            .batches
            .iter()
            .map(|x| BatchRow {
                id: x.id,
                seq: x.seq,
                planned_rows: x.planned_rows,
                state: x.state.clone(),
                started_at: x.started_at.map(format_ms).unwrap_or_default(),
                finished_at: x.finished_at.map(format_ms).unwrap_or_default(),
                buckets: b
                    .batch_members
                    .iter()
                    .filter(|k| k.batch_id == x.id)
                    .map(|k| {
                        (
                            k.idx,
                            k.phase.as_str().to_string(),
                            k.rows_copied,
                            k.accuracy,
                        )
                    })
                    .collect(),
            })
            .collect(),
        relay: match &b.relay {
            Some(job) => crate::types::RelayView {
                ramp: tern_control::relay::ramp_of(job)
                    .map(|r| r.to_string())
                    .unwrap_or_else(|e| e.to_string()),
                job_id: Some(job.id),
                state: Some(job.state.as_str().to_string()),
                message: job.message.clone(),
            },
            None => crate::types::RelayView {
                ramp: "off".into(),
                ..Default::default()
            },
        },
        card: crate::types::MigrationCard {
            forecast: b.forecast.as_ref().map(crate::convert::forecast_view),
            running_jobs: b
                .jobs
                .iter()
                .filter(|j| j.state.as_str() == "running")
                .count() as i64,
            can_open: true,
            ..b.summary.clone().into()
        },
    }
}

/// The page's interactive state. It lives above the parts that refresh every
/// two seconds, so a selection, a message, a filter or a half-typed rate
/// survives them.
#[derive(Clone, Copy)]
pub(crate) struct BoardUi {
    /// Bumped by every action so the page reloads its data at once.
    pub changed: RwSignal<u64>,
    pub selected: RwSignal<std::collections::BTreeSet<i64>>,
    pub reason: RwSignal<String>,
    /// The grid's phase filter ("" for every phase) and first listed bucket.
    pub phase: RwSignal<String>,
    pub offset: RwSignal<i64>,
    pub bucket_action: ServerAction<RunBucketAction>,
    pub job_control: ServerAction<ControlJob>,
    pub set_rate: ServerAction<SetJobRate>,
    pub start_batch: ServerAction<StartBatch>,
    pub set_relay: ServerAction<SetRelayRamp>,
    pub install_capture: ServerAction<InstallCapture>,
    pub relay_draft: RwSignal<String>,
    pub rate_drafts: RwSignal<std::collections::HashMap<i64, String>>,
    /// Which job action answered last, so the jobs panel shows its answer.
    pub last_job_action_was_rate: RwSignal<bool>,
    /// The listed buckets' state (phase, dual-write) the latest bucket
    /// action's answer describes ("" until the board after it is shown).
    pub answered_at: RwSignal<Option<String>>,
    /// The refresh (tick) at which a board first showed that state changed;
    /// the answer stays [`grid::SEEN_TICKS`] refreshes more, so the user
    /// reads it beside the new state, then goes.
    pub changed_seen_at: RwSignal<Option<u64>>,
    /// The user closed the latest answer.
    pub answer_dismissed: RwSignal<bool>,
    /// Counts the page's refreshes (every two seconds once hydrated).
    pub tick: ReadSignal<u64>,
    /// The accuracy chart's box width in pixels as last measured (0 before
    /// hydration): the chart is drawn at that width.
    pub chart_width: RwSignal<u32>,
}

/// The migration id of the address, or the 404 that says what one looks like.
fn known(id: Option<i64>) -> Result<i64, AppError> {
    id.ok_or_else(|| AppError::NotFound("a migration id is a number, like /migrations/1".into()))
}

#[component]
pub fn MigrationPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").and_then(|s| s.parse::<i64>().ok()));
    let tick = use_tick(Duration::from_secs(2));
    let ui = BoardUi {
        changed: RwSignal::new(0),
        selected: RwSignal::new(Default::default()),
        reason: RwSignal::new(String::new()),
        phase: RwSignal::new(String::new()),
        offset: RwSignal::new(0),
        bucket_action: ServerAction::new(),
        job_control: ServerAction::new(),
        set_rate: ServerAction::new(),
        start_batch: ServerAction::new(),
        set_relay: ServerAction::new(),
        install_capture: ServerAction::new(),
        relay_draft: RwSignal::new(String::new()),
        rate_drafts: RwSignal::new(Default::default()),
        last_job_action_was_rate: RwSignal::new(false),
        answered_at: RwSignal::new(None),
        changed_seen_at: RwSignal::new(None),
        answer_dismissed: RwSignal::new(false),
        tick,
        chart_width: RwSignal::new(0),
    };
    provide_context(ui);
    provide_context(ui.changed);
    Effect::new(move |_| {
        let done = ui.bucket_action.version().get()
            + ui.job_control.version().get()
            + ui.set_rate.version().get()
            + ui.start_batch.version().get()
            + ui.set_relay.version().get();
        if done > 0 {
            ui.changed.update(|c| *c += 1);
        }
    });
    // A new answer to a bucket action describes the board it leaves: the
    // next board shown sets it (see the grid).
    Effect::new(move |prev: Option<usize>| {
        let v = ui.bucket_action.version().get();
        if prev.is_some_and(|p| p != v) {
            // Done with the selection once it is acted on (here, once per
            // answer: an effect in the grid would run again at every refresh).
            if let Some(Ok(_)) = ui.bucket_action.value().get_untracked() {
                ui.selected.update(std::collections::BTreeSet::clear);
            }
            ui.answered_at.set(Some(String::new()));
            ui.changed_seen_at.set(None);
            ui.answer_dismissed.set(false);
        }
        v
    });
    let live = Resource::new_blocking(
        move || {
            (
                id(),
                tick.get(),
                ui.changed.get(),
                ui.phase.get(),
                ui.offset.get(),
                ui.chart_width.get(),
            )
        },
        move |(id, _, _, phase, offset, width)| async move {
            migration_board(known(id)?, phase, offset, width).await
        },
    );
    let still = Resource::new_blocking(
        move || (id(), ui.changed.get()),
        move |(id, _)| async move { settings::migration_settings(known(id)?).await },
    );
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                found(live.await, |b| view! { <Board b/> })
            })}
        </Transition>
        // Outside the board that redraws every two seconds: a switch's
        // answer stays on screen.
        {move || id().map(|migration_id| view! { <switch::SwitchPanel migration_id/> })}
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                still.await.ok().map(|s| view! { <settings::SettingsPanel s/> })
            })}
        </Transition>
    }
}

#[component]
fn Board(b: MigrationBoardView) -> impl IntoView {
    let migration_id = b.card.id;
    // The accuracy chart is drawn at its box's width: measured once the
    // page runs in the browser, again at each refresh (a turned phone).
    let chart_width = expect_context::<BoardUi>().chart_width;
    Effect::new(move |_| {
        if let Ok(Some(el)) = document().query_selector("[data-testid=accuracy-box]") {
            let w = el.client_width().max(0) as u32;
            if w > 0 && w.abs_diff(chart_width.get_untracked()) > 16 {
                chart_width.set(w);
            }
        }
    });
    view! {
        <Title text=b.card.name.clone()/>
        <div class="page-head">
            <h1 data-testid="migration-name">{b.card.name.clone()}
                <span class=format!("status status-{}", b.card.status)>{b.card.status.clone()}</span>
            </h1>
            <p class="muted">{b.card.description.clone()}</p>
            <p class="muted small">{format!("created by {} at {}", b.created_by, b.created_at)}</p>
        </div>
        <div class="two-col">
            <section class="panel">
                <h2>"Progress"</h2>
                <PhaseBar phases=b.card.phases.clone() total=b.card.buckets/>
                <ForecastStats forecast=b.card.forecast.clone() running_jobs=b.card.running_jobs/>
                <BlockersPanel groups=b.card.blockers.clone()/>
            </section>
            <section class="panel">
                <h2>"Verification accuracy"</h2>
                <div class="chart-box" data-testid="accuracy-box" inner_html=b.accuracy_svg.clone()></div>
                <p class="muted small">{if b.accuracy.is_empty() {
                    "No verification yet: run one to see accuracy over time."
                } else {
                    "One line per table: of the rows the latest full verification of each of its buckets compared, the share that match, after each run. Hover a point for its value."
                }}</p>
            </section>
        </div>
        <relay::RelayPanel migration_id relay=b.relay.clone() can_operate=b.can_operate/>
        <grid::BucketGrid migration_id buckets=b.buckets.clone() matching=b.buckets_matching
            offset=b.offset page_size=b.page_size can_operate=b.can_operate/>
        <batches::BatchesPanel batches=b.batches.clone() can_operate=b.can_operate/>
        <jobs::JobsPanel jobs=b.jobs.clone() can_operate=b.can_operate/>
    }
    .into_any()
}
