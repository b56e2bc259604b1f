//! The audit log: every change of state, who made it, when, and why.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::components::grid::Grid;
use crate::components::guard::loaded_list;
use crate::components::page_head::PageHead;
use crate::error::AppError;
use crate::types::AuditRow;

/// The newest audit events matching the filters (blank filters match all).
#[server]
pub async fn list_audit(
    actor: String,
    action: String,
    entity: String,
) -> Result<Vec<AuditRow>, AppError> {
    use tern_control::audit::AuditFilter;
    let (store, me) = crate::server::acting()?;
    let (entity_kind, entity_id) = match entity.split_once('/') {
        Some((k, i)) => (Some(k.to_string()), Some(i.to_string())),
        None if entity.trim().is_empty() => (None, None),
        None => (Some(entity), None),
    };
    let filter = AuditFilter {
        actor: Some(actor),
        action: Some(action),
        entity_kind,
        entity_id,
        limit: Some(500),
        ..Default::default()
    };
    let events = store.list_audit(&me, &filter).await?;
    Ok(events.into_iter().map(audit_row).collect())
}

/// An audit event as a row of the log (and of a bucket's history).
#[cfg(feature = "ssr")]
pub fn audit_row(e: tern_control::audit::AuditEvent) -> AuditRow {
    use tern_control::clock::format_ms;
    AuditRow {
        id: e.id,
        at: format_ms(e.at),
        actor: e.actor,
        action: e.action,
        entity: format!("{}/{}", e.entity_kind, e.entity_id),
        change: match (e.from_state, e.to_state) {
            (Some(f), Some(t)) => format!("{f} → {t}"),
            (None, Some(t)) => format!("→ {t}"),
            (Some(f), None) => format!("{f} →"),
            (None, None) => String::new(),
        },
        reason: e.reason.unwrap_or_default(),
    }
}

#[component]
pub fn AuditLog() -> impl IntoView {
    let query = use_query_map();
    let param = move |k: &str| query.with(|q| q.get(k).unwrap_or_default());
    let events = Resource::new_blocking(
        move || (param("actor"), param("action"), param("entity")),
        |(actor, action, entity)| list_audit(actor, action, entity),
    );
    // Narrows the loaded rows as the user types, in the browser.
    let (quick, set_quick) = signal(String::new());
    view! {
        <PageHead title="Audit log">"Every change of state: who, when, what, from → to, and the reason given."</PageHead>
        <form class="panel filters" method="get" action="/audit">
            <label>"Actor" <input name="actor" prop:value=move || param("actor") placeholder="alice"/></label>
            <label>"Action" <input name="action" prop:value=move || param("action") placeholder="ramp. or user.create"/></label>
            <label>"Entity" <input name="entity" prop:value=move || param("entity") placeholder="migration/contacts"/></label>
            <button type="submit" class="button">"Filter"</button>
            <a class="button-link" href="/audit">"Clear"</a>
        </form>
        <Suspense fallback=|| view! { <p class="muted">"Loading events…"</p> }>
            {move || Suspend::new(async move {
                loaded_list(events.await, "No events match. Changes appear here as people and workers make them.", |rows| {
                    let total = rows.len();
                    let rows = StoredValue::new(rows);
                    let visible = move || {
                        let needle = quick.get().to_lowercase();
                        rows.read_value()
                            .iter()
                            .filter(|r| needle.is_empty() || format!("{} {} {} {} {}", r.actor, r.action, r.entity, r.change, r.reason).to_lowercase().contains(&needle))
                            .cloned()
                            .collect::<Vec<_>>()
                    };
                    view! {
                        <section class="panel">
                            <div class="table-tools">
                                <input
                                    class="quick-filter"
                                    data-testid="audit-quick-filter"
                                    placeholder="Narrow these events…"
                                    on:input=move |ev| set_quick.set(event_target_value(&ev))
                                    prop:value=quick
                                />
                                <span class="muted" data-testid="audit-count">
                                    {move || format!("{} of {} events", visible().len(), total)}
                                </span>
                            </div>
                            <Grid head=&["When (UTC)", "Who", "Action", "Entity", "Change", "Reason"]>
                                <For each=visible key=|r| r.id let:r>
                                    <tr data-testid="audit-row">
                                        <td class="mono">{r.at}</td>
                                        <td>{r.actor}</td>
                                        <td class="mono">{r.action}</td>
                                        <td class="mono">{r.entity}</td>
                                        <td>{r.change}</td>
                                        <td>{r.reason}</td>
                                    </tr>
                                </For>
                            </Grid>
                        </section>
                    }.into_any()
                })
            })}
        </Suspense>
    }
}
