//! Hand-written SVG charts for the HTML leaderboard: a scatter plot with error bars (accuracy
//! against time per epoch, with its Pareto front) and a line chart (accuracy per epoch).
//!
//! Written by hand rather than through a plotting crate because the charts are simple and the
//! output must be byte-for-byte deterministic and self-contained: no fonts, scripts or
//! stylesheets from anywhere, every attribute inline, coordinates with one decimal, one
//! element per line so that a diff of a committed page is readable. All text is escaped.
//!
//! ```
//! use dmlbench_leaderboard::svg::{line_chart, Axes, Series, PALETTE};
//!
//! let axes = Axes { title: "R@1 per epoch".into(), x_label: "epoch".into(), y_label: "R@1 (%)".into() };
//! let series = [Series { label: "a<b".into(), color: PALETTE[0], points: vec![(1.0, 50.0), (2.0, 60.0)] }];
//! let svg = line_chart(&axes, &series, true);
//! assert!(svg.starts_with("<svg") && svg.contains("<polyline") && svg.contains("a&lt;b"));
//! ```

use std::fmt::Write as _;

use crate::text::escape_xml;

/// Series colours (the Tableau 10 palette: distinct, and readable on white).
pub const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

const WIDTH: f64 = 780.0;
const PLOT_LEFT: f64 = 70.0;
const PLOT_RIGHT: f64 = 520.0;
const PLOT_TOP: f64 = 48.0;
const PLOT_HEIGHT: f64 = 300.0;
const LEGEND_LEFT: f64 = 545.0;
const LEGEND_STEP: f64 = 18.0;
const FONT: &str = r#"font-family="sans-serif""#;

/// Title and axis labels of a chart.
#[derive(Clone, Debug)]
pub struct Axes {
    /// Shown above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Along the y axis.
    pub y_label: String,
}

/// A point of a scatter plot with a vertical error bar.
#[derive(Clone, Debug)]
pub struct Point {
    /// Label next to the point and in the legend.
    pub label: String,
    /// Fill colour.
    pub color: &'static str,
    /// Position.
    pub x: f64,
    /// Position.
    pub y: f64,
    /// Lower end of the error bar (= `y` for none).
    pub y_low: f64,
    /// Upper end of the error bar (= `y` for none).
    pub y_high: f64,
    /// Shown on hover.
    pub tooltip: String,
}

/// A line of a line chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry.
    pub label: String,
    /// Stroke colour.
    pub color: &'static str,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

/// Ticks that are round numbers (1, 2 or 5 times a power of ten) and cover `[lo, hi]`, with
/// the number of decimals their labels need. `integer` keeps the step at least 1.
pub fn nice_ticks(lo: f64, hi: f64, target: usize, integer: bool) -> (Vec<f64>, usize) {
    let (lo, hi) = widen(lo, hi);
    let raw = (hi - lo) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let factor = match raw / magnitude {
        r if r <= 1.0 => 1.0,
        r if r <= 2.0 => 2.0,
        r if r <= 5.0 => 5.0,
        _ => 10.0,
    };
    let mut step = factor * magnitude;
    if integer {
        step = step.max(1.0).round();
    }
    // The slack keeps a bound that sits on a tick (up to rounding) from adding one more.
    let first = (lo / step + 1e-9).floor();
    let last = (hi / step - 1e-9).ceil();
    let ticks = (0..=((last - first) as usize)).map(|i| (first + i as f64) * step + 0.0).collect();
    // Enough decimals to tell neighbouring ticks apart: 0.5 → 1, 0.05 → 2, 0.2 → 1.
    let decimals = if step >= 1.0 { 0 } else { (-step.log10() - 1e-9).ceil() as usize };
    (ticks, decimals)
}

/// A range that is not empty: a single value gets 10% (at least 1e-3) either side.
fn widen(lo: f64, hi: f64) -> (f64, f64) {
    if hi - lo > 1e-12 * hi.abs().max(1.0) {
        return (lo, hi);
    }
    let pad = (lo.abs() * 0.1).max(1e-3);
    (lo - pad, hi + pad)
}

