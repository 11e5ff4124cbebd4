//! The event stream of a run: one `Record` per line with `event`, `run_id` and `ts`, written
//! to the journal and, with `--json`, to stdout, and read back. Its schema is schema/events.schema.json.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::flags::Reach;
use crate::runbook::inputs::Inputs;
use crate::runbook::resolve::Outputs;

/// Who answered a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum By {
    Operator,
    YesFlag,
    /// Rollout decided, for the reason the event gives (a step an undo cannot take back).
    Rollout,
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

/// The name of every event this version writes (`event`).
pub const EVENTS: &[&str] = &[
    "run_started",
    "run_resumed",
    "lock_taken_over",
    "lock_broken",
    "step_started",
    "step_preview",
    "step_confirmed",
    "step_skipped",
    "step_triggered",
    "step_sampled",
    "approval_requested",
    "step_approved",
    "step_rejected",
    "approval_overridden",
    "step_succeeded",
    "step_failed",
    "run_finished",
];

/// One event; `index` counts steps from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        runbook: String,
        severity: Option<String>,
        dry_run: bool,
        inputs: Inputs,
        /// What a later run needs to take this one up again; absent in older journals.
        #[serde(flatten)]
        origin: Option<Box<Origin>>,
        /// Set for a run that is not a runbook's walk: an undo, an unlock.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purpose: Option<Purpose>,
        /// The inputs whose values held a secret, which the journal shows scrubbed: a resume
        /// must be given them again.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scrubbed_inputs: Vec<String>,
    },
    /// `rollout resume` took the run up again, in the same journal, at step `at`.
    RunResumed {
        user: String,
        host: String,
        version: String,
        at: String,
        /// `--force`: the runbook or config changed since, or a done step no longer holds.
        forced: bool,
        /// What no longer holds of the steps done, as the re-check found it.
        drift: Vec<String>,
    },
    /// The lock was left by a run whose process is gone: this run took it over.
    LockTakenOver {
        holder: String,
    },
    /// `rollout unlock` removed a lock, held or not.
    LockBroken {
        lock: String,
        holder: String,
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
        /// Why, when the operator did not choose it at the prompt: `--from`, a step undo cannot
        /// take back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A pipeline run was started: journaled at once, so a run is never triggered twice.
    StepTriggered {
        step: String,
        pipeline_run: String,
        url: String,
    },
    /// A gate read its metric: the value (null for no data), how it counted, the query sent.
    StepSampled {
        step: String,
        #[serde(flatten)]
        sample: crate::steps::gate::GateSample,
    },
    /// The step waits for other engineers' approval of the plan whose digest this is.
    ApprovalRequested {
        step: String,
        /// sha256 (hex) of the runbook, the inputs and the step's live before and after.
        digest: String,
        min: u32,
        allow_self: bool,
    },
    /// Enough engineers approved the plan with this digest: `user@host` of each.
    StepApproved {
        step: String,
        digest: String,
        by: Vec<String>,
    },
    /// An engineer rejected the plan: the step does not act.
    StepRejected {
        step: String,
        digest: String,
        by: String,
        reason: String,
    },
    /// `--break-glass`: the step acts without the approval it needs, for this reason.
    ApprovalOverridden {
        step: String,
        reason: String,
        by: String,
    },
    StepSucceeded {
        step: String,
        outputs: Outputs,
        duration_ms: u64,
        /// What the step did, one line, as the summary shows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<String>,
    },
    StepFailed {
        step: String,
        error: String,
        /// The prompt got no answer (Ctrl-C, or nobody could see it): the step changed nothing
        /// and counts as not run.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unanswered: bool,
        /// What the step started may still be going: a pipeline run it stopped following (a
        /// timeout, Ctrl-C, lost track). A resumed run follows that run instead of another.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unsettled: bool,
        /// A failed gate that names an incident: the command to run next.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    RunFinished {
        status: RunStatus,
        exit_code: i32,
    },
}

/// Where a run came from: its files with their sha256 digests (hex), who ran which rollout
/// where, and the `--from` it was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub runbook_path: String,
    pub runbook_sha256: String,
    pub config_path: String,
    /// None when the config could not be read again for its digest.
    pub config_sha256: Option<String>,
    pub user: String,
    pub host: String,
    pub version: String,
    pub from: Option<String>,
    /// The runbook and config as they were read, so that `resume` can show what changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_text: Option<String>,
}

