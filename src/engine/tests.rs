//! The walk in-process, against scripted steps: retries, `on_failure`, `--from`, never
//! triggering twice, unchanged steps, rechecks and interruption, in milliseconds.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Parser;

use super::event::{Event, RunStatus};
use super::{Finished, Resumption, WalkOptions, journal, walk};
use crate::backoff::Backoff;
use crate::cli::Cli;
use crate::config::Config;
use crate::error::{ExitCode, Interrupted, Started};
use crate::runbook::resolve::{Action, Outputs};
use crate::runbook::{LoadedRunbook, StepKind};
use crate::steps::{Applied, Context, Note, Preview, Step, StepFactory};
use crate::ui::Ui;

/// What one attempt of `apply` does.
#[derive(Clone, Copy)]
enum Apply {
    Fail,
    /// Triggers a pipeline run, then fails: the run started and must not be triggered again.
    TriggerThenFail,
    Interrupt,
}

/// A step's script: what its preview says, what its applies do (then succeed), and what happened.
#[derive(Default)]
struct Script {
    unchanged: bool,
    /// The preview read again right before the write, once.
    moved: RefCell<Option<Preview>>,
    applies: RefCell<VecDeque<Apply>>,
    applied: Cell<u32>,
    verified: Cell<u32>,
    triggers: Cell<u32>,
    /// The pipeline run each apply was handed as triggered before the run stopped.
    earlier: RefCell<Vec<Option<String>>>,
}

impl Script {
    fn applying(attempts: &[Apply]) -> Rc<Script> {
        Rc::new(Script { applies: RefCell::new(attempts.iter().copied().collect()), ..Script::default() })
    }
}

struct FakeStep(Rc<Script>);

impl Step for FakeStep {
    fn preview(&self, _cx: &Context) -> Result<Preview> {
        let unchanged = self.0.unchanged.then(Outputs::new);
        Ok(Preview { effect: "change it".into(), unchanged, ..Preview::default() })
    }

    fn recheck(&self, _cx: &Context, _confirmed: &Preview) -> Result<Option<Preview>> {
        Ok(self.0.moved.borrow_mut().take())
    }

    fn apply(&self, cx: &Context, _preview: &Preview) -> Result<Applied> {
        self.0.applied.set(self.0.applied.get() + 1);
        self.0.earlier.borrow_mut().push(cx.earlier_run.as_ref().map(|run| run.id.clone()));
        match self.0.applies.borrow_mut().pop_front() {
            None => Ok(Applied::outputs(Outputs::from([("done".to_string(), "yes".to_string())]))),
            Some(Apply::Fail) => Err(anyhow!("the service said no")),
            Some(Apply::TriggerThenFail) => {
                self.0.triggers.set(self.0.triggers.get() + 1);
                (cx.journal)(Note::Triggered { run: "4812", url: "https://ci.example/4812" })?;
                Err(anyhow!(Started(anyhow!("lost the run while polling"))))
            }
            Some(Apply::Interrupt) => Err(anyhow!(Interrupted("while waiting".into()))),
        }
    }

    fn verify(&self, _cx: &Context, _applied: &Applied) -> Result<()> {
        self.0.verified.set(self.0.verified.get() + 1);
        Ok(())
    }
}

/// Steps by their manual instructions, which the runbooks below set to the step's id.
#[derive(Default)]
struct FakeServices(HashMap<String, Rc<Script>>);

impl StepFactory for FakeServices {
    fn step(&self, action: Action) -> Result<Box<dyn Step + '_>> {
        let Action::Manual(request) = action else { return Err(anyhow!("only manual steps here")) };
        let script = self.0.get(&request.instructions).cloned().unwrap_or_default();
        Ok(Box::new(FakeStep(script)))
    }

    fn prepare(&self, _kind: StepKind) -> Result<()> {
        Ok(())
    }

    fn describe(&self, _kind: StepKind) -> Option<(&'static str, String)> {
        None
    }
}

/// A runbook of manual steps `ids`, each with the extra YAML lines given for it.
fn runbook_yaml(steps: &[(&str, &str)]) -> String {
    let mut yaml = String::from("version: 1\ntitle: Test\nsteps:\n");
    for (id, extra) in steps {
        yaml.push_str(&format!("  - id: {id}\n    name: {id}\n    manual: {{ instructions: {id} }}\n"));
        for line in extra.lines() {
            yaml.push_str(&format!("    {line}\n"));
        }
    }
    yaml
}

