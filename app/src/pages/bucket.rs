//! One bucket: its moments, its jobs, its verification runs with their
//! mismatch trees, and its history (every phase change, who, when, why).

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::components::guard::{found, loaded};
use crate::components::live::use_tick;
use crate::components::phase_move::{MoveBucketPhase, PhaseMove};
use crate::error::AppError;
use crate::types::{BucketBoardView, MismatchLine, duration, rate, thousands};

/// Mismatched rows listed per page.
const MISMATCH_PAGE: u64 = 50;

/// Which run's mismatched rows are browsed, from which row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Browse {
    engine_run: String,
    offset: u64,
}

/// Mismatched rows of engine run `engine_run`, `MISMATCH_PAGE` at a time, read
/// from the target where the engine keeps them.
#[server]
pub async fn run_mismatches(
    migration_id: i64,
    engine_run: String,
    offset: u64,
) -> Result<Vec<MismatchLine>, AppError> {
    let rows = crate::server::signed_in_store()?
        .run_mismatches(migration_id, &engine_run, offset, MISMATCH_PAGE)
        .await?;
    Ok(rows
        .into_iter()
        .map(|m| MismatchLine {
            key: m.key,
            kind: m.kind,
            diffs: m
                .diffs
                .into_iter()
                .map(|d| (d.path, d.source, d.target, d.note))
                .collect(),
            source_row: m.source_row,
            target_row: m.target_row,
            resolved: m.resolved,
        })
        .collect())
}

/// Queues a repair of the mismatches of engine run `engine_run` of a bucket.
#[server]
pub async fn repair_mismatches(bucket_id: i64, engine_run: String) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let job = store
        .repair_bucket(&me, bucket_id, Some(&engine_run))
        .await?;
    Ok(format!(
        "repair job {job} queued: the mismatched keys are copied again, then verified"
    ))
}

/// The bucket page's data.
#[server]
pub async fn bucket_board(migration_id: i64, idx: i64) -> Result<BucketBoardView, AppError> {
    let (store, me) = crate::server::acting()?;
    let b = store.bucket_board(&me, migration_id, idx).await?;
    Ok(view_of(b, me.role.can_operate(), me.role.can_administer()))
}

#[cfg(feature = "ssr")]
fn view_of(
    b: tern_control::dashboard::BucketBoard,
    can_operate: bool,
    is_admin: bool,
) -> BucketBoardView {
    use crate::convert::{bucket_line, job_row};
    use crate::types::VerifyRunRow;
    use tern_control::clock::format_ms;
    let next = tern_control::phases::legal_moves(b.bucket.phase, b.bucket.resume_phase);
    BucketBoardView {
        can_operate,
        is_admin,
        next_phases: next.iter().map(|p| p.as_str().to_string()).collect(),
        migration_id: b.migration.id,
        migration_name: b.migration.name.clone(),
        bucket: bucket_line(&b.bucket, b.jobs.first(), None),
        jobs: b
            .jobs
            .iter()
            .map(|j| job_row(j, Some(b.bucket.idx)))
            .collect(),
        runs: b
            .runs
            .iter()
            .map(|r| VerifyRunRow {
                id: r.id,
                kind: r.kind.clone(),
                engine_run: r.engine_run.clone().unwrap_or_default(),
                rows_compared: r.rows_compared,
                matched: r.matched,
                missing: r.missing,
                extra: r.extra,
                different: r.different,
                accuracy: r.accuracy,
                tree: r.tree.clone().unwrap_or_default(),
                finished_at: format_ms(r.finished_at),
            })
            .collect(),
        history: b
            .history
            .into_iter()
            .map(crate::pages::audit::audit_row)
            .collect(),
    }
}

#[component]
pub fn BucketPage() -> impl IntoView {
    let params = use_params_map();
    let key = move || {
        params.with(|p| {
            let id = p.get("id").and_then(|s| s.parse::<i64>().ok());
            let idx = p.get("idx").and_then(|s| s.parse::<i64>().ok());
            id.zip(idx)
        })
    };
    let tick = use_tick(Duration::from_secs(3));
    let browse = RwSignal::new(None::<Browse>);
    provide_context(browse);
    // Here, not in the view the board's refresh rebuilds, so the result stays.
    provide_context(ServerAction::<RepairMismatches>::new());
    provide_context(ServerAction::<MoveBucketPhase>::new());
    let mismatches = Resource::new(
        move || (key(), browse.get()),
        |(key, browse)| async move {
            match (key, browse) {
                (Some((id, _)), Some(b)) => run_mismatches(id, b.engine_run.clone(), b.offset)
                    .await
                    .map(|rows| Some((b, rows))),
                _ => Ok(None),
            }
        },
    );
    let board = Resource::new_blocking(
        move || (key(), tick.get()),
        |(key, _)| async move {
            let (id, idx) = key.ok_or_else(|| {
                AppError::NotFound("a bucket address is /migrations/<id>/buckets/<index>".into())
            })?;
            bucket_board(id, idx).await
        },
    );
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                found(board.await, |b| view! { <BucketView b/> })
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                loaded(mismatches.await, |v| match v {
                    Some((b, rows)) => view! { <MismatchList browse=b rows/> }.into_any(),
                    None => ().into_any(),
                })
            })}
        </Transition>
    }
}

