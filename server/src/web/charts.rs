//! Charts as SVG, drawn with `plotters` on the server:
//! - `GET /charts/clients/{id}/traffic.svg` — a client's requests to the old
//!   and the new system over time, the ramp steps marked;
//! - `GET /charts/clients/{id}/mismatch.svg` — its shadow mismatch rate over time;
//! - `GET /charts/migrations/{id}/share.svg` — the share of a migration's
//!   traffic served by the new system over time.

use axum::Extension;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;
use tern_app::server::CurrentUser;
use tern_app::state::AppState;
use tern_control::clock::now_ms;

use crate::web::error::ApiError;

const OLD: RGBColor = RGBColor(0xd9, 0x5f, 0x02);
const NEW: RGBColor = RGBColor(0x1b, 0x6a, 0xc9);
const STEP: RGBColor = RGBColor(0x55, 0x55, 0x55);
/// A chart's height at a given width: a little lower on a phone.
fn size(width: u32) -> (u32, u32) {
    (width, if width < 480 { 260 } else { 300 })
}

/// The chart routes (behind the sign-in wall).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/charts/clients/{id}/traffic.svg", get(client_traffic))
        .route("/charts/clients/{id}/mismatch.svg", get(client_mismatch))
        .route("/charts/migrations/{id}/share.svg", get(migration_share))
}

#[derive(Debug, Deserialize)]
struct Window {
    /// Hours of history to draw (default 24, at most 90 days).
    hours: Option<f64>,
    /// The width in pixels of the box the chart goes in (default 760): the
    /// chart is drawn at that width so its labels keep their size.
    w: Option<u32>,
}

impl Window {
    fn width(&self) -> u32 {
        self.w.map(tern_app::charts::width_of).unwrap_or(760)
    }
}

fn window(w: &Window) -> (i64, i64, i64) {
    let hours = w.hours.unwrap_or(24.0).clamp(0.1, 24.0 * 90.0);
    let end = now_ms();
    let start = end - (hours * 3_600_000.0) as i64;
    (start, end, slot_of(start, end))
}

/// About 60 slots, whole minutes.
fn slot_of(start: i64, end: i64) -> i64 {
    (((end - start) / 60) / 60_000).max(1) * 60_000
}

/// The time axis fitted to the data: when the first point comes late in
/// the window (a client that began reporting an hour ago, drawn over a
/// day), the axis starts just before it, so the data fill the plot instead
/// of its last sliver. At least ten minutes are drawn.
fn fit(start: i64, end: i64, first: Option<i64>) -> i64 {
    match first {
        Some(f) if f > start + (end - start) / 10 => {
            let span = (end - f).max(10 * 60_000);
            (end - span - span / 20).max(start)
        }
        _ => start,
    }
}

fn svg(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn chart_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("drawing the chart failed: {e}"),
    )
}

fn time_label(ms: &i64, span: i64) -> String {
    chrono::DateTime::from_timestamp_millis(*ms)
        .map(|t| {
            if span > 2 * 86_400_000 {
                t.format("%m-%d %H:%M").to_string()
            } else if span < 30 * 60_000 {
                // Eight labels over a few minutes would repeat the minute.
                t.format("%H:%M:%S").to_string()
            } else {
                t.format("%H:%M").to_string()
            }
        })
        .unwrap_or_default()
}

/// Fonts readable when the chart is scaled to a page's width.
const CAPTION: (&str, u32) = ("sans-serif", 20);
const LABELS: (&str, u32) = ("sans-serif", 15);

/// The client whose chart is asked for, when the user may read it (readers
/// every client, client-owners only their own).
async fn visible_client(
    state: &AppState,
    user: &CurrentUser,
    id: i64,
) -> Result<tern_control::clients::Client, ApiError> {
    let client = state.store.client(id).await?;
    tern_control::Actor::from(&user.0).require_client(&client.name, "reading a client's chart")?;
    Ok(client)
}

