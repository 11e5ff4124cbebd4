//! `rollout rehearse --severity S`: the real runbook walked against a sandbox built in a temp
//! dir, then a summary of what changed there. Only its journal is kept outside: `<state dir>/rehearsals/`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use git2::Repository;

use crate::cli::RehearseArgs;
use crate::config::Config;
use crate::engine::{self, WalkOptions, journal, lock};
use crate::error::{Error, ExitCode};
use crate::flags;
use crate::runbook::inputs;
use crate::runbook::resolve::{self, Action, Scope};
use crate::runbook::{InputType, LoadedRunbook, shipped};
use crate::sandbox::Sandbox;
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
            let team = Config::load(&path).map_err(Error::invalid)?;
            ui.say(format!("Rehearsing the {} runbook of {}", args.severity.as_str(), path.display()));
            super::runbook_for_severity(&team.runbooks, args.severity)?
        }
        None => {
            ui.say(format!("Rehearsing the shipped {} runbook (no rollout.yaml found)", args.severity.as_str()));
            shipped::for_severity(args.severity).map_err(Error::invalid)?
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
    let config = Config::load(&sandbox.config_file()).map_err(Error::invalid)?;
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
    let options = WalkOptions { vars, dry_run: false, yes: args.yes, from: None };
    // Journaled with the real runs, so that `rollout runs` lists rehearsals (marked as such).
    let state = journal::rehearsals_dir(&journal::state_dir());
    let finished = engine::walk(ui, &config, &runbook, &options, &state);
    // The lock was this sandbox's alone, and the sandbox is going.
    let _ = std::fs::remove_file(lock::path(&state, &config.path, &runbook));

    ui.always("");
    ui.always(ui.bold("Rehearsal summary"));
    for (name, (before, after)) in names.iter().zip(flags_before.iter().zip(read_flags())) {
        let changed = if *before == after { " (unchanged)".to_string() } else { String::new() };
        ui.always(format!("  flag {name}: {before} -> {after}{changed}"));
    }
    ui.always(format!("  remote main: {}", remote_summary(&sandbox).unwrap_or_else(|e| format!("unreadable: {e:#}"))));
    if let Ok(finished) = &finished {
        for step in runbook.runbook.steps.iter().filter(|step| step.ci.is_some()) {
            let pipeline = step.ci.as_ref().map(|ci| ci.pipeline.0.as_str()).unwrap_or_default();
            match finished.state.outputs().get(&step.id) {
                Some(outputs) => ui.always(format!(
                    "  pipeline {pipeline} (step {}): {} at {}",
                    step.id,
                    outputs.get("conclusion").map(String::as_str).unwrap_or("?"),
                    outputs.get("commit").map(|c| crate::git::short_id(c)).unwrap_or("?")
                )),
                None => ui.always(format!("  pipeline {pipeline} (step {}): not run", step.id)),
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

/// `abc1234 -> def5678 (1 new commit: Revert "...")` or `abc1234 (unchanged)`.
fn remote_summary(sandbox: &Sandbox) -> anyhow::Result<String> {
    let remote = Repository::open_bare(sandbox.remote())?;
    let mut summary = String::new();
    let tip = remote.refname_to_id("refs/heads/main")?;
    if tip == sandbox.tip {
        return Ok(format!("{} (unchanged)", crate::git::short(tip)));
    }
    let mut walk = remote.revwalk()?;
    walk.push(tip)?;
    walk.hide(sandbox.tip)?;
    let subjects: Vec<String> = walk
        .filter_map(|oid| oid.ok().and_then(|oid| remote.find_commit(oid).ok()))
        .map(|c| c.summary().ok().flatten().unwrap_or_default().to_string())
        .collect();
    summary.push_str(&format!(
        "{} -> {} ({} new commit{}: {})",
        crate::git::short(sandbox.tip),
        crate::git::short(tip),
        subjects.len(),
        if subjects.len() == 1 { "" } else { "s" },
        subjects.join("; ")
    ));
    let branches: Vec<String> = remote
        .branches(Some(git2::BranchType::Local))?
        .filter_map(|b| b.ok().and_then(|(b, _)| b.name().ok().flatten().map(str::to_string)))
        .filter(|name| name != "main")
        .collect();
    if !branches.is_empty() {
        summary.push_str(&format!("; new branches: {}", branches.join(", ")));
    }
    Ok(summary)
}
