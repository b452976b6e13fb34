//! Inline SVG charts for the dashboard: pure functions from figures to markup, so pages need no
//! JavaScript and print as they look. Every bar or cell carries a `<title>`, which browsers
//! show as a tooltip, so exact figures are readable without a script.

use std::fmt::Write;

use super::dashboard::esc;

/// One series of a time chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<f64>,
}

const W: f64 = 760.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

/// A "nice" axis maximum (1, 2 or 5 × 10^n) at or above `max`.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&v| v >= max)
        .unwrap_or(10.0 * p)
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}")
    }
}

fn axis(out: &mut String, max: f64) {
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let y = TOP + (H - TOP - BOTTOM) * (1.0 - i as f64 / 4.0);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{W}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="#666">{}</text>"##,
            LEFT - 4.0,
            y + 4.0,
            fmt_num(v)
        );
    }
}

/// The axis maximum for `series`: their largest value, rounded up by [`nice_max`].
fn axis_max(series: &[Series]) -> f64 {
    nice_max(series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0, f64::max))
}

/// A chart's opening `<svg>` tag (`class`, a `w` × `h` view box) with its accessible title.
fn open_svg(class: &str, w: f64, h: f64, title: &str) -> String {
    let title = esc(title);
    format!(r#"<svg class="{class}" viewBox="0 0 {w} {h}" role="img" aria-label="{title}"><title>{title}</title>"#)
}

/// Grouped vertical bars, one group per label (days, hours...).
pub fn bars(title: &str, labels: &[String], series: &[Series]) -> String {
    let max = axis_max(series);
    let n = labels.len().max(1) as f64;
    let group = (W - LEFT) / n;
    let bar = (group * 0.8 / series.len().max(1) as f64).max(1.0);
    let plot_h = H - TOP - BOTTOM;
    let mut out = open_svg("chart", W, H, title);
    axis(&mut out, max);
    // Label at most ~12 groups so the axis stays legible.
    let every = (labels.len() / 12).max(1);
    for (i, label) in labels.iter().enumerate() {
        let x0 = LEFT + group * i as f64 + group * 0.1;
        for (j, s) in series.iter().enumerate() {
            let v = s.values.get(i).copied().unwrap_or(0.0);
            let h = plot_h * v / max;
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {} {}</title></rect>"#,
                x0 + bar * j as f64,
                TOP + plot_h - h,
                bar,
                h,
                s.color,
                esc(label),
                fmt_num(v),
                esc(s.name)
            );
        }
        if i % every == 0 {
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#666">{}</text>"##,
                x0,
                H - 10.0,
                esc(label)
            );
        }
    }
    out.push_str("</svg>");
    out.push_str(&legend(series));
    out
}

/// Lines over time (pool occupancy), with the same axes as [`bars`].
pub fn lines(title: &str, labels: &[String], series: &[Series]) -> String {
    let max = axis_max(series);
    let n = labels.len().max(2) as f64 - 1.0;
    let plot_h = H - TOP - BOTTOM;
    let mut out = open_svg("chart", W, H, title);
    axis(&mut out, max);
    for s in series {
        let pts: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "{:.1},{:.1}",
                    LEFT + (W - LEFT) * i as f64 / n,
                    TOP + plot_h * (1.0 - v / max)
                )
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            s.color,
            pts.join(" "),
            esc(s.name)
        );
    }
    for (i, label) in [labels.first(), labels.last()].into_iter().flatten().enumerate() {
        let (x, anchor) = if i == 0 { (LEFT, "start") } else { (W, "end") };
        let _ = write!(
            out,
            r##"<text x="{x}" y="{:.1}" font-size="10" fill="#666" text-anchor="{anchor}">{}</text>"##,
            H - 10.0,
            esc(label)
        );
    }
    out.push_str("</svg>");
    out.push_str(&legend(series));
    out
}

fn legend(series: &[Series]) -> String {
    let mut out = String::from(r#"<p class="legend">"#);
    for s in series {
        let _ = write!(
            out,
            r#"<span><i style="background:{}"></i>{}</span> "#,
            s.color,
            esc(s.name)
        );
    }
    out.push_str("</p>");
    out
}

/// Horizontal bars for a category report (channels, keywords...): the top `rows`.
pub fn hbars(title: &str, rows: &[(String, f64)]) -> String {
    let max = nice_max(rows.iter().map(|r| r.1).fold(0.0, f64::max));
    let row_h = 22.0;
    let label_w = 220.0;
    let h = row_h * rows.len() as f64 + 8.0;
    let mut out = open_svg("chart", W, h, title);
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 4.0 + row_h * i as f64;
        let w = (W - label_w - 60.0) * v / max;
        let shown: String = label.chars().take(34).collect();
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="#333">{}</text><rect x="{label_w}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="#2b6cb0"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" font-size="12" fill="#333">{}</text>"##,
            label_w - 6.0,
            y + 15.0,
            esc(&shown),
            row_h - 6.0,
            esc(label),
            fmt_num(*v),
            label_w + w + 4.0,
            y + 15.0,
            fmt_num(*v)
        );
    }
    out.push_str("</svg>");
    out
}

/// Hour × weekday heatmap: `cells[weekday][hour]`, weekday 0 = Monday.
pub fn heatmap(title: &str, weekdays: &[String], cells: &[Vec<f64>]) -> String {
    let max = cells.iter().flatten().copied().fold(0.0, f64::max).max(1.0);
    let (cw, ch, left, top) = (28.0, 22.0, 44.0, 18.0);
    let w = left + cw * 24.0;
    let h = top + ch * cells.len() as f64;
    let mut out = open_svg("chart heat", w, h, title);
    for hour in (0..24).step_by(3) {
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="12" font-size="10" fill="#666">{hour:02}h</text>"##,
            left + cw * hour as f64
        );
    }
    for (d, row) in cells.iter().enumerate() {
        let name = weekdays.get(d).map(String::as_str).unwrap_or("");
        let y = top + ch * d as f64;
        let _ = write!(
            out,
            r##"<text x="0" y="{:.1}" font-size="11" fill="#333">{}</text>"##,
            y + 15.0,
            esc(name)
        );
        for (hour, v) in row.iter().enumerate() {
            let alpha = 0.06 + 0.94 * v / max;
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="rgba(43,108,176,{alpha:.2})"><title>{} {hour:02}:00: {}</title></rect>"#,
                left + cw * hour as f64,
                cw - 2.0,
                ch - 2.0,
                esc(name),
                fmt_num(*v)
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(13.0), 20.0);
        assert_eq!(nice_max(450.0), 500.0);
    }

    #[test]
    fn bars_carry_their_figures() {
        let svg = bars(
            "Calls <by day>",
            &["2026-11-27".into(), "2026-11-28".into()],
            &[Series {
                name: "calls",
                color: "#000",
                values: vec![3.0, 5.0],
            }],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("<title>2026-11-28: 5 calls</title>"));
        assert!(svg.contains("Calls &lt;by day&gt;"));
        let heat = heatmap("t", &["Mon".into()], &[vec![0.0; 24]]);
        assert_eq!(heat.matches("<rect").count(), 24);
    }
}