#[component]
fn MismatchList(browse: Browse, rows: Vec<MismatchLine>) -> impl IntoView {
    let state = expect_context::<RwSignal<Option<Browse>>>();
    let offset = browse.offset;
    let more = rows.len() as u64 == MISMATCH_PAGE;
    let run = browse.engine_run.clone();
    let go = move |to: u64| {
        let engine_run = run.clone();
        state.set(Some(Browse {
            engine_run,
            offset: to,
        }))
    };
    let go_back = go.clone();
    let items = rows
        .into_iter()
        .map(|m| {
            let diffs = m
                .diffs
                .into_iter()
                .map(|(path, source, target, note)| view! {
                    <li><span class="mono">{path}</span>": "<span class="mono">{source}</span>" → "<span class="mono">{target}</span>
                        {note.map(|n| view! { <span class="muted small">{format!(" ({n})")}</span> })}</li>
                })
                .collect_view();
            view! {
                <tr data-testid="mismatch-row">
                    <td class="mono">{m.key}</td>
                    <td>{m.kind}{m.resolved.then_some(" (repaired)")}</td>
                    <td><ul class="diffs">{diffs}</ul>
                        <details><summary class="small">"both rows in full"</summary>
                            <p class="small">"source, through the spec:"</p><pre class="code">{m.source_row.unwrap_or_else(|| "— (none)".into())}</pre>
                            <p class="small">"target:"</p><pre class="code">{m.target_row.unwrap_or_else(|| "— (none)".into())}</pre>
                        </details>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel" data-testid="mismatches">
            <h2>{format!("Mismatched rows of run {} (from row {})", browse.engine_run, offset + 1)}</h2>
            <table class="grid">
                <thead><tr><th>"Key"</th><th>"Kind"</th><th>"Differences"</th></tr></thead>
                <tbody>{items}</tbody>
            </table>
            <div class="row">
                <button class="button small" disabled=offset == 0
                    on:click=move |_| go_back(offset.saturating_sub(MISMATCH_PAGE))>"Previous"</button>
                <button class="button small" disabled=!more on:click=move |_| go(offset + MISMATCH_PAGE)>"Next"</button>
                <button class="button small" on:click=move |_| state.set(None)>"Close"</button>
            </div>
        </section>
    }
}

#[component]
fn BucketView(b: BucketBoardView) -> impl IntoView {
    let browse = expect_context::<RwSignal<Option<Browse>>>();
    let repair = expect_context::<ServerAction<RepairMismatches>>();
    let phase_move = expect_context::<ServerAction<MoveBucketPhase>>();
    let can_operate = b.can_operate;
    let k = b.bucket.clone();
    let bucket_id = k.id;
    let moments = [
        ("In this phase since", k.phase_since.clone()),
        (
            "Bulk-load snapshot (capture start fixed)",
            k.snapshot_at.clone(),
        ),
        ("Loaded", k.loaded_at.clone()),
        ("Dual-write ramped on", k.dual_write_at.clone()),
        ("Caught up", k.caught_up_at.clone()),
        ("Verified", k.verified_at.clone()),
    ];
    view! {
        <Title text=format!("Bucket {} · {}", k.idx, b.migration_name)/>
        <div class="page-head">
            <p class="small"><a href=format!("/migrations/{}", b.migration_id)>{format!("← {}", b.migration_name)}</a></p>
            <h1>{format!("Bucket {}", k.idx)} " " <span class=format!("chip phase-{}", k.phase) data-testid="bucket-phase">{k.phase.clone()}</span></h1>
            <p class="muted mono">{format!("{} {}", k.table, k.range)}</p>
        </div>
        <div class="two-col">
            <section class="panel">
                <h2>"Rows and lag"</h2>
                <dl class="stats">
                    <div><dt>"Copied"</dt><dd>{format!("{} of {}", thousands(k.rows_copied), thousands(k.planned_rows))}</dd></div>
                    <div><dt>"Lag"</dt><dd>{match (k.lag_changes, k.lag_seconds) {
                        (Some(c), Some(s)) => format!("{} changes, {}", thousands(c), duration(s)),
                        (Some(c), None) => format!("{} changes", thousands(c)),
                        _ => "—".into(),
                    }}</dd></div>
                    <div><dt>"Accuracy"</dt><dd>{k.accuracy.map(|a| format!("{a:.3}%")).unwrap_or_else(|| "—".into())}</dd></div>
                </dl>
                {(!k.last_error.is_empty()).then(|| view! { <p class="flash flash-error">{k.last_error.clone()}</p> })}
            </section>
            <section class="panel">
                <h2>"Moments (UTC)"</h2>
                <dl class="moments">
                    {moments.into_iter().map(|(label, at)| view! {
                        <dt>{label}</dt><dd class="mono">{if at.is_empty() { "—".to_string() } else { at }}</dd>
                    }).collect_view()}
                </dl>
            </section>
        </div>
        {can_operate.then(|| view! {
            <PhaseMove bucket_id next=b.next_phases.clone() is_admin=b.is_admin action=phase_move/>
        })}
        <section class="panel">
            <h2>"Verification runs"</h2>
            {move || repair.value().get().map(|r| match r {
                Ok(m) => view! { <p class="flash flash-ok" data-testid="repair-result">{m}</p> }.into_any(),
                Err(e) => view! { <p class="flash flash-error" data-testid="repair-result">{e.to_string()}</p> }.into_any(),
            })}
            {if b.runs.is_empty() {
                view! { <p class="muted">"Not verified yet."</p> }.into_any()
            } else {
                b.runs.into_iter().map(|r| view! {
                    <article class="run" data-testid="verify-run">
                        <h3>{format!("{} run {} — {:.3}%", r.kind, r.id, r.accuracy)}<span class="muted small">{format!(" at {}", r.finished_at)}</span></h3>
                        <p class="small">{format!(
                            "{} compared · {} matched · {} missing in target · {} extra in target · {} different",
                            thousands(r.rows_compared), thousands(r.matched), thousands(r.missing), thousands(r.extra), thousands(r.different)
                        )}</p>
                        {(!r.tree.is_empty()).then(|| view! { <pre class="code tree">{r.tree.clone()}</pre> })}
                        {(!r.engine_run.is_empty() && r.missing + r.extra + r.different > 0).then(|| {
                            let engine_run = r.engine_run.clone();
                            let to_repair = r.engine_run.clone();
                            let n = r.missing + r.extra + r.different;
                            view! {
                                <div class="row">
                                    <button class="button small" data-testid="browse-mismatches"
                                        on:click=move |_| browse.set(Some(Browse { engine_run: engine_run.clone(), offset: 0 }))>
                                        "Browse every mismatched row"</button>
                                    {(can_operate && r.kind != "repair").then(|| view! {
                                        <button class="button small" data-testid="repair-mismatches"
                                            disabled=move || repair.pending().get()
                                            on:click=move |_| {
                                                repair.dispatch(RepairMismatches { bucket_id, engine_run: to_repair.clone() });
                                            }>
                                            {format!("Repair these {} rows", thousands(n))}</button>
                                    })}
                                </div>
                            }
                        })}
                    </article>
                }).collect_view().into_any()
            }}
        </section>
        <section class="panel">
            <h2>"Jobs"</h2>
            <table class="grid">
                <thead><tr><th>"Job"</th><th>"Kind"</th><th>"State"</th><th>"Rows"</th><th>"Rate"</th><th>"Attempts"</th><th>"Message"</th><th>"Updated"</th></tr></thead>
                <tbody>{b.jobs.into_iter().map(|j| view! {
                    <tr><td class="num">{j.id}</td><td>{j.kind}</td><td>{j.state}</td><td class="num">{thousands(j.rows_done)}</td>
                    <td class="num">{j.rate.map(rate).unwrap_or_default()}</td><td class="num">{j.attempts}</td><td class="small">{j.message}</td><td class="mono small">{j.updated_at}</td></tr>
                }).collect_view()}</tbody>
            </table>
        </section>
        <section class="panel">
            <h2>"History"</h2>
            <table class="grid">
                <thead><tr><th>"When (UTC)"</th><th>"Who"</th><th>"Change"</th><th>"Reason"</th></tr></thead>
                <tbody>{b.history.into_iter().map(|e| view! {
                    <tr data-testid="history-row"><td class="mono small">{e.at}</td><td>{e.actor}</td><td>{e.change}</td><td class="small">{e.reason}</td></tr>
                }).collect_view()}</tbody>
            </table>
        </section>
    }
    .into_any()
}
