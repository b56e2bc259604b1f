//! Verification accuracy over time as a small SVG line chart, drawn by the
//! page itself so it updates live with the rest of the page.

use leptos::prelude::*;

const W: f64 = 560.0;
const H: f64 = 200.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;

/// `HH:MM`, or `HH:MM:SS` when the chart spans under half an hour (the
/// labels would otherwise repeat the same minute).
fn clock(ms: i64, span_ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let day = secs.rem_euclid(86_400);
    if span_ms < 30 * 60_000 {
        format!("{:02}:{:02}:{:02}", day / 3600, (day % 3600) / 60, day % 60)
    } else {
        format!("{:02}:{:02}", day / 3600, (day % 3600) / 60)
    }
}

/// `points` are (time ms, accuracy %), oldest first. The y axis starts at the
/// lowest value seen (at most 90%) so the last tenths of a percent are visible.
#[component]
pub fn AccuracyChart(points: Vec<(i64, f64)>) -> impl IntoView {
    if points.is_empty() {
        return view! { <p class="muted" data-testid="accuracy-empty">"No verification yet: run one to see accuracy over time."</p> }.into_any();
    }
    let t0 = points.first().map(|p| p.0).unwrap_or(0);
    let t1 = points.last().map(|p| p.0).unwrap_or(0).max(t0 + 1);
    let lowest = points.iter().map(|p| p.1).fold(100.0, f64::min);
    let y_min = (lowest.min(90.0) / 10.0).floor() * 10.0;
    let x = move |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * (W - LEFT - RIGHT);
    let y = move |a: f64| TOP + (100.0 - a) / (100.0 - y_min).max(0.001) * (H - TOP - BOTTOM);
    let path = points
        .iter()
        .enumerate()
        .map(|(i, (t, a))| {
            format!(
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                x(*t),
                y(*a)
            )
        })
        .collect::<String>();
    let ticks = [y_min, (y_min + 100.0) / 2.0, 100.0];
    let last = points.last().map(|p| p.1).unwrap_or(0.0);
    view! {
        <svg class="chart" viewBox=format!("0 0 {W} {H}") role="img"
             aria-label=format!("verification accuracy over time, latest {last:.2}%")
             data-testid="accuracy-chart">
            {ticks.iter().map(|v| view! {
                <line x1=LEFT x2=W - RIGHT y1=y(*v) y2=y(*v) class="grid-line"/>
                <text x=LEFT - 6.0 y=y(*v) + 4.0 text-anchor="end" class="axis">{format!("{v:.0}%")}</text>
            }).collect_view()}
            <text x=LEFT y=H - 8.0 class="axis">{clock(t0, t1 - t0)}</text>
            <text x=W - RIGHT y=H - 8.0 text-anchor="end" class="axis">{format!("{} UTC", clock(t1, t1 - t0))}</text>
            <path d=path class="series"/>
            {points.iter().map(|(t, a)| view! {
                <circle cx=x(*t) cy=y(*a) r="4" class="dot"><title>{format!("{a:.3}% at {} UTC", clock(*t, 0))}</title></circle>
            }).collect_view()}
        </svg>
        <p class="muted small">"Share of compared rows that match, counting each bucket's latest verification; hover a point for its value."</p>
    }.into_any()
}
