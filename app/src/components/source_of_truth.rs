//! The overview's view of switched migrations: how many buckets write to the
//! new store, which of them drifted from the old one, the last hold, and
//! whether the migration is complete.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceOfTruthRow {
    pub id: i64,
    pub migration: String,
    pub switched: i64,
    pub buckets: i64,
    pub drifted: Vec<i64>,
    pub complete: bool,
    pub last_hold_ms: Option<i64>,
}

#[server]
pub async fn sources_of_truth() -> Result<Vec<SourceOfTruthRow>, AppError> {
    Ok(crate::server::signed_in_store()?
        .sources_of_truth()
        .await?
        .into_iter()
        .map(|s| SourceOfTruthRow {
            id: s.migration_id,
            migration: s.migration,
            switched: s.switched,
            buckets: s.buckets,
            drifted: s.drifted,
            complete: s.completed_at.is_some(),
            last_hold_ms: s.last_hold_ms,
        })
        .collect())
}

#[component]
pub fn SourceOfTruthPanel() -> impl IntoView {
    let tick = crate::components::live::use_tick(std::time::Duration::from_secs(5));
    let data = Resource::new(move || tick.get(), |_| sources_of_truth());
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                data.await.ok().filter(|rows| !rows.is_empty()).map(|rows| view! {
                    <section class="panel" data-testid="source-of-truth">
                        <h2>"Source of truth"</h2>
                        <ul>
                            {rows.into_iter().map(|r| view! {
                                <li data-testid="source-of-truth-row">
                                    <a href=format!("/migrations/{}", r.id)>{r.migration.clone()}</a>
                                    {if r.complete {
                                        " — complete: the new store is the only store".to_string()
                                    } else {
                                        format!(" — {} of {} buckets write to the new store", r.switched, r.buckets)
                                    }}
                                    {r.last_hold_ms.map(|h| format!("; last hold {h} ms"))}
                                    {(!r.drifted.is_empty()).then(|| view! {
                                        <strong class="flash-error" data-testid="drift">
                                            {format!("; drift in bucket(s) {}: further switches wait for a repair",
                                                r.drifted.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))}
                                        </strong>
                                    })}
                                </li>
                            }).collect_view()}
                        </ul>
                    </section>
                })
            })}
        </Transition>
    }
}
