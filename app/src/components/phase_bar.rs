//! A horizontal bar of a migration's buckets per phase.

use leptos::prelude::*;

use crate::types::PhaseCount;

/// Buckets per phase as one stacked bar, with a legend.
#[component]
pub fn PhaseBar(phases: Vec<PhaseCount>, total: i64) -> impl IntoView {
    let total = total.max(1);
    let segments = phases
        .iter()
        .map(|p| {
            let width = (p.count as f64) * 100.0 / (total as f64);
            let title = format!("{}: {} bucket(s)", p.phase, p.count);
            view! {
                <span
                    class=format!("phase-seg phase-{}", p.phase)
                    style=format!("width: {width:.3}%")
                    title=title
                ></span>
            }
        })
        .collect_view();
    let legend = phases
        .into_iter()
        .map(|p| {
            view! {
                <li data-testid="phase-count" data-phase=p.phase.clone() data-count=p.count.to_string()>
                    <span class=format!("swatch phase-{}", p.phase)></span>
                    {format!("{} {}", p.phase, p.count)}
                </li>
            }
        })
        .collect_view();
    view! {
        <div class="phase-bar" role="img" aria-label="buckets per phase">{segments}</div>
        <ul class="phase-legend">{legend}</ul>
    }
}
