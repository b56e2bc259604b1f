//! One client's page: its read ramp (with the gates and the always-visible
//! Rollback button for engineers), traffic and mismatch charts, the latest
//! mismatch trees, the migration guide, notes, checklist and API tokens.

use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

use crate::components::grid::Grid;
use crate::components::guard::loaded;
use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChecklistView {
    pub id: i64,
    pub label: String,
    pub done: bool,
    pub done_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MismatchView {
    pub at: String,
    pub key: String,
    pub tree: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: i64,
    pub label: String,
    pub prefix: String,
    pub created: String,
    pub revoked: bool,
}

/// Everything the client page shows, with what the viewer may do decided on the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientPageData {
    pub id: i64,
    pub name: String,
    pub migration_id: i64,
    pub migration: String,
    pub owner_team: String,
    pub owner_contact: String,
    pub kind: String,
    pub status: String,
    pub ramp: String,
    pub ramp_percent: f64,
    pub shadow_rate: f64,
    pub notes: String,
    pub can_operate: bool,
    pub can_administer: bool,
    /// An engineer or this client's owner: ticks, status, notes, tokens.
    pub can_edit: bool,
    /// Why a raise above the gate threshold would be refused now (empty: it would not).
    pub gate_reasons: Vec<String>,
    pub gate_threshold: String,
    pub mismatch_rate: Option<f64>,
    pub samples: i64,
    pub checklist: Vec<ChecklistView>,
    pub mismatches: Vec<MismatchView>,
    pub tokens: Vec<TokenView>,
    pub guide_html: String,
}

#[server]
pub async fn client_view(id: i64) -> Result<ClientPageData, AppError> {
    use tern_control::clock::format_ms;
    let (store, me) = crate::server::acting()?;
    let c = store.client(id).await?;
    me.require_client(&c.name, "reading a client")?;
    let gate = store.check_gates(&c, tern_ramp::Ramp::FULL).await?;
    let can_edit = me.role.can_operate() || tern_control::clients::owns(&me, &c);
    let tokens = if can_edit {
        store
            .list_tokens(c.migration_id)
            .await?
            .into_iter()
            .filter(|t| t.client_id == Some(c.id))
            .map(|t| TokenView {
                id: t.id,
                label: t.label,
                prefix: t.prefix,
                created: format_ms(t.created_at),
                revoked: t.revoked_at.is_some(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(ClientPageData {
        id: c.id,
        migration_id: c.migration_id,
        migration: c.migration_name.clone(),
        owner_team: c.owner_team.clone(),
        owner_contact: c.owner_contact.clone(),
        kind: c.kind.clone(),
        status: c.status.clone(),
        ramp: c.read_ramp().to_string(),
        ramp_percent: c.read_ramp().percent(),
        shadow_rate: c.shadow_rate,
        notes: c.notes.clone(),
        can_operate: me.role.can_operate(),
        can_administer: me.role.can_administer(),
        can_edit,
        gate_reasons: gate.reasons,
        gate_threshold: tern_ramp::Ramp::from_millipercent(gate.threshold.max(0) as u32)
            .to_string(),
        mismatch_rate: gate.mismatch_rate,
        samples: gate.samples,
        checklist: store
            .checklist(c.id)
            .await?
            .into_iter()
            .map(|i| ChecklistView {
                id: i.id,
                label: i.label,
                done: i.done,
                done_by: i.done_by.unwrap_or_default(),
            })
            .collect(),
        mismatches: store
            .latest_mismatches(c.id, 5)
            .await?
            .into_iter()
            .map(|m| MismatchView {
                at: format_ms(m.at),
                key: m.key,
                tree: m.tree.unwrap_or_default(),
            })
            .collect(),
        tokens,
        // The guide's samples name this client where the guide says `{{client}}`.
        guide_html: tern_control::guides::render_markdown(
            &store
                .guide(c.migration_id)
                .await?
                .replace("{{client}}", &c.name),
        ),
        name: c.name,
    })
}

/// Sets the read ramp (engineers; admins may override a refused gate with a reason).
#[server]
pub async fn set_client_ramp(
    id: i64,
    ramp: String,
    reason: String,
    override_reason: Option<String>,
) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let ramp = tern_ramp::Ramp::parse(&ramp).map_err(|e| AppError::Invalid(e.to_string()))?;
    let c = store
        .set_ramp(&me, id, ramp, &reason, override_reason.as_deref())
        .await?;
    Ok(c.read_ramp().to_string())
}

/// Rolls the read ramp back to 0% at once.
#[server]
pub async fn rollback_client(id: i64, reason: String) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    store.rollback(&me, id, &reason).await?;
    Ok(())
}

#[server]
pub async fn tick_item(item: i64, done: bool) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    store.tick_checklist_item(&me, item, done).await?;
    Ok(())
}

#[server]
pub async fn set_status(id: i64, status: String) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    store.set_client_status(&me, id, &status, "").await?;
    Ok(())
}

