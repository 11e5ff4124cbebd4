//! A run as its records tell it: `RunState::apply` folds one record at a time, and `rollout runs`,
//! the end-of-run tally and summary, the progress line and rehearse's summary are read from it.

use std::collections::HashMap;
use std::fmt;

use indexmap::IndexMap;

use super::event::{Event, Record, RunStatus};
use crate::runbook::resolve::Outputs;

/// What happened to one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepResult {
    /// Applied and verified, or found with nothing to change.
    Done,
    Skipped,
    Failed,
}

#[derive(Debug, Clone)]
struct StepRun {
    result: StepResult,
    /// What the step did, one line, for the summary.
    line: String,
}

/// The steps of a run by what happened to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
    pub not_run: usize,
}

/// `3 done, 1 skipped, 0 failed, 0 not run`.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} done, {} skipped, {} failed, {} not run", self.done, self.skipped, self.failed, self.not_run)
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunState {
    pub run_id: String,
    /// When `run_started` was written.
    pub started: Option<jiff::Timestamp>,
    pub runbook: String,
    pub dry_run: bool,
    pub from: Option<String>,
    /// None until `run_finished`: the run is still going, or crashed.
    pub status: Option<RunStatus>,
    pub exit_code: Option<i32>,
    /// The step count the last `step_started` announced.
    pub total: usize,
    steps: IndexMap<String, StepRun>,
    /// The step started and not yet ended; a dry run's steps are previewed, never started.
    running: Option<String>,
    outputs: HashMap<String, Outputs>,
    /// Each step's last preview: the state before it and the one it leads to.
    previews: HashMap<String, (serde_json::Value, serde_json::Value)>,
    /// Each step's last triggered pipeline run that may still be going (its step never ended, or
    /// ended without following it to its verdict): its id and URL.
    triggered: HashMap<String, (String, String)>,
    /// The samples each gate took in attempts that did not pass.
    samples: HashMap<String, usize>,
    /// Steps confirmed whose change may have been made, with no end that says how it went:
    /// the run stopped during the write, or the journal could not take what came next.
    in_flight: std::collections::BTreeSet<String>,
    /// Those of them that were so when the run was last resumed: what the resumed run must not
    /// do again.
    stopped_in_flight: std::collections::BTreeSet<String>,
}

impl RunState {
    /// The run a journal's records tell: from its last `run_started` on; None without one.
    pub fn fold(records: &[Record]) -> Option<RunState> {
        let mut state: Option<RunState> = None;
        for record in records {
            if matches!(record.event, Event::RunStarted { .. }) {
                state = Some(RunState::default());
            }
            if let Some(state) = &mut state {
                state.apply(record);
            }
        }
        state
    }

