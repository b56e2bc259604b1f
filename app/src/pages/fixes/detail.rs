//! One fix: its spec, a dry run (the first records and the change each would
//! get, nothing written), runs with live progress and ETA, the rate changed
//! while a run goes on, pause / resume / cancel, and the failures of a run.

use std::time::Duration;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::components::grid::Grid;
use crate::components::guard::ErrorPanel;
use crate::components::live::use_tick;
use crate::error::AppError;

/// A fix and its runs, as the page shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixView {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub database: String,
    pub target: String,
    pub spec: String,
    pub rate: Option<f64>,
    pub runs: Vec<RunView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub id: i64,
    pub job_id: Option<i64>,
    pub state: String,
    pub started_by: String,
    pub pass: i64,
    pub changed: i64,
    pub failed: i64,
    pub stale: i64,
    pub rate: Option<f64>,
    pub rate_limit: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub message: String,
    pub summary: String,
    pub failures: Vec<(String, String)>,
}

/// One dry-run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DryRow {
    pub key: String,
    pub action: String,
    pub change: String,
}

#[server]
pub async fn load_fix(id: i64) -> Result<FixView, AppError> {
    let store = crate::server::signed_in_store()?;
    let fix = store.fix(id).await?;
    let mut runs = Vec::new();
    for r in store.fix_runs(id).await? {
        let job = match r.job_id {
            Some(j) => Some(store.job(j).await?),
            None => None,
        };
        let failures = store
            .fix_failures(r.id, 50)
            .await?
            .into_iter()
            .map(|f| (f.key_text, f.reason))
            .collect();
        runs.push(RunView {
            id: r.id,
            job_id: r.job_id,
            state: job
                .as_ref()
                .map_or("unknown".into(), |j| j.state.as_str().to_string()),
            started_by: r.started_by,
            pass: r.pass,
            changed: r.changed,
            failed: r.failed,
            stale: r.stale,
            rate: job.as_ref().and_then(|j| j.rate),
            rate_limit: job.as_ref().and_then(|j| j.rate_limit),
            eta_seconds: job.as_ref().and_then(|j| j.eta_seconds),
            message: job
                .as_ref()
                .and_then(|j| j.message.clone())
                .unwrap_or_default(),
            summary: r.summary.unwrap_or_default(),
            failures,
        });
    }
    Ok(FixView {
        id: fix.id,
        name: fix.name,
        description: fix.description,
        database: tern_control::redact::secrets_in(&fix.db_url),
        target: fix.target,
        spec: tern_control::redact::secrets_in(&fix.spec),
        rate: fix.settings.rate,
        runs,
    })
}