/// A folder with a config and the runbook of manual steps `steps`, loaded, and a quiet Ui.
fn workspace(steps: &[(&str, &str)]) -> (tempfile::TempDir, Config, LoadedRunbook, Ui) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("runbooks")).expect("runbooks dir");
    std::fs::write(dir.path().join("rollout.yaml"), "version: 1\n").expect("config");
    let runbook_path = dir.path().join("runbooks/test.yaml");
    std::fs::write(&runbook_path, runbook_yaml(steps)).expect("runbook");
    let config = Config::load(&dir.path().join("rollout.yaml")).expect("config loads");
    let runbook = LoadedRunbook::load(&runbook_path).expect("runbook loads");
    let ui = Ui::new(&Cli::parse_from(["rollout", "--quiet", "run", "test"]));
    (dir, config, runbook, ui)
}

/// Walk `steps` with `--yes` (and `from`) against `services`; the end and the journal's events.
fn walk_with(steps: &[(&str, &str)], services: &FakeServices, from: Option<&str>) -> (Finished, Vec<Event>) {
    let (dir, config, runbook, ui) = workspace(steps);
    let no_pause = Backoff { first: Duration::ZERO, ..Backoff::STEP_RETRY };
    let options =
        WalkOptions { yes: true, from: from.map(String::from), retry_pause: Some(no_pause), ..WalkOptions::default() };
    let state = dir.path().join("state");
    let finished = walk(&ui, &config, services, &runbook, &options, &state).expect("the walk ends");
    let journal = journal::runs_dir(&state).join(format!("{}.jsonl", finished.state.run_id));
    let events = journal::read(&journal).expect("journal").records.into_iter().map(|r| r.event).collect();
    (finished, events)
}

fn services(scripts: &[(&str, &Rc<Script>)]) -> FakeServices {
    FakeServices(scripts.iter().map(|(id, script)| (id.to_string(), Rc::clone(script))).collect())
}

fn last_status(events: &[Event]) -> Option<RunStatus> {
    match events.last() {
        Some(Event::RunFinished { status, .. }) => Some(*status),
        _ => None,
    }
}

#[test]
fn a_failing_apply_is_retried_then_succeeds() {
    let flaky = Script::applying(&[Apply::Fail, Apply::Fail]);
    let (finished, events) = walk_with(&[("a", "retries: 2")], &services(&[("a", &flaky)]), None);
    assert_eq!(finished.code, ExitCode::Success);
    assert_eq!((flaky.applied.get(), flaky.verified.get()), (3, 1));
    assert_eq!(last_status(&events), Some(RunStatus::Succeeded));
}

#[test]
fn retries_run_out_and_the_run_stops() {
    let broken = Script::applying(&[Apply::Fail, Apply::Fail]);
    let after = Script::applying(&[]);
    let (finished, _) = walk_with(&[("a", "retries: 1"), ("b", "")], &services(&[("a", &broken), ("b", &after)]), None);
    assert_eq!(finished.code, ExitCode::StepFailed);
    assert_eq!((broken.applied.get(), after.applied.get()), (2, 0));
}

#[test]
fn on_failure_continue_goes_on_and_the_run_fails() {
    let broken = Script::applying(&[Apply::Fail]);
    let after = Script::applying(&[]);
    let steps = [("a", "on_failure: continue"), ("b", "")];
    let (finished, events) = walk_with(&steps, &services(&[("a", &broken), ("b", &after)]), None);
    assert_eq!(finished.code, ExitCode::StepFailed);
    assert_eq!(after.applied.get(), 1);
    assert_eq!(last_status(&events), Some(RunStatus::Failed));
}

#[test]
fn from_skips_the_earlier_steps() {
    let (first, second) = (Script::applying(&[]), Script::applying(&[]));
    let (finished, events) = walk_with(&[("a", ""), ("b", "")], &services(&[("a", &first), ("b", &second)]), Some("b"));
    assert_eq!(finished.code, ExitCode::Success);
    assert_eq!((first.applied.get(), second.applied.get()), (0, 1));
    assert!(events.iter().any(|e| matches!(e, Event::StepSkipped { step, .. } if step == "a")));
}

#[test]
fn a_started_run_is_never_triggered_again() {
    let pipeline = Script::applying(&[Apply::TriggerThenFail]);
    let (finished, events) = walk_with(&[("a", "retries: 3")], &services(&[("a", &pipeline)]), None);
    assert_eq!(finished.code, ExitCode::StepFailed);
    assert_eq!(pipeline.triggers.get(), 1);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::StepTriggered { .. })).count(), 1);
}

#[test]
fn an_unchanged_step_is_not_applied() {
    let done = Rc::new(Script { unchanged: true, ..Script::default() });
    let (finished, events) = walk_with(&[("a", "")], &services(&[("a", &done)]), None);
    assert_eq!(finished.code, ExitCode::Success);
    assert_eq!(done.applied.get(), 0);
    assert!(!events.iter().any(|e| matches!(e, Event::StepConfirmed { .. })));
}

