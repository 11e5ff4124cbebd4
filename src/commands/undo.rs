//! `rollout undo RUN`: put back what a run changed, its steps in reverse, each previewed and
//! confirmed; itself a run in the journal, under the same lock as the run's runbook.

use std::collections::HashMap;
use std::path::Path;

use anyhow::anyhow;

use super::recorded::{Recorded, to_take_further};
use crate::cli::UndoArgs;
use crate::config::Config;
use crate::engine::event::{Event, Purpose};
use crate::engine::journal;
use crate::engine::{self, Script, Scripted, WalkOptions};
use crate::error::{Error, ExitCode};
use crate::runbook::LoadedRunbook;
use crate::runbook::kinds::flag::FlagRestore;
use crate::runbook::kinds::revert::RevertRequest;
use crate::runbook::resolve::Action;
use crate::steps::Services;
use crate::steps::flag::FlagStepState;
use crate::ui::Ui;
use crate::yaml::Source;

/// One step of the undo: the step it takes back, its name, the kind it runs as, and what it does.
struct UndoStep {
    undoes: String,
    name: String,
    kind: &'static str,
    scripted: Scripted,
}

/// What undoing the done step `id` of kind `kind` takes: put its flag back, reapply what its
/// revert removed, or nothing (and why).
fn undo_step(recorded: &Recorded, config: &Config, id: &str, kind: &str) -> UndoStep {
    let state = &recorded.state;
    let run = &state.run_id;
    let outputs = state.outputs().get(id).cloned().unwrap_or_default();
    let get = |key: &str| outputs.get(key).map(String::as_str).unwrap_or_default();
    let skip = |why: String| UndoStep {
        undoes: id.to_string(),
        name: format!("Take back step {id}"),
        kind: "manual",
        scripted: Scripted::Skip(why),
    };
    // Confirmed, and the run stopped before saying how it went: the write may have been made.
    if state.in_flight().contains(id) && !matches!(kind, "flag" | "gate") {
        return skip(match kind {
            "revert" => "the run stopped during this revert, which may have been pushed: its commit is not journaled; look at the branch".into(),
            "ci" => "the run stopped after this step was confirmed: a pipeline run may have been triggered, which cannot be taken back".into(),
            "notify" => "its message may have been posted, and a message sent cannot be taken back".into(),
            _ => "the run stopped during this step: take it back by hand if needed".into(),
        });
    }
    if get("changed") == "false" || (kind == "revert" && get("commits").is_empty()) {
        return skip("it changed nothing".into());
    }
    match kind {
        "flag" => {
            let read = |value: Option<&serde_json::Value>| {
                value.and_then(|v| serde::Deserialize::deserialize(v).ok()).map(|s: FlagStepState| s)
            };
            let preview = state.preview(id);
            match (read(preview.map(|p| &p.0)), read(preview.map(|p| &p.1))) {
                (Some(before), Some(after)) => UndoStep {
                    undoes: id.to_string(),
                    name: format!("Put flag {} back as run {run} found it", crate::untrusted::one_line(&before.flag)),
                    kind: "flag",
                    scripted: Scripted::Act(Action::Restore(Box::new(FlagRestore {
                        flag: before.flag,
                        to: before.state,
                        left: after.state,
                        run: run.clone(),
                        force: false,
                    }))),
                },
                _ => skip("the journal does not hold the flag's state before and after the step".into()),
            }
        }
        "revert" => {
            let (remote, base) =
                config.git.as_ref().map_or(("origin", "main"), |g| (g.remote.as_str(), g.branch.as_str()));
            let branch = get("branch");
            if branch.is_empty() {
                return skip(format!(
                    "the revert {} was not pushed: it is in the clone only",
                    crate::echo::short_id(get("commit"))
                ));
            }
            if branch != base {
                return skip(format!(
                    "the revert was pushed to its own branch {branch}: delete that with `git push {remote} --delete {branch}`"
                ));
            }
            UndoStep {
                undoes: id.to_string(),
                name: format!("Reapply what step {id} reverted on {remote}/{branch}"),
                kind: "revert",
                scripted: Scripted::Act(Action::Revert(RevertRequest {
                    commits: get("commits").split_whitespace().map(String::from).collect(),
                    squash: false,
                    mainline: None,
                    push: true,
                    branch: None,
                })),
            }
        }
        "ci" => {
            let url = if get("url").is_empty() { String::new() } else { format!(", {}", get("url")) };
            skip(format!(
                "a pipeline run cannot be taken back (run {}{url}): deploy the version wanted through CI",
                get("run_id")
            ))
        }
        "notify" => skip("a message sent cannot be taken back".into()),
        "gate" => skip("a gate only read a metric: nothing to take back".into()),
        _ => skip("a manual step was done by hand: take it back by hand if needed".into()),
    }
}