#[server]
pub async fn dry_run_fix(id: i64, limit: usize) -> Result<Vec<DryRow>, AppError> {
    let (store, me) = crate::server::acting()?;
    let records = store
        .dry_run_fix(&me, id, limit, &tern_datafix::PluginRegistry::default())
        .await?;
    Ok(records
        .into_iter()
        .map(|r| DryRow {
            key: r.key_text,
            action: r.action.replace('_', " "),
            change: match r.reason {
                Some(reason) => reason,
                None => r
                    .changes
                    .iter()
                    .map(|(c, before, after)| format!("{c}: {before} → {after}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        })
        .collect())
}

#[server]
pub async fn start_fix_run(id: i64) -> Result<i64, AppError> {
    let (store, me) = crate::server::acting()?;
    Ok(store.start_fix_run(&me, id).await?.id)
}

/// Sets the fix's rate (records/s; blank or 0 is unthrottled); a running run follows it.
#[server]
pub async fn set_fix_rate(id: i64, rate: String) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    let rate = match rate.trim() {
        "" | "0" => None,
        r => Some(r.parse::<f64>().ok().filter(|r| *r > 0.0).ok_or_else(|| {
            AppError::Invalid(format!(
                "`{r}` is not a rate: give records per second, e.g. 500, or 0 for unthrottled"
            ))
        })?),
    };
    let fix = store.fix(id).await?;
    let settings = tern_control::fixes::FixSettings {
        rate,
        ..fix.settings
    };
    store
        .set_fix_settings(&me, id, &settings, "rate changed on the fix page")
        .await?;
    Ok(())
}

/// Pauses, resumes or cancels a run's job.
#[server]
pub async fn control_fix_job(job_id: i64, action: String) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    match action.as_str() {
        "pause" => {
            store
                .pause_job(&me, job_id, "paused on the fix page")
                .await?
        }
        "resume" => {
            store
                .resume_job(&me, job_id, "resumed on the fix page")
                .await?
        }
        "cancel" => {
            store
                .cancel_job(&me, job_id, "cancelled on the fix page")
                .await?
        }
        other => {
            return Err(AppError::Invalid(format!(
                "unknown action `{other}`: pause, resume or cancel"
            )));
        }
    };
    Ok(())
}

fn eta(s: Option<f64>) -> String {
    match s {
        Some(s) if s >= 3600.0 => format!("{:.1} h", s / 3600.0),
        Some(s) if s >= 60.0 => format!("{:.0} min", s / 60.0),
        Some(s) => format!("{s:.0} s"),
        None => "—".into(),
    }
}

#[component]
pub fn FixDetail() -> impl IntoView {
    let id = crate::pages::id_param();
    let tick = use_tick(Duration::from_secs(2));
    let dry = ServerAction::<DryRunFix>::new();
    let run = ServerAction::<StartFixRun>::new();
    let rate = ServerAction::<SetFixRate>::new();
    let control = ServerAction::<ControlFixJob>::new();
    let reloads = [run.version(), rate.version(), control.version()];
    let view_res = Resource::new(
        move || (id(), tick.get(), crate::pages::finished(&reloads)),
        |(id, _, _)| load_fix(id),
    );
    let (rate_text, set_rate_text) = signal(String::new());
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading the fix…"</p> }>
            {move || Suspend::new(async move {
                match view_res.await {
                    Err(e) => view! { <ErrorPanel error=e.to_string()/> }.into_any(),
                    Ok(f) => {
                        let fid = f.id;
                        let active = f.runs.iter().find(|r| matches!(r.state.as_str(), "queued" | "running" | "paused")).cloned();
                        let runs = f.runs.clone();
                        view! {
                            <div class="page-head">
                                <h1 data-testid="fix-name">{f.name.clone()}</h1>
                                <p class="muted">{f.description.clone()}" · "<span class="mono">{f.database.clone()}</span>" · table "<span class="mono">{f.target.clone()}</span></p>
                            </div>
                            <section class="panel">
                                <h2>"Dry run"</h2>
                                <p class="muted">"The first records the filter selects and the change each would get. Nothing is written."</p>
                                <button class="button" data-testid="fix-dry-run" on:click=move |_| { dry.dispatch(DryRunFix { id: fid, limit: 20 }); }>"Dry run (20 records)"</button>
                                {move || match dry.value().get() {
                                    Some(Ok(rows)) if rows.is_empty() => view! { <p data-testid="dry-empty">"The filter selects nothing: there is nothing to fix."</p> }.into_any(),
                                    Some(Ok(rows)) => view! {
                                        <Grid head=&["Key", "Action", "Change"] testid="dry-run-table">
                                            {rows.into_iter().map(|r| view! {
                                                <tr data-testid="dry-row"><td class="mono">{r.key}</td><td>{r.action}</td><td class="mono">{r.change}</td></tr>
                                            }).collect_view()}
                                        </Grid>
                                    }.into_any(),
                                    Some(Err(e)) => view! { <p class="error" data-testid="fix-error">{e.to_string()}</p> }.into_any(),
                                    None => ().into_any(),
                                }}
                            </section>
                            <section class="panel">
                                <h2>"Run"</h2>
                                <div class="actions">
                                    <button class="button" data-testid="fix-run" disabled=active.is_some() on:click=move |_| { run.dispatch(StartFixRun { id: fid }); }>"Run until nothing is left"</button>
                                    <label>"Rate (records/s, 0 = unthrottled) "
                                        <input data-testid="fix-rate" placeholder=f.rate.map_or_else(|| "0".to_string(), |r| r.to_string())
                                            prop:value=rate_text on:input=move |ev| set_rate_text.set(event_target_value(&ev))/>
                                    </label>
                                    <button class="button" data-testid="fix-set-rate" on:click=move |_| { rate.dispatch(SetFixRate { id: fid, rate: rate_text.get() }); }>"Set rate"</button>
                                    {active.as_ref().and_then(|r| r.job_id).map(|job| view! {
                                        <button class="button" on:click=move |_| { control.dispatch(ControlFixJob { job_id: job, action: "pause".into() }); }>"Pause"</button>
                                        <button class="button" on:click=move |_| { control.dispatch(ControlFixJob { job_id: job, action: "resume".into() }); }>"Resume"</button>
                                        <button class="button" on:click=move |_| { control.dispatch(ControlFixJob { job_id: job, action: "cancel".into() }); }>"Cancel"</button>
                                    })}
                                </div>
                                {move || [run.value().get().and_then(Result::err), rate.value().get().and_then(Result::err), control.value().get().and_then(Result::err)]
                                    .into_iter().flatten().next()
                                    .map(|e| view! { <p class="error">{e.to_string()}</p> })}
                                <Grid head=&["Run", "State", "By", "Pass", "Changed", "Failed", "Stale", "Rate", "Limit", "ETA", "Progress"] testid="fix-runs">
                                    {runs.iter().map(|r| view! {
                                        <tr data-testid="fix-run-row">
                                            <td>{r.id}</td>
                                            <td data-testid="fix-run-state">{r.state.clone()}</td>
                                            <td>{r.started_by.clone()}</td>
                                            <td>{r.pass}</td>
                                            <td data-testid="fix-run-changed">{r.changed}</td>
                                            <td>{r.failed}</td>
                                            <td>{r.stale}</td>
                                            <td>{r.rate.map_or_else(|| "—".into(), |x| format!("{x:.0}/s"))}</td>
                                            <td>{r.rate_limit.map_or_else(|| "unthrottled".into(), |x| format!("{x:.0}/s"))}</td>
                                            <td>{eta(r.eta_seconds)}</td>
                                            <td class="muted">{if r.summary.is_empty() { r.message.clone() } else { r.summary.clone() }}</td>
                                        </tr>
                                    }).collect_view()}
                                </Grid>
                            </section>
                            <section class="panel">
                                <h2>"Failures"</h2>
                                {
                                    let failures: Vec<(i64, String, String)> = f.runs.iter().flat_map(|r| r.failures.iter().map(move |(k, why)| (r.id, k.clone(), why.clone()))).collect();
                                    if failures.is_empty() {
                                        view! { <p class="muted">"No record has failed."</p> }.into_any()
                                    } else {
                                        view! {
                                            <Grid head=&["Run", "Key", "Reason"] testid="fix-failures">
                                                {failures.into_iter().map(|(run, k, why)| view! { <tr><td>{run}</td><td class="mono">{k}</td><td>{why}</td></tr> }).collect_view()}
                                            </Grid>
                                        }.into_any()
                                    }
                                }
                            </section>
                            <section class="panel">
                                <h2>"Job spec"</h2>
                                <pre class="mono">{f.spec.clone()}</pre>
                            </section>
                        }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}