    pub fn apply(&mut self, record: &Record) {
        match &record.event {
            Event::RunStarted { runbook, dry_run, origin, .. } => {
                *self = RunState {
                    run_id: record.run_id.clone(),
                    started: Some(record.ts),
                    runbook: runbook.clone(),
                    dry_run: *dry_run,
                    from: origin.as_ref().and_then(|o| o.from.clone()),
                    ..RunState::default()
                };
            }
            Event::StepStarted { step, total, .. } => {
                self.total = *total;
                self.running = (!self.dry_run).then(|| step.clone());
            }
            Event::StepSkipped { step, reason, .. } => self.skipped(step, reason.as_deref()),
            Event::StepSucceeded { step, outputs, outcome, .. } => {
                self.in_flight.remove(step);
                self.stopped_in_flight.remove(step);
                self.samples.remove(step);
                self.outputs.insert(step.clone(), outputs.clone());
                self.end(step, StepResult::Done, outcome.clone().unwrap_or_else(|| "done".into()));
            }
            Event::StepFailed { step, error, unanswered, unsettled, .. } => {
                if !unsettled {
                    self.triggered.remove(step);
                    self.in_flight.remove(step);
                    self.stopped_in_flight.remove(step);
                }
                if *unanswered {
                    self.ended(step);
                } else {
                    self.end(step, StepResult::Failed, format!("failed: {error}"));
                }
            }
            Event::RunFinished { status, exit_code } => {
                (self.status, self.exit_code) = (Some(*status), Some(*exit_code))
            }
            // Taken up again: going on, and the step that was running when it stopped is over.
            Event::RunResumed { .. } => {
                (self.status, self.exit_code, self.running) = (None, None, None);
                self.stopped_in_flight = std::mem::take(&mut self.in_flight);
            }
            Event::StepPreview { step, before, after, .. } => {
                self.previews.insert(step.clone(), (before.clone(), after.clone()));
            }
            Event::StepTriggered { step, pipeline_run, url } => {
                self.triggered.insert(step.clone(), (pipeline_run.clone(), url.clone()));
            }
            Event::StepSampled { step, .. } => *self.samples.entry(step.clone()).or_default() += 1,
            Event::StepConfirmed { step, .. } if !self.dry_run => {
                self.in_flight.insert(step.clone());
            }
            Event::StepConfirmed { .. }
            | Event::LockTakenOver { .. }
            | Event::LockBroken { .. }
            | Event::ApprovalRequested { .. }
            | Event::StepApproved { .. }
            | Event::StepRejected { .. }
            | Event::ApprovalOverridden { .. } => {}
        }
    }

    /// How many samples gate `step` took in attempts that did not pass.
    pub fn samples(&self, step: &str) -> usize {
        self.samples.get(step).copied().unwrap_or_default()
    }

    /// A step skipped at its prompt, or (never started) one before `--from` or one undo cannot
    /// take back, for `reason`.
    fn skipped(&mut self, step: &str, reason: Option<&str>) {
        if self.running.as_deref() == Some(step) {
            self.end(step, StepResult::Skipped, "skipped by the operator".into());
        } else if !self.dry_run {
            let line = match reason {
                Some(reason) => format!("skipped: {reason}"),
                None => format!("skipped (--from {})", self.from.as_deref().unwrap_or("?")),
            };
            self.steps.insert(step.into(), StepRun { result: StepResult::Skipped, line });
        }
    }

    /// The running step ended so; a step that never started (a preflight failure) is not run.
    fn end(&mut self, step: &str, result: StepResult, line: String) {
        if self.running.as_deref() == Some(step) {
            self.steps.insert(step.into(), StepRun { result, line });
        }
        self.ended(step);
    }

    fn ended(&mut self, step: &str) {
        if self.running.as_deref() == Some(step) {
            self.running = None;
        }
    }

    /// Every output of the steps that succeeded, by step.
    pub fn outputs(&self) -> &HashMap<String, Outputs> {
        &self.outputs
    }

    /// The last preview of `step`: its state before and after.
    pub fn preview(&self, step: &str) -> Option<&(serde_json::Value, serde_json::Value)> {
        self.previews.get(step)
    }

    /// The steps confirmed whose change may have been made, with no end journaled.
    pub fn in_flight(&self) -> std::collections::BTreeSet<String> {
        self.in_flight.union(&self.stopped_in_flight).cloned().collect()
    }

    /// Every pipeline run that may still be going, by the step that triggered it (id, URL); a
    /// step the run stopped in after it was confirmed, whose trigger the journal does not hold
    /// (the run died, or the journal could not take it), may have started one: its run is
    /// `ci::UNKNOWN_RUN`. A resumed run reads this; in the run itself a step's own attempt
    /// does not count.
    pub fn earlier_runs(&self) -> HashMap<String, (String, String)> {
        let mut runs = self.triggered.clone();
        for step in self.in_flight.iter().chain(&self.stopped_in_flight) {
            if self.running.as_deref() == Some(step) && !self.stopped_in_flight.contains(step) {
                continue;
            }
            runs.entry(step.clone()).or_insert_with(|| (crate::ci::UNKNOWN_RUN.to_string(), String::new()));
        }
        runs
    }

