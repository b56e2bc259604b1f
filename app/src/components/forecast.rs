//! The numbers a program manager reads: rows moved (never over 100%), the
//! pace of the jobs running now, the ETA of every phase ahead with its range,
//! and the "what blocks us" panel. Shared by the overview and the migration
//! page so both say the same thing.

use leptos::prelude::*;

use crate::types::{BlockerGroupView, ForecastView, duration, rate, thousands};

/// A time left: "under 1s" rather than "0s" for work that is not done.
fn time_left(seconds: f64) -> String {
    if seconds > 0.0 && seconds < 0.5 {
        "under 1s".into()
    } else {
        duration(seconds)
    }
}

/// "2m 5s (1m 40s to 3m)" — the median with its range.
fn eta_text((median, fast, slow): (f64, f64, f64)) -> String {
    if median <= 0.0 {
        return "done".into();
    }
    if (slow - fast).abs() < 1.0 {
        return time_left(median);
    }
    format!(
        "{} ({} to {})",
        time_left(median),
        time_left(fast),
        time_left(slow)
    )
}

/// What the ETA cell says when there is no single figure.
fn eta_missing(f: &ForecastView) -> String {
    match f.unmeasured.as_slice() {
        [] => "—".into(),
        [one] => format!("after a {one} job runs"),
        many => format!("after {} jobs run", many.join(", ")),
    }
}

/// Rows moved, progress, pace now and ETA, as a row of figures.
#[component]
pub fn ForecastStats(forecast: Option<ForecastView>, running_jobs: i64) -> impl IntoView {
    let Some(f) = forecast else {
        return view! { <p class="muted">"No buckets planned yet."</p> }.into_any();
    };
    let moved = format!("{} of {}", thousands(f.done), thousands(f.of));
    let recount = f.recounted.map(|n| {
        format!(
            "Re-counted: the source grew by {} rows since the plan.",
            thousands(n)
        )
    });
    let pace = match f.pace_now {
        Some(p) => rate(p),
        None if running_jobs > 0 => "measuring…".into(),
        None => "idle".into(),
    };
    let eta = f.eta.map(eta_text).unwrap_or_else(|| eta_missing(&f));
    let stages = f.stages.clone();
    view! {
        <dl class="stats">
            <div><dt>"Rows moved"</dt><dd data-testid="rows-moved">{moved}</dd></div>
            <div><dt>"Progress"</dt><dd data-testid="progress">{format!("{:.1}%", f.percent)}</dd></div>
            <div><dt>"Pace now"</dt><dd data-testid="pace">{pace}</dd></div>
            <div><dt>"ETA"</dt><dd data-testid="eta">{eta}</dd></div>
        </dl>
        {recount.map(|r| view! { <p class="muted small" data-testid="recounted">{r}</p> })}
        {(!stages.is_empty()).then(|| view! {
            <ul class="stage-list" data-testid="stages">
                {stages.into_iter().map(|s| {
                    let left = format!("{} {} in {} bucket{}", thousands(s.work_left), s.unit,
                        thousands(s.buckets_left), if s.buckets_left == 1 { "" } else { "s" });
                    let left = if s.unit == "buckets" {
                        format!("{} bucket{}", thousands(s.buckets_left), if s.buckets_left == 1 { "" } else { "s" })
                    } else { left };
                    let speed = match (s.pace, s.unit.as_str()) {
                        (Some(p), "buckets") => format!("{:.1} buckets/min", p * 60.0),
                        (Some(p), _) => rate(p),
                        (None, _) => "not measured yet".into(),
                    };
                    let running = (s.running > 0).then(|| format!(" · {} running", s.running)).unwrap_or_default();
                    view! {
                        <li data-testid=format!("stage-{}", s.name)>
                            <strong>{s.name.clone()}</strong>
                            {format!(": {left} · {speed}{running} · {}", s.eta.map(eta_text).unwrap_or_else(|| "ETA unknown".into()))}
                        </li>
                    }
                }).collect_view()}
            </ul>
        })}
    }
    .into_any()
}

/// What blocks the migration, by kind; nothing when nothing does.
#[component]
pub fn BlockersPanel(groups: Vec<BlockerGroupView>) -> impl IntoView {
    if groups.is_empty() {
        return view! {
            <p class="muted small" data-testid="no-blockers">"Nothing blocks this migration."</p>
        }
        .into_any();
    }
    view! {
        <div class="blockers" data-testid="blockers" role="status">
            <h3>"What blocks us"</h3>
            <ul>
                {groups.into_iter().map(|g| {
                    let more = g.count.saturating_sub(g.first.len());
                    view! {
                        <li data-testid="blocker-group">
                            <strong>{format!("{} × {}", g.count, g.kind)}</strong>
                            <ul>
                                {g.first.into_iter().map(|b| match b.href {
                                    Some(h) => view! { <li><a href=h>{b.text}</a></li> }.into_any(),
                                    None => view! { <li>{b.text}</li> }.into_any(),
                                }).collect_view()}
                                {(more > 0).then(|| view! { <li class="muted">{format!("and {more} more")}</li> })}
                            </ul>
                        </li>
                    }
                }).collect_view()}
            </ul>
        </div>
    }
    .into_any()
}
