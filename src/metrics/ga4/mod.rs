//! Google Analytics 4 through its Data API: gates read `runRealtimeReport` (the last 30
//! minutes); the timeline reads `runReport`. Each call watches the property's quota.

pub mod query;
mod token;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{MetricSource, Reading};
use crate::config::{Ga4Config, HttpSettings};
use crate::error::Precondition;
use crate::http::{Body, Client};
use crate::untrusted::printable;
use query::Query;
use token::Tokens;

/// The most minutes a realtime report of a standard property covers.
pub const REALTIME_MINUTES: u64 = 30;
/// A quota with less than this share left is warned about.
const QUOTA_WARNING: f64 = 0.10;
/// The Data API's quotas a warning watches, with their limits for standard and 360 properties.
const QUOTA_LIMITS: &[(&str, f64, f64)] = &[
    ("tokensPerDay", 200_000.0, 2_000_000.0),
    ("tokensPerHour", 40_000.0, 400_000.0),
    ("tokensPerProjectPerHour", 14_000.0, 140_000.0),
];

pub struct Ga4 {
    client: Client,
    property: String,
    tokens: Tokens,
    credentials_env: String,
    /// Quotas already warned about, so that a gate says it once; and the warnings not yet told.
    warned: Mutex<(BTreeSet<String>, Vec<String>)>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    #[serde(default)]
    rows: Vec<Row>,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    property_quota: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    #[serde(default)]
    metric_values: Vec<Cell>,
}

#[derive(Debug, Deserialize)]
struct Cell {
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    subject_to_thresholding: bool,
}

/// A standard report's figure, for the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub reading: Reading,
    /// GA4 withheld rows with few users: the figure may be low.
    pub thresholded: bool,
}

impl Ga4 {
    pub fn new(config: &Ga4Config, http: &HttpSettings) -> Result<Ga4> {
        let tokens = Tokens::from_env(&config.credentials_env, http, config.allow_insecure_http)?;
        let client = Client::new("GA4", &config.url, http, config.allow_insecure_http, None)?;
        Ok(Ga4 {
            client,
            property: config.property.clone(),
            tokens,
            credentials_env: config.credentials_env.clone(),
            warned: Mutex::default(),
        })
    }

    /// `query`'s value over whole days (`YYYY-MM-DD`, inclusive), from a standard report.
    pub fn report(&self, query: &str, first_day: &str, last_day: &str) -> Result<Figure> {
        let parsed = Query::parse(query).map_err(|why| anyhow!("the GA4 query `{}`: {why}", printable(query)))?;
        let mut body = parsed.request();
        body.insert("dateRanges".into(), json!([{ "startDate": first_day, "endDate": last_day }]));
        let report = self.call("runReport", query, body)?;
        let thresholded = report.metadata.subject_to_thresholding;
        Ok(Figure { reading: value(&parsed, &report)?, thresholded })
    }

    /// One Data API call, with a new token once when the one held is refused (it expired).
    fn call(&self, method: &str, query: &str, mut body: serde_json::Map<String, Value>) -> Result<Report> {
        body.insert("returnPropertyQuota".into(), Value::Bool(true));
        let path = format!("/v1beta/properties/{}:{method}", self.property);
        let body = Body::Json(Value::Object(body));
        let mut token = self.tokens.bearer()?;
        let mut renewed = false;
        loop {
            let authorization = format!("Bearer {token}");
            let response =
                self.client.send(Method::POST, &path, &[], Some(&body), &[("Authorization", &authorization)])?;
            let status = response.status.as_u16();
            if status == 401 && !renewed {
                token = self.tokens.renew()?;
                renewed = true;
                continue;
            }
            if matches!(status, 401 | 403) {
                let said = response.service_message().unwrap_or_else(|| response.status.to_string());
                return Err(Precondition(format!(
                    "GA4 answered {} {} with {}: {said}; check that {} (the key file in {}) is a user of property {}",
                    response.method,
                    response.url,
                    response.status,
                    self.tokens.email(),
                    self.credentials_env,
                    self.property
                ))
                .into());
            }
            if response.status.is_client_error() && status != 429 {
                let said = response.service_message().unwrap_or_else(|| response.status.to_string());
                bail!("GA4 refused the {method} for `{}` ({status}): {said}", printable(query));
            }
            let report: Report = response.ok()?.json()?;
            if let Some(quota) = &report.property_quota {
                self.watch(quota);
            }
            return Ok(report);
        }
    }

