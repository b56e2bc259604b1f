//! Recent jobs with their progress, and per-job controls: pause, resume,
//! cancel, and the rate limit, which a running job picks up within seconds.

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::{JobRow, duration, rate, thousands};

/// Pauses, resumes or cancels one job.
#[server]
pub async fn control_job(job_id: i64, action: String, reason: String) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let done = match action.as_str() {
        "pause" => {
            store.pause_job(&me, job_id, &reason).await?;
            "pause requested: it stops at its next checkpoint"
        }
        "resume" => {
            store.resume_job(&me, job_id, &reason).await?;
            "resumed: it continues from its checkpoint when a worker takes it"
        }
        "cancel" => {
            store.cancel_job(&me, job_id, &reason).await?;
            "cancel requested"
        }
        other => {
            return Err(AppError::Invalid(format!(
                "unknown job action `{other}`: use pause, resume or cancel"
            )));
        }
    };
    Ok(format!("job {job_id}: {done}"))
}

/// Sets a job's rate limit in rows per second; blank means unthrottled.
#[server]
pub async fn set_job_rate(job_id: i64, rate: String, reason: String) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let rate = match rate.trim() {
        "" => None,
        r => Some(r.replace([',', '_'], "").parse::<f64>().map_err(|_| {
            AppError::Invalid(format!(
                "`{r}` is not a rate: give rows per second, like 5000, or leave it blank"
            ))
        })?),
    };
    store.set_job_rate(&me, job_id, rate, &reason).await?;
    Ok(match rate {
        Some(r) => format!(
            "job {job_id}: rate limit set to {}; a running job follows it within seconds",
            crate::types::rate(r)
        ),
        None => format!("job {job_id}: rate limit removed (unthrottled)"),
    })
}

#[component]
pub fn JobsPanel(jobs: Vec<JobRow>, can_operate: bool) -> impl IntoView {
    let ui = expect_context::<super::BoardUi>();
    let (control, set_rate, drafts) = (ui.job_control, ui.set_rate, ui.rate_drafts);
    let last_was_rate = ui.last_job_action_was_rate;
    if jobs.is_empty() {
        return view! {
            <section class="panel"><h2>"Jobs"</h2>
                <p class="muted">"No job yet. Select buckets above and start a bulk load."</p></section>
        }
        .into_any();
    }
    let rows = jobs
        .into_iter()
        .map(|j| {
            let id = j.id;
            let running = j.state == "running";
            let pct = match j.rows_total {
                Some(t) if t > 0 => format!("{:.1}%", (j.rows_done as f64 * 100.0 / t as f64).min(100.0)),
                _ => String::new(),
            };
            let current = StoredValue::new(j.rate_limit.map(|r| format!("{r:.0}")).unwrap_or_default());
            let draft = move || drafts.with(|d| d.get(&id).cloned()).unwrap_or_else(|| current.get_value());
            let can_pause = j.state == "running" || j.state == "queued";
            let can_resume = j.state == "paused";
            let active = !matches!(j.state.as_str(), "succeeded" | "failed" | "cancelled");
            view! {
                <tr data-testid="job-row" data-state=j.state.clone()>
                    <td class="num">{j.id}</td>
                    <td>{j.kind.clone()}</td>
                    <td class="num">{j.bucket_idx.map(|b| b.to_string()).unwrap_or_default()}</td>
                    <td><span class=format!("job-state job-{}", j.state) data-testid="job-state">{j.state.clone()}</span>
                        {j.requested.clone().map(|r| view! { <span class="muted small">{format!(" ({r} requested)")}</span> })}</td>
                    <td class="num" data-testid="job-rows">{format!("{} {}", thousands(j.rows_done), pct)}</td>
                    <td class="num">{if running { j.rate.map(rate).unwrap_or_default() } else { String::new() }}</td>
                    <td class="num">{if running { j.eta_seconds.map(duration).unwrap_or_default() } else { String::new() }}</td>
                    <td class="small">{j.message.clone()}</td>
                    <Show when=move || can_operate>
                        <td class="actions">
                            {can_pause.then(|| view! {
                                <button class="button small" on:click=move |_| { last_was_rate.set(false); control.dispatch(ControlJob { job_id: id, action: "pause".into(), reason: String::new() }); }>"Pause"</button>
                            })}
                            {can_resume.then(|| view! {
                                <button class="button small" on:click=move |_| { last_was_rate.set(false); control.dispatch(ControlJob { job_id: id, action: "resume".into(), reason: String::new() }); }>"Resume"</button>
                            })}
                            {active.then(|| view! {
                                <button class="button small danger" on:click=move |_| { last_was_rate.set(false); control.dispatch(ControlJob { job_id: id, action: "cancel".into(), reason: String::new() }); }>"Cancel"</button>
                                <input class="rate-input" placeholder="rows/s" aria-label=format!("rate limit of job {id}")
                                    prop:value=draft on:input=move |ev| drafts.update(|d| { d.insert(id, event_target_value(&ev)); })/>
                                <button class="button small" data-testid="set-rate" on:click=move |_| {
                                    let rate = draft();
                                    drafts.update(|d| { d.remove(&id); });
                                    last_was_rate.set(true);
                                    set_rate.dispatch(SetJobRate { job_id: id, rate, reason: String::new() });
                                }>"Set rate"</button>
                            })}
                        </td>
                    </Show>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel">
            <h2>"Jobs"</h2>
            // The answer of the latest job action (control or rate).
            {move || {
                let (c, r) = (control.version().get(), set_rate.version().get());
                let latest = if r > 0 && (c == 0 || last_was_rate.get()) { set_rate.value().get() } else { control.value().get() };
                latest.map(|answer| match answer {
                    Ok(m) => view! { <p class="flash flash-ok" data-testid="job-feedback">{m}</p> }.into_any(),
                    Err(e) => view! { <p class="flash flash-error" role="alert" data-testid="job-feedback">{e.to_string()}</p> }.into_any(),
                })
            }}
            <div class="table-scroll">
                <table class="grid" data-testid="jobs">
                    <thead><tr><th>"Job"</th><th>"Kind"</th><th>"Bucket"</th><th>"State"</th><th>"Rows"</th><th>"Rate"</th><th>"ETA"</th><th>"Message"</th>
                        <Show when=move || can_operate><th>"Controls"</th></Show></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </section>
    }
    .into_any()
}
