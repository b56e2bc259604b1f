//! One bucket: its moments, its jobs, its verification runs with their
//! mismatch trees, and its history (every phase change, who, when, why).

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::components::guard::ErrorPanel;
use crate::components::live::use_tick;
use crate::error::AppError;
use crate::types::{BucketBoardView, duration, rate, thousands};

/// The bucket page's data.
#[server]
pub async fn bucket_board(migration_id: i64, idx: i64) -> Result<BucketBoardView, AppError> {
    let me = crate::server::actor()?;
    let b = crate::server::state()?
        .store
        .bucket_board(&me, migration_id, idx)
        .await?;
    Ok(view_of(b, me.role.can_operate()))
}

#[cfg(feature = "ssr")]
fn view_of(b: tern_control::dashboard::BucketBoard, can_operate: bool) -> BucketBoardView {
    use crate::convert::{bucket_line, job_row};
    use crate::types::{AuditRow, VerifyRunRow};
    use tern_control::clock::format_ms;
    BucketBoardView {
        can_operate,
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
            .map(|e| AuditRow {
                id: e.id,
                at: format_ms(e.at),
                actor: e.actor,
                action: e.action,
                entity: format!("{}/{}", e.entity_kind, e.entity_id),
                change: format!(
                    "{} → {}",
                    e.from_state.unwrap_or_default(),
                    e.to_state.unwrap_or_default()
                ),
                reason: e.reason.unwrap_or_default(),
            })
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
    let board = Resource::new_blocking(
        move || (key(), tick.get()),
        |(key, _)| async move {
            match key {
                Some((id, idx)) => bucket_board(id, idx).await,
                None => Err(AppError::NotFound(
                    "a bucket address is /migrations/<id>/buckets/<index>".into(),
                )),
            }
        },
    );
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match board.await {
                    Ok(b) => view! { <BucketView b/> }.into_any(),
                    Err(AppError::NotFound(m)) => {
                        #[cfg(feature = "ssr")]
                        crate::server::set_status(404);
                        view! { <ErrorPanel error=m/> }.into_any()
                    }
                    Err(e) => view! { <ErrorPanel error=e.to_string()/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn BucketView(b: BucketBoardView) -> impl IntoView {
    let k = b.bucket.clone();
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
        <section class="panel">
            <h2>"Verification runs"</h2>
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
