//! The `gate` step kind: a metric judged against thresholds, sample by sample, until it has
//! held long enough (pass), broke its limit (fail), or met neither condition (inconclusive).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Kind, Service};
use crate::duration;
use crate::runbook::resolve::{Renderer, Unresolved};
use crate::runbook::validate::{Checker, LiteralCheck};
use crate::runbook::{Severity, StepCommon, Text};

/// The pause between samples when the gate does not say.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// The range a query covers when the gate does not say (Datadog's `from`, `$window`).
const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// A name under `metrics:` in rollout.yaml.
    pub source: String,
    pub query: Text,
    /// The success condition: the value stays below, above, or (both) between.
    #[serde(default)]
    pub below: Option<Text>,
    #[serde(default)]
    pub above: Option<Text>,
    /// The failure condition; without one, a value that does not pass is a failed sample.
    #[serde(default)]
    pub fail_above: Option<Text>,
    #[serde(default)]
    pub fail_below: Option<Text>,
    #[serde(default, deserialize_with = "duration::gate_span")]
    pub window: Option<Duration>,
    #[serde(default, deserialize_with = "duration::gate_interval")]
    pub interval: Option<Duration>,
    /// How many passing samples in a row pass the gate.
    #[serde(default)]
    pub count: Option<u32>,
    /// How long the value must keep passing.
    #[serde(rename = "for", default, deserialize_with = "duration::gate_span")]
    pub hold: Option<Duration>,
    #[serde(default, deserialize_with = "duration::gate_span")]
    pub initial_delay: Option<Duration>,
    #[serde(default)]
    pub failure_limit: u32,
    #[serde(default, deserialize_with = "duration::step_timeout")]
    pub timeout: Option<Duration>,
    pub no_data: NoData,
    /// The severity whose runbook a failed gate suggests running.
    #[serde(default)]
    pub incident: Option<Severity>,
    /// In an incident runbook, a gate before the mitigation holds the rollback up: only when this says so.
    #[serde(default)]
    pub holds_rollback: bool,
    /// A GA4 gate: the standard-report query whose figure over the run's days the timeline
    /// shows (standard reports lag hours, so no gate can wait on one); default: `query`.
    #[serde(default)]
    pub report: Option<Text>,
}

/// What a sample without data counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoData {
    Fail,
    Pass,
    Ask,
}

/// Where a value must lie: below `below`, above `above`, or between both (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bounds {
    pub below: Option<f64>,
    pub above: Option<f64>,
}

impl Bounds {
    fn holds(&self, value: f64) -> bool {
        self.below.is_none_or(|b| value < b) && self.above.is_none_or(|a| value > a)
    }

    /// `below 0.8`, `above 5`, `between 0.1 and 0.8`.
    pub fn shown(&self) -> String {
        match (self.above, self.below) {
            (Some(low), Some(high)) => format!("between {} and {}", figure(low), figure(high)),
            (None, Some(high)) => format!("below {}", figure(high)),
            (Some(low), None) => format!("above {}", figure(low)),
            (None, None) => "anything".into(),
        }
    }
}

/// A threshold or value as people write it: `5`, `0.8`, `1234.57`.
pub fn figure(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Where a value fails at once: above `above`, or below `below`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    pub above: Option<f64>,
    pub below: Option<f64>,
}

impl Limits {
    fn crossed(&self, value: f64) -> bool {
        self.above.is_some_and(|a| value > a) || self.below.is_some_and(|b| value < b)
    }
}

/// What ends the wait once the value passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// So many passing samples in a row.
    Count(u32),
    /// Passing samples spanning so long.
    For(Duration),
}

/// One sample as the gate judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judged {
    Pass,
    Fail,
    Inconclusive,
    NoData,
}

