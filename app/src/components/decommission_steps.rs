//! The steps that end a migration (issue 17): each with who ran it and what
//! it did, or why it cannot run yet; admins run them one by one.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// One step as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    pub step: String,
    pub label: String,
    pub done: Option<String>,
    pub detail: String,
    pub refusal: Option<String>,
}

#[server]
pub async fn decommission_steps_view(id: i64) -> Result<(bool, Vec<StepRow>), AppError> {
    let (store, me) = crate::server::acting()?;
    let steps = store.decommission_steps(id).await?;
    Ok((
        me.role.can_administer(),
        steps
            .into_iter()
            .map(|s| StepRow {
                step: s.step.as_str().into(),
                label: s.label,
                done: s.done_at.map(|at| {
                    format!(
                        "{} by {}",
                        tern_control::clock::format_ms(at),
                        s.actor.unwrap_or_default()
                    )
                }),
                detail: s.detail,
                refusal: s.refusal,
            })
            .collect(),
    ))
}

#[server]
pub async fn run_decommission_step(id: i64, step: String) -> Result<String, AppError> {
    let me = crate::server::actor()?;
    let state = crate::server::state()?;
    let step = tern_control::decommission_steps::Step::parse(&step)?;
    Ok(state
        .store
        .run_decommission_step_detached(me, id, step, state.runners.clone())
        .await?)
}

#[component]
pub fn DecommissionSteps(migration_id: i64) -> impl IntoView {
    let run = ServerAction::<RunDecommissionStep>::new();
    // Live: a refusal such as "the relays are still stopping" clears by
    // itself, and the step's button appears without a reload.
    let tick = crate::components::live::use_tick(std::time::Duration::from_secs(2));
    let data = Resource::new(
        move || (run.version().get(), tick.get()),
        move |_| decommission_steps_view(migration_id),
    );
    view! {
        <section class="panel" data-testid="decommission-steps">
            <h2>"Decommission steps"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    data.await.map(|(admin, steps)| view! {
                        <ol class="checklist">
                            {steps.into_iter().map(|s| {
                                let step = s.step.clone();
                                let may = admin && s.refusal.is_none();
                                view! {
                                    <li class:done=s.done.is_some() data-testid="decommission-step">
                                        <strong>{s.label.clone()}</strong>
                                        {s.done.clone().map(|d| view! { <span class="muted">{format!(" — done {d}: {}", s.detail)}</span> })}
                                        {(s.done.is_none()).then(|| s.refusal.clone().map(|r| view! { <span class="muted">{format!(" — {r}")}</span> }))}
                                        {may.then(|| view! {
                                            <button class="button small" data-testid=format!("step-{step}")
                                                on:click=move |_| { run.dispatch(RunDecommissionStep { id: migration_id, step: step.clone() }); }>"Run"</button>
                                        })}
                                    </li>
                                }
                            }).collect_view()}
                        </ol>
                    }).map_err(|e| e.to_string())
                })}
            </Transition>
            {move || run.value().get().map(|r| match r {
                Ok(m) => view! { <p class="flash flash-ok">{m}</p> }.into_any(),
                Err(e) => view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
}
