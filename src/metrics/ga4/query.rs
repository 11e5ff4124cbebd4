//! A gate's GA4 query, `METRIC [/ METRIC] [where DIMENSION OP "VALUE" [and ...]]`, parsed into
//! the Data API's `metrics` and `dimensionFilter`, and checked against the realtime schema.

use serde_json::{Value, json};

/// The metrics GA4's realtime reports have (its "Realtime API schema").
pub const REALTIME_METRICS: &[&str] = &["activeUsers", "eventCount", "keyEvents", "screenPageViews"];
/// The dimensions realtime reports can filter on, besides `customUser:*`.
pub const REALTIME_DIMENSIONS: &[&str] = &[
    "appVersion",
    "audienceId",
    "audienceName",
    "audienceResourceName",
    "city",
    "cityId",
    "country",
    "countryId",
    "deviceCategory",
    "eventName",
    "minutesAgo",
    "platform",
    "streamId",
    "streamName",
    "unifiedScreenName",
];

/// The operators of a condition and the match each sends (`!=` is an EXACT match negated).
const OPERATORS: &[(&str, &str)] = &[
    ("==", "EXACT"),
    ("!=", "EXACT"),
    ("begins_with", "BEGINS_WITH"),
    ("ends_with", "ENDS_WITH"),
    ("contains", "CONTAINS"),
    ("=~", "FULL_REGEXP"),
];

/// One `DIMENSION OP "VALUE"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub dimension: String,
    pub operator: &'static str,
    pub value: String,
}

/// A parsed query: one metric, or the ratio of two (`userEngagementDuration / activeUsers`).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub metric: String,
    pub per: Option<String>,
    pub conditions: Vec<Condition>,
}

const SHAPE: &str = "write it as METRIC [/ METRIC] [where DIMENSION OP \"VALUE\" [and ...]], OP one of ==, !=, begins_with, ends_with, contains, =~";

impl Query {
    pub fn parse(text: &str) -> Result<Query, String> {
        let words = shlex::split(text).ok_or_else(|| format!("an unclosed quote: {SHAPE}"))?;
        let mut words = words.into_iter().flat_map(split_slash);
        let metric = metric_name(words.next())?;
        let mut query = Query { metric, per: None, conditions: Vec::new() };
        match words.next().as_deref() {
            None => return Ok(query),
            Some("/") => {
                query.per = Some(metric_name(words.next())?);
                match words.next().as_deref() {
                    None => return Ok(query),
                    Some("where") => {}
                    Some(other) => return Err(format!("`{other}` where `where` or the end was expected: {SHAPE}")),
                }
            }
            Some("where") => {}
            Some(other) => return Err(format!("`{other}` where `/`, `where` or the end was expected: {SHAPE}")),
        }
        loop {
            let dimension = match words.next() {
                Some(word) if is_name(&word) => word,
                Some(word) => return Err(format!("`{word}` is not a GA4 dimension name: {SHAPE}")),
                None => return Err(format!("a condition is missing after `where`/`and`: {SHAPE}")),
            };
            let operator = match words.next() {
                Some(word) => OPERATORS
                    .iter()
                    .map(|(op, _)| *op)
                    .find(|op| *op == word)
                    .ok_or_else(|| format!("`{word}` is not an operator: {SHAPE}"))?,
                None => return Err(format!("`{dimension}` needs an operator and a value: {SHAPE}")),
            };
            let value = words.next().ok_or_else(|| format!("`{dimension} {operator}` needs a value: {SHAPE}"))?;
            query.conditions.push(Condition { dimension, operator, value });
            match words.next().as_deref() {
                None => return Ok(query),
                Some("and") => {}
                Some(other) => return Err(format!("`{other}` where `and` or the end was expected: {SHAPE}")),
            }
        }
    }

    /// What the realtime schema lacks, named, so a gate is refused before it runs.
    pub fn realtime_problem(&self) -> Option<String> {
        let why = "GA4's realtime reports, which gates read (standard reports lag hours), do not have";
        if let Some(metric) = self.metrics().into_iter().find(|m| !REALTIME_METRICS.contains(&m.as_str())) {
            return Some(format!("{why} the metric `{metric}`: use one of {}", REALTIME_METRICS.join(", ")));
        }
        self.conditions
            .iter()
            .find(|c| !REALTIME_DIMENSIONS.contains(&c.dimension.as_str()) && !c.dimension.starts_with("customUser:"))
            .map(|c| {
                format!(
                    "{why} the dimension `{}`: use one of {} or customUser:NAME",
                    c.dimension,
                    REALTIME_DIMENSIONS.join(", ")
                )
            })
    }

    /// The metrics to ask for: the metric, and what it is divided by.
    pub fn metrics(&self) -> Vec<String> {
        std::iter::once(self.metric.clone()).chain(self.per.clone()).collect()
    }

