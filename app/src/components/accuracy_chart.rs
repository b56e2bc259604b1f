//! Verification accuracy over time as a small SVG line chart, one line per
//! table, drawn by the page itself so it updates live with the rest of the
//! page.

use leptos::prelude::*;

use crate::types::TableSeries;

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

/// Line colours, one per table (colour-blind safe, Tableau's order; the
/// migration page's plotters chart uses the same).
const PALETTE: [&str; 6] = [
    "#1b6ac9", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#666666",
];

/// Accuracy over time, one line per table (`points` are (time ms, accuracy
/// %), oldest first), with a legend that names each table and its latest
/// value. The y axis starts at the lowest value seen (at most 90%) so the
/// last tenths of a percent are visible.
#[component]
pub fn AccuracyChart(tables: Vec<TableSeries>) -> impl IntoView {
    let all = || tables.iter().flat_map(|t| t.points.iter());
    if all().next().is_none() {
        return view! { <p class="muted" data-testid="accuracy-empty">"No verification yet: run one to see accuracy over time."</p> }.into_any();
    }
    let t0 = all().map(|p| p.0).min().unwrap_or(0);
    let t1 = all().map(|p| p.0).max().unwrap_or(0).max(t0 + 1);
    let lowest = all().map(|p| p.1).fold(100.0, f64::min);
    let y_min = (lowest.min(90.0) / 10.0).floor() * 10.0;
    // A single run sits in the middle rather than on the frame.
    let x = move |t: i64| {
        if t1 - t0 <= 1 {
            (LEFT + W - RIGHT) / 2.0
        } else {
            LEFT + (t - t0) as f64 / (t1 - t0) as f64 * (W - LEFT - RIGHT)
        }
    };
    let y = move |a: f64| TOP + (100.0 - a) / (100.0 - y_min).max(0.001) * (H - TOP - BOTTOM);
    let ticks = [y_min, (y_min + 100.0) / 2.0, 100.0];
    let latest = |t: &TableSeries| t.points.last().map(|p| p.1).unwrap_or(0.0);
    let label = tables
        .iter()
        .map(|t| format!("{} {:.2}%", t.table, latest(t)))
        .collect::<Vec<_>>()
        .join(", ");
    let lines = tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let colour = PALETTE[i % PALETTE.len()];
            let path = t
                .points
                .iter()
                .enumerate()
                .map(|(j, (at, a))| {
                    format!(
                        "{}{:.1},{:.1}",
                        if j == 0 { "M" } else { " L" },
                        x(*at),
                        y(*a)
                    )
                })
                .collect::<String>();
            let table = t.table.clone();
            view! {
                <g data-testid="accuracy-line" data-table=table.clone()>
                    <path d=path class="series" style=format!("stroke:{colour}")/>
                    {t.points.iter().map(|(at, a)| view! {
                        <circle cx=x(*at) cy=y(*a) r="4" class="dot" style=format!("fill:{colour}")>
                            <title>{format!("{table}: {a:.3}% at {} UTC", clock(*at, 0))}</title>
                        </circle>
                    }).collect_view()}
                </g>
            }
        })
        .collect_view();
    let legend = tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            view! {
                <li data-testid="accuracy-legend-item">
                    <span class="swatch" style=format!("background:{}", PALETTE[i % PALETTE.len()])></span>
                    {format!("{} {:.2}%", t.table, latest(t))}
                </li>
            }
        })
        .collect_view();
    view! {
        <svg class="chart" viewBox=format!("0 0 {W} {H}") role="img"
             aria-label=format!("verification accuracy over time, one line per table; latest: {label}")
             data-testid="accuracy-chart">
            {ticks.iter().map(|v| view! {
                <line x1=LEFT x2=W - RIGHT y1=y(*v) y2=y(*v) class="grid-line"/>
                <text x=LEFT - 6.0 y=y(*v) + 4.0 text-anchor="end" class="axis">{format!("{v:.0}%")}</text>
            }).collect_view()}
            <text x=LEFT y=H - 8.0 class="axis">{clock(t0, t1 - t0)}</text>
            <text x=W - RIGHT y=H - 8.0 text-anchor="end" class="axis">{format!("{} UTC", clock(t1, t1 - t0))}</text>
            {lines}
        </svg>
        <ul class="legend" data-testid="accuracy-legend">{legend}</ul>
        <p class="muted small" data-testid="accuracy-meaning">"One line per table: of the rows the latest full verification of each of its buckets compared, the share that match, after each run. Hover a point for its value."</p>
    }.into_any()
}
