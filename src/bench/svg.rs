//! The report's charts, as hand-written SVG (no plotting crate): grouped bar charts that any
//! browser opens.

use std::fmt::Write as _;

/// One bar chart: a group of bars per label (a policy), one bar per series in each group.
pub struct BarChart<'a> {
    /// The chart's title.
    pub title: &'a str,
    /// What the y axis measures.
    pub y_label: &'a str,
    /// The series, in bar order within a group (and the legend).
    pub series: Vec<String>,
    /// Per group: its label and one value per series.
    pub groups: Vec<(String, Vec<f64>)>,
    /// A dashed horizontal line (the even share), if any.
    pub reference: Option<(f64, &'a str)>,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round number at or above `x`, for the top of the axis.
fn nice_ceiling(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&c| c >= x)
        .unwrap_or(10.0 * magnitude)
}

impl BarChart<'_> {
    /// The SVG document.
    pub fn render(&self) -> String {
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let max = self
            .groups
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .chain(self.reference.map(|r| r.0))
            .fold(0.0, f64::max);
        let top = nice_ceiling(max);
        let y = |v: f64| TOP + plot_h - (v / top).clamp(0.0, 1.0) * plot_h;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"22\" font-size=\"16\" text-anchor=\"middle\">{}</text>",
            LEFT + plot_w / 2.0,
            escape(self.title)
        );
        // Axis, gridlines and tick labels.
        for i in 0..=5 {
            let v = top * i as f64 / 5.0;
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT + plot_w,
                LEFT - 6.0,
                y(v) + 4.0,
                trim(v),
                y = y(v),
            );
        }
        let _ = writeln!(
            s,
            "<text transform=\"translate(16,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h / 2.0,
            escape(self.y_label)
        );
        let groups = self.groups.len().max(1) as f64;
        let group_w = plot_w / groups;
        let bars = self.series.len().max(1) as f64;
        let bar_w = group_w * 0.8 / bars;
        for (g, (label, values)) in self.groups.iter().enumerate() {
            let x0 = LEFT + g as f64 * group_w + group_w * 0.1;
            for (b, &v) in values.iter().enumerate() {
                let x = x0 + b as f64 * bar_w;
                let _ = writeln!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                     fill=\"{}\"><title>{} {}: {}</title></rect>",
                    y(v),
                    (bar_w - 1.0).max(1.0),
                    TOP + plot_h - y(v),
                    COLOURS[b % COLOURS.len()],
                    escape(label),
                    escape(&self.series[b.min(self.series.len() - 1)]),
                    trim(v)
                );
            }
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x0 + group_w * 0.4,
                TOP + plot_h + 18.0,
                escape(label)
            );
        }
        if let Some((v, label)) = self.reference {
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"black\" \
                 stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{:.1}\">{}</text>",
                LEFT + plot_w,
                LEFT + plot_w + 4.0,
                y(v) + 4.0,
                escape(label),
                y = y(v)
            );
        }
        for (b, name) in self.series.iter().enumerate() {
            let ly = TOP + 20.0 + b as f64 * 18.0;
            let _ = writeln!(
                s,
                "<rect x=\"{}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"{:.1}\">{}</text>",
                WIDTH - RIGHT + 20.0,
                ly - 10.0,
                COLOURS[b % COLOURS.len()],
                WIDTH - RIGHT + 38.0,
                ly,
                escape(name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// A tick or value label without noise digits.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_bar_per_value_and_escapes_text() {
        let chart = BarChart {
            title: "share <connect>",
            y_label: "share",
            series: vec!["worker 1".into(), "worker 2".into()],
            groups: vec![
                ("round-robin".into(), vec![0.5, 0.5]),
                ("shared".into(), vec![0.9, 0.1]),
            ],
            reference: Some((0.5, "even")),
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 4);
        assert!(svg.contains("share &lt;connect&gt;"));
        assert_eq!(nice_ceiling(0.9), 1.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
    }
}
