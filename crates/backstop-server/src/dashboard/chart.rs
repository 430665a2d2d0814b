//! Line charts drawn on the server as SVG: no script, no chart library, nothing to download.
//! The plot carries its scale in `data-` attributes so a test (or a person's tools) can check
//! where a point or the decision marker sits.

use std::fmt::Write as _;

use super::html::esc;

/// One line of a chart.
pub struct Series<'a> {
    /// Shown in the legend; also the line's CSS class (`canary`, `baseline`).
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// A vertical line at time `t`, labelled (the verdict).
pub struct Marker<'a> {
    pub t: f64,
    pub label: &'a str,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 30.0;

/// An SVG line chart over seconds on x; `y_label` formats the y axis' ticks.
#[must_use]
pub fn line_chart(
    signal: &str,
    title: &str,
    series: &[Series<'_>],
    marker: Option<&Marker<'_>>,
    y_label: impl Fn(f64) -> String,
) -> String {
    let all = series.iter().flat_map(|s| s.points.iter());
    let x_max = all
        .clone()
        .map(|p| p.0)
        .chain(marker.map(|m| m.t))
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let y_top = all.map(|p| p.1).fold(0.0_f64, f64::max);
    let y_max = if y_top > 0.0 { nice(y_top * 1.1) } else { 1.0 };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |t: f64| LEFT + t / x_max * plot_w;
    let y = |v: f64| TOP + plot_h - (v / y_max).min(1.0) * plot_h;

    let mut out = String::new();
    let _ = write!(
        out,
        "<figure class=\"chart\"><figcaption>{}</figcaption>\
         <svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\" data-signal=\"{}\" \
         data-x-max=\"{x_max}\" data-plot-left=\"{LEFT}\" data-plot-width=\"{plot_w}\" preserveAspectRatio=\"xMidYMid meet\">",
        esc(title),
        esc(title),
        esc(signal)
    );
    // Grid and axes.
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let yy = y(v);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/>\
             <text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            esc(&y_label(v))
        );
    }
    let step = nice(x_max / 6.0).max(1.0);
    let mut t = 0.0;
    while t <= x_max + 1e-9 {
        let xx = x(t);
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{xx:.1}\" y=\"{}\" text-anchor=\"middle\">{}s</text>",
            HEIGHT - 10.0,
            trim(t)
        );
        t += step;
    }
    // Lines, each with a dot per point so a single interval still shows.
    for s in series {
        let class = esc(s.name);
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"series {class}\" data-series=\"{class}\" data-points=\"{}\" points=\"{}\"/>",
            s.points.len(),
            pts.join(" ")
        );
        for p in &pts {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                out,
                "<circle class=\"dot {class}\" cx=\"{px}\" cy=\"{py}\" r=\"2.2\"/>"
            );
        }
    }
    if let Some(m) = marker {
        let mx = x(m.t);
        let anchor = if mx > WIDTH * 0.6 { "end" } else { "start" };
        let dx = if anchor == "end" { -4.0 } else { 4.0 };
        let _ = write!(
            out,
            "<line class=\"decision\" data-t=\"{}\" x1=\"{mx:.2}\" x2=\"{mx:.2}\" y1=\"{TOP}\" y2=\"{}\"/>\
             <text class=\"decision-label\" x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            m.t,
            TOP + plot_h,
            mx + dx,
            TOP + 10.0,
            esc(m.label)
        );
    }
    out.push_str("</svg><div class=\"legend\">");
    for s in series {
        let _ = write!(
            out,
            "<span class=\"key {}\">{}</span>",
            esc(s.name),
            esc(s.name)
        );
    }
    if marker.is_some() {
        out.push_str("<span class=\"key decision\">decision</span>");
    }
    out.push_str("</div></figure>");
    out
}

/// The smallest of 1, 2, 2.5, 5 × 10^k at or above `v`: round numbers for an axis.
fn nice(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|c| *c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * mag)
}

fn trim(t: f64) -> String {
    let s = format!("{t:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_bounds_are_round() {
        assert!((nice(0.37) - 0.5).abs() < 1e-12);
        assert!((nice(7.0) - 10.0).abs() < 1e-12);
        assert!((nice(2.2) - 2.5).abs() < 1e-12);
        assert!((nice(1.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_marker_sits_at_its_time_on_the_plot_scale() {
        let svg = line_chart(
            "error_ratio",
            "errors",
            &[Series {
                name: "canary",
                points: vec![(1.0, 0.1), (2.0, 0.3), (4.0, 0.2)],
            }],
            Some(&Marker {
                t: 3.0,
                label: "rolled back",
            }),
            |v| format!("{v}"),
        );
        // x_max = 4 s: 3 s is three quarters of the plot's width from its left edge.
        let expected = LEFT + 0.75 * (WIDTH - LEFT - RIGHT);
        assert!(svg.contains(&format!("x1=\"{expected:.2}\"")), "{svg}");
        assert!(svg.contains("data-points=\"3\""));
        assert!(svg.contains("data-t=\"3\""));
    }

    #[test]
    fn an_empty_chart_still_draws_its_axes() {
        let svg = line_chart("latency", "p99", &[], None, |v| format!("{v}"));
        assert!(svg.contains("<svg") && svg.contains("0s"));
    }
}
