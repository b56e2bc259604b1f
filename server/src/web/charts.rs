//! Charts as SVG, drawn with `plotters` on the server:
//! - `GET /charts/clients/{id}/traffic.svg` — a client's requests to the old
//!   and the new system over time, the ramp steps marked;
//! - `GET /charts/clients/{id}/mismatch.svg` — its shadow mismatch rate over time;
//! - `GET /charts/migrations/{id}/share.svg` — the share of a migration's
//!   traffic served by the new system over time.

use axum::Extension;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use plotters::coord::types::{RangedCoordf64, RangedCoordi64};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;
use tern_app::server::CurrentUser;
use tern_app::state::AppState;
use tern_control::clock::now_ms;

use crate::web::caller::extract;
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

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordi64, RangedCoordf64>>;

/// What a time chart draws around its series.
struct Frame<'a> {
    title: &'a str,
    /// The y axis: its name, and a value as its labels show it.
    y_desc: &'a str,
    y_label: fn(f64) -> String,
    /// The time window drawn and the top of the y axis.
    window: (i64, i64),
    ymax: f64,
    width: u32,
    /// What the chart says where there is no point to draw.
    empty: &'a str,
}

/// One series of a time chart: a line with a point per value, each point
/// telling `label: hover(value) at time` on hover.
struct Series<'a> {
    label: &'a str,
    color: RGBColor,
    points: Vec<(i64, f64)>,
    hover: fn(f64) -> String,
}

/// A time chart of `series` (lines first, then their points, then the
/// legend); `marks` draws over the mesh before them (the ramp steps).
fn time_chart(
    frame: &Frame<'_>,
    series: &[Series<'_>],
    marks: impl FnOnce(&mut Chart<'_, '_>) -> Result<(), String>,
) -> Result<String, String> {
    let (start, end) = frame.window;
    let ymax = frame.ymax;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size(frame.width)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(frame.title, CAPTION)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(start..end, 0f64..ymax)
            .map_err(|e| e.to_string())?;
        let span = end - start;
        chart
            .configure_mesh()
            .x_desc("time (UTC)")
            .y_desc(frame.y_desc)
            .x_labels((frame.width / 130).clamp(2, 8) as usize)
            .label_style(LABELS)
            .axis_desc_style(LABELS)
            .x_label_formatter(&|t| time_label(t, span))
            .y_label_formatter(&|v| (frame.y_label)(*v))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(|e| e.to_string())?;
        marks(&mut chart)?;
        if series.iter().all(|s| s.points.is_empty()) {
            chart
                .draw_series(std::iter::once(Text::new(
                    frame.empty.to_string(),
                    (start + span / 3, ymax / 2.0),
                    LABELS.into_font().color(&STEP),
                )))
                .map_err(|e| e.to_string())?;
        }
        for s in series {
            let color = s.color;
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(s.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        // A point per value, so hovering tells it.
        for s in series {
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|p| Circle::new(*p, 3, s.color.filled())),
                )
                .map_err(|e| e.to_string())?;
        }
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
    let titles: Vec<String> = series
        .iter()
        .flat_map(|s| {
            s.points.iter().map(|(at, v)| {
                format!(
                    "{}: {} at {} UTC",
                    s.label,
                    (s.hover)(*v),
                    time_label(at, 0)
                )
            })
        })
        .collect();
    Ok(tern_app::charts::with_point_titles(&out, &titles))
}

/// Old vs new requests per slot, with the ramp steps marked.
pub fn traffic_svg(
    title: &str,
    points: &[tern_control::traffic::TrafficPoint],
    steps: &[(i64, String)],
    (start, end): (i64, i64),
    width: u32,
) -> Result<String, String> {
    let ymax = points
        .iter()
        .map(|p| p.old.max(p.new))
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.15;
    let frame = Frame {
        title,
        y_desc: "requests",
        y_label: |v| format!("{v:.0}"),
        window: (start, end),
        ymax,
        width,
        empty: "no traffic reported in this window",
    };
    let requests = |label, color, count: fn(&tern_control::traffic::TrafficPoint) -> i64| Series {
        label,
        color,
        points: points.iter().map(|p| (p.at, count(p) as f64)).collect(),
        hover: |v| format!("{v:.0} requests"),
    };
    let series = [
        requests("old system", OLD, |p| p.old),
        requests("new system", NEW, |p| p.new),
    ];
    time_chart(&frame, &series, |chart| {
        let span = end - start;
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
        Ok(())
    })
}

/// A percentage over time (share on new, mismatch rate).
pub fn percent_svg(
    title: &str,
    series: &str,
    color: RGBColor,
    points: &[(i64, f64)],
    window: (i64, i64),
    ymax: f64,
    width: u32,
) -> Result<String, String> {
    let frame = Frame {
        title,
        y_desc: "percent",
        y_label: |v| format!("{v:.0}%"),
        window,
        ymax,
        width,
        empty: "no data in this window",
    };
    let series = Series {
        label: series,
        color,
        points: points.to_vec(),
        hover: |v| format!("{v:.2}%"),
    };
    time_chart(&frame, &[series], |_| Ok(()))
}

/// The client a client chart is asked for (when the user may read it: readers
/// every client, client-owners only their own) and the window asked.
struct ClientChart {
    state: AppState,
    id: i64,
    client: tern_control::clients::Client,
    window: Window,
}

impl FromRequestParts<AppState> for ClientChart {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Extension(user) = extract::<Extension<CurrentUser>>(parts, state).await?;
        let Path(id) = extract::<Path<i64>>(parts, state).await?;
        let Query(window) = extract::<Query<Window>>(parts, state).await?;
        let client = visible_client(state, &user, id)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(ClientChart {
            state: state.clone(),
            id,
            client,
            window,
        })
    }
}

