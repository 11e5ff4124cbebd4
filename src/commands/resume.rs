//! `rollout resume RUN`: re-check, read-only, that the run's done steps still hold, then go on
//! from the step where it stopped, in the same journal, under the same run id.

use std::collections::HashMap;

use anyhow::anyhow;

use super::recorded::{Recorded, files, to_take_further};
use crate::cli::ResumeArgs;
use crate::engine::event::RunStatus;
use crate::engine::journal;
use crate::engine::state::{RunState, StepResult};
use crate::engine::{self, Resumption, WalkOptions};
use crate::error::{Error, ExitCode};
use crate::runbook::LoadedRunbook;
use crate::runbook::resolve::{self, Scope};
use crate::steps::{Context, Done, Held, Note, Projection, Services, StepFactory};
use crate::ui::Ui;
use crate::ui::prompt::{Answer, NoAnswer};

/// The step to go on from: the first that failed or did not run, never one before the run's
/// `--from` (those were the operator's to skip, whether or not the journal got to say so).
fn resume_point(runbook: &LoadedRunbook, state: &RunState) -> usize {
    let steps = &runbook.runbook.steps;
    let from = state.from.as_deref().and_then(|id| runbook.step_index(id)).unwrap_or(0);
    (from..steps.len())
        .find(|&i| matches!(state.result(&steps[i].common.id), None | Some(StepResult::Failed)))
        .unwrap_or(steps.len())
}

/// Re-check every done step before `at`, read-only; returns what no longer holds (or could
/// not be read).
fn recheck(ui: &Ui, services: &Services, runbook: &LoadedRunbook, recorded: &Recorded, at: usize) -> Vec<String> {
    let state = &recorded.state;
    let done: Vec<usize> =
        (0..at).filter(|i| state.result(&runbook.runbook.steps[*i].common.id) == Some(StepResult::Done)).collect();
    if done.is_empty() {
        return Vec::new();
    }
    ui.always(format!(
        "Re-check of the {} step{} done (read only):",
        done.len(),
        if done.len() == 1 { "" } else { "s" }
    ));
    let projection = Projection::default();
    let quiet = |_: Note| Ok(());
    let cx = Context {
        ui,
        run_id: &state.run_id,
        deadline: None,
        projection: &projection,
        progress: String::new(),
        journal: &quiet,
        earlier_run: None,
        yes: false,
    };
    let width = done.iter().map(|i| runbook.runbook.steps[*i].common.id.chars().count()).max().unwrap_or(0);
    // A flag several done steps changed is checked against the last of them only.
    let flag_of = |index: usize| {
        let id = &runbook.runbook.steps[index].common.id;
        state.preview(id).and_then(|(_, after)| after["flag"].as_str().map(str::to_string))
    };
    let mut last_change: HashMap<String, usize> = HashMap::new();
    for &index in &done {
        if let Some(flag) = flag_of(index) {
            last_change.insert(flag, index);
        }
    }
    let mut drift = Vec::new();
    for index in done {
        let id = &runbook.runbook.steps[index].common.id;
        if let Some(flag) = flag_of(index)
            && let Some(&later) = last_change.get(&flag)
            && later != index
        {
            let by = &runbook.runbook.steps[later].common.id;
            ui.always(format!(
                "  {} {id:<width$}  flag {flag} was changed again by step {by}: checked there",
                ui.dim("·")
            ));
            continue;
        }
        let outputs = state.outputs().get(id).cloned().unwrap_or_default();
        let after = state.preview(id).map(|(_, after)| after.clone()).unwrap_or_default();
        let scope = Scope { inputs: &recorded.inputs, outputs: state.outputs() };
        let held = resolve::action(runbook, index, scope)
            .map_err(|e| anyhow!("{e}"))
            .and_then(|action| services.step(action))
            .and_then(|step| step.holds(&cx, Done { after: &after, outputs: &outputs }));
        let line = match held {
            Ok(Held::Holds(what)) => format!("  {} {id:<width$}  {what}", ui.good("✓")),
            Ok(Held::Unchecked(why)) => format!("  {} {id:<width$}  {why}", ui.dim("·")),
            Ok(Held::Drifted(what)) => {
                drift.push(format!("{id}: {what}"));
                format!("  {} {id:<width$}  {what}", ui.bad("✗"))
            }
            Err(error) => {
                drift.push(format!("{id}: could not be re-checked: {error:#}"));
                format!("  {} {id:<width$}  could not be re-checked: {error:#}", ui.caution("?"))
            }
        };
        ui.always(line);
    }
    drift
}