/// A linear map from a data range onto pixels.
#[derive(Clone, Copy)]
struct Scale {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl Scale {
    fn at(&self, v: f64) -> f64 {
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }
}

fn num(v: f64) -> String {
    format!("{:.1}", v + 0.0)
}

/// The frame shared by both charts: opening tag, title, grid, ticks, tick labels, axis
/// labels. Returns the text and the two scales.
fn frame(
    axes: &Axes,
    xs: (f64, f64),
    ys: (f64, f64),
    integer_x: bool,
    legend_entries: usize,
) -> (String, Scale, Scale) {
    let height = (PLOT_TOP + PLOT_HEIGHT + 60.0).max(PLOT_TOP + 10.0 + LEGEND_STEP * legend_entries as f64 + 10.0);
    let plot_bottom = PLOT_TOP + PLOT_HEIGHT;
    let (x_ticks, x_decimals) = nice_ticks(xs.0, xs.1, 6, integer_x);
    let (y_ticks, y_decimals) = nice_ticks(ys.0, ys.1, 5, false);
    let sx = Scale { lo: x_ticks[0], hi: *x_ticks.last().unwrap(), from: PLOT_LEFT, to: PLOT_RIGHT };
    let sy = Scale { lo: y_ticks[0], hi: *y_ticks.last().unwrap(), from: plot_bottom, to: PLOT_TOP };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{t}">"#,
        w = WIDTH,
        h = num(height),
        t = escape_xml(&axes.title)
    );
    let _ = writeln!(s, "<title>{}</title>", escape_xml(&axes.title));
    let _ = writeln!(s, r##"<rect x="0" y="0" width="{WIDTH}" height="{}" fill="#ffffff"/>"##, num(height));
    let _ = writeln!(
        s,
        r##"<text x="{}" y="24" {FONT} font-size="14" font-weight="bold" fill="#222222">{}</text>"##,
        num(PLOT_LEFT),
        escape_xml(&axes.title)
    );
    // Grid lines and tick labels.
    for &t in &x_ticks {
        let x = num(sx.at(t));
        let _ = writeln!(
            s,
            r##"<line class="grid" x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#e4e4e4" stroke-width="1"/>"##,
            num(PLOT_TOP),
            num(plot_bottom)
        );
        let _ = writeln!(
            s,
            r##"<line class="tick" x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#444444" stroke-width="1"/>"##,
            num(plot_bottom),
            num(plot_bottom + 5.0)
        );
        let _ = writeln!(
            s,
            r##"<text class="tick-label" x="{x}" y="{}" {FONT} font-size="11" fill="#444444" text-anchor="middle">{:.*}</text>"##,
            num(plot_bottom + 18.0),
            x_decimals,
            t
        );
    }
    for &t in &y_ticks {
        let y = num(sy.at(t));
        let _ = writeln!(
            s,
            r##"<line class="grid" x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#e4e4e4" stroke-width="1"/>"##,
            num(PLOT_LEFT),
            num(PLOT_RIGHT)
        );
        let _ = writeln!(
            s,
            r##"<line class="tick" x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#444444" stroke-width="1"/>"##,
            num(PLOT_LEFT - 5.0),
            num(PLOT_LEFT)
        );
        let _ = writeln!(
            s,
            r##"<text class="tick-label" x="{}" y="{}" {FONT} font-size="11" fill="#444444" text-anchor="end">{:.*}</text>"##,
            num(PLOT_LEFT - 8.0),
            num(sy.at(t) + 4.0),
            y_decimals,
            t
        );
    }
    // Axes and their labels.
    let _ = writeln!(
        s,
        r##"<path class="axis" d="M{} {}V{}H{}" fill="none" stroke="#444444" stroke-width="1"/>"##,
        num(PLOT_LEFT),
        num(PLOT_TOP),
        num(plot_bottom),
        num(PLOT_RIGHT)
    );
    let _ = writeln!(
        s,
        r##"<text class="axis-label" x="{}" y="{}" {FONT} font-size="12" fill="#222222" text-anchor="middle">{}</text>"##,
        num((PLOT_LEFT + PLOT_RIGHT) / 2.0),
        num(plot_bottom + 40.0),
        escape_xml(&axes.x_label)
    );
    let mid_y = num((PLOT_TOP + plot_bottom) / 2.0);
    let _ = writeln!(
        s,
        r##"<text class="axis-label" x="20" y="{mid_y}" {FONT} font-size="12" fill="#222222" text-anchor="middle" transform="rotate(-90 20 {mid_y})">{}</text>"##,
        escape_xml(&axes.y_label)
    );
    (s, sx, sy)
}

fn legend(s: &mut String, entries: &[(&str, &str)], marker_is_line: bool) {
    let _ = writeln!(s, r#"<g class="legend">"#);
    for (i, (label, color)) in entries.iter().enumerate() {
        let y = PLOT_TOP + 10.0 + LEGEND_STEP * i as f64;
        if marker_is_line {
            let _ = writeln!(
                s,
                r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="2"/>"#,
                num(LEGEND_LEFT),
                num(y),
                num(LEGEND_LEFT + 16.0),
                num(y)
            );
        }
        let _ = writeln!(s, r#"<circle cx="{}" cy="{}" r="4" fill="{color}"/>"#, num(LEGEND_LEFT + 8.0), num(y));
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" {FONT} font-size="11" fill="#222222">{}</text>"##,
            num(LEGEND_LEFT + 22.0),
            num(y + 4.0),
            escape_xml(label)
        );
    }
    let _ = writeln!(s, "</g>");
}

/// A scatter plot of `points` with vertical error bars, labels and a legend. With
/// `pareto_front`, the points no other point beats on both axes (smaller x, larger y) are
/// joined by a dashed line.
pub fn scatter(axes: &Axes, points: &[Point], pareto_front: bool) -> String {
    let finite: Vec<&Point> = points.iter().filter(|p| p.x.is_finite() && p.y.is_finite()).collect();
    let (x_lo, x_hi) = bounds(finite.iter().map(|p| p.x));
    let (y_lo, y_hi) = bounds(finite.iter().flat_map(|p| [p.y_low, p.y_high, p.y]).filter(|v| v.is_finite()));
    let x_pad = 0.08 * (x_hi - x_lo);
    let (mut s, sx, sy) = frame(axes, (x_lo - x_pad, x_hi + x_pad), (y_lo, y_hi), false, finite.len());

    if pareto_front {
        let mut sorted = finite.clone();
        sorted.sort_by(|a, b| a.x.total_cmp(&b.x).then(b.y.total_cmp(&a.y)));
        let mut front: Vec<&Point> = Vec::new();
        for p in sorted {
            if front.last().is_none_or(|last| p.y > last.y) {
                front.push(p);
            }
        }
        let coords: Vec<String> = front.iter().map(|p| format!("{},{}", num(sx.at(p.x)), num(sy.at(p.y)))).collect();
        // One point beating all others is its own front: nothing to join.
        if coords.len() > 1 {
            let _ = writeln!(
                s,
                r##"<polyline class="pareto-front" points="{}" fill="none" stroke="#888888" stroke-width="1.5" stroke-dasharray="5 4"/>"##,
                coords.join(" ")
            );
        }
    }
    let plot_middle = (PLOT_LEFT + PLOT_RIGHT) / 2.0;
    // Labels point inwards, so the ones near the right edge do not run into the legend, and
    // are moved apart where two methods sit close together.
    let boxes: Vec<LabelBox> = finite
        .iter()
        .map(|p| {
            let x = sx.at(p.x);
            let width = LABEL_CHAR_WIDTH * p.label.chars().count() as f64;
            let (left, right) = if x > plot_middle { (x - 8.0 - width, x - 8.0) } else { (x + 8.0, x + 8.0 + width) };
            LabelBox { left, right, y: sy.at(p.y) - 6.0 }
        })
        .collect();
    let label_ys = place_labels(&boxes, PLOT_TOP + LABEL_HEIGHT, PLOT_TOP + PLOT_HEIGHT);
    for (p, label_y) in finite.iter().zip(label_ys) {
        let (x, y) = (sx.at(p.x), sy.at(p.y));
        let _ = writeln!(s, r#"<g class="point">"#);
        if p.y_high > p.y_low {
            let (top, bottom) = (sy.at(p.y_high), sy.at(p.y_low));
            let _ = writeln!(
                s,
                r#"<line class="error-bar" x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="{3}" stroke-width="1.5"/>"#,
                num(x),
                num(top),
                num(bottom),
                p.color
            );
            for end in [top, bottom] {
                let _ = writeln!(
                    s,
                    r#"<line x1="{}" y1="{2}" x2="{}" y2="{2}" stroke="{3}" stroke-width="1.5"/>"#,
                    num(x - 4.0),
                    num(x + 4.0),
                    num(end),
                    p.color
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<circle cx="{}" cy="{}" r="5" fill="{}" stroke="#222222" stroke-width="0.5"><title>{}</title></circle>"##,
            num(x),
            num(y),
            p.color,
            escape_xml(&p.tooltip)
        );
        let (label_x, anchor) = if x > plot_middle { (x - 8.0, "end") } else { (x + 8.0, "start") };
        if (label_y - (y - 6.0)).abs() > 1.0 {
            // A moved label keeps a thin line to its point.
            let _ = writeln!(
                s,
                r##"<line class="label-leader" x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999999" stroke-width="0.75"/>"##,
                num(x),
                num(y),
                num(label_x),
                num(label_y - 4.0)
            );
        }
        let _ = writeln!(
            s,
            r##"<text class="point-label" x="{}" y="{}" {FONT} font-size="11" fill="#222222" text-anchor="{anchor}">{}</text>"##,
            num(label_x),
            num(label_y),
            escape_xml(&p.label)
        );
        let _ = writeln!(s, "</g>");
    }
    let entries: Vec<(&str, &str)> = finite.iter().map(|p| (p.label.as_str(), p.color)).collect();
    legend(&mut s, &entries, false);
    s.push_str("</svg>\n");
    s
}

/// Horizontal space of one character of an 11 px sans-serif label, a generous average, so
/// that an estimated label is never narrower than the drawn one.
const LABEL_CHAR_WIDTH: f64 = 6.6;
/// Height of a label line, baseline to baseline.
const LABEL_HEIGHT: f64 = 13.0;

/// Where a point label would be drawn: its horizontal extent and its baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
struct LabelBox {
    left: f64,
    right: f64,
    y: f64,
}

/// Baselines for `labels` such that no two labels whose extents meet horizontally are less
/// than [`LABEL_HEIGHT`] apart: from the top down, each label keeps its place or moves just
/// below the labels it would cover; one pushed past `bottom` is moved up above them instead.
/// Baselines stay within `top..=bottom` where the room allows.
fn place_labels(labels: &[LabelBox], top: f64, bottom: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| labels[a].y.total_cmp(&labels[b].y).then(a.cmp(&b)));
    let mut placed: Vec<(usize, f64)> = Vec::new();
    let clashes = |i: usize, y: f64, placed: &[(usize, f64)]| {
        placed.iter().any(|&(j, yj)| {
            let (a, b) = (labels[i], labels[j]);
            a.left < b.right && b.left < a.right && (y - yj).abs() < LABEL_HEIGHT
        })
    };
    for i in order {
        let mut y = labels[i].y.clamp(top, bottom.max(top));
        // Down past every clash; each step lands just below a placed label, so this ends.
        while let Some(&(_, yj)) = placed.iter().find(|&&(j, yj)| {
            let (a, b) = (labels[i], labels[j]);
            a.left < b.right && b.left < a.right && (y - yj).abs() < LABEL_HEIGHT
        }) {
            y = yj + LABEL_HEIGHT;
        }
        if y > bottom {
            // No room below: go up from the wanted place instead.
            y = labels[i].y.min(bottom);
            while clashes(i, y, &placed) {
                y -= 1.0;
            }
        }
        placed.push((i, y));
    }
    placed.sort_by_key(|&(i, _)| i);
    placed.into_iter().map(|(_, y)| y).collect()
}

/// A line chart of `series` with a marker at every point and a legend; `integer_x` keeps x
/// ticks on whole numbers (epochs).
pub fn line_chart(axes: &Axes, series: &[Series], integer_x: bool) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (x_lo, x_hi) = bounds(all().map(|p| p.0));
    let (y_lo, y_hi) = bounds(all().map(|p| p.1));
    let (mut s, sx, sy) = frame(axes, (x_lo, x_hi), (y_lo, y_hi), integer_x, series.len());
    for line in series {
        let points: Vec<(f64, f64)> =
            line.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        let _ = writeln!(s, r#"<g class="series">"#);
        if points.len() > 1 {
            let coords: Vec<String> =
                points.iter().map(|&(x, y)| format!("{},{}", num(sx.at(x)), num(sy.at(y)))).collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                coords.join(" "),
                line.color
            );
        }
        for &(x, y) in &points {
            let _ = writeln!(
                s,
                r#"<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}: {} {}, {} {:.1}</title></circle>"#,
                num(sx.at(x)),
                num(sy.at(y)),
                line.color,
                escape_xml(&line.label),
                escape_xml(&axes.x_label),
                x,
                escape_xml(&axes.y_label),
                y
            );
        }
        let _ = writeln!(s, "</g>");
    }
    let entries: Vec<(&str, &str)> = series.iter().map(|l| (l.label.as_str(), l.color)).collect();
    legend(&mut s, &entries, true);
    s.push_str("</svg>\n");
    s
}

/// Smallest and largest value; (0, 1) for none.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo.is_finite() { widen(lo, hi) } else { (0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        // Range 0.3..9.7 over ~5 ticks: raw step 1.88 → 2; from 0 to 10.
        assert_eq!(nice_ticks(0.3, 9.7, 5, false), (vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0], 0));
        // Range 56..72 %, raw step 3.2 → 5: 55, 60, 65, 70, 75.
        assert_eq!(nice_ticks(56.0, 72.0, 5, false), (vec![55.0, 60.0, 65.0, 70.0, 75.0], 0));
        // Small values: step 0.05 needs two decimals.
        let (ticks, decimals) = nice_ticks(0.51, 0.74, 5, false);
        assert_eq!(decimals, 2);
        assert!((ticks[0] - 0.5).abs() < 1e-12 && (ticks.last().unwrap() - 0.75).abs() < 1e-12);
        // Epochs 1..3 with integer steps: 1, 2, 3.
        assert_eq!(nice_ticks(1.0, 3.0, 6, true), (vec![1.0, 2.0, 3.0], 0));
        // One value: widened by 10%: 9..11, step 0.5 (raw 0.333 → 0.5).
        let (ticks, _) = nice_ticks(10.0, 10.0, 6, false);
        assert!(ticks.first().unwrap() <= &9.0 && ticks.last().unwrap() >= &11.0);
    }

