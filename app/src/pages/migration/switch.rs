//! The source of truth per bucket (issue 17): which buckets write to the new
//! store, the controls to switch the selected buckets (gated; a refusal says
//! which gate failed) or roll them back, how many clients picked up the last
//! routing change, the reverse paths, drift, and each switch's hold time.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// One switch or rollback as the page lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchRow {
    pub id: i64,
    pub direction: String,
    pub buckets: String,
    pub state: String,
    pub actor: String,
    pub started_at: String,
    pub hold_ms: Option<i64>,
    pub clients: String,
    pub error: Option<String>,
}

/// What the panel shows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SwitchPanelView {
    pub can_operate: bool,
    pub routing_version: i64,
    pub clients_active: i64,
    pub clients_applied: i64,
    /// Buckets (indexes) whose writes go to the new store.
    pub switched: Vec<i64>,
    pub held: Vec<i64>,
    pub drifted: Vec<i64>,
    /// (table, reversible, reason)
    pub reverse_paths: Vec<(String, bool, String)>,
    /// The newest reverse relay job as it is now: (id, state, last message).
    pub reverse_relay: Option<(i64, String, Option<String>)>,
    pub switches: Vec<SwitchRow>,
}

#[server]
pub async fn switch_panel(migration_id: i64) -> Result<SwitchPanelView, AppError> {
    let (store, me) = crate::server::acting()?;
    me.require_reader("reading a migration's switches")?;
    let pickup = store.routing_pickup(migration_id).await?;
    let (switched, held) = store.switched_and_held(migration_id).await?;
    let fmt = tern_control::clock::format_ms;
    Ok(SwitchPanelView {
        can_operate: me.role.can_operate(),
        routing_version: pickup.version,
        clients_active: pickup.active,
        clients_applied: pickup.applied,
        switched,
        held,
        drifted: store.drifted_buckets(migration_id).await?,
        reverse_paths: store
            .reverse_paths(migration_id)
            .await?
            .into_iter()
            .map(|p| (p.table, p.reversible, p.reason))
            .collect(),
        reverse_relay: store
            .reverse_relay_job(migration_id)
            .await?
            .map(|j| (j.id, j.state.as_str().to_string(), j.message)),
        switches: store
            .list_switches(migration_id, 20)
            .await?
            .into_iter()
            .map(|s| SwitchRow {
                id: s.id,
                direction: s.direction,
                buckets: s
                    .buckets
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                state: s.state,
                actor: s.actor,
                started_at: fmt(s.started_at),
                hold_ms: s.hold_ms,
                clients: format!("{}/{}", s.clients_acked, s.clients_expected),
                error: s.error,
            })
            .collect(),
    })
}

/// Switches (or rolls back) the buckets with these ids; answers what happened.
#[server]
pub async fn move_source_of_truth(
    migration_id: i64,
    #[server(default)] bucket_ids: Vec<i64>,
    rollback: bool,
    reason: String,
) -> Result<String, AppError> {
    use tern_control::switch::{Direction, RelayDrain, SwitchOptions};
    let me = crate::server::actor()?;
    let state = crate::server::state()?;
    let store = &state.store;
    let mut idxs = Vec::new();
    for id in bucket_ids {
        let b = store.bucket(id).await?;
        if b.migration_id != migration_id {
            return Err(AppError::Invalid(format!(
                "bucket {id} belongs to another migration"
            )));
        }
        idxs.push(b.idx);
    }
    let direction = if rollback {
        Direction::Rollback
    } else {
        Direction::Switch
    };
    let drain = RelayDrain {
        store: store.clone(),
        ctx: state.runners.clone(),
    };
    let r = store
        .switch_buckets(
            &me,
            migration_id,
            &idxs,
            direction,
            &reason,
            &drain,
            SwitchOptions::default(),
        )
        .await?;
    Ok(format!(
        "{} of bucket(s) {} done: writes held {} ms, {} of {} active clients applied the hold",
        if rollback { "rollback" } else { "switch" },
        r.buckets
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        r.hold_ms.unwrap_or(0),
        r.clients_acked,
        r.clients_expected
    ))
}

/// Starts the reverse relay (it installs capture on the new store and
/// checks which tables invert).
#[server]
pub async fn start_reverse_relay(migration_id: i64) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let job = store.start_reverse_relay(&me, migration_id).await?;
    // Only the job's number: its state moves on, and the panel shows it live.
    Ok(format!(
        "reverse relay: job {} — its state shows above as it runs",
        job.id
    ))
}