/// A flag that several steps of the run changed is put back once, by the undo of the newest of
/// them (`steps` is newest first), to the state the oldest of them found; the others are
/// skipped, naming it. Put back one step at a time, each would check the flag against the
/// state its own step left, which the other put-back changes: a second undo of the run, or one
/// whose newer put-back was skipped at its prompt, would refuse the flag as changed by someone.
fn merge_flag_restores(steps: &mut [UndoStep]) {
    let mut newest: HashMap<String, usize> = HashMap::new();
    for index in 0..steps.len() {
        let Scripted::Act(Action::Restore(restore)) = &steps[index].scripted else { continue };
        let Some(&first) = newest.get(&restore.flag) else {
            newest.insert(restore.flag.clone(), index);
            continue;
        };
        let (flag, to, run) = (restore.flag.clone(), restore.to.clone(), restore.run.clone());
        if let Scripted::Act(Action::Restore(kept)) = &mut steps[first].scripted {
            kept.to = to;
        }
        let reason = format!(
            "flag {flag} is put back as run {run} found it before this step by undo-{}: that takes this change back too",
            steps[first].undoes
        );
        let step = &mut steps[index];
        step.scripted = Scripted::Skip(reason);
        step.kind = "manual";
        step.name = format!("Take back step {}", step.undoes);
    }
}

/// The undo as a runbook: one step per step taken back, newest first. Its path is the undone
/// run's runbook, so that the undo takes the same lock; its steps' actions are scripted.
fn undo_runbook(recorded: &Recorded, steps: &[UndoStep]) -> Result<LoadedRunbook, Error> {
    if let Some(bad) = steps.iter().find(|s| !crate::runbook::validate::is_identifier(&s.undoes, true)) {
        return Err(Error::invalid(anyhow!(
            "the journal of run {} names a step `{}`, which is no step id: it was not written by rollout as it is",
            recorded.state.run_id,
            crate::untrusted::one_line(&crate::echo::clip(&bad.undoes))
        )));
    }
    let quoted = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let mut yaml = format!(
        "version: 1\ntitle: {}\nsteps:\n",
        quoted(&format!("Undo of run {} (runbook {})", recorded.state.run_id, recorded.state.runbook))
    );
    for step in steps {
        let kind = match step.kind {
            "flag" => "flag: { name: undone, expect: on }".to_string(),
            "revert" => "revert: { commit: HEAD }".to_string(),
            _ => format!("manual: {{ instructions: {} }}", quoted(&step.name)),
        };
        yaml.push_str(&format!(
            "  - id: {}\n    name: {}\n    {kind}\n",
            quoted(&format!("undo-{}", step.undoes)),
            quoted(&step.name)
        ));
    }
    let path = Path::new(&recorded.origin.runbook_path).to_path_buf();
    LoadedRunbook::from_source(Source::new(path, yaml)).map_err(Error::from)
}

pub fn undo(ui: &Ui, args: &UndoArgs) -> Result<ExitCode, Error> {
    crate::interrupt::install();
    let state_dir = journal::state_dir();
    let recorded = to_take_further(ui, &state_dir, &args.run, "undo")?;
    let run_id = recorded.state.run_id.clone();
    if recorded.purpose == Some(Purpose::Unlock) {
        return Err(Error::invalid(anyhow!("run {run_id} records an unlock: there is nothing to undo")));
    }
    let config = super::recorded::config(ui, &recorded, args.force)?;
    let kinds: HashMap<&str, &str> = recorded
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::StepStarted { step, kind, .. } => Some((step.as_str(), kind.as_str())),
            _ => None,
        })
        .collect();
    // The steps done, and those confirmed whose end the journal lacks (the run stopped during the
    // write): newest first, by when they last started.
    let changed: Vec<&str> = {
        let state = &recorded.state;
        let mut last_start: Vec<&str> = Vec::new();
        for record in &recorded.records {
            if let Event::StepStarted { step, .. } = &record.event
                && (state.done().contains(&step.as_str()) || state.in_flight().contains(step))
            {
                last_start.retain(|s| *s != step);
                last_start.push(step);
            }
        }
        last_start
    };
    let mut steps: Vec<UndoStep> = changed
        .iter()
        .rev()
        .map(|id| undo_step(&recorded, &config, id, kinds.get(id).copied().unwrap_or("manual")))
        .collect();
    merge_flag_restores(&mut steps);
    for step in &mut steps {
        if let Scripted::Act(Action::Restore(restore)) = &mut step.scripted {
            restore.force = args.force;
        }
    }
    if steps.is_empty() {
        ui.always(format!("run {run_id} did no step: there is nothing to undo"));
        return Ok(ExitCode::Success);
    }
    let runbook = undo_runbook(&recorded, &steps)?;
    let undoable = steps.iter().filter(|s| matches!(s.scripted, Scripted::Act(_))).count();
    ui.always(format!(
        "Undo of run {run_id} (runbook {}): {undoable} of {} done step{} can be taken back, newest first",
        ui.bold(&recorded.state.runbook),
        steps.len(),
        if steps.len() == 1 { "" } else { "s" }
    ));
    let services = Services::new(&config);
    let script =
        Script { purpose: Purpose::Undo { run: run_id }, steps: steps.into_iter().map(|s| s.scripted).collect() };
    let options = WalkOptions { yes: args.yes, script: Some(script), ..WalkOptions::default() };
    engine::walk(ui, &config, &services, &runbook, &options, &state_dir).map(|finished| finished.code)
}
