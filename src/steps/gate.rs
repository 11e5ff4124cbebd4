//! The `gate` step: sample a metric every interval (see `wait`), judge each sample, and pass
//! once it held, or fail; every sample is journaled, and the spinner shows them as a sparkline.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};

use super::wait::{self, Ended, Policy, Poll, Progress};
use super::{Applied, Context, Done, Held, Note, Preview, Services, Step, snapshot};
use crate::error::Interrupted;
use crate::metrics::{MetricSource, Reading};
use crate::runbook::kinds::gate::{GateRequest, Hold, Judged, NoData, figure};
use crate::runbook::resolve::Outputs;
use crate::ui::prompt::NoAnswer;

/// Samples in a row that cannot be read before the gate gives up (an error verdict).
const READ_ERRORS_IN_A_ROW: u32 = 4;
/// Samples the sparkline shows, the latest last.
const SPARK_WIDTH: usize = 30;

pub struct GateStep<'s> {
    source: &'s dyn MetricSource,
    request: GateRequest,
}

/// The step that judges `request`'s metric.
pub fn build<'s>(services: &'s Services, request: GateRequest) -> Result<Box<dyn Step + 's>> {
    Ok(Box::new(GateStep { source: services.metric(&request.source)?, request }))
}

/// One sample, as the journal keeps it (`step_sampled`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSample {
    /// None: no data (`no_data` says why).
    pub value: Option<f64>,
    pub judged: Judged,
    /// The query as sent.
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<String>,
    /// What the source warned of with this read (a quota running low).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What a gate judges by, as its preview journals it (`after`): the timeline draws it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatePlan {
    pub source: String,
    pub query: String,
    /// The lines a value is judged against.
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    /// A GA4 gate's standard-report query for the timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// One line a value is judged against: `below 0.8` to pass, `above 1` fails at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub label: String,
    pub value: f64,
    /// Crossing it fails the sample (else: staying on its side passes).
    pub fails: bool,
}

impl GatePlan {
    fn of(request: &GateRequest) -> GatePlan {
        let line = |label: &str, value: Option<f64>, fails: bool| {
            value.map(|value| Threshold { label: format!("{label} {}", figure(value)), value, fails })
        };
        let fail = request.fail.unwrap_or_default();
        let thresholds = [
            line("passes below", request.pass.below, false),
            line("passes above", request.pass.above, false),
            line("fails above", fail.above, true),
            line("fails below", fail.below, true),
        ];
        GatePlan {
            source: request.source.clone(),
            query: request.query.clone(),
            thresholds: thresholds.into_iter().flatten().collect(),
            report: request.report.clone(),
        }
    }
}

/// How the samples so far stand.
#[derive(Debug, Default)]
struct Tally {
    values: Vec<Option<f64>>,
    failures: u32,
    /// When the current run of passing samples began, and how many it has.
    passing: Option<(Instant, u32)>,
    errors_in_a_row: u32,
}

/// How a gate ended when it did not fail.
enum Passed {
    Held,
    /// The operator judged it at an inconclusive sample.
    ByOperator,
}

