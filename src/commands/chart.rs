//! The timeline's picture of one gate: its samples over the run as an SVG line chart, with
//! the thresholds as lines and the moments the flag changed as marked verticals.

use anyhow::{Result, anyhow};
use jiff::Timestamp;
use plotters::prelude::*;

use crate::runbook::kinds::gate::{Judged, figure};

const SIZE: (u32, u32) = (960, 440);
const PASS_LINE: RGBColor = RGBColor(46, 125, 50);
const FAIL_LINE: RGBColor = RGBColor(198, 40, 40);
const VALUE_LINE: RGBColor = RGBColor(21, 101, 192);
const INCONCLUSIVE: RGBColor = RGBColor(239, 108, 0);
const MARK: RGBColor = RGBColor(106, 27, 154);

/// What one chart shows.
#[derive(Debug)]
pub struct Chart {
    pub title: String,
    /// The query, under the title.
    pub query: String,
    /// The run's span: the x axis.
    pub start: Timestamp,
    pub end: Timestamp,
    pub samples: Vec<(Timestamp, Option<f64>, Judged)>,
    /// `(label, value, whether crossing it fails)`: `must stay below 0.8`, `fails above 1`.
    pub thresholds: Vec<(String, f64, bool)>,
    /// When the flag changed, and to what (`25%`).
    pub marks: Vec<(Timestamp, String)>,
}

impl Chart {
    /// The x axis's unit: seconds for a run of under two minutes, else minutes.
    fn unit(&self) -> (f64, &'static str) {
        let last = self.samples.last().map_or(self.end, |s| s.0.max(self.end));
        if last.duration_since(self.start).as_secs_f64() < 120.0 { (1.0, "seconds") } else { (60.0, "minutes") }
    }

    /// Time from the run's start, in the axis's unit.
    fn minutes(&self, ts: Timestamp) -> f64 {
        ts.duration_since(self.start).as_secs_f64() / self.unit().0
    }

    /// The value axis: every value and threshold, with a margin.
    fn value_range(&self) -> (f64, f64) {
        let values = self.samples.iter().filter_map(|(_, v, _)| *v).chain(self.thresholds.iter().map(|t| t.1));
        let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        if !low.is_finite() {
            return (0.0, 1.0);
        }
        let pad = if high > low { (high - low) * 0.12 } else { high.abs().max(1.0) * 0.5 };
        let floor = if low >= 0.0 { (low - pad).max(0.0) } else { low - pad };
        (floor, high + pad)
    }

    /// The SVG document.
    pub fn svg(&self) -> Result<String> {
        let mut svg = String::new();
        self.draw(&mut svg).map_err(|e| anyhow!("cannot draw the chart of {}: {e}", self.title))?;
        Ok(svg)
    }

    fn draw(&self, svg: &mut String) -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (root, footer) = root.split_vertically(SIZE.1 - 24);
        footer.draw_text(
            &format!("query: {}", clipped(&self.query, 140)),
            &("monospace", 12).into_font().color(&BLACK.mix(0.7)),
            (12, 4),
        )?;
        let span = self.minutes(self.end).max(self.samples.last().map_or(0.0, |s| self.minutes(s.0))).max(1.0) * 1.02;
        let (low, high) = self.value_range();
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..span, low..high)?;
        chart
            .configure_mesh()
            .x_desc(format!("{} since {} UTC", self.unit().1, self.start.strftime("%Y-%m-%d %H:%M:%S")))
            .y_label_formatter(&|v| figure(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (label, value, fails) in &self.thresholds {
            let color = if *fails { FAIL_LINE } else { PASS_LINE };
            chart
                .draw_series(DashedLineSeries::new([(0.0, *value), (span, *value)], 8, 5, color.stroke_width(2)))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        // Each change's label a row lower than the last, so that close changes stay readable.
        for (i, (ts, label)) in self.marks.iter().enumerate() {
            let x = self.minutes(*ts);
            chart.draw_series(LineSeries::new([(x, low), (x, high)], MARK.mix(0.6).stroke_width(1)))?;
            let y = high - (high - low) * (0.03 + 0.06 * (i % 4) as f64);
            chart.draw_series(std::iter::once(Text::new(
                format!("flag {label}"),
                (x + span * 0.005, y),
                ("sans-serif", 12).into_font().color(&MARK),
            )))?;
        }
        // The line breaks where a sample had no data.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (ts, value, _) in &self.samples {
            match value {
                Some(v) => runs.last_mut().into_iter().for_each(|run| run.push((self.minutes(*ts), *v))),
                None => runs.push(Vec::new()),
            }
        }
        let mut labelled = false;
        for run in runs.into_iter().filter(|r| !r.is_empty()) {
            let series = chart.draw_series(LineSeries::new(run, VALUE_LINE.stroke_width(2)))?;
            if !labelled {
                series
                    .label("value")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], VALUE_LINE.stroke_width(2)));
                labelled = true;
            }
        }
        chart.draw_series(self.samples.iter().filter_map(|(ts, value, judged)| {
            let color = match judged {
                Judged::Pass => PASS_LINE,
                Judged::Fail => FAIL_LINE,
                Judged::Inconclusive | Judged::NoData => INCONCLUSIVE,
            };
            value.map(|v| Circle::new((self.minutes(*ts), v), 3, color.filled()))
        }))?;
        chart.draw_series(
            self.samples
                .iter()
                .filter(|s| s.1.is_none())
                .map(|(ts, _, _)| Cross::new((self.minutes(*ts), low), 4, BLACK.mix(0.5).stroke_width(1))),
        )?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE.mix(0.85))
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// At most `max` characters, with `…` when cut.
fn clipped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_the_thresholds_the_marks_and_escapes_the_query() {
        let start: Timestamp = "2026-12-01T03:00:00Z".parse().unwrap();
        let at = |minutes: i64| start + jiff::SignedDuration::from_mins(minutes);
        let chart = Chart {
            title: "stage-2-errors".into(),
            query: r#"sum(increase(http_requests_total{code!~"200|201"}[1m])) < 5 & more"#.into(),
            start,
            end: at(12),
            samples: vec![
                (at(1), Some(1.0), Judged::Pass),
                (at(2), None, Judged::NoData),
                (at(3), Some(9.0), Judged::Fail),
            ],
            thresholds: vec![("must stay below 5".into(), 5.0, false)],
            marks: vec![(at(0), "5%".into()), (at(6), "25%".into())],
        };
        let svg = chart.svg().unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("must stay below 5") && svg.contains("flag 25%"), "{svg}");
        assert!(svg.contains("&lt; 5 &amp; more") && !svg.contains("< 5 & more"), "the query is escaped");
    }
}
