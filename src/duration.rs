//! Durations as runbooks and the config write them (`90s`, `45m`, `1h 30m`), each kind with
//! its range, refused at the value itself so that no wait can overflow a clock.

use std::fmt;
use std::time::Duration;

use serde::Deserializer;

use crate::echo;

/// What a duration is for, and the shortest and longest it may be.
#[derive(Debug)]
pub struct Range {
    pub what: &'static str,
    pub min: Duration,
    pub max: Duration,
}

const SECOND: Duration = Duration::from_secs(1);

/// A step's `timeout` (and a ci step's): how long it may wait.
pub static STEP_TIMEOUT: Range = Range { what: "a step's timeout", min: SECOND, max: Duration::from_secs(7 * 86_400) };
/// A gate's `interval` between samples.
pub static GATE_INTERVAL: Range = Range { what: "a gate's interval", min: SECOND, max: Duration::from_secs(86_400) };
/// A gate's `for`, `window` and `initial_delay`.
pub static GATE_SPAN: Range =
    Range { what: "a gate's span", min: Duration::ZERO, max: Duration::from_secs(7 * 86_400) };
/// `http.timeout` and `http.connect_timeout`.
pub static HTTP_TIMEOUT: Range = Range { what: "an HTTP timeout", min: SECOND, max: Duration::from_secs(600) };
/// `http.max_wait`: 0 never waits to try again.
pub static HTTP_MAX_WAIT: Range = Range { what: "http.max_wait", min: Duration::ZERO, max: Duration::from_secs(600) };

/// `state.patience`: how long a run waits for an unreachable shared backend before a step.
pub static STATE_PATIENCE: Range = Range { what: "state.patience", min: SECOND, max: Duration::from_secs(3600) };

impl Range {
    /// The duration `text` says, if it is one and within the range.
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let duration = humantime::parse_duration(text).map_err(|e| {
            let why = echo::clip_quoted(&e.to_string()).into_owned();
            format!("`{}` is not a duration ({why}): write it like 90s, 10m or 1h 30m", echo::clip(text))
        })?;
        if duration < self.min || duration > self.max {
            return Err(format!(
                "`{}` is out of range: {} is from {} to {}",
                echo::clip(text),
                self.what,
                humantime::format_duration(self.min),
                humantime::format_duration(self.max)
            ));
        }
        Ok(duration)
    }

    /// Read a duration from YAML; an error carries the location of the value.
    pub fn deserialize<'de, D: Deserializer<'de>>(&'static self, deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_str(Visitor(self))
    }
}

/// Parses inside the visitor, so that the YAML reader marks an error with the scalar's location.
struct Visitor(&'static Range);

impl serde::de::Visitor<'_> for Visitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration like 90s, 10m or 1h 30m")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
        self.0.parse(text).map_err(E::custom)
    }
}

/// `deserialize_with` for an optional step timeout.
pub fn step_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    STEP_TIMEOUT.deserialize(deserializer).map(Some)
}

/// `deserialize_with` for a gate's `interval`.
pub fn gate_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    GATE_INTERVAL.deserialize(deserializer).map(Some)
}

/// `deserialize_with` for a gate's `for`, `window` and `initial_delay`.
pub fn gate_span<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    GATE_SPAN.deserialize(deserializer).map(Some)
}

/// `deserialize_with` for `http.timeout` and `http.connect_timeout`.
pub fn http_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    HTTP_TIMEOUT.deserialize(deserializer)
}

/// `deserialize_with` for `state.patience`.
pub fn state_patience<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    STATE_PATIENCE.deserialize(deserializer).map(Some)
}

/// `deserialize_with` for `http.max_wait`.
pub fn http_max_wait<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    HTTP_MAX_WAIT.deserialize(deserializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_outside_their_range_are_refused_with_the_range() {
        assert_eq!(STEP_TIMEOUT.parse("45m"), Ok(Duration::from_secs(45 * 60)));
        assert_eq!(STEP_TIMEOUT.parse("7days"), Ok(STEP_TIMEOUT.max));
        assert_eq!(
            STEP_TIMEOUT.parse("500000000000y").unwrap_err(),
            "`500000000000y` is out of range: a step's timeout is from 1s to 7days"
        );
        assert!(STEP_TIMEOUT.parse("0").unwrap_err().contains("out of range"));
        assert!(HTTP_TIMEOUT.parse("0s").unwrap_err().contains("an HTTP timeout is from 1s to 10m"));
        assert!(HTTP_TIMEOUT.parse("11m").is_err());
        assert_eq!(HTTP_MAX_WAIT.parse("0s"), Ok(Duration::ZERO));
        assert!(STEP_TIMEOUT.parse("10x").unwrap_err().contains("is not a duration"));
        assert!(STEP_TIMEOUT.parse(&"9".repeat(5000)).unwrap_err().len() < 300);
        let unit = STEP_TIMEOUT.parse(&format!("1{}", "x".repeat(5000))).unwrap_err();
        assert!(unit.len() < 600, "{unit}");
    }
}
