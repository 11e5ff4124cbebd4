//! Datadog's metrics query API, v2 (`POST /api/v2/query/timeseries`, the version Datadog
//! recommends): the last non-null point of the one series over the window is the value.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use reqwest::Method;
use serde::Deserialize;

use super::{MetricSource, Reading, too_many};
use crate::config::{DatadogConfig, HttpSettings};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client};
use crate::untrusted::printable;

pub struct Datadog {
    client: Client,
    /// The application key, sent as `DD-APPLICATION-KEY` beside the API key.
    app_key: String,
    /// The variables the two keys came from, for a refusal's message.
    key_envs: String,
}

#[derive(Debug, Deserialize)]
struct Answer {
    data: AnswerData,
}

#[derive(Debug, Deserialize)]
struct AnswerData {
    attributes: Attributes,
}

#[derive(Debug, Default, Deserialize)]
struct Attributes {
    #[serde(default)]
    values: Vec<Vec<Option<f64>>>,
    #[serde(default)]
    series: Vec<SeriesInfo>,
}

#[derive(Debug, Default, Deserialize)]
struct SeriesInfo {
    #[serde(default)]
    group_tags: Vec<String>,
}

impl Datadog {
    pub fn new(config: &DatadogConfig, http: &HttpSettings) -> Result<Datadog> {
        let auth = Auth::from_env(&config.api_key_env, "DD-API-KEY", "{token}", "Datadog API key")?;
        let app_key = crate::redact::secret_from_env(&config.app_key_env).ok_or_else(|| {
            anyhow!(
                "{} is not set: export it with the Datadog application key (rollout.yaml names it in app_key_env)",
                config.app_key_env
            )
        })?;
        let client = Client::new("Datadog", &config.url, http, config.allow_insecure_http, Some(auth))?;
        let key_envs = format!("{} and {}", config.api_key_env, config.app_key_env);
        Ok(Datadog { client, app_key, key_envs })
    }
}

impl MetricSource for Datadog {
    fn describe(&self) -> String {
        format!("datadog {}", self.client.base())
    }

    fn read(&self, query: &str, window: Duration) -> Result<Reading> {
        let to = jiff::Timestamp::now().as_millisecond();
        let from = to - window.as_millis() as i64;
        let body = serde_json::json!({
            "data": {
                "type": "timeseries_request",
                "attributes": {
                    "from": from,
                    "to": to,
                    "queries": [{ "data_source": "metrics", "query": query, "name": "a" }],
                    "formulas": [{ "formula": "a" }],
                }
            }
        });
        let headers = [("DD-APPLICATION-KEY", self.app_key.as_str())];
        let response =
            self.client.send(Method::POST, "/api/v2/query/timeseries", &[], Some(&Body::Json(body)), &headers)?;
        if response.status.is_client_error() && response.status.as_u16() != 429 {
            let said = response.service_message().unwrap_or_else(|| response.status.to_string());
            if matches!(response.status.as_u16(), 401 | 403) {
                return Err(Precondition(format!(
                    "Datadog answered {} {} with {}: {said}; check {}: the keys they hold were refused",
                    response.method, response.url, response.status, self.key_envs
                ))
                .into());
            }
            bail!("Datadog refused the query `{}` ({}): {said}", printable(query), response.status.as_u16());
        }
        let answer: Answer = response.ok()?.json()?;
        one_value(query, answer.data.attributes)
    }

    fn rate_limit_pause(&self) -> Option<Duration> {
        self.client.rate_limit_pause()
    }
}

/// The value of the one series: its last non-null point; no series or only nulls are no data.
fn one_value(query: &str, Attributes { values, series }: Attributes) -> Result<Reading> {
    match values.as_slice() {
        [] => Ok(Reading::NoData("the query returned no series".into())),
        [points] => Ok(points
            .iter()
            .rev()
            .find_map(|p| *p)
            .map(Reading::of)
            .unwrap_or_else(|| Reading::NoData("only null points in the window".into()))),
        many => bail!(
            "the query `{}` returned {}: a gate judges one value, so aggregate them (drop the `by {{…}}`)",
            printable(query),
            too_many(
                many.len(),
                series.iter().map(|s| printable(&format!("{{{}}}", s.group_tags.join(","))).into_owned())
            )
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Reading> {
        one_value("q", serde_json::from_str::<Answer>(text).unwrap().data.attributes)
    }

    #[test]
    fn null_points_are_skipped_and_all_null_is_no_data() {
        let last = read(
            r#"{"data":{"type":"timeseries_response","attributes":{"times":[1,2,3],"values":[[1.5,2.5,null]],"series":[{"group_tags":[]}]}}}"#,
        );
        assert_eq!(last.unwrap(), Reading::Value(2.5));
        let nulls = read(r#"{"data":{"attributes":{"times":[1],"values":[[null]],"series":[{}]}}}"#);
        assert_eq!(nulls.unwrap(), Reading::NoData("only null points in the window".into()));
        let none = read(r#"{"data":{"attributes":{"times":[],"values":[],"series":[]}}}"#);
        assert_eq!(none.unwrap(), Reading::NoData("the query returned no series".into()));
        let two = read(
            r#"{"data":{"attributes":{"values":[[1.0],[2.0]],"series":[{"group_tags":["code:500"]},{"group_tags":["code:502"]}]}}}"#,
        );
        assert!(format!("{:#}", two.unwrap_err()).contains("2 series ({code:500}, {code:502})"));
    }
}