/// A series over a chart's window, the window fitted to it.
struct Fitted<T> {
    start: i64,
    end: i64,
    slot: i64,
    points: Vec<T>,
}

/// The window's series, `fetch(start, slot)`: fetched again from a later
/// start when the data (from the first point `first_at` finds) begin late in
/// the window (`fit`), so they fill the plot.
async fn fitted_series<T, Fut>(
    w: &Window,
    first_at: impl Fn(&[T]) -> Option<i64>,
    fetch: impl Fn(i64, i64) -> Fut,
) -> Result<Fitted<T>, ApiError>
where
    Fut: std::future::Future<Output = Result<Vec<T>, tern_control::ControlError>>,
{
    let (start, end, slot) = window(w);
    let points = fetch(start, slot).await?;
    Ok(match fit(start, end, first_at(&points)) {
        s if s == start => Fitted {
            start,
            end,
            slot,
            points,
        },
        fitted => {
            let slot = slot_of(fitted, end);
            let points = fetch(fitted, slot).await?;
            Fitted {
                start: fitted,
                end,
                slot,
                points,
            }
        }
    })
}

async fn client_traffic(c: ClientChart) -> Result<Response, ApiError> {
    let store = &c.state.store;
    let traffic = |start, slot| store.traffic_series(c.id, start, slot);
    let f = fitted_series(&c.window, |p| p.first().map(|p| p.at), traffic).await?;
    let steps: Vec<(i64, String)> = store
        .ramp_steps(c.id)
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
        c.client.name,
        f.slot / 60_000
    );
    let drawn = traffic_svg(
        &title,
        &f.points,
        &steps,
        (f.start, f.end),
        c.window.width(),
    );
    Ok(svg(drawn.map_err(chart_error)?))
}

async fn client_mismatch(c: ClientChart) -> Result<Response, ApiError> {
    let store = &c.state.store;
    let mismatches = |start, slot| store.mismatch_series(c.id, start, slot);
    let f = fitted_series(&c.window, |p| p.first().map(|p| p.at), mismatches).await?;
    let rate = |p: &tern_control::traffic::MismatchPoint| {
        p.mismatched as f64 * 100.0 / p.samples.max(1) as f64
    };
    let points: Vec<(i64, f64)> = f.points.iter().map(|p| (p.at, rate(p))).collect();
    let ymax = points.iter().map(|p| p.1).fold(1.0f64, f64::max).min(100.0) * 1.15;
    let title = format!("{} — shadow mismatch rate", c.client.name);
    let (window, width) = ((f.start, f.end), c.window.width());
    let drawn = percent_svg(
        &title,
        "mismatched pairs",
        OLD,
        &points,
        window,
        ymax,
        width,
    );
    Ok(svg(drawn.map_err(chart_error)?))
}

async fn migration_share(
    State(state): State<AppState>,
    Extension(_user): Extension<CurrentUser>,
    Path(id): Path<i64>,
    Query(w): Query<Window>,
) -> Result<Response, ApiError> {
    let m = state.store.migration(id).await?;
    let store = &state.store;
    let with_traffic = |p: &&tern_control::traffic::TrafficPoint| p.old + p.new > 0;
    let f = fitted_series(
        &w,
        |p| p.iter().find(with_traffic).map(|p| p.at),
        |start, slot| store.migration_traffic_series(id, start, slot),
    )
    .await?;
    let points: Vec<(i64, f64)> = f
        .points
        .iter()
        .filter(with_traffic)
        .map(|p| (p.at, p.new as f64 * 100.0 / (p.old + p.new) as f64))
        .collect();
    let title = format!("{} — share of client traffic on the new system", m.name);
    let window = (f.start, f.end);
    let drawn = percent_svg(
        &title,
        "share on new",
        NEW,
        &points,
        window,
        105.0,
        w.width(),
    );
    Ok(svg(drawn.map_err(chart_error)?))
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