/// Old vs new requests per slot, with the ramp steps marked.
pub fn traffic_svg(
    title: &str,
    points: &[tern_control::traffic::TrafficPoint],
    steps: &[(i64, String)],
    (start, end): (i64, i64),
    width: u32,
) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size(width)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let ymax = points
            .iter()
            .map(|p| p.old.max(p.new))
            .max()
            .unwrap_or(0)
            .max(1) as f64
            * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, CAPTION)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(start..end, 0f64..ymax)
            .map_err(|e| e.to_string())?;
        let span = end - start;
        chart
            .configure_mesh()
            .x_desc("time (UTC)")
            .y_desc("requests")
            .x_labels((width / 130).clamp(2, 8) as usize)
            .label_style(LABELS)
            .axis_desc_style(LABELS)
            .x_label_formatter(&|t| time_label(t, span))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(|e| e.to_string())?;
        for (at, label) in steps.iter().filter(|(at, _)| (start..=end).contains(at)) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*at, 0.0), (*at, ymax)],
                    STEP.stroke_width(1),
                )))
                .map_err(|e| e.to_string())?;
            // Inside the plot: right of the line in its first half, left
            // of it in the second, so the label is never cut at the edge.
            let h = if *at > start + span / 2 {
                HPos::Right
            } else {
                HPos::Left
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" ramp {label} "),
                    (*at, ymax * 0.9),
                    LABELS
                        .into_font()
                        .color(&STEP)
                        .pos(Pos::new(h, VPos::Center)),
                )))
                .map_err(|e| e.to_string())?;
        }
        if points.is_empty() {
            chart
                .draw_series(std::iter::once(Text::new(
                    "no traffic reported in this window".to_string(),
                    (start + span / 3, ymax / 2.0),
                    LABELS.into_font().color(&STEP),
                )))
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.at, p.old as f64)),
                OLD.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("old system")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], OLD.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.at, p.new as f64)),
                NEW.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("new system")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], NEW.stroke_width(2)));
        // A point per slot and system, so hovering tells the count.
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((p.at, p.old as f64), 3, OLD.filled())),
            )
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((p.at, p.new as f64), 3, NEW.filled())),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(LABELS)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xcc, 0xcc, 0xcc))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    let titles: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "old system: {} requests at {} UTC",
                p.old,
                time_label(&p.at, 0)
            )
        })
        .chain(points.iter().map(|p| {
            format!(
                "new system: {} requests at {} UTC",
                p.new,
                time_label(&p.at, 0)
            )
        }))
        .collect();
    Ok(tern_app::charts::with_point_titles(&out, &titles))
}

/// A percentage over time (share on new, mismatch rate).
pub fn percent_svg(
    title: &str,
    series: &str,
    color: RGBColor,
    points: &[(i64, f64)],
    (start, end): (i64, i64),
    ymax: f64,
    width: u32,
) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size(width)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, CAPTION)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(start..end, 0f64..ymax)
            .map_err(|e| e.to_string())?;
        let span = end - start;
        chart
            .configure_mesh()
            .x_desc("time (UTC)")
            .y_desc("percent")
            .x_labels((width / 130).clamp(2, 8) as usize)
            .label_style(LABELS)
            .axis_desc_style(LABELS)
            .x_label_formatter(&|t| time_label(t, span))
            .y_label_formatter(&|v| format!("{v:.0}%"))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(|e| e.to_string())?;
        if points.is_empty() {
            chart
                .draw_series(std::iter::once(Text::new(
                    "no data in this window".to_string(),
                    (start + span / 3, ymax / 2.0),
                    LABELS.into_font().color(&STEP),
                )))
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(series)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(LABELS)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xcc, 0xcc, 0xcc))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    let titles: Vec<String> = points
        .iter()
        .map(|(at, v)| format!("{series}: {v:.2}% at {} UTC", time_label(at, 0)))
        .collect();
    Ok(tern_app::charts::with_point_titles(&out, &titles))
}

async fn client_traffic(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Query(w): Query<Window>,
) -> Result<Response, ApiError> {
    let client = visible_client(&state, &user, id).await?;
    let (start, end, slot) = window(&w);
    let mut points = state.store.traffic_series(id, start, slot).await?;
    let (start, slot) = match fit(start, end, points.first().map(|p| p.at)) {
        s if s == start => (start, slot),
        fitted => {
            let slot = slot_of(fitted, end);
            points = state.store.traffic_series(id, fitted, slot).await?;
            (fitted, slot)
        }
    };
    let steps: Vec<(i64, String)> = state
        .store
        .ramp_steps(id)
        .await?
        .into_iter()
        .map(|s| {
            (
                s.at,
                tern_ramp::Ramp::from_millipercent(s.to_ramp.max(0) as u32).to_string(),
            )
        })
        .collect();
    let title = format!(
        "{} — requests per {} min, old vs new",
        client.name,
        slot / 60_000
    );
    Ok(svg(traffic_svg(
        &title,
        &points,
        &steps,
        (start, end),
        w.width(),
    )
    .map_err(chart_error)?))
}