/// Ask whether to go on although `drift` was found; `--yes` never answers this.
fn go_on_despite(ui: &Ui, drift: &[String], yes: bool, at: &str) -> Result<(), Error> {
    let count = drift.len();
    let refusal = |code| {
        Error::new(code, anyhow!("{count} done step{} no longer hold{}: not resumed", plural(count), verb(count)))
    };
    if yes {
        return Err(refusal(ExitCode::Preflight)
            .with_hint("look at what moved above; --force goes on anyway (--yes alone never does)"));
    }
    loop {
        match ui.ask(&format!("Go on from {at} anyway?"), None) {
            Ok(Answer::Yes) => return Ok(()),
            Ok(Answer::Details) => {
                for line in drift {
                    ui.always(format!("    {line}"));
                }
            }
            Err(NoAnswer::Interrupted) => return Err(refusal(ExitCode::Interrupted)),
            Ok(Answer::Skip | Answer::Abort) | Err(_) => return Err(refusal(ExitCode::Aborted)),
        }
    }
}

/// The run's inputs as `K=V`, each as journaled, except those the journal shows scrubbed of a
/// secret: those must be given again (`--var`), and only those may be.
fn inputs_again(recorded: &Recorded, given: &[String]) -> Result<Vec<String>, Error> {
    let mut again: HashMap<&str, &str> = HashMap::new();
    for var in given {
        let (name, value) = var.split_once('=').ok_or_else(|| {
            Error::invalid(anyhow!(
                "--var {}: give it as NAME=VALUE",
                crate::untrusted::one_line(&crate::echo::clip(var))
            ))
        })?;
        if !recorded.scrubbed_inputs.iter().any(|n| n == name) {
            return Err(Error::invalid(anyhow!(
                "--var {name}: a resumed run keeps the inputs it started with; only one whose value held a secret the journal does not keep is given again"
            )));
        }
        again.insert(name, value);
    }
    let missing: Vec<&str> =
        recorded.scrubbed_inputs.iter().map(String::as_str).filter(|n| !again.contains_key(n)).collect();
    if !missing.is_empty() {
        return Err(Error::invalid(anyhow!(
            "input {} held a secret, which the journal does not keep: give {} again",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ))
        .with_hint(missing.iter().map(|n| format!("--var {n}=...")).collect::<Vec<_>>().join(" ")));
    }
    Ok(recorded
        .inputs
        .iter()
        .map(|(name, value)| format!("{name}={}", again.get(name.as_str()).copied().unwrap_or(value)))
        .collect())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn verb(n: usize) -> &'static str {
    if n == 1 { "s" } else { "" }
}

pub fn resume(ui: &Ui, args: &ResumeArgs) -> Result<ExitCode, Error> {
    crate::interrupt::install();
    let state_dir = journal::state_dir();
    let recorded = to_take_further(ui, &state_dir, &args.run, "resume")?;
    let run_id = recorded.state.run_id.clone();
    if recorded.purpose.is_some() {
        return Err(Error::invalid(anyhow!("run {run_id} is not a runbook's walk: it is not resumed"))
            .with_hint("run `rollout undo` again for an undo: it puts back only what is still changed"));
    }
    match recorded.state.status {
        Some(RunStatus::Succeeded) => {
            return Err(Error::invalid(anyhow!("run {run_id} succeeded: there is nothing to resume")));
        }
        Some(RunStatus::LockRefused) => {
            return Err(Error::invalid(anyhow!(
                "run {run_id} never started: another run held the lock; start a new run instead"
            )));
        }
        _ => {}
    }
    let (config, runbook) = files(ui, &recorded, args.force)?;
    let vars = inputs_again(&recorded, &args.vars)?;
    let services = Services::new(&config);
    let at = resume_point(&runbook, &recorded.state);
    let stopped = recorded.state.status.map_or("it stopped without finishing", RunStatus::as_str);
    let at_step =
        runbook.runbook.steps.get(at).map_or("the end".to_string(), |s| {
            format!("step {}/{} {}", at + 1, runbook.runbook.steps.len(), s.common.id)
        });
    ui.always(format!("Resuming run {run_id} of runbook {} ({stopped}), at {at_step}", ui.bold(&runbook.name)));
    let drift = recheck(ui, &services, &runbook, &recorded, at);
    if !drift.is_empty() && !args.force {
        go_on_despite(ui, &drift, args.yes, &at_step)?;
    }
    let options = WalkOptions {
        vars,
        yes: args.yes,
        resume: Some(Resumption { run_id, records: recorded.records, at, forced: args.force, drift }),
        ..WalkOptions::default()
    };
    engine::walk(ui, &config, &services, &runbook, &options, &state_dir).map(|finished| finished.code)
}