/// The sha256 of `bytes`, hex, as `Origin` records a file's.
pub fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// What a run that walks no runbook of its own is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Purpose {
    /// Puts back what run `run` changed.
    Undo { run: String },
    /// Records `rollout unlock`.
    Unlock,
}

/// An event stamped with its run and time: one line of the journal and of `--json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub run_id: String,
    pub ts: jiff::Timestamp,
    pub event: Event,
}

impl Record {
    /// Stamp `event` with the time now.
    pub fn now(run_id: &str, event: Event) -> Record {
        Record { run_id: run_id.to_string(), ts: jiff::Timestamp::now(), event }
    }

    /// One JSON line: `event` first, then `run_id`, `ts` and the event's fields.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Encoded as one flat object, `event` first, then `run_id`, `ts`; its values are scrubbed of
/// secrets before they are encoded (see `redact::scrub_json`).
impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut body = serde_json::to_value(&self.event).map_err(serde::ser::Error::custom)?;
        crate::redact::scrub_json(&mut body);
        let mut line: IndexMap<String, serde_json::Value> = IndexMap::new();
        if let serde_json::Value::Object(fields) = body {
            let mut fields = fields.into_iter();
            line.extend(fields.next());
            line.insert("run_id".into(), self.run_id.as_str().into());
            line.insert("ts".into(), self.ts.to_string().into());
            line.extend(fields);
        }
        line.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Record, D::Error> {
        let mut fields = serde_json::Map::deserialize(deserializer)?;
        let mut take =
            |name: &str| fields.remove(name).ok_or_else(|| serde::de::Error::custom(format!("missing field `{name}`")));
        let run_id = String::deserialize(take("run_id")?).map_err(serde::de::Error::custom)?;
        let ts = jiff::Timestamp::deserialize(take("ts")?).map_err(serde::de::Error::custom)?;
        let event = Event::deserialize(serde_json::Value::Object(fields)).map_err(serde::de::Error::custom)?;
        Ok(Record { run_id, ts, event })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_start_with_event_run_id_and_ts() {
        let line = Record::now("r1", Event::StepConfirmed { step: "disable".into(), by: By::YesFlag }).to_line();
        assert!(line.starts_with(r#"{"event":"step_confirmed","run_id":"r1","ts":""#), "{line}");
        assert!(line.ends_with(r#","step":"disable","by":"yes-flag"}"#), "{line}");
    }

    #[test]
    fn a_line_reads_back_as_the_record_it_was() {
        let record = Record::now(
            "r1",
            Event::StepFailed {
                step: "disable".into(),
                error: "refused".into(),
                unanswered: true,
                unsettled: false,
                next: None,
            },
        );
        let read: Record = serde_json::from_str(&record.to_line()).unwrap();
        assert_eq!(read, record);
    }

    #[test]
    fn a_gate_sample_reads_back_with_its_value_or_no_data() {
        use crate::runbook::kinds::gate::Judged;
        use crate::steps::gate::GateSample;
        for (value, judged, no_data) in
            [(Some(1.5), Judged::Pass, None), (None, Judged::NoData, Some("NaN".to_string()))]
        {
            let sample = GateSample { value, judged, query: "max(x)".into(), no_data, warnings: Vec::new() };
            let record = Record::now("r1", Event::StepSampled { step: "check".into(), sample });
            let read: Record = serde_json::from_str(&record.to_line()).unwrap();
            assert_eq!(read, record, "{}", record.to_line());
        }
    }

    #[test]
    fn every_event_is_named_in_events() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schema/events.schema.json")).expect("the schema is JSON");
        let named: Vec<&str> =
            schema["properties"]["event"]["enum"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        let mut ours = EVENTS.to_vec();
        ours.sort();
        let mut theirs = named.clone();
        theirs.sort();
        assert_eq!(ours, theirs, "EVENTS and the schema name the same events");
    }

    #[test]
    fn an_older_run_started_reads_without_its_origin() {
        let line = r#"{"event":"run_started","run_id":"r1","ts":"2026-01-01T00:00:00Z","runbook":"critical","severity":null,"dry_run":false,"inputs":{}}"#;
        let read: Record = serde_json::from_str(line).unwrap();
        assert!(matches!(read.event, Event::RunStarted { origin: None, .. }), "{read:?}");
    }
}
