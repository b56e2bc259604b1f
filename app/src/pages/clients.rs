//! Client services: the list of every client (a client-owner's own first),
//! registration, and a migration's client settings (gates, guide, share chart).

use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

use crate::components::grid::Grid;
use crate::components::guard::{both, loaded, loaded_list};
use crate::components::layout::{can_operate, use_me};
use crate::components::page_head::PageHead;
use crate::error::AppError;

/// A client as the lists show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRow {
    pub id: i64,
    pub migration_id: i64,
    pub migration: String,
    pub name: String,
    pub owner: String,
    pub kind: String,
    pub status: String,
    pub ramp: String,
    pub mine: bool,
}

#[cfg(feature = "ssr")]
pub(crate) fn client_row(
    actor: &tern_control::Actor,
    c: &tern_control::clients::Client,
) -> ClientRow {
    ClientRow {
        id: c.id,
        migration_id: c.migration_id,
        migration: c.migration_name.clone(),
        name: c.name.clone(),
        owner: [c.owner_team.as_str(), c.owner_contact.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" · "),
        kind: c.kind.clone(),
        status: c.status.clone(),
        ramp: c.read_ramp().to_string(),
        mine: tern_control::clients::owns(actor, c),
    }
}

/// Every client (or one migration's), the signed-in owner's first.
#[server]
pub async fn list_clients(migration_id: Option<i64>) -> Result<Vec<ClientRow>, AppError> {
    let (store, me) = crate::server::acting()?;
    let list = store.list_clients(&me, migration_id).await?;
    Ok(list
        .iter()
        .filter(|c| me.sees_client(&c.name))
        .map(|c| client_row(&me, c))
        .collect())
}

/// Migrations to register a client in: (id, name).
#[server]
pub async fn migration_names() -> Result<Vec<(i64, String)>, AppError> {
    let list = crate::server::signed_in_store()?
        .migration_summaries()
        .await?;
    Ok(list
        .into_iter()
        .map(|s| (s.migration.id, s.migration.name))
        .collect())
}

/// Registers a client (engineers).
#[server]
pub async fn register_client(
    migration_id: i64,
    name: String,
    owner_team: String,
    owner_contact: String,
    kind: String,
) -> Result<i64, AppError> {
    use tern_control::clients::NewClient;
    let (store, me) = crate::server::acting()?;
    let new = NewClient {
        name,
        owner_team,
        owner_contact,
        kind,
    };
    Ok(store.create_client(&me, migration_id, new).await?.id)
}

#[component]
pub fn ClientsPage() -> impl IntoView {
    let register = ServerAction::<RegisterClient>::new();
    let clients = Resource::new_blocking(move || register.version().get(), |_| list_clients(None));
    let me = use_me();
    view! {
        <Title text="Clients"/>
        <PageHead title="Clients">"Every service and job that reads a migration's data: who owns it, how far its reads have moved, and its status. Your own clients come first."</PageHead>
        <Suspense fallback=|| view! { <p class="muted">"Loading clients…"</p> }>
            {move || Suspend::new(async move {
                loaded_list(clients.await, "No clients yet. Engineers register them here; clients that report traffic with a collector token appear as discovered.", |list| view! { <ClientTable list/> })
            })}
        </Suspense>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                can_operate(me).await.then(|| view! { <RegisterForm register/> })
            })}
        </Suspense>
    }
}

#[component]
pub fn ClientTable(list: Vec<ClientRow>) -> impl IntoView {
    view! {
        <section class="panel">
            <Grid head=&["Client", "Migration", "Owner", "Kind", "Status", "Reads on new"] testid="clients-table">
                {list.into_iter().map(|c| view! {
                    <tr data-testid="client-row" class:mine=c.mine>
                        <td><a href=format!("/clients/{}", c.id)>{c.name.clone()}</a>{c.mine.then(|| view! { " " <span class="tag">"yours"</span> })}</td>
                        <td><a href=format!("/migrations/{}/clients", c.migration_id)>{c.migration.clone()}</a></td>
                        <td>{c.owner.clone()}</td>
                        <td>{c.kind.clone()}</td>
                        <td><span class=format!("status status-{}", c.status)>{c.status.clone()}</span></td>
                        <td class="mono">{c.ramp.clone()}</td>
                    </tr>
                }).collect_view()}
            </Grid>
        </section>
    }
}