#[server]
pub async fn save_notes(id: i64, notes: String) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    let edit = tern_control::clients::ClientEdit {
        notes: Some(notes),
        ..Default::default()
    };
    store.edit_client(&me, id, edit).await?;
    Ok(())
}

#[server]
pub async fn save_shadow(id: i64, rate: f64, rules: String) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    let edit = tern_control::clients::ClientEdit {
        shadow_rate: Some(rate),
        shadow_rules: Some(if rules.trim().is_empty() {
            "{}".into()
        } else {
            rules
        }),
        ..Default::default()
    };
    store.edit_client(&me, id, edit).await?;
    Ok(())
}

/// Creates an API token; answers it once.
#[server]
pub async fn create_client_token(id: i64, label: String) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let c = store.client(id).await?;
    Ok(store
        .create_token(&me, c.migration_id, Some(id), &label)
        .await?
        .1)
}

#[server]
pub async fn revoke_client_token(token: i64) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    store.revoke_token(&me, token).await?;
    Ok(())
}

/// The error of a page action, if its last run failed.
macro_rules! flash {
    ($a:expr) => {{
        let a = $a;
        move || {
            a.value().get().and_then(Result::err).map(|e| {
                view! { <p class="flash flash-error" role="alert" data-testid="action-error">{e.to_string()}</p> }
            })
        }
    }};
}

#[component]
pub fn ClientPage() -> impl IntoView {
    let id = crate::pages::id_param();
    let ramp = ServerAction::<SetClientRamp>::new();
    let rollback = ServerAction::<RollbackClient>::new();
    let tick = ServerAction::<TickItem>::new();
    let status = ServerAction::<SetStatus>::new();
    let notes = ServerAction::<SaveNotes>::new();
    let shadow = ServerAction::<SaveShadow>::new();
    let token = ServerAction::<CreateClientToken>::new();
    let revoke = ServerAction::<RevokeClientToken>::new();
    let reloads = [
        ramp.version(),
        rollback.version(),
        tick.version(),
        status.version(),
        notes.version(),
        shadow.version(),
        token.version(),
        revoke.version(),
    ];
    let data = Resource::new_blocking(
        move || (id(), crate::pages::finished(&reloads)),
        |(id, _)| client_view(id),
    );
    view! {
        <Title text="Client"/>
        <Suspense fallback=|| view! { <p class="muted">"Loading the client…"</p> }>
            {move || Suspend::new(async move {
                loaded(data.await, |c| view! { <ClientBody c ramp rollback tick status notes shadow token revoke/> })
            })}
        </Suspense>
    }
}