#[component]
pub fn SwitchPanel(migration_id: i64) -> impl IntoView {
    let ui = expect_context::<super::BoardUi>();
    let act = ServerAction::<MoveSourceOfTruth>::new();
    let reverse = ServerAction::<StartReverseRelay>::new();
    let tick = crate::components::live::use_tick(std::time::Duration::from_secs(2));
    let data = Resource::new(
        move || (tick.get(), ui.changed.get(), act.version().get()),
        move |_| switch_panel(migration_id),
    );
    Effect::new(move |_| {
        if act.version().get() > 0 {
            ui.changed.update(|c| *c += 1);
        }
    });
    let go = move |rollback: bool| {
        act.dispatch(MoveSourceOfTruth {
            migration_id,
            bucket_ids: ui.selected.get_untracked().into_iter().collect(),
            rollback,
            reason: ui.reason.get_untracked(),
        });
    };
    view! {
        <section class="panel" data-testid="switch-panel">
            <h2>"Source of truth"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    data.await.map(|v| {
                        let can_operate = v.can_operate;
                        view! {
                            <SwitchState v/>
                            {can_operate.then(|| view! {
                                <div class="row">
                                    <button class="button small" data-testid="switch-selected" on:click=move |_| go(false)
                                        disabled=move || ui.selected.with(|s| s.is_empty()) || act.pending().get()>"Switch the selected buckets"</button>
                                    <button class="button small" data-testid="start-reverse-relay"
                                        on:click=move |_| { reverse.dispatch(StartReverseRelay { migration_id }); }>"Start the reverse relay"</button>
                                    <button class="button small" data-testid="rollback-selected" on:click=move |_| go(true)
                                        disabled=move || ui.selected.with(|s| s.is_empty()) || act.pending().get()>"Roll back the selected buckets"</button>
                                </div>
                            })}
                        }
                    }).map_err(|e| e.to_string())
                })}
            </Transition>
            <p class="muted small">"Switching holds the selected buckets' writes for a moment (clients retry), waits until every active client applied the hold, drains the relay, then writes go to the new store first and the reverse relay keeps the old one complete. Roll back the same way, at any time before decommission."</p>
            {move || reverse.value().get().map(|r| match r {
                Ok(m) => view! { <p class="flash flash-ok">{m}</p> }.into_any(),
                Err(e) => view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
            {move || act.pending().get().then(|| view! { <p class="muted small">"Holding writes, draining…"</p> })}
            {move || act.value().get().map(|r| match r {
                Ok(m) => view! { <p class="flash flash-ok" data-testid="switch-result">{m}</p> }.into_any(),
                Err(e) => view! { <p class="flash flash-error" role="alert" data-testid="switch-refused">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
}

#[component]
fn SwitchState(v: SwitchPanelView) -> impl IntoView {
    let list = |v: &[i64]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    view! {
        <dl class="stats">
            <div><dt>"Writing to new"</dt><dd data-testid="switched-buckets">{list(&v.switched)}</dd></div>
            <div><dt>"Held now"</dt><dd>{list(&v.held)}</dd></div>
            <div><dt>"Clients on routing v"{v.routing_version}</dt>
                <dd data-testid="routing-pickup">{format!("{} of {} active", v.clients_applied, v.clients_active)}</dd></div>
            <div><dt>"Reverse relay"</dt><dd data-testid="reverse-relay-state" title=v.reverse_relay.as_ref().and_then(|r| r.2.clone()).unwrap_or_default()>
                {match &v.reverse_relay {
                    Some((id, state, _)) => format!("job {id} {state}"),
                    None => "not started".to_string(),
                }}</dd></div>
            <div><dt>"Drift"</dt><dd data-testid="drifted-buckets">{if v.drifted.is_empty() { "none".to_string() } else { format!("buckets {}", list(&v.drifted)) }}</dd></div>
        </dl>
        <ul class="small">
            {v.reverse_paths.iter().map(|(t, ok, why)| view! {
                <li>{format!("{t}: {}", if *ok { "reversible".to_string() } else { format!("cannot be switched: {why}") })}</li>
            }).collect_view()}
        </ul>
        {(!v.switches.is_empty()).then(|| view! {
            <table class="table small" data-testid="switch-history">
                <thead><tr><th>"#"</th><th>"What"</th><th>"Buckets"</th><th>"State"</th><th>"Hold"</th><th>"Clients"</th><th>"By"</th><th>"When"</th></tr></thead>
                <tbody>
                    {v.switches.iter().map(|s| view! {
                        <tr>
                            <td>{s.id}</td><td>{s.direction.clone()}</td><td>{s.buckets.clone()}</td>
                            <td title=s.error.clone().unwrap_or_default()>{s.state.clone()}</td>
                            <td data-testid="hold-ms">{s.hold_ms.map(|h| format!("{h} ms")).unwrap_or_default()}</td>
                            <td>{s.clients.clone()}</td><td>{s.actor.clone()}</td><td>{s.started_at.clone()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        })}
    }
}
