//! Prometheus's HTTP API: an instant query (`POST /api/v1/query`) whose answer must be one
//! number; values arrive as strings, `"NaN"` and `"+Inf"` among them.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use reqwest::Method;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{MetricSource, Reading, too_many};
use crate::config::{HttpSettings, PrometheusConfig};
use crate::http::{Auth, Body, Client};
use crate::untrusted::printable;

pub struct Prometheus {
    client: Client,
}

/// The envelope of every answer, success or error.
#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Scalar(Point),
    Vector(Vec<Series>),
    Matrix(IgnoredAny),
    String(IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct Series {
    #[serde(default)]
    metric: serde_json::Map<String, serde_json::Value>,
    value: Point,
}

/// `[unix seconds, "value"]`: the value only is read.
#[derive(Debug, Deserialize)]
struct Point(IgnoredAny, String);

impl Point {
    fn reading(&self) -> Result<Reading> {
        let value: f64 = match self.1.as_str() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            text => {
                text.parse().map_err(|_| anyhow!("Prometheus gave `{}`, which is not a number", printable(text)))?
            }
        };
        Ok(Reading::of(value))
    }
}

/// `{code="500",job="api"}`.
fn labels(metric: &serde_json::Map<String, serde_json::Value>) -> String {
    let pairs: Vec<String> = metric
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().map(|s| format!("\"{s}\"")).unwrap_or_default()))
        .collect();
    printable(&format!("{{{}}}", pairs.join(","))).into_owned()
}

impl Prometheus {
    pub fn new(config: &PrometheusConfig, http: &HttpSettings) -> Result<Prometheus> {
        let auth = config
            .token_env
            .as_deref()
            .map(|env| Auth::from_env(env, "authorization", "Bearer {token}", "Prometheus"))
            .transpose()?;
        Ok(Prometheus { client: Client::new("Prometheus", &config.url, http, config.allow_insecure_http, auth)? })
    }
}

impl MetricSource for Prometheus {
    fn describe(&self) -> String {
        format!("prometheus {}", self.client.base())
    }

    /// The window is in the query itself (its `[5m]` ranges): an instant query reads now.
    fn read(&self, query: &str, _window: Duration) -> Result<Reading> {
        let form = Body::Form(vec![("query".into(), query.into())]);
        let response = self.client.send(Method::POST, "/api/v1/query", &[], Some(&form), &[])?;
        let answer: Option<Answer> = serde_json::from_str(&response.text).ok();
        if let Some(Answer { status, error_type, error: Some(error), .. }) = &answer
            && status == "error"
        {
            let kind = error_type.as_deref().unwrap_or("error");
            bail!(
                "Prometheus refused the query `{}` ({} {}): {}",
                printable(query),
                response.status.as_u16(),
                printable(kind),
                printable(error)
            );
        }
        let response = response.ok()?;
        let answer = match answer {
            Some(answer) => answer,
            None => response.json()?,
        };
        let Some(data) = answer.data else {
            bail!("Prometheus answered {} {} without data", response.method, response.url);
        };
        match data {
            Data::Scalar(point) => point.reading(),
            Data::Vector(series) => match series.as_slice() {
                [] => Ok(Reading::NoData("the query returned no series".into())),
                [one] => one.value.reading(),
                many => bail!(
                    "the query `{}` returned {}: a gate judges one value, so aggregate them, e.g. sum(...)",
                    printable(query),
                    too_many(many.len(), many.iter().map(|s| labels(&s.metric)))
                ),
            },
            Data::Matrix(_) => bail!(
                "the query `{}` returned a range vector: a gate judges one value now, so wrap the range in a function such as rate() or max_over_time()",
                printable(query)
            ),
            Data::String(_) => bail!("the query `{}` returned a string, not a number", printable(query)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &str) -> Data {
        serde_json::from_str::<Answer>(text).unwrap().data.unwrap()
    }

    #[test]
    fn values_are_strings_and_nan_is_no_data() {
        let Data::Vector(series) = data(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"NaN"]}]}}"#,
        ) else {
            panic!("a vector")
        };
        assert_eq!(series[0].value.reading().unwrap(), Reading::NoData("NaN".into()));
        let Data::Scalar(point) =
            data(r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.41"]}}"#)
        else {
            panic!("a scalar")
        };
        assert_eq!(point.reading().unwrap(), Reading::Value(0.41));
        assert!(Point(IgnoredAny, "12abc".into()).reading().is_err());
    }
}