impl Judged {
    pub fn as_str(self) -> &'static str {
        match self {
            Judged::Pass => "pass",
            Judged::Fail => "fail",
            Judged::Inconclusive => "inconclusive",
            Judged::NoData => "no_data",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GateRequest {
    pub source: String,
    /// The query with `$window` replaced by the window.
    pub query: String,
    pub pass: Bounds,
    /// Where a value fails at once; None: whatever does not pass fails.
    pub fail: Option<Limits>,
    pub window: Duration,
    pub interval: Duration,
    pub hold: Hold,
    pub initial_delay: Duration,
    pub failure_limit: u32,
    pub timeout: Duration,
    pub no_data: NoData,
    pub incident: Option<Severity>,
    pub report: Option<String>,
}

impl GateRequest {
    /// How a value counts; None is no data.
    pub fn judge(&self, value: Option<f64>) -> Judged {
        let Some(value) = value else { return Judged::NoData };
        if self.pass.holds(value) {
            Judged::Pass
        } else if self.fail.is_none_or(|fail| fail.crossed(value)) {
            Judged::Fail
        } else {
            Judged::Inconclusive
        }
    }

    /// `must stay below 0.8 for 10m`, `must be below 5 for 3 samples in a row`.
    pub fn condition(&self) -> String {
        let hold = match self.hold {
            Hold::For(span) => format!("for {}", humantime::format_duration(span)),
            Hold::Count(1) => "at 1 sample".to_string(),
            Hold::Count(n) => format!("for {n} samples in a row"),
        };
        format!("must stay {} {hold}", self.pass.shown())
    }

    /// `fails above 20; between is inconclusive`, or `fails otherwise`, with the failure limit.
    pub fn failure(&self) -> String {
        let at = match self.fail {
            Some(fail) => {
                let fails = match (fail.above, fail.below) {
                    (Some(a), Some(b)) => format!("fails above {} or below {}", figure(a), figure(b)),
                    (Some(a), None) => format!("fails above {}", figure(a)),
                    (None, Some(b)) => format!("fails below {}", figure(b)),
                    (None, None) => "fails otherwise".into(),
                };
                format!("{fails}; in between is inconclusive")
            }
            None => "fails otherwise".to_string(),
        };
        let tolerated = match self.failure_limit {
            0 => String::new(),
            n => format!(" ({n} failed sample{} tolerated)", if n == 1 { "" } else { "s" }),
        };
        format!("{at}{tolerated}")
    }
}

fn threshold(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("`{}` is not a number: write a threshold like 5 or 0.8", crate::echo::clip(text))),
    }
}

