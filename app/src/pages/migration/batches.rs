//! The batches and each one's checkpoint: what was done (phases, rows) and
//! what verification said (the lowest accuracy among its buckets).

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::{BatchRow, thousands};

/// Starts a planned batch (bulk-loads its buckets).
#[server]
pub async fn start_batch(batch_id: i64) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let b = store
        .start_batch(&me, batch_id, "started from the migration page")
        .await?;
    Ok(format!("batch {} started", b.seq))
}

#[component]
pub fn BatchesPanel(batches: Vec<BatchRow>, can_operate: bool) -> impl IntoView {
    let start = expect_context::<super::BoardUi>().start_batch;
    if batches.is_empty() {
        return ().into_any();
    }
    let rows = batches
        .into_iter()
        .map(|b| {
            let id = b.id;
            let planned = b.state == "planned";
            let copied: i64 = b.buckets.iter().map(|x| x.2).sum();
            let worst = b
                .buckets
                .iter()
                .filter_map(|x| x.3)
                .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.min(a))));
            view! {
                <tr data-testid="batch-row" data-state=b.state.clone()>
                    <td class="num">{b.seq}</td>
                    <td>{b.state.clone()}</td>
                    <td class="num">{format!("{} / {}", thousands(copied), thousands(b.planned_rows))}</td>
                    <td class="small">{b.buckets.iter().map(|(i, phase, _, _)| format!("{i}: {phase}")).collect::<Vec<_>>().join(" · ")}</td>
                    <td class="num">{worst.map(|a| format!("{a:.3}%")).unwrap_or_else(|| "—".into())}</td>
                    <td class="mono small">{b.started_at.clone()}<br/>{b.finished_at.clone()}</td>
                    <td>{(planned && can_operate).then(|| view! {
                        <button class="button small" on:click=move |_| { start.dispatch(StartBatch { batch_id: id }); }>"Start"</button>
                    })}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel">
            <h2>"Batches"</h2>
            <p class="muted small">"Buckets grouped into batches of about equal rows: a pipeline is as slow as its largest batch. Each batch's checkpoint: its buckets' phases, rows copied and the lowest verification accuracy among them."</p>
            <table class="grid">
                <thead><tr><th>"#"</th><th>"State"</th><th>"Rows copied"</th><th>"Buckets"</th><th>"Verified at"</th><th>"Started / finished"</th><th></th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            {move || start.value().get().map(|r| match r {
                Ok(m) => view! { <p class="flash flash-ok">{m}</p> }.into_any(),
                Err(e) => view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
    .into_any()
}
