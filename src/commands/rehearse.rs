//! `rollout rehearse --severity S`: the real runbook walked against a sandbox built in a temp
//! dir, then a summary of what changed there. Only its journal is kept outside: `<state dir>/rehearsals/`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;

use crate::cli::RehearseArgs;
use crate::config::Config;
use crate::engine::{self, WalkOptions, journal, lock};
use crate::error::{Error, ExitCode};
use crate::flags;
use crate::runbook::inputs;
use crate::runbook::resolve::{self, Action, Scope};
use crate::runbook::{InputType, LoadedRunbook, shipped};
use crate::sandbox::Sandbox;
use crate::steps::Services;
use crate::ui::Ui;

/// Flags the runbook touches whose names are known from its inputs alone.
fn flag_names(runbook: &LoadedRunbook, vars: &[String]) -> Result<Vec<String>, Error> {
    let inputs = inputs::resolve(runbook, vars)?;
    let outputs = HashMap::new();
    let mut names = Vec::new();
    for index in 0..runbook.runbook.steps.len() {
        if let Ok(Action::Flag(change)) = resolve::action(runbook, index, Scope { inputs: &inputs, outputs: &outputs })
            && !names.contains(&change.flag)
        {
            names.push(change.flag);
        }
    }
    Ok(names)
}

pub fn rehearse(ui: &Ui, config: Option<&Path>, cwd: &Path, args: &RehearseArgs) -> Result<ExitCode, Error> {
    let runbook = match Config::find(config, cwd) {
        Some(path) => {
            let team = Config::load(&path)?;
            ui.say(format!("Rehearsing the {} runbook of {}", args.severity.as_str(), path.display()));
            super::runbook_for_severity(&team.runbooks, args.severity)?
        }
        None => {
            ui.say(format!("Rehearsing the shipped {} runbook (no rollout.yaml found)", args.severity.as_str()));
            shipped::for_severity(args.severity)?
        }
    };
    let sandbox = Sandbox::create().map_err(Error::from)?;
    let mut vars = args.vars.clone();
    for (name, spec) in &runbook.runbook.inputs {
        let given = vars.iter().any(|v| v.split_once('=').is_some_and(|(k, _)| k.trim() == name));
        if spec.kind == InputType::Commit && !given {
            vars.push(format!("{name}={}", sandbox.offending));
        }
    }
    let names = flag_names(&runbook, &vars)?;
    sandbox.write_flags(&names).map_err(Error::from)?;
    std::fs::write(sandbox.path().join("runbooks").join(format!("{}.yaml", runbook.name)), &runbook.source.text)
        .context("cannot copy the runbook into the sandbox")
        .map_err(Error::from)?;
    let config = Config::load(&sandbox.config_file())?;
    ui.say(ui.dim(format!(
        "  sandbox {}: clone app/ of remote.git (offending commit {} \"{}\"), flags.json, deploy.sh",
        sandbox.path().display(),
        crate::git::short(sandbox.offending),
        crate::sandbox::OFFENDING_SUBJECT
    )));
    ui.say("");

    let flag_service =
        config.flags.as_ref().map(|f| flags::service(f, &config.dir, &config.http)).transpose().map_err(Error::from)?;
    let read_flags = || -> Vec<String> {
        let Some(service) = &flag_service else { return Vec::new() };
        names
            .iter()
            .map(|name| service.read(name).map(|s| s.summary()).unwrap_or_else(|e| format!("unreadable: {e}")))
            .collect()
    };
    let flags_before = read_flags();

    crate::interrupt::install();
    let options = WalkOptions { vars, yes: args.yes, ..WalkOptions::default() };
    // Journaled with the real runs, so that `rollout runs` lists rehearsals (marked as such).
    let state = journal::rehearsals_dir(&journal::state_dir());
    let finished = engine::walk(ui, &config, &Services::new(&config), &runbook, &options, &state);
    // The lock was this sandbox's alone, and the sandbox is going.
    let _ = std::fs::remove_file(lock::path(&state, &config.path, &runbook));

    ui.always("");
    ui.always(ui.bold("Rehearsal summary"));
    for (name, (before, after)) in names.iter().zip(flags_before.iter().zip(read_flags())) {
        let changed = if *before == after { " (unchanged)".to_string() } else { String::new() };
        ui.always(format!("  flag {name}: {before} -> {after}{changed}"));
    }
    ui.always(format!("  remote main: {}", sandbox.remote_summary().unwrap_or_else(|e| format!("unreadable: {e:#}"))));
    if let Ok(finished) = &finished {
        for step in &runbook.runbook.steps {
            let crate::runbook::StepKindSpec::Ci(ci) = &step.kind else { continue };
            let (pipeline, id) = (&ci.pipeline.0, &step.common.id);
            match finished.state.outputs().get(id) {
                Some(outputs) => ui.always(format!(
                    "  pipeline {pipeline} (step {id}): {} at {}",
                    outputs.get("conclusion").map(String::as_str).unwrap_or("?"),
                    outputs.get("commit").map(|c| crate::echo::short_id(c)).unwrap_or("?")
                )),
                None => ui.always(format!("  pipeline {pipeline} (step {id}): not run")),
            }
        }
    }
    if args.keep {
        let path = sandbox.keep();
        ui.always(format!(
            "  sandbox kept at {} (rollout -C {}/rollout.yaml ... to use it)",
            path.display(),
            path.display()
        ));
    } else {
        ui.always(ui.dim("  sandbox removed (pass --keep to look around in it)"));
    }
    finished.map(|f| f.code)
}