    /// What happened to `step`, if anything has.
    pub fn result(&self, step: &str) -> Option<StepResult> {
        self.steps.get(step).map(|s| s.result)
    }

    /// The steps done, in the order they were done.
    pub fn done(&self) -> Vec<&str> {
        self.steps.iter().filter(|(_, s)| s.result == StepResult::Done).map(|(id, _)| id.as_str()).collect()
    }

    /// The run's steps (the runbook's `ids`) by what happened to them.
    pub fn tally(&self, ids: &[&str]) -> Tally {
        let count = |wanted| ids.iter().filter(|id| self.result(id) == Some(wanted)).count();
        let (done, skipped, failed) = (count(StepResult::Done), count(StepResult::Skipped), count(StepResult::Failed));
        Tally { done, skipped, failed, not_run: ids.len() - done - skipped - failed }
    }

    /// `rollout critical (run ...): 2 of 4 steps done (disable, debug)`.
    pub fn progress(&self, total: usize) -> String {
        let done = self.done();
        let list = if done.is_empty() { String::new() } else { format!(" ({})", done.join(", ")) };
        format!("rollout {} (run {}): {} of {total} steps done{list}", self.runbook, self.run_id, done.len())
    }

    /// One line per step of `ids`, what it did, once any step did something.
    pub fn summary(&self, ids: &[&str]) -> Option<Vec<String>> {
        if ids.iter().all(|id| self.result(id).is_none()) {
            return None;
        }
        let width = ids.iter().map(|id| id.chars().count()).max().unwrap_or(0);
        let line = |id: &&str| self.steps.get(*id).map_or("not run", |s| s.line.as_str()).to_string();
        Some(ids.iter().map(|id| format!("  {id:<width$}  {}", line(id))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run with `--from debug` of four steps: `disable` skipped by `--from`, `debug` done,
    /// `deploy-fix` failed with `on_failure: continue`, `reenable` skipped at its prompt, then
    /// an unanswered prompt; and one preflight failure before any step started.
    const JOURNAL: &str = r#"{"event":"run_started","run_id":"r1","ts":"2026-12-01T23:00:31Z","runbook":"critical","severity":"critical","dry_run":false,"inputs":{"flag":"f"},"runbook_path":"/w/runbooks/critical.yaml","runbook_sha256":"00","config_path":"/w/rollout.yaml","config_sha256":null,"user":"u","host":"h","version":"0.1.0","from":"debug"}
{"event":"step_failed","run_id":"r1","ts":"2026-12-01T23:00:31Z","step":"extra","error":"preflight: refused"}
{"event":"step_skipped","run_id":"r1","ts":"2026-12-01T23:00:32Z","step":"disable","by":"operator"}
{"event":"step_started","run_id":"r1","ts":"2026-12-01T23:00:32Z","step":"debug","index":2,"total":5,"kind":"manual"}
{"event":"step_preview","run_id":"r1","ts":"2026-12-01T23:00:32Z","step":"debug","before":{"summary":"to do"},"after":{"summary":"done"}}
{"event":"step_confirmed","run_id":"r1","ts":"2026-12-01T23:00:33Z","step":"debug","by":"operator"}
{"event":"step_succeeded","run_id":"r1","ts":"2026-12-01T23:00:33Z","step":"debug","outputs":{"note":"x"},"duration_ms":0,"outcome":"done, as the operator confirmed"}
{"event":"step_started","run_id":"r1","ts":"2026-12-01T23:00:34Z","step":"deploy-fix","index":3,"total":5,"kind":"ci"}
{"event":"step_triggered","run_id":"r1","ts":"2026-12-01T23:00:34Z","step":"deploy-fix","pipeline_run":"7","url":""}
{"event":"step_failed","run_id":"r1","ts":"2026-12-01T23:00:35Z","step":"deploy-fix","error":"run 7 failed"}
{"event":"step_started","run_id":"r1","ts":"2026-12-01T23:00:36Z","step":"reenable","index":4,"total":5,"kind":"flag"}
{"event":"step_skipped","run_id":"r1","ts":"2026-12-01T23:00:36Z","step":"reenable","by":"operator"}
{"event":"step_started","run_id":"r1","ts":"2026-12-01T23:00:37Z","step":"extra","index":5,"total":5,"kind":"manual"}
{"event":"step_failed","run_id":"r1","ts":"2026-12-01T23:00:38Z","step":"extra","error":"interrupted at the prompt","unanswered":true}
{"event":"run_finished","run_id":"r1","ts":"2026-12-01T23:00:38Z","status":"interrupted","exit_code":130}
"#;

    const IDS: [&str; 5] = ["disable", "debug", "deploy-fix", "reenable", "extra"];

    fn records(text: &str) -> Vec<Record> {
        text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))).collect()
    }

