//! The story of one run, folded from its journal: every step attempt with its times, who did
//! it, before -> after, outputs and errors, the resumes and lock events, and time to mitigate.

use std::collections::HashMap;

use jiff::Timestamp;
use serde::Serialize;

use super::event::{By, Event, Purpose, Record, RunStatus};
use super::lock::{Holder, Liveness};
use crate::flags::Reach;
use crate::runbook::resolve::Outputs;
use crate::untrusted::printable;

/// What one attempt at a step came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    /// Applied and verified (a manual step: confirmed).
    Done,
    /// Succeeded without writing anything: the target state already held.
    NothingToChange,
    /// At its prompt, before `--from`, or for a reason rollout gives.
    Skipped,
    Failed,
    /// Never carried out: a preflight failure, or a prompt nobody answered.
    #[default]
    NotRun,
    /// Started, and the journal says nothing more of it: the run stopped while it ran.
    Running,
    /// A dry run's step: previewed, never carried out.
    Previewed,
}

impl StepResult {
    /// As the story and the timeline say it.
    pub fn as_str(self) -> &'static str {
        match self {
            StepResult::Done => "done",
            StepResult::NothingToChange => "nothing to change",
            StepResult::Skipped => "skipped",
            StepResult::Failed => "failed",
            StepResult::NotRun => "not run",
            StepResult::Running => "running when it stopped",
            StepResult::Previewed => "previewed (dry run)",
        }
    }
}

/// One attempt at a step; a resumed run may try a step again.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Attempt {
    pub step: String,
    /// `flag`, `revert`, `ci`, `gate`, `manual`, `notify`; None for a step that never started.
    pub kind: Option<String>,
    pub index: Option<usize>,
    pub total: Option<usize>,
    /// 1 for a step's first attempt, 2 for its retry after a resume...
    pub attempt: usize,
    pub started: Option<Timestamp>,
    pub ended: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    pub result: StepResult,
    /// `user@host` of the run's segment (its start, or the resume) the attempt belongs to.
    pub who: String,
    /// How it was confirmed or skipped: `operator`, `yes-flag`, `--from STEP`, or the reason.
    pub how: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub reach: Option<Reach>,
    /// A revert pushed to a branch of its own (its preview found no such branch): it leaves
    /// the deployed branch as it was.
    #[serde(skip)]
    pub own_branch: bool,
    pub outputs: Outputs,
    pub outcome: Option<String>,
    pub pipeline_run: Option<String>,
    pub url: Option<String>,
    pub error: Option<String>,
    pub unanswered: bool,
    /// A gate's samples: when, the value (None: no data), how it counted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sampled>,
    /// A gate's source, query and thresholds, as its preview journaled them.
    #[serde(skip)]
    pub gate: Option<crate::steps::gate::GatePlan>,
}

/// One sample of a gate, as the story tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sampled {
    pub ts: Timestamp,
    pub value: Option<f64>,
    pub judged: crate::runbook::kinds::gate::Judged,
}

impl Attempt {
    /// How it was confirmed (`operator`, `yes-flag`); None for a skip, whose why `what` tells.
    pub fn confirmed(&self) -> Option<&str> {
        self.how.as_deref().filter(|_| self.result != StepResult::Skipped)
    }

    /// The time it is told at: its end, else its start.
    pub fn at(&self) -> Option<Timestamp> {
        self.ended.or(self.started)
    }