impl GateStep<'_> {
    fn sample(&self) -> Result<GateSample> {
        let reading = self.source.read(&self.request.query, self.request.window)?;
        let value = reading.value();
        let no_data = match reading {
            Reading::NoData(why) => Some(why),
            Reading::Value(_) => None,
        };
        Ok(GateSample {
            value,
            judged: self.request.judge(value),
            query: self.request.query.clone(),
            no_data,
            warnings: self.source.warnings(),
        })
    }

    /// `0.41`, or `no data (NaN)`.
    fn shown(sample: &GateSample) -> String {
        match (&sample.value, &sample.no_data) {
            (Some(value), _) => figure(*value),
            (None, why) => format!("no data ({})", why.as_deref().unwrap_or("nothing returned")),
        }
    }

    /// `0.41 ▂▃▅ must stay below 0.8 · held 3m of 10m · 11m left`.
    fn progress_line(&self, tally: &Tally, last: &GateSample, started: Instant) -> String {
        let held = match (self.request.hold, tally.passing) {
            (Hold::For(span), Some((since, _))) => {
                format!("held {} of {}", whole_seconds(since.elapsed()), humantime::format_duration(span))
            }
            (Hold::Count(n), Some((_, passes))) => format!("{passes} of {n} passing samples"),
            (_, None) => "not holding yet".to_string(),
        };
        let left = self.request.timeout.saturating_sub(started.elapsed());
        format!(
            "{} {} {} · {held} · {} failed · {} left",
            Self::shown(last),
            sparkline(&tally.values),
            self.request.condition(),
            tally.failures,
            whole_seconds(left)
        )
    }

    /// What one sample does to the gate: `Some` ends it.
    fn judge(
        &self,
        cx: &Context,
        progress: &Progress,
        tally: &mut Tally,
        sample: &GateSample,
    ) -> Result<Option<Passed>> {
        let judged = match (sample.judged, self.request.no_data) {
            (Judged::NoData, NoData::Fail) => Judged::Fail,
            (Judged::NoData, NoData::Pass) => Judged::Pass,
            (judged, _) => judged,
        };
        let figures = || format!("{} (query: {})", Self::shown(sample), sample.query);
        match judged {
            Judged::Pass => {
                let (since, passes) = tally.passing.unwrap_or((Instant::now(), 0));
                tally.passing = Some((since, passes + 1));
                let held = match self.request.hold {
                    Hold::Count(n) => passes + 1 >= n,
                    Hold::For(span) => since.elapsed() >= span,
                };
                Ok(held.then_some(Passed::Held))
            }
            Judged::Fail => {
                tally.failures += 1;
                tally.passing = None;
                if tally.failures > self.request.failure_limit {
                    return Err(anyhow!(
                        "the gate failed: {} failed sample{} (limit {}); the last: {}; it {}, {}",
                        tally.failures,
                        if tally.failures == 1 { "" } else { "s" },
                        self.request.failure_limit,
                        figures(),
                        self.request.condition(),
                        self.request.failure()
                    ));
                }
                progress.warn(format!(
                    "failed sample {}: {} ({} of {} tolerated)",
                    tally.values.len(),
                    Self::shown(sample),
                    tally.failures,
                    self.request.failure_limit
                ));
                Ok(None)
            }
            Judged::Inconclusive | Judged::NoData => {
                let what = if judged == Judged::NoData {
                    format!("no data: {}", Self::shown(sample))
                } else {
                    format!(
                        "{} is inconclusive: it {}, {}",
                        Self::shown(sample),
                        self.request.condition(),
                        self.request.failure()
                    )
                };
                if cx.yes {
                    return Err(anyhow!(
                        "the gate failed: {what}; under --yes nobody can judge it (query: {})",
                        sample.query
                    ));
                }
                let answer = progress.suspend(|ui| {
                    ui.always(format!("  {} {what}", ui.caution("?")));
                    ui.choose("Judge it:", &["pass", "fail", "wait"], None)
                });
                match answer {
                    Ok(0) => Ok(Some(Passed::ByOperator)),
                    Ok(1) => {
                        Err(anyhow!("the gate failed: the operator judged {what} a failure (query: {})", sample.query))
                    }
                    Ok(_) => {
                        tally.passing = None;
                        Ok(None)
                    }
                    Err(NoAnswer::Closed) => Err(anyhow!("the gate failed: {what}, and stdin closed before an answer")),
                    Err(NoAnswer::Interrupted | NoAnswer::Unseen) => {
                        Err(Interrupted(format!("while the gate asked about {what}")).into())
                    }
                }
            }
        }
    }
}