impl Kind for GateSpec {
    const NAME: &'static str = "gate";
    const SUMMARY: &'static str =
        "sample a metric (Prometheus, Datadog) until it held below/above its threshold for a span or count, or failed";
    const OUTPUTS: &'static [&'static str] = &["value", "verdict", "samples"];
    const SERVICE: Option<Service> = Some(Service::Metrics);
    type Request = GateRequest;

    fn check(&self, c: &mut Checker, i: usize, p: &str) {
        let not_empty: &LiteralCheck = &|v| if v.trim().is_empty() { Err("empty query".into()) } else { Ok(()) };
        c.text(i, &format!("{p}.query"), &self.query, Some(not_empty));
        if let Some(report) = &self.report {
            c.text(i, &format!("{p}.report"), report, Some(not_empty));
        }
        let number: &LiteralCheck = &|v| threshold(v).map(drop);
        for (field, text) in [
            ("below", &self.below),
            ("above", &self.above),
            ("fail_above", &self.fail_above),
            ("fail_below", &self.fail_below),
        ] {
            if let Some(text) = text {
                c.text(i, &format!("{p}.{field}"), text, Some(number));
            }
        }
        if self.below.is_none() && self.above.is_none() {
            c.at_key(p, "a gate needs a success condition: `below`, `above`, or both for a range".into());
        }
        match (self.count, self.hold) {
            (None, None) => {
                c.at_key(p, "a gate needs `for` (how long the value must hold) or `count` (samples)".into())
            }
            (Some(_), Some(_)) => c.at_key(p, "a gate takes `for` or `count`, not both".into()),
            (Some(0), None) => c.at_key(&format!("{p}.count"), "at least 1 sample".into()),
            _ => {}
        }
        if self.below.is_some() && self.above.is_none() && self.fail_below.is_some() {
            c.at_key(&format!("{p}.fail_below"), "with `below`, the failure threshold is `fail_above`".into());
        }
        if self.above.is_some() && self.below.is_none() && self.fail_above.is_some() {
            c.at_key(&format!("{p}.fail_above"), "with `above`, the failure threshold is `fail_below`".into());
        }
        if c.severity().is_some()
            && !self.holds_rollback
            && let Some(later) = c.mitigation_after(i)
        {
            c.at_key(
                p,
                format!(
                    "this gate comes before `{later}`, which reduces exposure: a rollback is never held up by a gate, so move the gate after it, or say `holds_rollback: true`"
                ),
            );
        }
    }

    /// The gate's `timeout`, else the step's, else the initial delay and the hold with half
    /// the hold (at least two intervals) to spare.
    fn resolve(&self, r: &Renderer, common: &StepCommon) -> Result<GateRequest, Unresolved> {
        let number = |field: &str, text: &Option<Text>| text.as_ref().map(|t| r.typed(field, t, threshold)).transpose();
        let pass = Bounds { below: number("below", &self.below)?, above: number("above", &self.above)? };
        let fail = match (number("fail_above", &self.fail_above)?, number("fail_below", &self.fail_below)?) {
            (None, None) => None,
            (above, below) => Some(Limits { above, below }),
        };
        // A value may not both pass and fail: fail_above is at or over `below`, fail_below at or under `above`.
        let clash = fail.is_some_and(|fail| {
            fail.above.is_some_and(|a| pass.below.is_none_or(|b| a < b))
                || fail.below.is_some_and(|b| pass.above.is_none_or(|a| b > a))
        });
        if clash {
            let why = format!("the failure thresholds overlap the success condition ({})", pass.shown());
            return Err(r.invalid(&r.path, why));
        }
        let interval = self.interval.unwrap_or(DEFAULT_INTERVAL);
        let hold = match (self.count, self.hold) {
            (Some(n), _) => Hold::Count(n.max(1)),
            (None, Some(span)) => Hold::For(span),
            (None, None) => Hold::Count(1),
        };
        let span = match hold {
            Hold::Count(n) => interval * n.saturating_sub(1),
            Hold::For(span) => span,
        };
        let initial_delay = self.initial_delay.unwrap_or_default();
        let window = self.window.unwrap_or(DEFAULT_WINDOW);
        let query = r.text("query", &self.query)?.replace("$window", &format!("{}s", window.as_secs().max(1)));
        let report = self.report.as_ref().map(|report| r.text("report", report)).transpose()?;
        Ok(GateRequest {
            source: self.source.clone(),
            query,
            pass,
            fail,
            window,
            interval,
            hold,
            initial_delay,
            failure_limit: self.failure_limit,
            timeout: self
                .timeout
                .or(common.timeout)
                .unwrap_or_else(|| initial_delay + span + (span / 2).max(interval * 2)),
            no_data: self.no_data,
            incident: self.incident,
            report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(pass: Bounds, fail: Option<Limits>) -> GateRequest {
        GateRequest {
            source: "errors".into(),
            query: "q".into(),
            pass,
            fail,
            window: DEFAULT_WINDOW,
            interval: DEFAULT_INTERVAL,
            hold: Hold::Count(3),
            initial_delay: Duration::ZERO,
            failure_limit: 0,
            timeout: Duration::from_secs(60),
            no_data: NoData::Fail,
            incident: None,
            report: None,
        }
    }

    #[test]
    fn a_value_between_the_conditions_is_inconclusive_and_no_data_is_never_zero() {
        let g = gate(Bounds { below: Some(5.0), above: None }, Some(Limits { above: Some(20.0), below: None }));
        assert_eq!(g.judge(Some(4.9)), Judged::Pass);
        assert_eq!(g.judge(Some(5.0)), Judged::Inconclusive);
        assert_eq!(g.judge(Some(20.0)), Judged::Inconclusive);
        assert_eq!(g.judge(Some(20.5)), Judged::Fail);
        assert_eq!(g.judge(None), Judged::NoData);
        let plain = gate(Bounds { below: Some(5.0), above: None }, None);
        assert_eq!(plain.judge(Some(5.0)), Judged::Fail);
        assert_eq!(plain.judge(Some(0.0)), Judged::Pass);
        let range = gate(Bounds { below: Some(0.8), above: Some(0.1) }, None);
        assert_eq!(range.judge(Some(0.05)), Judged::Fail);
        assert_eq!(range.judge(Some(0.5)), Judged::Pass);
        assert_eq!(range.condition(), "must stay between 0.1 and 0.8 for 3 samples in a row");
        let outside =
            gate(Bounds { below: Some(0.8), above: Some(0.1) }, Some(Limits { above: Some(2.0), below: Some(0.0) }));
        assert_eq!(outside.judge(Some(1.0)), Judged::Inconclusive);
        assert_eq!(outside.judge(Some(2.5)), Judged::Fail);
        assert_eq!(outside.judge(Some(-1.0)), Judged::Fail);
        assert_eq!(outside.failure(), "fails above 2 or below 0; in between is inconclusive");
    }

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(figure(5.0), "5");
        assert_eq!(figure(0.8), "0.8");
        assert_eq!(figure(0.41234), "0.4123");
        assert_eq!(figure(-2.5), "-2.5");
    }
}