    #[test]
    fn scatter_has_points_error_bars_front_and_escaped_text() {
        let axes = Axes { title: "R@1 vs time <cub>".into(), x_label: "s/epoch".into(), y_label: "R@1 (%)".into() };
        let point = |label: &str, x: f64, y: f64, h: f64| Point {
            label: label.into(),
            color: PALETTE[0],
            x,
            y,
            y_low: y - h,
            y_high: y + h,
            tooltip: format!("{label} & more"),
        };
        // b is slower and worse than a: not on the front. c is slower and better: on it.
        let svg = scatter(
            &axes,
            &[point("a", 10.0, 60.0, 2.0), point("b", 20.0, 50.0, 0.0), point("c", 30.0, 70.0, 1.0)],
            true,
        );
        assert_eq!(svg.matches("<circle").count(), 3 + 3, "3 points and 3 legend markers");
        assert_eq!(svg.matches(r#"class="error-bar""#).count(), 2, "b has no interval");
        assert!(svg.contains("R@1 vs time &lt;cub&gt;") && svg.contains("a &amp; more"));
        assert!(!svg.contains("<cub>"));
        // The front joins a and c only: two coordinate pairs.
        let front = svg.lines().find(|l| l.contains("pareto-front")).unwrap();
        let points = front.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 2, "{front}");
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn close_labels_are_moved_apart_and_distant_ones_stay() {
        let label = |left: f64, y: f64| LabelBox { left, right: left + 60.0, y };
        // Two labels on top of each other, a third overlapping the second's new place, and a
        // fourth beside them horizontally, which stays.
        let labels = [label(100.0, 200.0), label(120.0, 202.0), label(90.0, 214.0), label(300.0, 201.0)];
        let ys = place_labels(&labels, 50.0, 350.0);
        assert_eq!(ys, vec![200.0, 213.0, 226.0, 201.0]);
        for i in 0..labels.len() {
            for j in 0..i {
                let (a, b) = (labels[i], labels[j]);
                let meet = a.left < b.right && b.left < a.right;
                assert!(!meet || (ys[i] - ys[j]).abs() >= LABEL_HEIGHT, "{i} and {j} overlap: {ys:?}");
            }
        }
        // Pushed past the bottom, a label goes up instead.
        let ys = place_labels(&[label(100.0, 345.0), label(110.0, 346.0)], 50.0, 350.0);
        assert_eq!(ys[0], 345.0);
        assert!(ys[1] <= 345.0 - LABEL_HEIGHT, "{ys:?}");
    }

    #[test]
    fn line_chart_draws_one_polyline_per_series() {
        let axes = Axes { title: "t".into(), x_label: "epoch".into(), y_label: "R@1 (%)".into() };
        let series = [
            Series { label: "a".into(), color: PALETTE[0], points: vec![(1.0, 40.0), (2.0, 50.0), (3.0, 55.0)] },
            Series { label: "b".into(), color: PALETTE[1], points: vec![(1.0, 30.0)] },
        ];
        let svg = line_chart(&axes, &series, true);
        // a: a polyline; b: a single point, no line. Legend: one line per series, plus the axis path.
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 4 + 2);
        assert!(svg.contains(">epoch</text>") && svg.contains(">R@1 (%)</text>"));
    }
}
