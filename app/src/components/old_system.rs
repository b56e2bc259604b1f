//! The overview's panel of clients and offline jobs still on the old system
//! (a client-owner sees their own clients first).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::components::grid::Grid;
use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OldSystemRow {
    pub migration: String,
    pub kind: String,
    /// The page the row links to; empty when the viewer may not open it.
    pub href: String,
    pub name: String,
    pub owner: String,
    pub status: String,
    pub ramp: String,
    pub mine: bool,
}

#[server]
pub async fn still_on_old() -> Result<Vec<OldSystemRow>, AppError> {
    let (store, me) = crate::server::acting()?;
    let list = store.still_on_old_system().await?;
    let mut rows: Vec<OldSystemRow> = list
        .into_iter()
        .map(|o| OldSystemRow {
            mine: o.kind == "client"
                && me.role == tern_control::Role::ClientOwner
                && me.clients.contains(&o.name),
            // No link to a page the viewer gets 403 on (a client owner's
            // other clients, the offline jobs page).
            href: if o.kind == "client" {
                if me.sees_client(&o.name) {
                    format!("/clients/{}", o.id)
                } else {
                    String::new()
                }
            } else if me.role.can_read_audit() {
                format!("/migrations/{}/offline", o.migration_id)
            } else {
                String::new()
            },
            ramp: o
                .ramp
                .map(|r| tern_ramp::Ramp::from_millipercent(r.max(0) as u32).to_string())
                .unwrap_or_else(|| "—".into()),
            migration: o.migration,
            kind: o.kind,
            name: o.name,
            owner: o.owner,
            status: o.status,
        })
        .collect();
    rows.sort_by_key(|r| !r.mine);
    Ok(rows)
}

#[component]
pub fn OldSystemPanel() -> impl IntoView {
    let rows = Resource::new_blocking(|| (), |_| still_on_old());
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                rows.await.ok().filter(|r| !r.is_empty()).map(|rows| view! {
                    <section class="panel" data-testid="old-system">
                        <h2>"Still on the old system"</h2>
                        // Scrolls in its own box on a phone: six columns
                        // squeezed to 390 px broke every word letter by letter.
                        <div class="table-scroll">
                        <Grid head=&["Migration", "Kind", "Name", "Owner", "Status", "Reads on new"]>
                            {rows.into_iter().map(|r| view! {
                                <tr data-testid="old-system-row" class:mine=r.mine>
                                    <td>{r.migration}</td>
                                    <td>{if r.kind == "client" { "client" } else { "offline job" }}</td>
                                    <td>{if r.href.is_empty() {
                                        view! { <span>{r.name}</span> }.into_any()
                                    } else {
                                        view! { <a href=r.href>{r.name}</a> }.into_any()
                                    }}{r.mine.then(|| view! { " " <span class="tag">"yours"</span> })}</td>
                                    <td>{r.owner}</td>
                                    <td><span class=format!("status status-{}", r.status)>{r.status.clone()}</span></td>
                                    <td class="mono">{r.ramp}</td>
                                </tr>
                            }).collect_view()}
                        </Grid>
                        </div>
                    </section>
                })
            })}
        </Suspense>
    }
}