#[test]
fn under_yes_a_preview_read_moments_ago_is_written_without_a_second_read() {
    // (An older read is read again: tests/integration/exposure.rs, on Flipper.)
    let moved = Preview { effect: "change it, from elsewhere".into(), ..Preview::default() };
    let script = Rc::new(Script { moved: RefCell::new(Some(moved)), ..Script::default() });
    let (finished, events) = walk_with(&[("a", "")], &services(&[("a", &script)]), None);
    assert_eq!(finished.code, ExitCode::Success);
    assert!(script.moved.borrow().is_some(), "the step was read again before its write");
    assert_eq!(events.iter().filter(|e| matches!(e, Event::StepPreview { .. })).count(), 1);
    assert_eq!(script.applied.get(), 1);
}

#[test]
fn an_interruption_ends_the_run_with_130() {
    let stopped = Script::applying(&[Apply::Interrupt]);
    let after = Script::applying(&[]);
    let steps = [("a", "retries: 2"), ("b", "")];
    let (finished, events) = walk_with(&steps, &services(&[("a", &stopped), ("b", &after)]), None);
    assert_eq!(finished.code.code(), 130);
    assert_eq!((stopped.applied.get(), after.applied.get()), (1, 0));
    assert_eq!(last_status(&events), Some(RunStatus::Interrupted));
}

/// Walk `steps` once, then resume the run it left, as `rollout resume` does: both ends, and
/// the one journal's events.
fn walk_then_resume(steps: &[(&str, &str)], services: &FakeServices) -> (Finished, Finished, Vec<Event>) {
    let (dir, config, runbook, ui) = workspace(steps);
    let state = dir.path().join("state");
    let options = WalkOptions { yes: true, ..WalkOptions::default() };
    let first = walk(&ui, &config, services, &runbook, &options, &state).expect("the walk ends");
    let path = journal::runs_dir(&state).join(format!("{}.jsonl", first.state.run_id));
    let records = journal::read(&path).expect("journal").records;
    let at = runbook
        .runbook
        .steps
        .iter()
        .position(|s| !matches!(first.state.result(&s.common.id), Some(super::StepResult::Done)))
        .expect("a step to go on from");
    let resumption = Resumption { run_id: first.state.run_id.clone(), records, at, forced: false, drift: Vec::new() };
    let options = WalkOptions { yes: true, resume: Some(resumption), ..WalkOptions::default() };
    let second = walk(&ui, &config, services, &runbook, &options, &state).expect("the resumed walk ends");
    let events = journal::read(&path).expect("journal").records.into_iter().map(|r| r.event).collect();
    (first, second, events)
}

#[test]
fn a_resumed_run_goes_on_in_its_journal_and_never_runs_a_settled_step_again() {
    let (a, b, c, d) = (
        Script::applying(&[]),
        Script::applying(&[Apply::Fail]),
        Script::applying(&[]),
        Script::applying(&[Apply::Fail]),
    );
    let steps = [("a", ""), ("b", "on_failure: continue"), ("c", ""), ("d", "")];
    let (first, second, events) = walk_then_resume(&steps, &services(&[("a", &a), ("b", &b), ("c", &c), ("d", &d)]));
    assert_eq!((first.code, second.code), (ExitCode::StepFailed, ExitCode::Success));
    assert_eq!(second.state.run_id, first.state.run_id);
    let applied = [&a, &b, &c, &d].map(|s| s.applied.get());
    assert_eq!(applied, [1, 2, 1, 2], "a and c ran once; b and d failed, then ran again");
    assert_eq!(events.iter().filter(|e| matches!(e, Event::RunStarted { .. })).count(), 1);
    let resumed: Vec<&str> = events
        .iter()
        .filter_map(|e| if let Event::RunResumed { at, .. } = e { Some(at.as_str()) } else { None })
        .collect();
    assert_eq!(resumed, ["b"]);
    assert_eq!(last_status(&events), Some(RunStatus::Succeeded));
    assert_eq!(second.state.tally(&["a", "b", "c", "d"]).done, 4);
}

#[test]
fn a_resumed_step_is_handed_the_run_it_triggered_and_a_settled_one_is_not() {
    let lost = Script::applying(&[Apply::TriggerThenFail]);
    let (_, second, _) = walk_then_resume(&[("a", "")], &services(&[("a", &lost)]));
    assert_eq!(second.code, ExitCode::Success);
    assert_eq!(*lost.earlier.borrow(), [None, Some("4812".to_string())], "the lost run is followed, not triggered");

    let failed = Script::applying(&[Apply::Fail]);
    walk_then_resume(&[("a", "")], &services(&[("a", &failed)]));
    assert_eq!(*failed.earlier.borrow(), [None, None], "nothing was triggered to follow");
}
