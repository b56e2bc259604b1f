//! The bucket grid: every bucket with its phase, rows, job, lag, accuracy and
//! the moments that matter (snapshot, dual-write, caught up, verified); and the
//! engineer's actions on the selected buckets.

use std::collections::BTreeSet;

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::{BucketLine, duration, rate, thousands};

/// Runs an action on buckets: bulk-load, catch-up, verify-full,
/// verify-incremental, pause, resume or cancel.
#[server]
pub async fn run_bucket_action(
    migration_id: i64,
    action: String,
    bucket_ids: Vec<i64>,
    reason: String,
) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let action = tern_control::runbook::BucketAction::parse(&action)?;
    Ok(store
        .bucket_action(&me, migration_id, action, &bucket_ids, &reason)
        .await?)
}

const ACTIONS: [(&str, &str); 7] = [
    ("bulk-load", "Bulk load"),
    ("catch-up", "Catch up"),
    ("verify-full", "Verify"),
    ("verify-incremental", "Verify changed keys"),
    ("pause", "Pause"),
    ("resume", "Resume"),
    ("cancel", "Cancel"),
];

/// Refreshes (two seconds each) an answer stays once the board shows that
/// the state it describes changed.
pub const SEEN_TICKS: u64 = 4;

fn short(ts: &str) -> String {
    // "2026-11-23T17:40:00Z" → "11-23 17:40"
    if ts.len() >= 16 {
        format!("{} {}", &ts[5..10], &ts[11..16])
    } else {
        ts.to_string()
    }
}

