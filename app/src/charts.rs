//! Charts drawn with `plotters` on the server as SVG that a page puts inline,
//! so they refresh with the page's data, are drawn at the width of the box
//! they sit in (labels keep their size on a phone), and a point's `<title>`
//! tells its value on hover. The server's image routes (`server/src/web/
//! charts.rs`) share [`with_point_titles`].

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use tern_control::verify_runs::TableAccuracy;

/// Line colours, one per table (colour-blind safe, Tableau's order).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1b, 0x6a, 0xc9),
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0x1b, 0x9e, 0x77),
    RGBColor(0x75, 0x70, 0xb3),
    RGBColor(0xe7, 0x29, 0x8a),
    RGBColor(0x66, 0x66, 0x66),
];
const MUTED: RGBColor = RGBColor(0x57, 0x60, 0x6a);
/// The page's body text is 15-16 px: labels as large as the page's small print.
const LABELS: (&str, u32) = ("sans-serif", 14);

/// The width charts are drawn at when the page has not measured its box yet
/// (the first render on the server).
pub const DEFAULT_WIDTH: u32 = 560;

/// A chart's width in pixels, from what the page measured, within reason.
pub fn width_of(measured: u32) -> u32 {
    if measured == 0 {
        DEFAULT_WIDTH
    } else {
        measured.clamp(280, 1600)
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Gives the `n`-th `<circle …/>` of a plotters SVG the `n`-th title, so
/// hovering a point tells its value. Circles past the titles stay as they are.
pub fn with_point_titles(svg: &str, titles: &[String]) -> String {
    let mut out =
        String::with_capacity(svg.len() + titles.iter().map(|t| t.len() + 24).sum::<usize>());
    let mut rest = svg;
    let mut titles = titles.iter();
    while let Some(at) = rest.find("<circle") {
        let Some(end) = rest[at..].find("/>").map(|e| at + e) else {
            break;
        };
        out.push_str(&rest[..end]);
        match titles.next() {
            Some(t) => {
                out.push_str("><title>");
                out.push_str(&xml_escape(t));
                out.push_str("</title></circle>");
            }
            None => out.push_str("/>"),
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// `HH:MM`, or `HH:MM:SS` when the chart spans under half an hour.
fn clock(ms: i64, span_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            if span_ms > 2 * 86_400_000 {
                t.format("%m-%d %H:%M").to_string()
            } else if span_ms < 30 * 60_000 {
                t.format("%H:%M:%S").to_string()
            } else {
                t.format("%H:%M").to_string()
            }
        })
        .unwrap_or_default()
}

/// Verification accuracy over time, one line per table, `width` pixels wide.
/// The y axis starts at the lowest value seen (at most 90%), so the last
/// tenths of a percent show.
pub fn accuracy_by_table_svg(tables: &[TableAccuracy], width: u32) -> Result<String, String> {
    let all = || tables.iter().flat_map(|t| t.points.iter());
    let t0 = all().map(|p| p.0).min().unwrap_or(0);
    let t1 = all().map(|p| p.0).max().unwrap_or(0);
    // A margin of a twentieth each side, so the first and last points are
    // not on the frame (at least a minute in all).
    let pad = ((t1 - t0) / 20).max(30_000);
    let (x0, x1) = (t0 - pad, t1 + pad);
    let lowest = all().map(|p| p.1).fold(100.0, f64::min);
    let y0 = (lowest.min(90.0) / 10.0).floor() * 10.0;
    let height = if width < 480 { 240 } else { 280 };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .margin_right(16)
            .x_label_area_size(40)
            .y_label_area_size(if width < 480 { 44 } else { 56 })
            .build_cartesian_2d(x0..x1, y0..100.5)
            .map_err(|e| e.to_string())?;
        let span = x1 - x0;
        chart
            .configure_mesh()
            .x_desc("time (UTC)")
            .y_desc("rows that match")
            .x_labels((width / 140).max(2) as usize)
            .y_labels(6)
            .label_style(LABELS.into_font().color(&MUTED))
            .axis_desc_style(LABELS.into_font().color(&MUTED))
            .x_label_formatter(&|t| clock(*t, span))
            .y_label_formatter(&|v| format!("{v:.0}%"))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(|e| e.to_string())?;
        if tables.is_empty() {
            chart
                .draw_series(std::iter::once(Text::new(
                    "no verification yet".to_string(),
                    (x0 + span / 2, (y0 + 100.0) / 2.0),
                    LABELS
                        .into_font()
                        .color(&MUTED)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                )))
                .map_err(|e| e.to_string())?;
        }
        for (i, t) in tables.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    t.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(t.table.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
        }
        // The points after every line, in table order: their titles follow.
        for (i, t) in tables.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(t.points.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        if !tables.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font(LABELS)
                .background_style(WHITE.mix(0.9))
                .border_style(RGBColor(0xcc, 0xcc, 0xcc))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    let titles: Vec<String> = tables
        .iter()
        .flat_map(|t| {
            t.points.iter().map(move |(at, a)| {
                format!(
                    "{}: {a:.3}% of rows match at {} UTC",
                    t.table,
                    clock(*at, 0)
                )
            })
        })
        .collect();
    Ok(with_point_titles(&out, &titles))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, points: &[(i64, f64)]) -> TableAccuracy {
        TableAccuracy {
            table: name.into(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn every_point_tells_its_table_and_value_on_hover() {
        let svg = accuracy_by_table_svg(
            &[
                table("contacts", &[(60_000, 99.5), (120_000, 100.0)]),
                table("messages", &[(90_000, 37.0)]),
            ],
            600,
        )
        .expect("draws");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("width=\"600\""), "drawn at the box's width");
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(
            svg.contains("<title>contacts: 99.500% of rows match at 00:01:00 UTC</title></circle>")
        );
        assert!(
            svg.contains("<title>messages: 37.000% of rows match at 00:01:30 UTC</title></circle>")
        );
        // Plotters writes a text element's content on a line of its own.
        let legend = |name: &str| svg.lines().any(|l| l.trim() == name);
        assert!(legend("contacts") && legend("messages"), "a legend: {svg}");
        assert!(svg.contains("rows that match") && svg.contains("time (UTC)"));
        assert!(svg.matches("<polyline").count() >= 2, "one line per table");
    }

    #[test]
    fn titles_go_on_circles_in_order_and_are_escaped() {
        let svg = r#"<svg><circle cx="1"/><rect/><circle cx="2"/><circle cx="3"/></svg>"#;
        let out = with_point_titles(svg, &["a<b".into(), "c".into()]);
        assert_eq!(
            out,
            r#"<svg><circle cx="1"><title>a&lt;b</title></circle><rect/><circle cx="2"><title>c</title></circle><circle cx="3"/></svg>"#
        );
    }

    #[test]
    fn no_verification_yet_says_so() {
        let svg = accuracy_by_table_svg(&[], 320).expect("draws");
        assert!(svg.contains("no verification yet"));
        assert!(width_of(0) == DEFAULT_WIDTH && width_of(5_000) == 1600 && width_of(100) == 280);
    }
}