impl Step for GateStep<'_> {
    fn preview(&self, _cx: &Context) -> Result<Preview> {
        let sample = self.sample()?;
        let request = &self.request;
        let now = match sample.judged {
            Judged::Pass => "passes now",
            Judged::Fail => "would fail now",
            Judged::Inconclusive => "inconclusive now",
            Judged::NoData => "no data now",
        };
        let effect = format!(
            "{} {}: {} ({now}); it {}, {}",
            self.source.describe(),
            request.source,
            Self::shown(&sample),
            request.condition(),
            request.failure()
        );
        let delay = match request.initial_delay {
            Duration::ZERO => String::new(),
            delay => format!(", the first after {}", humantime::format_duration(delay)),
        };
        let mut notes = vec![format!(
            "a sample every {}{delay}; gives up after {}",
            humantime::format_duration(request.interval),
            humantime::format_duration(request.timeout)
        )];
        notes.extend(sample.warnings.iter().cloned());
        let no_data = match request.no_data {
            NoData::Fail => "no data (empty, NaN, null, Inf) fails a sample",
            NoData::Pass => "no data (empty, NaN, null, Inf) passes a sample",
            NoData::Ask => "no data (empty, NaN, null, Inf) asks the operator",
        };
        Ok(Preview {
            effect,
            before: snapshot(format!("{} now", Self::shown(&sample)), serde_json::to_value(&sample)?),
            after: snapshot(request.condition(), serde_json::to_value(GatePlan::of(request))?),
            details: vec![format!("query: {}", request.query), no_data.to_string()],
            notes,
            ..Preview::default()
        })
    }

    fn apply(&self, cx: &Context, _preview: &Preview) -> Result<Applied> {
        let started = Instant::now();
        let request = &self.request;
        let tally = RefCell::new(Tally::default());
        let first_at = started + request.initial_delay;
        let policy = Policy {
            // Until the first sample is due, the pause is the time left to it.
            interval: &|_| match first_at.saturating_duration_since(Instant::now()) {
                Duration::ZERO => request.interval,
                to_first => to_first,
            },
            rate_limit: &|| self.source.rate_limit_pause(),
        };
        let label = format!("gate {} ({})", request.source, request.condition());
        let ended = wait::until(cx, &label, request.timeout, &policy, |progress| {
            if Instant::now() < first_at {
                let left = first_at.saturating_duration_since(Instant::now());
                return Ok(Poll::Pending(format!("the first sample in {}", whole_seconds(left))));
            }
            let mut tally = tally.borrow_mut();
            let sample = match self.sample() {
                Ok(sample) => sample,
                Err(error) => {
                    tally.errors_in_a_row += 1;
                    if tally.errors_in_a_row >= READ_ERRORS_IN_A_ROW {
                        return Err(error.context(format!(
                            "the gate could not read its metric {READ_ERRORS_IN_A_ROW} times in a row (an error, not a verdict on the metric)"
                        )));
                    }
                    progress.warn(format!("could not read the metric: {error:#}; trying again at the next sample"));
                    return Ok(Poll::Pending(format!(
                        "could not read the metric ({} in a row)",
                        tally.errors_in_a_row
                    )));
                }
            };
            tally.errors_in_a_row = 0;
            tally.values.push(sample.value);
            (cx.journal)(Note::Sampled(&sample))?;
            for warning in &sample.warnings {
                progress.warn(warning.clone());
            }
            match self.judge(cx, progress, &mut tally, &sample)? {
                Some(passed) => Ok(Poll::Ready((passed, sample))),
                None => Ok(Poll::Pending(self.progress_line(&tally, &sample, started))),
            }
        })?;
        let tally = tally.into_inner();
        let (passed, last) = match ended {
            Ended::Ready(ready) => ready,
            Ended::Interrupted => {
                return Err(Interrupted(format!("in the gate, after {} samples", tally.values.len())).into());
            }
            Ended::TimedOut(_) => {
                let last = tally.values.last().copied().flatten().map(figure).unwrap_or_else(|| "no data".into());
                return Err(anyhow!(
                    "the gate failed: it did not hold within {} ({} samples, {} failed, the last {last}); it {} (query: {})",
                    humantime::format_duration(request.timeout),
                    tally.values.len(),
                    tally.failures,
                    request.condition(),
                    request.query
                ));
            }
        };
        let verdict = match passed {
            Passed::Held => "pass",
            Passed::ByOperator => "pass (judged by the operator)",
        };
        Ok(Applied::outputs(Outputs::from([
            ("value".to_string(), Self::shown(&last)),
            ("verdict".to_string(), verdict.to_string()),
            ("samples".to_string(), tally.values.len().to_string()),
        ])))
    }

    fn verify(&self, _cx: &Context, _applied: &Applied) -> Result<()> {
        Ok(())
    }

    fn holds(&self, _cx: &Context, _done: Done) -> Result<Held> {
        Ok(Held::Unchecked("a gate's verdict is of its time: it is not judged again".into()))
    }

    /// `passed at 0.41 after 21 samples`.
    fn outcome(&self, outputs: &Outputs) -> String {
        let get = |key: &str| outputs.get(key).map(String::as_str).unwrap_or("?");
        let by = if get("verdict") == "pass" { "" } else { ", judged by the operator" };
        format!("passed at {} after {} samples{by}", get("value"), get("samples"))
    }

    fn question(&self) -> &'static str {
        "Start the gate?"
    }
}

/// `3m 10s`: a duration to the second.
fn whole_seconds(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// The last samples as bars, lowest to highest of those shown; no data is a space.
fn sparkline(values: &[Option<f64>]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let shown = &values[values.len().saturating_sub(SPARK_WIDTH)..];
    let known = shown.iter().flatten();
    let (low, high) = known.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    shown
        .iter()
        .map(|value| match value {
            None => ' ',
            Some(_) if high <= low => BARS[3],
            Some(v) => BARS[(((v - low) / (high - low)) * 7.0).round() as usize],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::sparkline;

    #[test]
    fn the_sparkline_spans_the_samples_shown_and_leaves_gaps_for_no_data() {
        assert_eq!(sparkline(&[Some(0.0), Some(7.0), None, Some(3.5)]), "▁█ ▅");
        assert_eq!(sparkline(&[Some(2.0), Some(2.0)]), "▄▄");
        assert_eq!(sparkline(&[None]), " ");
        assert_eq!(sparkline(&vec![Some(1.0); 40]).chars().count(), 30);
    }
}