#[allow(clippy::too_many_arguments)]
#[component]
fn ClientBody(
    c: ClientPageData,
    ramp: ServerAction<SetClientRamp>,
    rollback: ServerAction<RollbackClient>,
    tick: ServerAction<TickItem>,
    status: ServerAction<SetStatus>,
    notes: ServerAction<SaveNotes>,
    shadow: ServerAction<SaveShadow>,
    token: ServerAction<CreateClientToken>,
    revoke: ServerAction<RevokeClientToken>,
) -> impl IntoView {
    let id = c.id;
    // The chart URLs change with every ramp change and every few seconds
    // (live traffic), so the browser fetches them again; the forms around
    // them are not re-rendered, so nothing half-typed is lost.
    let bust = c.ramp.clone();
    let live = crate::components::live::use_tick(std::time::Duration::from_secs(10));
    // The charts' time window: the axis fits the data within it.
    let hours = RwSignal::new(24i64);
    view! {
        <div class="page-head">
            <h1 data-testid="client-name">{c.name.clone()}</h1>
            <p class="muted">
                {format!("{} client of ", c.kind)}
                <a href=format!("/migrations/{}/clients", c.migration_id)>{c.migration.clone()}</a>
                {format!(" · owned by {} {}", c.owner_team, c.owner_contact)}
            </p>
        </div>
        <section class="panel ramp-panel">
            <h2>"Read ramp"</h2>
            <p class="big" data-testid="client-ramp">{format!("{} of reads on the new system", c.ramp)}</p>
            <p>"Status: " <span class=format!("status status-{}", c.status) data-testid="client-status">{c.status.clone()}</span></p>
            {c.can_operate.then(|| view! {
                <div class="ramp-controls" data-testid="ramp-controls">
                    <ActionForm action=rollback attr:class="inline-form">
                        <input type="hidden" name="id" value=id.to_string()/>
                        <input name="reason" placeholder="why (optional)"/>
                        <button type="submit" class="button danger" data-testid="rollback">"Rollback to 0%"</button>
                    </ActionForm>
                    <ActionForm action=ramp attr:class="inline-form">
                        <input type="hidden" name="id" value=id.to_string()/>
                        <label>"New ramp" <input name="ramp" data-testid="ramp-input" required placeholder="25%" size="7"/></label>
                        <label>"Reason" <input name="reason" data-testid="ramp-reason" required placeholder="errors flat after 24 h at 10%"/></label>
                        {c.can_administer.then(|| view! {
                            <label>"Override a refused gate because" <input name="override_reason" placeholder="only admins; audited"/></label>
                        })}
                        <button type="submit" class="button primary" data-testid="ramp-set">"Set ramp"</button>
                    </ActionForm>
                </div>
            })}
            {flash!(ramp)}
            {flash!(rollback)}
            <p class="muted small" data-testid="gate-status">{if c.gate_reasons.is_empty() {
                format!("Gates hold: this client may ramp above {}.", c.gate_threshold)
            } else {
                format!("Ramps above {} are refused now: {}.", c.gate_threshold, c.gate_reasons.join("; "))
            }}</p>
        </section>
        // The guide first: it is what a client owner comes for.
        <section class="panel guide" data-testid="guide">
            <h2>{format!("Migration guide: {}", c.migration)}</h2>
            {if c.guide_html.is_empty() {
                view! { <p class="muted">"No guide written yet."</p> }.into_any()
            } else {
                view! { <div class="markdown" inner_html=c.guide_html.clone()></div> }.into_any()
            }}
        </section>
        <section class="panel">
            <div class="card-head">
                <h2>"Traffic"</h2>
                <div class="segmented" role="group" aria-label="time window">
                    {[(1, "1 h"), (24, "24 h"), (168, "7 d")].into_iter().map(|(h, label)| view! {
                        <button type="button" class="button small" aria-pressed=move || (hours.get() == h).to_string()
                            on:click=move |_| hours.set(h)>{label}</button>
                    }).collect_view()}
                </div>
            </div>
            <img class="chart" data-testid="traffic-chart" alt="requests to the old and the new system over time, ramp steps marked"
                src=move || format!("/charts/clients/{id}/traffic.svg?v={}&hours={}&t={}", bust.trim_end_matches('%'), hours.get(), live.get())/>
        </section>
        <section class="panel">
            <h2>"Shadow comparison"</h2>
            <p>{match c.mismatch_rate {
                Some(r) => format!("{r:.3}% of {} compared pairs differed in the gate window. {:.2}% of requests are sampled.", c.samples, c.shadow_rate * 100.0),
                None => format!("No shadow pairs in the gate window. {:.2}% of requests are sampled.", c.shadow_rate * 100.0),
            }}</p>
            <img class="chart" alt="shadow mismatch rate over time" src=move || format!("/charts/clients/{id}/mismatch.svg?hours={}&t={}", hours.get(), live.get())/>
            {(!c.mismatches.is_empty()).then(|| view! {
                <h3>"Latest mismatch trees"</h3>
                {c.mismatches.clone().into_iter().map(|m| view! {
                    <div class="mismatch"><p class="mono small">{format!("{} · key {}", m.at, m.key)}</p><pre class="tree" data-testid="mismatch-tree">{m.tree}</pre></div>
                }).collect_view()}
            })}
            {c.can_operate.then(|| view! {
                <ActionForm action=shadow attr:class="form-grid">
                    <input type="hidden" name="id" value=id.to_string()/>
                    <label>"Sampling rate (0–1)" <input name="rate" type="number" step="0.0001" min="0" max="1" value=c.shadow_rate.to_string()/></label>
                    <label>"Rules (JSON)" <input name="rules" placeholder=r#"{"ignore": ["updated_at"], "unordered": ["tags"]}"#/></label>
                    <button type="submit" class="button">"Save shadow settings"</button>
                </ActionForm>
            })}
            {flash!(shadow)}
        </section>
        <section class="panel">
            <h2>"Checklist"</h2>
            <ul class="checklist" data-testid="checklist">
                {c.checklist.clone().into_iter().map(|i| {
                    let item = i.id;
                    let done = i.done;
                    view! {
                        <li data-testid="checklist-item" class:done=done>
                            <label>
                                <input type="checkbox" prop:checked=done disabled=!c.can_edit
                                    on:change=move |_| { tick.dispatch(TickItem { item, done: !done }); }/>
                                " " {i.label.clone()}
                            </label>
                            {(!i.done_by.is_empty()).then(|| view! { <span class="muted small">{format!(" — ticked by {}", i.done_by)}</span> })}
                        </li>
                    }
                }).collect_view()}
            </ul>
            {flash!(tick)}
            {c.can_edit.then(|| view! {
                <ActionForm action=status attr:class="inline-form">
                    <input type="hidden" name="id" value=id.to_string()/>
                    <label>"Status "
                        <select name="status" data-testid="status-select">
                            {["not-started", "in-progress", "migrated"].into_iter().map(|s| view! {
                                <option value=s selected=c.status == s>{s}</option>
                            }).collect_view()}
                        </select>
                    </label>
                    <button type="submit" class="button">"Change status"</button>
                </ActionForm>
            })}
            {flash!(status)}
        </section>
        <section class="panel">
            <h2>"Notes"</h2>
            {if c.can_edit {
                view! {
                    <ActionForm action=notes>
                        <input type="hidden" name="id" value=id.to_string()/>
                        <textarea name="notes" rows="4" class="wide">{c.notes.clone()}</textarea>
                        <button type="submit" class="button">"Save notes"</button>
                    </ActionForm>
                }.into_any()
            } else {
                view! { <p class="prewrap">{if c.notes.is_empty() { "No notes.".to_string() } else { c.notes.clone() }}</p> }.into_any()
            }}
            {flash!(notes)}
        </section>
        {c.can_edit.then(|| view! {
            <section class="panel">
                <h2>"API tokens"</h2>
                <p class="muted">"The service sends its token as " <code>"Authorization: Bearer …"</code> " to the routing, traffic and shadow API. Only a hash is kept: copy a new token now."</p>
                <Grid head=&["Label", "Token", "Created", ""]>
                    {c.tokens.clone().into_iter().map(|t| {
                        let tid = t.id;
                        view! {
                            <tr data-testid="token-row">
                                <td>{t.label}</td>
                                <td class="mono">{format!("{}…", t.prefix)}</td>
                                <td class="mono muted">{t.created}</td>
                                <td>{if t.revoked { view! { <span class="muted">"revoked"</span> }.into_any() } else {
                                    view! { <button class="button small" on:click=move |_| { revoke.dispatch(RevokeClientToken { token: tid }); }>"Revoke"</button> }.into_any()
                                }}</td>
                            </tr>
                        }
                    }).collect_view()}
                </Grid>
                <ActionForm action=token attr:class="inline-form">
                    <input type="hidden" name="id" value=id.to_string()/>
                    <input name="label" placeholder="production"/>
                    <button type="submit" class="button">"Create token"</button>
                </ActionForm>
                {move || token.value().get().map(|r| match r {
                    Ok(t) => view! { <p class="flash flash-ok">"New token (shown once): " <code data-testid="new-token">{t}</code></p> }.into_any(),
                    Err(e) => view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> }.into_any(),
                })}
            </section>
        })}
    }
}
