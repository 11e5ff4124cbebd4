//! Metric sources behind one trait: run a query now and read one number, or say that there
//! is no data. One module per service; gate steps never name a vendor.

pub mod datadog;
pub mod ga4;
pub mod prometheus;

use std::time::Duration;

use anyhow::Result;

use crate::config::{HttpSettings, MetricsConfig};

/// What one query read.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Value(f64),
    /// Nothing to judge, never zero: why (`the query returned no series`, `NaN`, `+Inf`).
    NoData(String),
}

impl Reading {
    /// A number the service reported: NaN and the infinities are no data.
    pub fn of(value: f64) -> Reading {
        if value.is_nan() {
            Reading::NoData("NaN".into())
        } else if value.is_infinite() {
            Reading::NoData(if value > 0.0 { "+Inf" } else { "-Inf" }.into())
        } else {
            Reading::Value(value)
        }
    }

    pub fn value(&self) -> Option<f64> {
        match self {
            Reading::Value(value) => Some(*value),
            Reading::NoData(_) => None,
        }
    }
}

pub trait MetricSource: Send {
    /// Where it reads, for the operator: `prometheus http://127.0.0.1:9090`.
    fn describe(&self) -> String;
    /// Run `query` now, over the last `window`, and read its one value.
    fn read(&self, query: &str, window: Duration) -> Result<Reading>;
    /// The least pause before the next query that the service's rate limit asks for.
    fn rate_limit_pause(&self) -> Option<Duration> {
        None
    }
    /// What the operator should know that is not the value (a quota running low), once each.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The source a `metrics:` entry configures.
pub fn source(config: &MetricsConfig, http: &HttpSettings) -> Result<Box<dyn MetricSource>> {
    Ok(match config {
        MetricsConfig::Prometheus(config) => Box::new(prometheus::Prometheus::new(config, http)?),
        MetricsConfig::Datadog(config) => Box::new(datadog::Datadog::new(config, http)?),
        MetricsConfig::Ga4(config) => Box::new(ga4::Ga4::new(config, http)?),
    })
}

/// `3 series ({code="500"}, {code="502"}, …)`: what a query that should give one value gave.
fn too_many(count: usize, labels: impl Iterator<Item = String>) -> String {
    let shown: Vec<String> = labels.take(3).collect();
    let more = if count > shown.len() { ", …" } else { "" };
    format!("{count} series ({}{more})", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::Reading;

    #[test]
    fn nan_and_infinities_are_no_data_never_zero() {
        assert_eq!(Reading::of(f64::NAN), Reading::NoData("NaN".into()));
        assert_eq!(Reading::of(f64::INFINITY), Reading::NoData("+Inf".into()));
        assert_eq!(Reading::of(f64::NEG_INFINITY), Reading::NoData("-Inf".into()));
        assert_eq!(Reading::of(0.0), Reading::Value(0.0));
    }
}