    fn output(&self, name: &str) -> Option<&str> {
        self.outputs.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A step that changed something outside: a manual step's "done" changes nothing.
    pub fn changed(&self) -> bool {
        self.result == StepResult::Done && !matches!(self.kind.as_deref(), Some("manual" | "notify" | "gate"))
    }

    /// The commits the step made or deployed, short (12).
    pub fn commits(&self) -> Vec<String> {
        let made = self.output("commits").or(self.output("commit")).unwrap_or_default();
        made.split_whitespace().map(|c| printable(&c.chars().take(12).collect::<String>()).into_owned()).collect()
    }

    /// The pipeline run, from `step_triggered` or the step's outputs.
    pub fn pipeline(&self) -> Option<String> {
        self.pipeline_run.as_deref().or(self.output("run_id")).map(|r| printable(r).into_owned())
    }

    /// Where to look: the pipeline run's URL, else the first commit.
    pub fn link(&self) -> Option<String> {
        let url = self.url.as_deref().filter(|u| !u.is_empty()).or(self.output("url"));
        url.map(|u| printable(u).into_owned()).or_else(|| self.commits().into_iter().next())
    }

    /// What happened, one line: the result (a skip with why), before -> after, commits,
    /// pipeline run, error.
    pub fn what(&self) -> String {
        let mut parts = vec![self.result.as_str().to_string()];
        // A pipeline's before and after only say "not triggered" and what was asked for: its
        // run and verdict, below, tell what happened.
        if let (Some(before), Some(after), false) = (&self.before, &self.after, self.kind.as_deref() == Some("ci")) {
            parts.push(format!("{} -> {}", printable(before), printable(after)));
        }
        if !self.commits().is_empty() {
            parts.push(format!("commit {}", self.commits().join(" ")));
        }
        if let Some(run) = self.pipeline() {
            parts.push(format!("pipeline run {run}"));
        }
        if let (StepResult::Skipped, Some(how)) = (self.result, &self.how) {
            parts[0] = format!("skipped ({})", printable(how));
        }
        if let Some(error) = &self.error {
            parts.push(format!("error: {}", printable(error)));
        }
        parts.join("; ")
    }
}

/// `rollout resume` took the run up again.
#[derive(Debug, Clone, Serialize)]
pub struct Resume {
    pub ts: Timestamp,
    pub who: String,
    pub version: String,
    /// The step it resumed at.
    pub at: String,
    pub forced: bool,
    pub drift: Vec<String>,
}

/// A `run_finished`.
#[derive(Debug, Clone, Serialize)]
pub struct Ending {
    pub ts: Timestamp,
    pub status: RunStatus,
    pub exit_code: i32,
}

/// A lock taken over from a crashed run, or broken by `rollout unlock`.
#[derive(Debug, Clone, Serialize)]
pub struct LockEvent {
    pub ts: Timestamp,
    pub what: String,
}

/// The first step that gave the feature to fewer users, or deployed a revert.
#[derive(Debug, Clone, Serialize)]
pub struct Mitigation {
    pub step: String,
    pub at: Timestamp,
    /// From the run's start.
    pub after_ms: u64,
    pub what: String,
}

/// One run, as its journal tells it; also the `--json` object of `rollout runs RUN`.
#[derive(Debug, Clone, Serialize)]
pub struct Story {
    pub run_id: String,
    pub runbook: String,
    pub purpose: Option<Purpose>,
    pub dry_run: bool,
    pub started: Timestamp,
    /// The last `run_finished` after the last resume; None while the run is going, or crashed.
    pub finished: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    pub status: Option<RunStatus>,
    pub exit_code: Option<i32>,
    /// `user@host` who started it.
    pub who: String,
    pub version: Option<String>,
    pub from: Option<String>,
    /// The config the run read (a GA4 gate's source, for the timeline's standard reports).
    #[serde(skip)]
    pub config_path: Option<String>,
    pub resumes: Vec<Resume>,
    pub locks: Vec<LockEvent>,
    /// Approvals asked for, given, refused and overridden, as they happened.
    pub approvals: Vec<LockEvent>,
    /// Every `run_finished`: a run resumed after it ended has more than one.
    pub ends: Vec<Ending>,
    /// Every attempt at every step, in journal order.
    pub steps: Vec<Attempt>,
    /// Time to mitigate, when a step reduced exposure (see `Story::mitigation`).
    pub mitigated: Option<Mitigation>,
    /// What takes the run further: `rollout resume RUN`, `rollout undo RUN`.
    pub next: Vec<String>,
    /// How many attempts each step has had so far.
    #[serde(skip)]
    tries: HashMap<String, usize>,
}

/// A moment of a story, for the views that tell it in time order.
#[derive(Debug, Clone, Copy)]
pub enum Moment<'a> {
    Started,
    /// An attempt, told at its end (at its start while it has none).
    Step(&'a Attempt),
    Resumed(&'a Resume),
    Lock(&'a LockEvent),
    /// An approval asked for, given, refused or overridden.
    Approval(&'a LockEvent),
    Finished(&'a Ending),
}

fn ms_between(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from(to.duration_since(from).as_millis()).unwrap_or(0)
}

fn summary(value: &serde_json::Value) -> Option<String> {
    value.get("summary").and_then(|s| s.as_str()).map(str::to_string)
}

/// A digest's first 12 hex digits, as the operator compares them.
pub fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn by_name(by: By) -> String {
    serde_json::to_value(by).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

impl Story {
    /// The run a journal's records tell, from its last `run_started` on; None without one.
    pub fn fold(records: &[Record]) -> Option<Story> {
        let start = records.iter().rposition(|r| matches!(r.event, Event::RunStarted { .. }))?;
        let mut story = Story::start(&records[start])?;
        for record in &records[start + 1..] {
            story.apply(record);
        }
        if story.dry_run {
            let open = story.steps.iter_mut().filter(|a| a.result == StepResult::Running);
            open.for_each(|a| a.result = StepResult::Previewed);
        }
        story.mitigated = story.mitigation();
        story.next = story.next_commands();
        Some(story)
    }

    fn start(record: &Record) -> Option<Story> {
        let Event::RunStarted { runbook, dry_run, origin, purpose, .. } = &record.event else { return None };
        Some(Story {
            run_id: record.run_id.clone(),
            runbook: runbook.clone(),
            purpose: purpose.clone(),
            dry_run: *dry_run,
            started: record.ts,
            finished: None,
            duration_ms: None,
            status: None,
            exit_code: None,
            who: origin.as_ref().map_or_else(|| "unknown".into(), |o| format!("{}@{}", o.user, o.host)),
            version: origin.as_ref().map(|o| o.version.clone()),
            from: origin.as_ref().and_then(|o| o.from.clone()),
            config_path: origin.as_ref().map(|o| o.config_path.clone()),
            resumes: Vec::new(),
            locks: Vec::new(),
            approvals: Vec::new(),
            ends: Vec::new(),
            steps: Vec::new(),
            mitigated: None,
            next: Vec::new(),
            tries: HashMap::new(),
        })
    }

    /// `user@host` of the segment going on: who started the run, or who last resumed it.
    fn segment_who(&self) -> String {
        self.resumes.last().map_or_else(|| self.who.clone(), |r| r.who.clone())
    }

    /// The attempt at `step` that started and has not ended.
    fn open(&mut self, step: &str) -> Option<&mut Attempt> {
        self.steps.iter_mut().rev().find(|a| a.step == step && a.result == StepResult::Running)
    }

    /// A new attempt at `step`, as of `ts`.
    fn attempt(&mut self, step: &str, ts: Timestamp, result: StepResult) -> &mut Attempt {
        let tries = self.tries.entry(step.to_string()).or_default();
        *tries += 1;
        let attempt = Attempt {
            step: step.to_string(),
            attempt: *tries,
            ended: Some(ts),
            result,
            who: self.segment_who(),
            ..Attempt::default()
        };
        self.steps.push(attempt);
        self.steps.last_mut().expect("just pushed")
    }

    fn apply(&mut self, record: &Record) {
        let ts = record.ts;
        match &record.event {
            Event::RunStarted { .. } => {}
            Event::RunResumed { user, host, version, at, forced, drift } => {
                let who = format!("{user}@{host}");
                let (version, at, forced, drift) = (version.clone(), at.clone(), *forced, drift.clone());
                self.resumes.push(Resume { ts, who, version, at, forced, drift });
                (self.status, self.exit_code, self.finished, self.duration_ms) = (None, None, None, None);
            }
            Event::LockTakenOver { holder } => {
                self.locks.push(LockEvent { ts, what: format!("lock taken over from {}", printable(holder)) })
            }
            Event::LockBroken { lock, holder } => self.locks.push(LockEvent {
                ts,
                what: format!("lock {} broken (held by {})", printable(lock), printable(holder)),
            }),
            Event::ApprovalRequested { step, digest, min, .. } => self.approvals.push(LockEvent {
                ts,
                what: format!("step {step} waits for {min} approval(s) of plan {}", short(digest)),
            }),
            Event::StepApproved { step, digest, by } => self.approvals.push(LockEvent {
                ts,
                what: format!("step {step} approved by {} (plan {})", printable(&by.join(", ")), short(digest)),
            }),
            Event::StepRejected { step, by, reason, .. } => self.approvals.push(LockEvent {
                ts,
                what: format!("step {step} rejected by {}: {}", printable(by), printable(reason)),
            }),
            Event::ApprovalOverridden { step, reason, by } => self.approvals.push(LockEvent {
                ts,
                what: format!(
                    "BREAK GLASS: step {step} acted without its approval, by {}: {}",
                    printable(by),
                    printable(reason)
                ),
            }),
            Event::StepStarted { step, index, total, kind } => {
                let attempt = self.attempt(step, ts, StepResult::Running);
                (attempt.kind, attempt.index, attempt.total) = (Some(kind.clone()), Some(*index), Some(*total));
                (attempt.started, attempt.ended) = (Some(ts), None);
            }
            Event::StepPreview { step, before, after, reach } => {
                if let Some(attempt) = self.open(step) {
                    (attempt.before, attempt.after, attempt.reach) = (summary(before), summary(after), *reach);
                    if attempt.kind.as_deref() == Some("gate") {
                        attempt.gate = serde_json::from_value(after.clone()).ok();
                    }
                    attempt.own_branch = before.get("commit").is_some_and(serde_json::Value::is_null);
                }
            }
            Event::StepConfirmed { step, by } => {
                if let Some(attempt) = self.open(step) {
                    attempt.how = Some(by_name(*by));
                }
            }
            Event::StepSkipped { step, by, reason } => self.skipped(step, ts, *by, reason.as_deref()),
            Event::StepTriggered { step, pipeline_run, url } => {
                if let Some(attempt) = self.open(step) {
                    (attempt.pipeline_run, attempt.url) = (Some(pipeline_run.clone()), Some(url.clone()));
                }
            }
            Event::StepSampled { step, sample } => {
                if let Some(attempt) = self.open(step) {
                    attempt.samples.push(Sampled { ts, value: sample.value, judged: sample.judged });
                }
            }
            Event::StepSucceeded { step, outputs, duration_ms, outcome } => {
                let attempt = self.ended(step, ts);
                let unchanged = outputs.get("changed").is_some_and(|c| c == "false");
                attempt.result = if unchanged { StepResult::NothingToChange } else { StepResult::Done };
                (attempt.outputs, attempt.duration_ms, attempt.outcome) =
                    (outputs.clone(), Some(*duration_ms), outcome.clone());
            }
            Event::StepFailed { step, error, unanswered, .. } => {
                let attempt = self.ended(step, ts);
                let ran = attempt.started.is_some() && !unanswered;
                attempt.result = if ran { StepResult::Failed } else { StepResult::NotRun };
                (attempt.error, attempt.unanswered) = (Some(error.clone()), *unanswered);
            }
            Event::RunFinished { status, exit_code } => {
                (self.status, self.exit_code, self.finished) = (Some(*status), Some(*exit_code), Some(ts));
                self.ends.push(Ending { ts, status: *status, exit_code: *exit_code });
                self.duration_ms = Some(ms_between(self.started, ts));
            }
        }
    }

    /// The open attempt at `step`, ended at `ts`; a new one if it never started (preflight).
    fn ended(&mut self, step: &str, ts: Timestamp) -> &mut Attempt {
        if self.open(step).is_none() {
            return self.attempt(step, ts, StepResult::NotRun);
        }
        let attempt = self.open(step).expect("open");
        attempt.ended = Some(ts);
        attempt.duration_ms = attempt.started.map(|s| ms_between(s, ts));
        attempt
    }

    /// Skipped at its prompt (`by`), or without asking: before `--from`, or for `reason`.
    fn skipped(&mut self, step: &str, ts: Timestamp, by: By, reason: Option<&str>) {
        let from = self.from.clone().unwrap_or_default();
        let prompted = self.open(step).is_some();
        let attempt = self.ended(step, ts);
        attempt.result = StepResult::Skipped;
        attempt.how = Some(match reason {
            Some(reason) => reason.to_string(),
            None if prompted => by_name(by),
            None if from.is_empty() => "--from".into(),
            None => format!("--from {from}"),
        });
    }

    /// Time to mitigate: the first step that reduced exposure, timed from the run's start. That
    /// is a flag step that succeeded with a change whose last preview gave the feature to fewer
    /// users (`reach: fewer`, `outputs.changed == "true"`); or, for a revert pushed onto the
    /// branch (its `outputs.branch` set, and not a branch of its own), the first `ci` step that
    /// succeeded after it (the deploy), or the
    /// revert itself when the run finished with no `ci` step after it. None if nothing did, and
    /// for an undo or unlock run: an undo puts back what an incident's run changed.
    pub fn mitigation(&self) -> Option<Mitigation> {
        if self.purpose.is_some() {
            return None;
        }
        let mut pushed: Option<&Attempt> = None;
        let mut ci_after = false;
        for attempt in &self.steps {
            let kind = attempt.kind.as_deref();
            let done = attempt.result == StepResult::Done;
            let fewer = attempt.reach == Some(Reach::Fewer) && attempt.output("changed") == Some("true");
            if done && kind == Some("flag") && fewer {
                return self.mitigated_by(attempt);
            }
            if kind == Some("ci") && pushed.is_some() {
                ci_after = true;
                if done {
                    return self.mitigated_by(attempt);
                }
            }
            let onto_the_branch = attempt.output("branch").is_some() && !attempt.own_branch;
            if done && kind == Some("revert") && onto_the_branch && pushed.is_none() {
                pushed = Some(attempt);
            }
        }
        pushed.filter(|_| !ci_after && self.status.is_some()).and_then(|revert| self.mitigated_by(revert))
    }

    fn mitigated_by(&self, attempt: &Attempt) -> Option<Mitigation> {
        let at = attempt.ended?;
        let what = attempt.outcome.as_deref().map_or_else(|| attempt.what(), |o| printable(o).into_owned());
        Some(Mitigation { step: attempt.step.clone(), at, after_ms: ms_between(self.started, at), what })
    }

    fn next_commands(&self) -> Vec<String> {
        let mut next = Vec::new();
        let unfinished =
            matches!(self.status, None | Some(RunStatus::Failed | RunStatus::Aborted | RunStatus::Interrupted));
        if unfinished && !self.dry_run {
            next.push(format!("rollout resume {}", self.run_id));
        }
        if !self.dry_run && self.purpose.is_none() && self.latest().iter().any(|a| a.changed()) {
            next.push(format!("rollout undo {}", self.run_id));
        }
        next
    }

    /// Each step's latest attempt, in the order of those attempts.
    pub fn latest(&self) -> Vec<&Attempt> {
        // In the order of each step's latest attempt: what changed last is told last.
        let mut latest: indexmap::IndexMap<&str, &Attempt> = indexmap::IndexMap::new();
        for attempt in &self.steps {
            latest.shift_remove(attempt.step.as_str());
            latest.insert(attempt.step.as_str(), attempt);
        }
        latest.into_values().collect()
    }

    /// The step the run got to: `3/4 deploy-fix`; None before any step started.
    pub fn reached(&self) -> Option<String> {
        let last = self.steps.iter().rev().find(|a| a.index.is_some())?;
        Some(format!("{}/{} {}", last.index?, last.total?, last.step))
    }

    /// Every moment in time order (journal order for ties): start, steps, resumes, lock
    /// events, end.
    pub fn moments(&self) -> Vec<(Timestamp, Moment<'_>)> {
        let mut moments = vec![(self.started, Moment::Started)];
        moments.extend(self.steps.iter().filter_map(|a| Some((a.at()?, Moment::Step(a)))));
        moments.extend(self.resumes.iter().map(|r| (r.ts, Moment::Resumed(r))));
        moments.extend(self.locks.iter().map(|l| (l.ts, Moment::Lock(l))));
        moments.extend(self.approvals.iter().map(|a| (a.ts, Moment::Approval(a))));
        moments.extend(self.ends.iter().map(|e| (e.ts, Moment::Finished(e))));
        moments.sort_by_key(|(ts, _)| *ts);
        moments
    }

    /// How the run stands: its status once finished, else whether its process is still there.
    pub fn standing(&self, holders: &[Holder]) -> Standing {
        if let Some(status) = self.status {
            return Standing::Finished(status);
        }
        match holders.iter().find(|h| h.run_id == self.run_id).map(Holder::liveness) {
            Some(Liveness::Running) => Standing::Running,
            Some(Liveness::Gone) => Standing::Crashed { lock_left: true },
            None => Standing::Crashed { lock_left: false },
            Some(Liveness::Elsewhere(host)) => Standing::Elsewhere(host),
        }
    }

    /// `user@host` of the segment going on at `ts`: who started the run, or who last resumed it.
    pub fn who_at(&self, ts: Timestamp) -> &str {
        self.resumes.iter().rev().find(|r| r.ts <= ts).map_or(&self.who, |r| &r.who)
    }

    /// What the run was for, one phrase: `critical`, `undo of RUN`, `unlock`.
    pub fn purpose_text(&self) -> String {
        match &self.purpose {
            None => self.runbook.clone(),
            Some(Purpose::Undo { run }) => format!("undo of {run}"),
            Some(Purpose::Unlock) => format!("unlock of {}", self.runbook),
        }
    }
}

/// A run's status as `rollout runs` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Finished(RunStatus),
    /// No `run_finished`, and the process its lock names is running.
    Running,
    /// No `run_finished`, and no process holds its lock (`lock_left`: its lock file still names
    /// it), or no lock names it.
    Crashed {
        lock_left: bool,
    },
    /// No `run_finished`; its lock names a process on another host.
    Elsewhere(String),
}

impl Standing {
    /// One word or so, for the table.
    pub fn short(&self) -> String {
        match self {
            Standing::Finished(status) => status.as_str().into(),
            Standing::Running => "running".into(),
            Standing::Crashed { .. } => "crashed".into(),
            Standing::Elsewhere(host) => format!("running on {host}"),
        }
    }

    /// With what to do about it, for the story of `run`.
    pub fn long(&self, run: &str) -> String {
        match self {
            Standing::Crashed { lock_left: true } => {
                format!("crashed (no process holds its lock; `rollout resume {run}` takes it up)")
            }
            other => other.short(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"event":"run_started","run_id":"r1","ts":"2026-12-02T03:12:09Z","runbook":"high","severity":"high","dry_run":false,"inputs":{},"runbook_path":"/w/high.yaml","runbook_sha256":"00","config_path":"/w/rollout.yaml","config_sha256":null,"user":"ann","host":"box","version":"0.1.0","from":null}"#;

    fn story(lines: &[&str]) -> Story {
        let records: Vec<Record> =
            lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
        Story::fold(&records).expect("a run_started")
    }

    fn line(ts: &str, event: &str) -> String {
        format!(r#"{{"run_id":"r1","ts":"2026-12-02T{ts}Z",{event}}}"#)
    }

    fn started(ts: &str, step: &str, index: usize, kind: &str) -> String {
        line(ts, &format!(r#""event":"step_started","step":"{step}","index":{index},"total":3,"kind":"{kind}""#))
    }

    fn succeeded(ts: &str, step: &str, outputs: &str) -> String {
        line(ts, &format!(r#""event":"step_succeeded","step":"{step}","outputs":{outputs},"duration_ms":5"#))
    }

    /// A pushed revert that failed to deploy, resumed by bob: the deploy succeeds on its retry.
    fn resumed() -> Vec<String> {
        vec![
            START.to_string(),
            started("03:12:10", "revert", 1, "revert"),
            line("03:12:11", r#""event":"step_confirmed","step":"revert","by":"operator""#),
            succeeded("03:12:12", "revert", r#"{"commit":"0123456789abcdef0123","branch":"main"}"#),
            started("03:12:13", "deploy", 2, "ci"),
            line("03:12:14", r#""event":"step_triggered","step":"deploy","pipeline_run":"7","url":"https://ci/7""#),
            line("03:12:20", r#""event":"step_failed","step":"deploy","error":"run 7 failed""#),
            line("03:12:21", r#""event":"run_finished","status":"failed","exit_code":1"#),
            line(
                "03:20:00",
                r#""event":"run_resumed","user":"bob","host":"pc","version":"0.1.0","at":"deploy","forced":false,"drift":[]"#,
            ),
            started("03:20:01", "deploy", 2, "ci"),
            succeeded("03:22:09", "deploy", r#"{"run_id":"8","url":"https://ci/8"}"#),
        ]
    }

    #[test]
    fn a_resumed_story_keeps_both_attempts_and_its_latest_is_the_result() {
        let lines = resumed();
        let story = story(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(story.steps.len(), 3);
        let latest = story.latest();
        assert_eq!(
            latest.iter().map(|a| (a.step.as_str(), a.result)).collect::<Vec<_>>(),
            [("revert", StepResult::Done), ("deploy", StepResult::Done)]
        );
        assert_eq!((story.steps[1].result, story.steps[1].attempt, latest[1].attempt), (StepResult::Failed, 1, 2));
        assert_eq!((latest[1].who.as_str(), story.steps[0].who.as_str()), ("bob@pc", "ann@box"));
        assert_eq!(story.status, None, "resumed and not finished again");
        assert_eq!(story.resumes[0].at, "deploy");
        assert_eq!(story.reached().as_deref(), Some("2/3 deploy"));
        assert_eq!(story.next, ["rollout resume r1", "rollout undo r1"]);
        let mitigated = story.mitigated.clone().expect("the deploy after the revert");
        assert_eq!((mitigated.step.as_str(), mitigated.after_ms), ("deploy", 600_000));
        assert_eq!(latest[1].link().as_deref(), Some("https://ci/8"));
        assert_eq!(story.steps[0].commits(), ["0123456789ab"]);
    }

    #[test]
    fn a_flag_turned_down_mitigates_and_a_skip_says_why() {
        let story = story(&[
            START,
            &line("03:12:09", r#""event":"step_skipped","step":"first","by":"operator""#),
            &started("03:12:10", "off", 2, "flag"),
            &line(
                "03:12:11",
                r#""event":"step_preview","step":"off","before":{"summary":"on, 100%"},"after":{"summary":"off"},"reach":"fewer""#,
            ),
            &line("03:12:12", r#""event":"step_confirmed","step":"off","by":"yes-flag""#),
            &succeeded("03:14:23", "off", r#"{"changed":"true"}"#),
            &line("03:14:24", r#""event":"step_skipped","step":"undo-me","by":"operator","reason":"cannot be undone""#),
            &line("03:14:25", r#""event":"run_finished","status":"succeeded","exit_code":0"#),
        ]);
        let mitigated = story.mitigated.expect("the flag off");
        assert_eq!((mitigated.step.as_str(), mitigated.after_ms), ("off", 134_000));
        assert_eq!(story.steps[1].what(), "done; on, 100% -> off");
        assert_eq!(story.steps[0].how.as_deref(), Some("--from"));
        assert_eq!(story.steps[2].what(), "skipped (cannot be undone)");
        assert_eq!((story.steps[2].confirmed(), story.steps[1].confirmed()), (None, Some("yes-flag")));
        assert_eq!((story.duration_ms, story.next.as_slice()), (Some(136_000), &["rollout undo r1".to_string()][..]));
    }

    #[test]
    fn a_flag_already_off_changes_nothing_and_mitigates_nothing() {
        let story = story(&[
            START,
            &started("03:12:10", "off", 1, "flag"),
            &line(
                "03:12:11",
                r#""event":"step_preview","step":"off","before":{"summary":"off"},"after":{"summary":"off"},"reach":"same""#,
            ),
            &succeeded("03:12:12", "off", r#"{"changed":"false"}"#),
            &started("03:12:13", "ask", 2, "manual"),
            &line("03:12:14", r#""event":"step_failed","step":"ask","error":"interrupted","unanswered":true"#),
            &started("03:12:15", "wait", 3, "ci"),
        ]);
        assert!(story.mitigated.is_none());
        let results: Vec<StepResult> = story.steps.iter().map(|a| a.result).collect();
        assert_eq!(results, [StepResult::NothingToChange, StepResult::NotRun, StepResult::Running]);
        assert_eq!(story.standing(&[]), Standing::Crashed { lock_left: false });
        assert_eq!(story.next, ["rollout resume r1"]);
    }

    #[test]
    fn a_flag_given_to_more_users_mitigates_nothing() {
        let story = story(&[
            START,
            &started("03:12:10", "on", 1, "flag"),
            &line(
                "03:12:11",
                r#""event":"step_preview","step":"on","before":{"summary":"off"},"after":{"summary":"on, 5%"},"reach":"more""#,
            ),
            &succeeded("03:12:12", "on", r#"{"changed":"true"}"#),
            &line("03:12:13", r#""event":"run_finished","status":"succeeded","exit_code":0"#),
        ]);
        assert!(story.mitigated.is_none(), "{story:?}");
        assert_eq!(story.steps[0].result, StepResult::Done);
    }

    #[test]
    fn an_undo_run_mitigates_nothing() {
        let undo = START.replace(r#""from":null"#, r#""from":null,"purpose":{"kind":"undo","run":"r0"}"#);
        let story = story(&[
            &undo,
            &started("03:12:10", "undo-revert", 1, "revert"),
            &succeeded("03:12:12", "undo-revert", r#"{"commit":"0123456789abcdef","branch":"main"}"#),
            &line("03:12:13", r#""event":"run_finished","status":"succeeded","exit_code":0"#),
        ]);
        assert!(matches!(&story.purpose, Some(Purpose::Undo { run }) if run == "r0"), "{story:?}");
        assert!(story.mitigated.is_none(), "{story:?}");
        assert_eq!(story.next, Vec::<String>::new(), "an undo is not undone in turn: {story:?}");
    }

    #[test]
    fn a_pushed_revert_with_no_deploy_after_it_mitigates_once_the_run_finished() {
        let lines = resumed();
        let mut head: Vec<&str> = lines[..4].iter().map(String::as_str).collect();
        assert!(story(&head).mitigated.is_none(), "the run may still deploy it");
        let end = line("03:12:30", r#""event":"run_finished","status":"succeeded","exit_code":0"#);
        head.push(&end);
        assert_eq!(story(&head).mitigated.map(|m| m.step).as_deref(), Some("revert"));
    }
}
