//! The event stream of a run: one JSON object per line with `event`, `run_id` and `ts`,
//! written to the journal and, with `--json`, to stdout. Its schema is schema/events.schema.json.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::flags::Reach;
use crate::runbook::inputs::Inputs;
use crate::runbook::resolve::Outputs;

/// Who answered a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum By {
    Operator,
    YesFlag,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Aborted,
    Interrupted,
    PreflightFailed,
    /// Another run held the runbook's lock: this one changed nothing.
    LockRefused,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
            RunStatus::Interrupted => "interrupted",
            RunStatus::PreflightFailed => "preflight_failed",
            RunStatus::LockRefused => "lock_refused",
        }
    }
}

/// One event; `index` counts steps from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        runbook: String,
        severity: Option<String>,
        dry_run: bool,
        inputs: Inputs,
    },
    StepStarted {
        step: String,
        index: usize,
        total: usize,
        kind: String,
    },
    StepPreview {
        step: String,
        before: serde_json::Value,
        after: serde_json::Value,
        /// A flag step's change: fewer users get the feature, more, the same, or unknown.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reach: Option<Reach>,
    },
    StepConfirmed {
        step: String,
        by: By,
    },
    StepSkipped {
        step: String,
        by: By,
    },
    /// A pipeline run was started: journaled at once, so a run is never triggered twice.
    StepTriggered {
        step: String,
        pipeline_run: String,
        url: String,
    },
    StepSucceeded {
        step: String,
        outputs: Outputs,
        duration_ms: u64,
    },
    StepFailed {
        step: String,
        error: String,
    },
    RunFinished {
        status: RunStatus,
        exit_code: i32,
    },
}

/// An event stamped with its run and time, as one JSON line: `event` first, then `run_id`, `ts`.
/// Its values are scrubbed of secrets before they are encoded (see `redact::scrub_json`).
pub fn to_line(run_id: &str, event: &Event) -> String {
    let mut body = serde_json::to_value(event).unwrap_or_default();
    crate::redact::scrub_json(&mut body);
    let mut line: IndexMap<String, serde_json::Value> = IndexMap::new();
    if let serde_json::Value::Object(fields) = body {
        let mut fields = fields.into_iter();
        if let Some((key, value)) = fields.next() {
            line.insert(key, value);
        }
        line.insert("run_id".into(), run_id.into());
        line.insert("ts".into(), jiff::Timestamp::now().to_string().into());
        line.extend(fields);
    }
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_start_with_event_run_id_and_ts() {
        let line = to_line("r1", &Event::StepConfirmed { step: "disable".into(), by: By::YesFlag });
        assert!(line.starts_with(r#"{"event":"step_confirmed","run_id":"r1","ts":""#), "{line}");
        assert!(line.ends_with(r#","step":"disable","by":"yes-flag"}"#), "{line}");
    }
}