#[component]
fn RegisterForm(register: ServerAction<RegisterClient>) -> impl IntoView {
    let migrations = Resource::new(|| (), |_| migration_names());
    view! {
        <section class="panel">
            <h2>"Register a client"</h2>
            <ActionForm action=register attr:class="form-grid">
                <label>"Migration"
                    <select name="migration_id">
                        <Suspense fallback=|| ()>
                            {move || Suspend::new(async move {
                                migrations.await.unwrap_or_default().into_iter().map(|(id, name)| view! {
                                    <option value=id.to_string()>{name}</option>
                                }).collect_view()
                            })}
                        </Suspense>
                    </select>
                </label>
                <label>"Name" <input name="name" required placeholder="inbox-service"/></label>
                <label>"Owner team" <input name="owner_team" placeholder="Inbox"/></label>
                <label>"Contact" <input name="owner_contact" placeholder="inbox-oncall@example.com"/></label>
                <label>"Kind"
                    <select name="kind">
                        <option value="online">"online service"</option>
                        <option value="offline">"offline job"</option>
                    </select>
                </label>
                <button type="submit" class="button primary">"Register"</button>
            </ActionForm>
            {move || register.value().get().map(|r| match r {
                Ok(id) => view! { <p class="flash flash-ok">"Registered. " <a href=format!("/clients/{id}")>"Open its page"</a></p> }.into_any(),
                Err(e) => view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
}

/// A migration's gates and guide as its clients page shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationClientsView {
    pub id: i64,
    pub name: String,
    pub threshold: f64,
    pub min_accuracy: f64,
    pub max_mismatch_rate: f64,
    pub quiet_days: i64,
    pub lock_days: i64,
    pub accuracy: Option<f64>,
    pub guide: String,
}

#[server]
pub async fn migration_clients(id: i64) -> Result<MigrationClientsView, AppError> {
    let store = crate::server::signed_in_store()?;
    let m = store.migration(id).await?;
    let g = store.gates(id).await?;
    Ok(MigrationClientsView {
        id,
        name: m.name,
        threshold: g.ramp_threshold as f64 / 1000.0,
        min_accuracy: g.min_accuracy,
        max_mismatch_rate: g.max_mismatch_rate,
        quiet_days: g.quiet_days,
        lock_days: g.lock_days,
        accuracy: store.latest_accuracy(id).await?,
        guide: store.guide(id).await?,
    })
}

/// Saves a migration's gates (engineers).
#[server]
pub async fn save_gates(
    id: i64,
    threshold: f64,
    min_accuracy: f64,
    max_mismatch_rate: f64,
    quiet_days: i64,
    lock_days: i64,
) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    let mut g = store.gates(id).await?;
    g.ramp_threshold = (threshold * 1000.0).round() as i64;
    g.min_accuracy = min_accuracy;
    g.max_mismatch_rate = max_mismatch_rate;
    g.quiet_days = quiet_days;
    g.lock_days = lock_days;
    store.set_gates(&me, &g).await?;
    Ok(())
}

/// Saves the migration guide (engineers).
#[server]
pub async fn save_guide(id: i64, markdown: String) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    store.set_guide(&me, id, &markdown).await?;
    Ok(())
}

#[component]
pub fn MigrationClientsPage() -> impl IntoView {
    let id = crate::pages::id_param();
    let gates = ServerAction::<SaveGates>::new();
    let guide = ServerAction::<SaveGuide>::new();
    let view_data = Resource::new_blocking(
        move || (id(), gates.version().get(), guide.version().get()),
        |(id, _, _)| migration_clients(id),
    );
    let clients = Resource::new_blocking(id, |id| list_clients(Some(id)));
    let me = use_me();
    view! {
        <Title text="Migration clients"/>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let operate = can_operate(me).await;
                loaded(both(view_data.await, clients.await), |(v, list)| view! {
                    <div class="page-head">
                        <h1>{format!("Clients of {}", v.name)}</h1>
                        <p class="muted">
                            <a href=format!("/migrations/{}", v.id)>"Migration"</a>" · "
                            <a href=format!("/migrations/{}/guide", v.id)>"Guide"</a>" · "
                            <a href=format!("/migrations/{}/offline", v.id)>"Offline jobs and datasets"</a>" · "
                            <a href=format!("/migrations/{}/decommission", v.id)>"Decommission"</a>
                        </p>
                    </div>
                    <section class="panel">
                        <h2>"Share of traffic on the new system"</h2>
                        <img class="chart" data-testid="share-chart" alt="share of traffic on the new system over time" src=format!("/charts/migrations/{}/share.svg", v.id)/>
                    </section>
                    {if list.is_empty() { view! { <section class="panel empty"><p>"No clients registered yet."</p></section> }.into_any() } else { view! { <ClientTable list/> }.into_any() }}
                    <section class="panel">
                        <h2>"Gates"</h2>
                        <p data-testid="gates-summary">{format!(
                            "Read ramps above {}% need the latest verification accuracy at {}% or more (now {}) and the client's shadow mismatch rate at {}% or less.",
                            v.threshold, v.min_accuracy,
                            v.accuracy.map(|a| format!("{a:.3}%")).unwrap_or_else(|| "no run yet".into()),
                            v.max_mismatch_rate
                        )}</p>
                        {operate.then(|| view! {
                            <ActionForm action=gates attr:class="form-grid">
                                <input type="hidden" name="id" value=v.id.to_string()/>
                                <label>"Gate above (%)" <input name="threshold" type="number" step="0.1" min="0" max="100" value=v.threshold.to_string()/></label>
                                <label>"Min accuracy (%)" <input name="min_accuracy" type="number" step="0.001" value=v.min_accuracy.to_string()/></label>
                                <label>"Max mismatch rate (%)" <input name="max_mismatch_rate" type="number" step="0.001" value=v.max_mismatch_rate.to_string()/></label>
                                <label>"Quiet days before decommission" <input name="quiet_days" type="number" min="0" value=v.quiet_days.to_string()/></label>
                                <label>"Days locked before deletion" <input name="lock_days" type="number" min="0" value=v.lock_days.to_string()/></label>
                                <button type="submit" class="button">"Save gates"</button>
                            </ActionForm>
                        })}
                        {move || gates.value().get().and_then(Result::err).map(|e| view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> })}
                    </section>
                })
            })}
        </Suspense>
    }
}