    /// Warn once per quota when less than a tenth of it is left: `remaining` is what is left
    /// after the call, measured against the property's limit (standard, or 360 when over it).
    fn watch(&self, quota: &serde_json::Map<String, Value>) {
        let mut warned = self.warned.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut low = Vec::new();
        for (name, standard, analytics_360) in QUOTA_LIMITS {
            let Some(remaining) = quota.get(*name).and_then(|s| s.get("remaining")).and_then(Value::as_f64) else {
                continue;
            };
            let limit = if remaining > *standard { *analytics_360 } else { *standard };
            if remaining / limit >= QUOTA_WARNING || !warned.0.insert(name.to_string()) {
                continue;
            }
            low.push(format!("{remaining} of {limit} {} left ({:.0}%)", quota_name(name), remaining / limit * 100.0));
        }
        if !low.is_empty() {
            let warning = format!(
                "GA4 property {}: {}: lengthen the gates' interval, or GA4 will refuse this property's reports",
                self.property,
                low.join(", ")
            );
            warned.1.push(warning);
        }
    }
}

impl MetricSource for Ga4 {
    fn describe(&self) -> String {
        format!("ga4 property {}", self.property)
    }

    fn read(&self, query: &str, window: Duration) -> Result<Reading> {
        let parsed = Query::parse(query).map_err(|why| anyhow!("the GA4 query `{}`: {why}", printable(query)))?;
        if let Some(why) = parsed.realtime_problem() {
            bail!("the GA4 query `{}`: {why}", printable(query));
        }
        let minutes = window.as_secs().div_ceil(60).max(1);
        if minutes > REALTIME_MINUTES {
            bail!("a GA4 gate's window is at most {REALTIME_MINUTES}m (its realtime reports cover no more)");
        }
        let mut body = parsed.request();
        body.insert("minuteRanges".into(), json!([{ "startMinutesAgo": minutes - 1, "endMinutesAgo": 0 }]));
        value(&parsed, &self.call("runRealtimeReport", query, body)?)
    }

    fn warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.warned.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).1)
    }
}

/// The report's one value: no rows is no data (GA4 omits them when nothing matched), never 0.
fn value(query: &Query, report: &Report) -> Result<Reading> {
    let row = match report.rows.as_slice() {
        [] => return Ok(Reading::NoData("the report has no rows".into())),
        [row] => row,
        rows => {
            bail!("the report has {} rows where one was expected: a gate's query asks for no dimensions", rows.len())
        }
    };
    let number = |i: usize, name: &str| -> Result<f64> {
        let text = row.metric_values.get(i).and_then(|c| c.value.as_deref());
        text.and_then(|t| t.trim().parse::<f64>().ok())
            .ok_or_else(|| anyhow!("GA4 gave `{}` for {name}, not a number", printable(text.unwrap_or("nothing"))))
    };
    let metric = number(0, &query.metric)?;
    match &query.per {
        None => Ok(Reading::of(metric)),
        Some(per) => match number(1, per)? {
            0.0 => Ok(Reading::NoData(format!("{per} is 0, so the ratio has no value"))),
            divisor => Ok(Reading::of(metric / divisor)),
        },
    }
}

/// `tokensPerHour` as `tokens per hour`.
fn quota_name(name: &str) -> String {
    let mut words = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            words.push(' ');
            words.push(c.to_ascii_lowercase());
        } else {
            words.push(c);
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(text: &str) -> Report {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn values_are_strings_no_rows_is_no_data_and_a_zero_divisor_has_no_ratio() {
        let one = Query::parse("activeUsers").unwrap();
        let rows = r#"{"rows":[{"dimensionValues":[],"metricValues":[{"value":"42"}]}],"rowCount":1}"#;
        assert_eq!(value(&one, &report(rows)).unwrap(), Reading::Value(42.0));
        assert_eq!(
            value(&one, &report(r#"{"rowCount":0}"#)).unwrap(),
            Reading::NoData("the report has no rows".into())
        );
        let ratio = Query::parse("eventCount / activeUsers").unwrap();
        let zero = r#"{"rows":[{"metricValues":[{"value":"7"},{"value":"0"}]}]}"#;
        assert_eq!(
            value(&ratio, &report(zero)).unwrap(),
            Reading::NoData("activeUsers is 0, so the ratio has no value".into())
        );
        let half = r#"{"rows":[{"metricValues":[{"value":"7"},{"value":"14"}]}]}"#;
        assert_eq!(value(&ratio, &report(half)).unwrap(), Reading::Value(0.5));
        let garbage = r#"{"rows":[{"metricValues":[{"value":"n/a"}]}]}"#;
        assert!(format!("{:#}", value(&one, &report(garbage)).unwrap_err()).contains("`n/a` for activeUsers"));
    }

    #[test]
    fn quota_names_read_as_words() {
        assert_eq!(quota_name("tokensPerProjectPerHour"), "tokens per project per hour");
    }
}
