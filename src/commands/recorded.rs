//! A run read back from its journal for `resume` and `undo`: its records, state and origin, and
//! the runbook and config it started with, refused when they changed since (unless forced).

use std::path::Path;

use anyhow::anyhow;

use crate::config::Config;
use crate::engine::event::{Event, Origin, Purpose, Record};
use crate::engine::journal;
use crate::engine::lock::{self, Liveness};
use crate::engine::state::RunState;
use crate::error::{Error, ExitCode};
use crate::runbook::LoadedRunbook;
use crate::runbook::inputs::Inputs;
use crate::ui::Ui;

/// A run's journal read back, with what `resume` and `undo` need of it.
#[derive(Debug)]
pub struct Recorded {
    pub records: Vec<Record>,
    pub state: RunState,
    pub origin: Origin,
    pub inputs: Inputs,
    pub purpose: Option<Purpose>,
    /// The inputs the journal shows scrubbed of a secret.
    pub scrubbed_inputs: Vec<String>,
}

/// Read run `run` from the state folder: its journal must be a real run's (a rehearsal's
/// sandbox is gone), with the origin this version journals.
pub fn recorded(ui: &Ui, state_dir: &Path, run: &str) -> Result<Recorded, Error> {
    let (path, rehearsal) = journal::find(state_dir, run).map_err(Error::invalid)?.ok_or_else(|| {
        Error::invalid(anyhow!(
            "no run {} in {}",
            crate::untrusted::one_line(&crate::echo::clip(run)),
            journal::runs_dir(state_dir).display()
        ))
        .with_hint("`rollout runs` lists them")
    })?;
    if rehearsal {
        return Err(Error::invalid(anyhow!("run {run} is a rehearsal: its sandbox is gone, so it cannot be taken up")));
    }
    let read = journal::read(&path)?;
    for warning in &read.warnings {
        ui.warn(warning);
    }
    // The journal is the file's: resume appends to the journal its records name.
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(other) = read.records.iter().find(|r| r.run_id != stem) {
        return Err(Error::invalid(anyhow!(
            "{} holds records of run {}, not of run {stem}: it is not that run's journal",
            path.display(),
            crate::untrusted::one_line(&crate::echo::clip(&other.run_id))
        )));
    }
    let state = RunState::fold(&read.records)
        .ok_or_else(|| Error::invalid(anyhow!("{} has no run_started: it is not a run's journal", path.display())))?;
    let started = read.records.iter().rev().find_map(|r| match &r.event {
        Event::RunStarted { origin, inputs, purpose, scrubbed_inputs, .. } => {
            Some((origin.clone(), inputs.clone(), purpose.clone(), scrubbed_inputs.clone()))
        }
        _ => None,
    });
    let Some((Some(origin), inputs, purpose, scrubbed_inputs)) = started else {
        return Err(Error::invalid(anyhow!(
            "run {} was journaled by an older rollout that did not record its runbook and config",
            state.run_id
        )));
    };
    Ok(Recorded { records: read.records, state, origin: *origin, inputs, purpose, scrubbed_inputs })
}

/// The runbook and config the run started with, as they are now; refused when either changed
/// since (the difference shown) unless `force`.
pub fn files(ui: &Ui, recorded: &Recorded, force: bool) -> Result<(Config, LoadedRunbook), Error> {
    let origin = &recorded.origin;
    let runbook_path = Path::new(&origin.runbook_path);
    if !runbook_path.is_absolute() {
        return Err(Error::invalid(anyhow!(
            "run {} walked a shipped runbook, which is no file",
            recorded.state.run_id
        )));
    }
    let config = Config::load(Path::new(&origin.config_path))?;
    let runbook = LoadedRunbook::load(runbook_path)?;
    let mut changed = Vec::new();
    if crate::engine::event::sha256(runbook.source.text.as_bytes()) != origin.runbook_sha256 {
        let then = origin.runbook_text.clone();
        changed.push(Changed { what: "runbook", path: &origin.runbook_path, then, now: runbook.source.text.clone() });
    }
    changed.extend(config_change(origin));
    refuse_changed(ui, recorded, &changed, force, "resumed")?;
    Ok((config, runbook))
}

/// The config the run started with, as it is now; refused when it changed since (the
/// difference shown) unless `force`: an undo acts on the services the run acted on.
pub fn config(ui: &Ui, recorded: &Recorded, force: bool) -> Result<Config, Error> {
    let config = Config::load(Path::new(&recorded.origin.config_path))?;
    let changed: Vec<Changed> = config_change(&recorded.origin).into_iter().collect();
    refuse_changed(ui, recorded, &changed, force, "undone")?;
    Ok(config)
}

/// A file the run read that is not what it was: its text then (if journaled) and now.
struct Changed<'a> {
    what: &'static str,
    path: &'a str,
    then: Option<String>,
    now: String,
}

fn config_change(origin: &Origin) -> Option<Changed<'_>> {
    let now = std::fs::read_to_string(&origin.config_path).unwrap_or_default();
    let digest = origin.config_sha256.as_deref()?;
    (digest != crate::engine::event::sha256(now.as_bytes())).then(|| Changed {
        what: "config",
        path: &origin.config_path,
        then: origin.config_text.clone(),
        now,
    })
}

/// Show each change as a unified diff; refuse unless `force`.
fn refuse_changed(ui: &Ui, recorded: &Recorded, changed: &[Changed], force: bool, done: &str) -> Result<(), Error> {
    for change in changed {
        ui.always(format!(
            "{} the {} {} changed since run {} started:",
            ui.caution("!"),
            change.what,
            change.path,
            recorded.state.run_id
        ));
        match &change.then {
            Some(then) => {
                let diff = similar::TextDiff::from_lines(then.as_str(), change.now.as_str());
                let shown = diff.unified_diff().context_radius(2).header("when the run started", "now").to_string();
                for line in shown.lines() {
                    ui.always(format!("    {}", crate::untrusted::printable(line)));
                }
            }
            None => ui.always("    (this journal does not keep the text: only its digest differs)"),
        }
    }
    if changed.is_empty() || force {
        return Ok(());
    }
    let what: Vec<&str> = changed.iter().map(|c| c.what).collect();
    Err(Error::invalid(anyhow!(
        "the {} changed since run {} started: not {done}",
        what.join(" and "),
        recorded.state.run_id
    ))
    .with_hint("look at the difference above; --force goes on with the files as they are now"))
}

/// Run `run` read back to be taken further (`verb`: resume, undo): refused when it is a dry
/// run, which changed nothing, or when it is still going.
pub fn to_take_further(ui: &Ui, state_dir: &Path, run: &str, verb: &str) -> Result<Recorded, Error> {
    let recorded = recorded(ui, state_dir, run)?;
    let run_id = &recorded.state.run_id;
    if recorded.state.dry_run {
        return Err(Error::invalid(anyhow!(
            "run {run_id} is a dry run: it changed nothing, so there is nothing to {verb}"
        )));
    }
    refuse_if_running(state_dir, run_id, verb)?;
    Ok(recorded)
}

/// Refuse (exit 5) while run `run_id` is still going: a process holds its lock.
fn refuse_if_running(state_dir: &Path, run_id: &str, verb: &str) -> Result<(), Error> {
    for (_, holder) in lock::holders(state_dir) {
        if holder.run_id == run_id && holder.liveness() == Liveness::Running {
            return Err(Error::new(ExitCode::Locked, anyhow!("run {run_id} is still going: {holder}"))
                .with_hint(format!("wait for it to finish, or stop it, before you {verb} it")));
        }
    }
    Ok(())
}