#[component]
pub fn BucketGrid(
    migration_id: i64,
    buckets: Vec<BucketLine>,
    /// Buckets matching the phase filter (the grid shows one page of them).
    matching: i64,
    offset: i64,
    page_size: i64,
    can_operate: bool,
) -> impl IntoView {
    let ui = expect_context::<super::BoardUi>();
    let (selected, action, reason) = (ui.selected, ui.bucket_action, ui.reason);
    let (phase, page_start) = (ui.phase, ui.offset);
    let shown = buckets.len() as i64;
    // What the listed buckets are (phase, dual-write): an answer describes
    // that state. Once a board shows it changed, the answer stays beside
    // the new state for SEEN_TICKS more refreshes, marked as past, so the
    // user can read both (a "16 catch-up jobs queued" gone within a second
    // was never read), then goes; the user may close it before.
    let state_now: String = buckets
        .iter()
        .map(|b| format!("{}:{}:{};", b.id, b.phase, !b.dual_write_at.is_empty()))
        .collect();
    let (answered_at, changed_seen_at, dismissed) =
        (ui.answered_at, ui.changed_seen_at, ui.answer_dismissed);
    if answered_at.with_untracked(|a| a.as_ref().is_some_and(String::is_empty)) {
        answered_at.set(Some(state_now.clone()));
    }
    let tick_now = ui.tick.get_untracked();
    let changed_here = answered_at
        .with_untracked(|a| a.as_ref().is_some_and(|a| !a.is_empty() && *a != state_now));
    if changed_here && changed_seen_at.get_untracked().is_none() {
        changed_seen_at.set(Some(tick_now));
    }
    let state_now: std::sync::Arc<str> = state_now.into();
    // The closures own their copy of the state: they may run once more
    // while this grid is being replaced by a refreshed one, when a stored
    // value of the old grid is already disposed.
    let stale = move || {
        answered_at
            .try_with(|a| {
                a.as_ref()
                    .is_some_and(|a| !a.is_empty() && **a != *state_now)
            })
            .unwrap_or(false)
    };
    let gone = move || {
        dismissed.try_get().unwrap_or(false)
            || changed_seen_at
                .try_get()
                .flatten()
                .is_some_and(|at| tick_now >= at + SEEN_TICKS)
    };
    let all_ids: Vec<i64> = buckets.iter().map(|b| b.id).collect();
    let listed = all_ids.len();
    let toggle_all = {
        let all = all_ids.clone();
        move |_| {
            selected.update(|s| {
                if s.len() == all.len() {
                    s.clear()
                } else {
                    *s = all.iter().copied().collect()
                }
            })
        }
    };
    let rows = buckets
        .into_iter()
        .map(|b| {
            let id = b.id;
            let pct = if b.planned_rows > 0 { (b.rows_copied as f64 * 100.0 / b.planned_rows as f64).min(100.0) } else { 0.0 };
            let job = b.job.clone();
            view! {
                <tr data-testid="bucket-row" data-phase=b.phase.clone() data-dual-write=(!b.dual_write_at.is_empty()).to_string()>
                    <Show when=move || can_operate>
                        <td><input type="checkbox" aria-label=format!("select bucket {}", b.idx)
                            prop:checked=move || selected.with(|s| s.contains(&id))
                            on:change=move |_| selected.update(|s| if !s.remove(&id) { s.insert(id); })/></td>
                    </Show>
                    <td class="num"><a href=format!("/migrations/{migration_id}/buckets/{}", b.idx)>{b.idx}</a></td>
                    <td class="mono">{b.table.clone()}</td>
                    <td class="mono small">{b.range.clone()}</td>
                    <td><span class=format!("chip phase-{}", b.phase) data-testid="bucket-phase">{b.phase.clone()}</span>
                        {(!b.last_error.is_empty()).then(|| view! { <div class="error-text small" title=b.last_error.clone()>{b.last_error.chars().take(80).collect::<String>()}</div> })}
                    </td>
                    <td class="num">
                        <div class="progress" title=format!("{pct:.1}%")><span style=format!("width: {pct:.1}%")></span></div>
                        <span class="small" data-testid="bucket-rows">{format!("{} / {}", thousands(b.rows_copied), thousands(b.planned_rows))}</span>
                    </td>
                    <td class="small">{job.map(|j| view! {
                        <span class=format!("job-state job-{}", j.state)>{format!("{} {}", j.kind, j.state)}</span>
                        <br/>
                        <span class="muted">{j.rate.filter(|_| j.state == "running").map(rate).unwrap_or_default()}
                        {j.eta_seconds.filter(|_| j.state == "running").map(|e| format!(" · ETA {}", duration(e))).unwrap_or_default()}</span>
                    })}</td>
                    <td class="num small">{match (b.lag_changes, b.lag_seconds) {
                        (Some(c), Some(s)) => format!("{} ch · {}", thousands(c), duration(s)),
                        (Some(c), None) => format!("{} ch", thousands(c)),
                        _ => "—".into(),
                    }}</td>
                    <td class="num small" data-testid="bucket-accuracy">{b.accuracy.map(|a| format!("{a:.2}%")).unwrap_or_else(|| "—".into())}</td>
                    <td class="mono small muted" title="snapshot / dual-write / caught up / verified">
                        {[&b.snapshot_at, &b.dual_write_at, &b.caught_up_at, &b.verified_at]
                            .iter()
                            .map(|t| if t.is_empty() { "·".to_string() } else { short(t) })
                            .collect::<Vec<_>>()
                            .join(" │ ")}
                    </td>
                </tr>
            }
        })
        .collect_view();
    let run = move |name: &'static str| {
        let ids: Vec<i64> = selected.get_untracked().into_iter().collect();
        action.dispatch(RunBucketAction {
            migration_id,
            action: name.to_string(),
            bucket_ids: ids,
            reason: reason.get_untracked(),
        });
    };
    view! {
        <section class="panel">
            <h2>"Buckets"</h2>
            <Show when=move || can_operate>
                <div class="toolbar" data-testid="bucket-actions">
                    <span class="muted small">{move || format!("{} selected", selected.with(BTreeSet::len))}</span>
                    {ACTIONS.iter().map(|(name, label)| {
                        let name = *name;
                        view! {
                            <button class="button small" data-action=name
                                disabled=move || selected.with(BTreeSet::is_empty) || action.pending().get()
                                on:click=move |_| run(name)>{*label}</button>
                        }
                    }).collect_view()}
                    <input class="reason" placeholder="reason (for the audit log)"
                        prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
                </div>
                // The answer's own box: a dynamic child with siblings after it
                // loses its place when it switches between nothing and a
                // paragraph, and shows an answer twice or not at all.
                <div class="action-feedback">
                    {let stale = stale.clone(); move || {
                        let answer = action.value().get().filter(|_| !gone())?;
                        let (class, text, testid) = match answer {
                            Ok(msg) => ("flash flash-ok", msg, "action-result"),
                            Err(e) => ("flash flash-error", e.to_string(), "action-error"),
                        };
                        let past = stale().then(|| view! {
                            <span class="muted small" data-testid="action-past">"The buckets have moved on since."</span>
                        });
                        Some(view! {
                            <div class=format!("{class} flash-closable") role=(testid == "action-error").then_some("alert")>
                                <p data-testid=testid>{text}</p>
                                {past}
                                <button class="button-link small" aria-label="dismiss this answer" data-testid="action-dismiss"
                                    on:click=move |_| dismissed.set(true)>"Dismiss"</button>
                            </div>
                        })
                    }}
                </div>
            </Show>
            <div class="table-tools">
                <label class="inline-label">"Phase "
                    <select data-testid="phase-filter" prop:value=move || phase.get()
                        on:change=move |ev| {
                            phase.set(event_target_value(&ev));
                            page_start.set(0);
                            selected.update(BTreeSet::clear);
                        }>
                        <option value="">"every phase"</option>
                        {crate::types::PHASES.iter().map(|p| view! { <option value=*p>{*p}</option> }).collect_view()}
                    </select>
                </label>
                <span class="muted small" data-testid="grid-range">{if matching == 0 {
                    "no bucket in this phase".to_string()
                } else {
                    format!("buckets {}–{} of {}", offset + 1, offset + shown, matching)
                }}</span>
                <button class="button small" disabled={offset == 0}
                    on:click=move |_| page_start.update(|o| *o = (*o - page_size).max(0))>"← Previous"</button>
                // In braces: a bare `>=` would end the tag and print the rest as text.
                <button class="button small" disabled={offset + shown >= matching}
                    on:click=move |_| page_start.update(|o| *o += page_size)>"Next →"</button>
            </div>
            <div class="table-scroll">
                <table class="grid" data-testid="bucket-grid">
                    <thead><tr>
                        <Show when=move || can_operate>
                            <th><input type="checkbox" aria-label="select all buckets"
                                prop:checked=move || selected.with(|s| !s.is_empty() && s.len() == listed)
                                on:change=toggle_all.clone()/></th>
                        </Show>
                        <th>"#"</th><th>"Table"</th><th>"Key range"</th><th>"Phase"</th><th>"Rows"</th>
                        <th>"Job"</th><th>"Lag"</th><th>"Accuracy"</th><th>"Snapshot │ dual-write │ caught up │ verified (UTC)"</th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </section>
    }
    .into_any()
}