    #[test]
    fn every_prefix_folds_and_counts_each_step_once() {
        let records = records(JOURNAL);
        assert!(RunState::fold(&[]).is_none());
        for end in 1..=records.len() {
            let state = RunState::fold(&records[..end]).expect("it starts with run_started");
            let tally = state.tally(&IDS);
            assert_eq!(tally.done + tally.skipped + tally.failed + tally.not_run, IDS.len(), "prefix {end}");
            assert!(state.progress(IDS.len()).starts_with("rollout critical (run r1): "), "prefix {end}");
        }
    }

    #[test]
    fn a_finished_run_folds_into_its_tally_summary_and_progress() {
        let state = RunState::fold(&records(JOURNAL)).unwrap();
        assert_eq!(state.tally(&IDS).to_string(), "1 done, 2 skipped, 1 failed, 1 not run");
        assert_eq!((state.status, state.exit_code, state.total), (Some(RunStatus::Interrupted), Some(130), 5));
        assert_eq!(
            state.summary(&IDS).unwrap(),
            [
                "  disable     skipped (--from debug)",
                "  debug       done, as the operator confirmed",
                "  deploy-fix  failed: run 7 failed",
                "  reenable    skipped by the operator",
                "  extra       not run",
            ]
        );
        assert_eq!(state.progress(5), "rollout critical (run r1): 1 of 5 steps done (debug)");
        assert_eq!(state.outputs()["debug"]["note"], "x");
    }

    #[test]
    fn a_dry_run_previews_and_runs_nothing() {
        let text = JOURNAL.replace(r#""dry_run":false"#, r#""dry_run":true"#);
        let state = RunState::fold(&records(&text)).unwrap();
        assert!(state.summary(&IDS).is_none());
        assert_eq!(state.tally(&IDS).not_run, IDS.len());
    }

    proptest::proptest! {
        /// A journal cut anywhere (a crash mid-line), with lines dropped, repeated or foreign,
        /// reads with warnings and folds without a panic, every step counted once.
        #[test]
        fn any_cut_or_garbled_journal_folds(
            cut in 0usize..JOURNAL.len(),
            noise in proptest::collection::vec((0usize..16, "\\PC{0,30}"), 0..4),
            drop in proptest::option::of(1usize..15),
        ) {
            let mut lines: Vec<String> = JOURNAL[..cut].split_inclusive('\n').map(str::to_string).collect();
            if let Some(at) = drop.filter(|at| *at < lines.len()) {
                lines.remove(at);
            }
            for (at, text) in &noise {
                lines.insert((*at).min(lines.len()), format!("{text}\n"));
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("r1.jsonl");
            std::fs::write(&path, lines.concat()).unwrap();
            let read = crate::engine::journal::read(&path).unwrap();
            if let Some(state) = RunState::fold(&read.records) {
                let tally = state.tally(&IDS);
                proptest::prop_assert_eq!(tally.done + tally.skipped + tally.failed + tally.not_run, IDS.len());
                let _ = state.summary(&IDS);
            }
            let _ = crate::engine::story::Story::fold(&read.records);
        }
    }
}
