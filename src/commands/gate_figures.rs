//! The timeline's gates: each gate attempt's figures from its journaled samples, the chart
//! that draws them, and for a GA4 gate the standard report's figure over the run's days.

use std::collections::HashMap;
use std::path::Path;

use jiff::Timestamp;
use serde::Serialize;

use super::chart::Chart;
use crate::config::{Config, MetricsConfig};
use crate::engine::story::{Attempt, StepResult, Story};
use crate::metrics::Reading;
use crate::metrics::ga4::Ga4;
use crate::runbook::kinds::gate::Judged;
use crate::steps::gate::Threshold;

/// A gate's figures over one attempt, from its journaled samples.
#[derive(Debug, Serialize)]
pub struct GateFigures {
    pub run_id: String,
    pub step: String,
    pub attempt: usize,
    pub result: StepResult,
    pub samples: usize,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    pub lowest: Option<f64>,
    pub highest: Option<f64>,
    pub latest: Option<f64>,
    pub no_data: usize,
    pub failed: usize,
    pub source: Option<String>,
    pub query: Option<String>,
    pub thresholds: Vec<Threshold>,
    /// The chart's file, beside the Markdown, once written.
    pub chart: Option<String>,
    /// A GA4 gate's standard report over the run's days.
    pub report: Option<ReportFigure>,
    #[serde(skip)]
    pub drawing: Chart,
    /// The config the run read, where its source is.
    #[serde(skip)]
    config_path: Option<String>,
    #[serde(skip)]
    report_query: Option<String>,
}

/// A standard report's figure, fetched when the timeline is made (reports lag hours).
#[derive(Debug, Serialize)]
pub struct ReportFigure {
    pub query: String,
    /// The run's days, UTC, inclusive.
    pub first_day: String,
    pub last_day: String,
    pub value: Option<f64>,
    /// Why there is no value: no rows, or the report could not be read.
    pub no_value: Option<String>,
    /// GA4 withheld rows with few users: the figure may be low.
    pub thresholded: bool,
    pub fetched: Timestamp,
}

/// Every gate attempt that took samples, with its figures and chart.
pub fn gates(every: &[(&Story, &Attempt)]) -> Vec<GateFigures> {
    every.iter().filter(|(_, a)| !a.samples.is_empty()).map(|(story, a)| figures(story, a)).collect()
}

fn figures(story: &Story, a: &Attempt) -> GateFigures {
    let values = || a.samples.iter().filter_map(|s| s.value);
    let plan = a.gate.as_ref();
    let last = a.samples.last().map(|s| s.ts);
    let end = story.finished.into_iter().chain(story.steps.iter().filter_map(Attempt::at)).chain(last).max();
    let marks = story
        .steps
        .iter()
        .filter(|s| {
            s.kind.as_deref() == Some("flag") && s.changed() && s.outputs.get("changed").is_none_or(|c| c != "false")
        })
        .filter_map(|s| Some((s.ended?, s.after.clone().unwrap_or_else(|| "changed".into()))))
        .collect();
    let title = if a.attempt > 1 { format!("{} (attempt {})", a.step, a.attempt) } else { a.step.clone() };
    let drawing = Chart {
        title: format!("{title}, run {}", story.run_id),
        query: plan.map(|p| p.query.clone()).unwrap_or_default(),
        start: story.started,
        end: end.unwrap_or(story.started),
        samples: a.samples.iter().map(|s| (s.ts, s.value, s.judged)).collect(),
        thresholds: plan
            .map_or_else(Vec::new, |p| p.thresholds.iter().map(|t| (t.label.clone(), t.value, t.fails)).collect()),
        marks,
    };
    GateFigures {
        run_id: story.run_id.clone(),
        step: a.step.clone(),
        attempt: a.attempt,
        result: a.result,
        samples: a.samples.len(),
        first: a.samples.first().map(|s| s.ts),
        last,
        lowest: values().reduce(f64::min),
        highest: values().reduce(f64::max),
        latest: a.samples.last().and_then(|s| s.value),
        no_data: a.samples.iter().filter(|s| s.judged == Judged::NoData).count(),
        failed: a.samples.iter().filter(|s| s.judged == Judged::Fail).count(),
        source: plan.map(|p| p.source.clone()),
        query: plan.map(|p| p.query.clone()),
        thresholds: plan.map_or_else(Vec::new, |p| p.thresholds.clone()),
        chart: None,
        report: None,
        report_query: plan.map(|p| p.report.clone().unwrap_or_else(|| p.query.clone())),
        drawing,
        config_path: story.config_path.clone(),
    }
}

/// For each gate on a GA4 source of its run's config, the standard report over the run's days;
/// one source (and token) per config and source name.
pub fn fetch_reports(gates: &mut [GateFigures]) {
    let mut configs: HashMap<String, Option<Config>> = HashMap::new();
    let mut sources: HashMap<(String, String), Result<Ga4, String>> = HashMap::new();
    for gate in gates {
        let (Some(path), Some(source), Some(query)) = (&gate.config_path, &gate.source, &gate.report_query) else {
            continue;
        };
        let config = configs.entry(path.clone()).or_insert_with(|| Config::load(Path::new(path)).ok());
        let Some(config) = config.as_ref() else { continue };
        let Some(MetricsConfig::Ga4(ga4)) = config.metrics.get(source) else { continue };
        let reader = sources
            .entry((path.clone(), source.clone()))
            .or_insert_with(|| Ga4::new(ga4, &config.http).map_err(|e| format!("{e:#}")));
        let day = |ts: Timestamp| ts.strftime("%Y-%m-%d").to_string();
        let (first_day, last_day) = (day(gate.drawing.start), day(gate.drawing.end));
        let read = match reader {
            Ok(reader) => reader.report(query, &first_day, &last_day).map_err(|e| format!("{e:#}")),
            Err(why) => Err(why.clone()),
        };
        let (value, no_value, thresholded) = match read {
            Ok(figure) => match figure.reading {
                Reading::Value(value) => (Some(value), None, figure.thresholded),
                Reading::NoData(why) => (None, Some(why), figure.thresholded),
            },
            Err(why) => (None, Some(format!("not read: {}", crate::redact::scrub(&why))), false),
        };
        let fetched = Timestamp::now();
        gate.report =
            Some(ReportFigure { query: query.clone(), first_day, last_day, value, no_value, thresholded, fetched });
    }
}

impl GateFigures {
    /// `<stem>-gate-<n>-<step>.svg`: a file name of safe characters only.
    pub fn chart_name(&self, stem: &str, n: usize) -> String {
        let step: String = self
            .step
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        format!("{stem}-gate-{n}-{step}.svg")
    }
}