    /// The request's `metrics` and, when there are conditions, its `dimensionFilter`.
    pub fn request(&self) -> serde_json::Map<String, Value> {
        let mut body = serde_json::Map::new();
        let metrics: Vec<Value> = self.metrics().iter().map(|name| json!({ "name": name })).collect();
        body.insert("metrics".into(), Value::Array(metrics));
        let mut filters: Vec<Value> = self.conditions.iter().map(Condition::expression).collect();
        match filters.len() {
            0 => {}
            1 => {
                body.insert("dimensionFilter".into(), filters.remove(0));
            }
            _ => {
                body.insert("dimensionFilter".into(), json!({ "andGroup": { "expressions": filters } }));
            }
        }
        body
    }
}

impl Condition {
    /// A FilterExpression.
    fn expression(&self) -> Value {
        let match_type = OPERATORS.iter().find(|(op, _)| *op == self.operator).map_or("EXACT", |(_, m)| *m);
        let filter = json!({
            "filter": {
                "fieldName": self.dimension,
                "stringFilter": { "matchType": match_type, "value": self.value, "caseSensitive": true }
            }
        });
        if self.operator == "!=" { json!({ "notExpression": filter }) } else { filter }
    }
}

fn metric_name(word: Option<String>) -> Result<String, String> {
    match word {
        Some(word) if is_name(&word) => Ok(word),
        Some(word) => Err(format!("`{word}` is not a GA4 metric name: {SHAPE}")),
        None => Err(format!("a metric is missing: {SHAPE}")),
    }
}

/// `a/b` as `a`, `/`, `b`.
fn split_slash(word: String) -> Vec<String> {
    if word == "/" || !word.contains('/') || word.starts_with('/') {
        return vec![word];
    }
    let mut parts = Vec::new();
    for (i, part) in word.split('/').enumerate() {
        if i > 0 {
            parts.push("/".to_string());
        }
        if !part.is_empty() {
            parts.push(part.to_string());
        }
    }
    parts
}

/// An API name: letters, digits, `_` and `:` (`customUser:tier`), from a letter.
fn is_name(word: &str) -> bool {
    word.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && !["where", "and"].contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_with_two_conditions_becomes_an_and_group() {
        let query = Query::parse(
            r#"eventCount/activeUsers where eventName == click and unifiedScreenName begins_with "Travel Pay""#,
        )
        .unwrap();
        assert_eq!(query.metrics(), ["eventCount", "activeUsers"]);
        let body = Value::Object(query.request());
        assert_eq!(body["metrics"], json!([{ "name": "eventCount" }, { "name": "activeUsers" }]));
        let second = &body["dimensionFilter"]["andGroup"]["expressions"][1]["filter"];
        assert_eq!(second["fieldName"], "unifiedScreenName");
        assert_eq!(
            second["stringFilter"],
            json!({ "matchType": "BEGINS_WITH", "value": "Travel Pay", "caseSensitive": true })
        );
        assert_eq!(query.realtime_problem(), None);
    }

    #[test]
    fn not_equal_is_a_negated_exact_match_and_one_condition_needs_no_group() {
        let body = Value::Object(Query::parse("activeUsers where country != 'United States'").unwrap().request());
        assert_eq!(body["dimensionFilter"]["notExpression"]["filter"]["stringFilter"]["matchType"], "EXACT");
        assert_eq!(body["dimensionFilter"]["notExpression"]["filter"]["stringFilter"]["value"], "United States");
    }

    #[test]
    fn what_realtime_reports_lack_is_named() {
        let page = Query::parse(r#"activeUsers where pagePath begins_with "/my-health/travel-pay""#).unwrap();
        assert!(page.realtime_problem().unwrap().contains("the dimension `pagePath`"));
        let views = Query::parse("screenPageViewsPerUser").unwrap();
        assert!(views.realtime_problem().unwrap().contains("the metric `screenPageViewsPerUser`"));
        assert_eq!(Query::parse("activeUsers where customUser:tier == gold").unwrap().realtime_problem(), None);
    }

    #[test]
    fn malformed_queries_say_the_shape() {
        for (text, said) in [
            ("", "a metric is missing"),
            ("activeUsers where", "a condition is missing"),
            ("activeUsers where country", "needs an operator"),
            ("activeUsers where country ~ US", "`~` is not an operator"),
            ("activeUsers where country == US or city == Boston", "`or` where `and` or the end"),
            ("activeUsers \"unclosed", "an unclosed quote"),
            ("sum(activeUsers)", "is not a GA4 metric name"),
        ] {
            let error = Query::parse(text).unwrap_err();
            assert!(error.contains(said) && error.contains("METRIC [/ METRIC]"), "{text}: {error}");
        }
    }
}
