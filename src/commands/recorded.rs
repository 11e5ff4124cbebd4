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
}

/// Read run `run` from the state folder: its journal must be a real run's (a rehearsal's
/// sandbox is gone), with the origin this version journals.
pub fn recorded(ui: &Ui, state_dir: &Path, run: &str) -> Result<Recorded, Error> {
    let (path, rehearsal) = journal::find(state_dir, run).map_err(Error::invalid)?.ok_or_else(|| {
        Error::invalid(anyhow!("no run {} in {}", crate::echo::clip(run), journal::runs_dir(state_dir).display()))
            .with_hint("`rollout runs` lists them")
    })?;
    if rehearsal {
        return Err(Error::invalid(anyhow!("run {run} is a rehearsal: its sandbox is gone, so it cannot be taken up")));
    }
    let read = journal::read(&path)?;
    for warning in &read.warnings {
        ui.warn(warning);
    }
    let state = RunState::fold(&read.records)
        .ok_or_else(|| Error::invalid(anyhow!("{} has no run_started: it is not a run's journal", path.display())))?;
    let started = read.records.iter().rev().find_map(|r| match &r.event {
        Event::RunStarted { origin, inputs, purpose, .. } => Some((origin.clone(), inputs.clone(), purpose.clone())),
        _ => None,
    });
    let Some((Some(origin), inputs, purpose)) = started else {
        return Err(Error::invalid(anyhow!(
            "run {} was journaled by an older rollout that did not record its runbook and config",
            state.run_id
        )));
    };
    Ok(Recorded { records: read.records, state, origin: *origin, inputs, purpose })
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
    let sha256 = |bytes: &[u8]| format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(bytes));
    let config_now = std::fs::read_to_string(&origin.config_path).unwrap_or_default();
    let mut changed = Vec::new();
    if sha256(runbook.source.text.as_bytes()) != origin.runbook_sha256 {
        changed.push(("runbook", &origin.runbook_path, origin.runbook_text.as_deref(), runbook.source.text.as_str()));
    }
    if origin.config_sha256.as_deref().is_some_and(|digest| digest != sha256(config_now.as_bytes())) {
        changed.push(("config", &origin.config_path, origin.config_text.as_deref(), config_now.as_str()));
    }
    for (what, path, then, now) in &changed {
        ui.always(format!(
            "{} the {what} {path} changed since run {} started:",
            ui.caution("!"),
            recorded.state.run_id
        ));
        match then {
            Some(then) => {
                let diff = similar::TextDiff::from_lines(*then, *now);
                let shown = diff.unified_diff().context_radius(2).header("when the run started", "now").to_string();
                for line in shown.lines() {
                    ui.always(format!("    {}", crate::untrusted::printable(line)));
                }
            }
            None => ui.always("    (this journal does not keep the text: only its digest differs)"),
        }
    }
    if !changed.is_empty() && !force {
        let what: Vec<&str> = changed.iter().map(|c| c.0).collect();
        return Err(Error::invalid(anyhow!(
            "the {} changed since run {} started: not resumed",
            what.join(" and "),
            recorded.state.run_id
        ))
        .with_hint("look at the difference above; --force goes on with the files as they are now"));
    }
    Ok((config, runbook))
}

/// Refuse (exit 5) while run `run_id` is still going: its lock names a live process here.
pub fn refuse_if_running(state_dir: &Path, run_id: &str, doing: &str) -> Result<(), Error> {
    for (_, holder) in lock::holders(state_dir) {
        if holder.run_id == run_id && holder.liveness() == Liveness::Running {
            return Err(Error::new(ExitCode::Locked, anyhow!("run {run_id} is still going: {holder}"))
                .with_hint(format!("wait for it to finish, or stop it, before {doing} it")));
        }
    }
    Ok(())
}