async fn client_mismatch(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Query(w): Query<Window>,
) -> Result<Response, ApiError> {
    let client = visible_client(&state, &user, id).await?;
    let (start, end, slot) = window(&w);
    let first = state.store.mismatch_series(id, start, slot).await?;
    let start = fit(start, end, first.first().map(|p| p.at));
    let points: Vec<(i64, f64)> = state
        .store
        .mismatch_series(id, start, slot_of(start, end))
        .await?
        .into_iter()
        .map(|p| (p.at, p.mismatched as f64 * 100.0 / p.samples.max(1) as f64))
        .collect();
    let ymax = points.iter().map(|p| p.1).fold(1.0f64, f64::max).min(100.0) * 1.15;
    let title = format!("{} — shadow mismatch rate", client.name);
    Ok(svg(percent_svg(
        &title,
        "mismatched pairs",
        OLD,
        &points,
        (start, end),
        ymax,
        w.width(),
    )
    .map_err(chart_error)?))
}

async fn migration_share(
    State(state): State<AppState>,
    Extension(_user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Query(w): Query<Window>,
) -> Result<Response, ApiError> {
    let m = state.store.migration(id).await?;
    let (start, end, slot) = window(&w);
    let first = state
        .store
        .migration_traffic_series(id, start, slot)
        .await?;
    let start = fit(
        start,
        end,
        first.iter().find(|p| p.old + p.new > 0).map(|p| p.at),
    );
    let points: Vec<(i64, f64)> = state
        .store
        .migration_traffic_series(id, start, slot_of(start, end))
        .await?
        .into_iter()
        .filter(|p| p.old + p.new > 0)
        .map(|p| (p.at, p.new as f64 * 100.0 / (p.old + p.new) as f64))
        .collect();
    let title = format!("{} — share of client traffic on the new system", m.name);
    Ok(svg(percent_svg(
        &title,
        "share on new",
        NEW,
        &points,
        (start, end),
        105.0,
        w.width(),
    )
    .map_err(chart_error)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_control::traffic::TrafficPoint;

    #[test]
    fn the_time_axis_fits_data_that_began_late_in_the_window() {
        let h = 3_600_000;
        // A day's window, data only in the last hour: about the last hour.
        let start = fit(0, 24 * h, Some(23 * h));
        assert!(start > 22 * h && start < 23 * h, "{start}");
        // Data over most of the window: the window as asked.
        assert_eq!(fit(0, 24 * h, Some(h)), 0);
        assert_eq!(fit(0, 24 * h, None), 0);
        // One point a minute ago: ten minutes at least.
        let start = fit(0, 24 * h, Some(24 * h - 60_000));
        assert!(24 * h - start >= 10 * 60_000);
    }

    #[test]
    fn a_late_ramp_label_stays_inside_the_plot() {
        let pts: Vec<TrafficPoint> = (0..10)
            .map(|i| TrafficPoint {
                at: i * 60_000,
                old: 100,
                new: 5,
            })
            .collect();
        let svg = traffic_svg(
            "inbox",
            &pts,
            &[(590_000, "100%".into())],
            (0, 600_000),
            760,
        )
        .expect("draws");
        assert!(svg.contains("ramp 100%"), "the label is whole");
        assert!(
            svg.contains("text-anchor=\"end\""),
            "anchored to end left of the line"
        );
    }

    #[test]
    fn the_traffic_chart_has_both_series_and_the_steps() {
        let pts: Vec<TrafficPoint> = (0..10)
            .map(|i| TrafficPoint {
                at: i * 60_000,
                old: 100 - i * 5,
                new: i * 5,
            })
            .collect();
        let svg = traffic_svg("inbox", &pts, &[(180_000, "25%".into())], (0, 600_000), 390)
            .expect("draws");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("old system") && svg.contains("new system"));
        assert!(svg.contains("ramp 25%"));
        assert!(svg.contains("requests") && svg.contains("time (UTC)"));
        assert!(svg.matches("<polyline").count() >= 2);
        // Drawn at the asked width, each point telling its count on hover.
        assert!(svg.contains("width=\"390\""));
        assert_eq!(svg.matches("<title>").count(), 20);
        assert!(svg.contains("<title>new system: 45 requests at 00:09:00 UTC</title>"));
    }

    #[test]
    fn a_percentage_chart_tells_each_value_on_hover() {
        let svg = percent_svg(
            "share",
            "share on new",
            NEW,
            &[(60_000, 12.5), (120_000, 50.0)],
            (0, 180_000),
            105.0,
            500,
        )
        .expect("draws");
        assert_eq!(svg.matches("<title>").count(), 2);
        assert!(svg.contains("<title>share on new: 50.00% at 00:02:00 UTC</title>"));
    }
}
