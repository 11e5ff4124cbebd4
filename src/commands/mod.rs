//! One module per subcommand; `dispatch` picks it. Each returns the exit code of its outcome,
//! or an error that carries one.

pub mod approve;
mod chart;
pub mod completions;
mod gate_figures;
pub mod incident;
pub mod list;
pub mod recorded;
pub mod rehearse;
pub mod resume;
pub mod runs;
pub mod state;
pub mod timeline;
pub mod undo;
pub mod unlock;
pub mod validate;
pub mod watch;

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::echo;
use crate::error::{Error, ExitCode};
use crate::runbook::{self, LoadedRunbook, Severity};
use crate::ui::Ui;
use crate::yaml::Diagnostics;

pub fn dispatch(cli: Cli, ui: &Ui) -> Result<ExitCode, Error> {
    let cwd = std::env::current_dir().context("cannot read the working directory").map_err(Error::invalid)?;
    let config = cli.config.as_deref();
    // Commands whose output is their result fail when it could not be written (a full disk);
    // a reader that went away (`| head`) is no failure, and a run never stops for its output.
    let reports = matches!(
        cli.command,
        Command::Runs(_)
            | Command::Timeline(_)
            | Command::List
            | Command::Validate(_)
            | Command::Completions(_)
            | Command::Man
    );
    if config.is_some() && matches!(cli.command, Command::Resume(_) | Command::Undo(_)) {
        ui.warn(
            "-C is not used here: a run is taken up or undone with the config it started with (its journal names it)",
        );
    }
    // On a shared backend, what other hosts journaled is copied here first.
    if matches!(cli.command, Command::Runs(_) | Command::Resume(_) | Command::Undo(_) | Command::Timeline(_)) {
        crate::state::refresh(ui, config, &cwd);
    }
    let code = match cli.command {
        Command::Incident(args) => incident::incident(ui, config, &cwd, &args),
        Command::Run(args) => incident::run(ui, config, &cwd, &args),
        Command::Rehearse(args) => rehearse::rehearse(ui, config, &cwd, &args),
        Command::Validate(args) => validate::validate(ui, config, &cwd, &args),
        Command::List => list::list(ui, config, &cwd),
        Command::Runs(args) => runs::runs(ui, &args),
        Command::Resume(args) => resume::resume(ui, &args),
        Command::Undo(args) => undo::undo(ui, &args),
        Command::Timeline(args) => timeline::timeline(ui, &args),
        Command::Unlock(args) => unlock::unlock(ui, config, &cwd, &args),
        Command::Watch(args) => watch::watch(ui, config, &cwd, &args),
        Command::Approve(args) => approve::approve(ui, config, &cwd, &args),
        Command::Reject(args) => approve::reject(ui, config, &cwd, &args),
        Command::State(command) => state::state(ui, config, &cwd, &command),
        Command::Completions(args) => completions::completions(ui, args.shell),
        Command::Man => completions::man(ui),
    }?;
    match ui.stdout_failure() {
        Some(why) if reports => Err(Error::from(anyhow!("could not write the output: {why}"))
            .with_hint("nothing was changed; write it somewhere with room")),
        _ => Ok(code),
    }
}

/// The runbook in `dir` whose `severity` is `severity`.
pub fn runbook_for_severity(dir: &Path, severity: Severity) -> Result<LoadedRunbook, Error> {
    let (loaded, problems) = runbook::load_all(dir)
        .with_context(|| format!("cannot read the runbooks folder {}", dir.display()))
        .map_err(Error::invalid)?;
    let mut matching: Vec<LoadedRunbook> =
        loaded.into_iter().filter(|r| r.runbook.severity == Some(severity)).collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 if !problems.is_empty() => Err(Error::from(Diagnostics(problems))
            .with_hint(format!("no valid runbook has severity: {}; fix the errors above", severity.as_str()))),
        0 => Err(Error::invalid(anyhow!("no runbook in {} has severity: {}", dir.display(), severity.as_str()))
            .with_hint("add `severity: <level>` to the runbook for this level, or use `rollout run NAME`")),
        _ => Err(Error::invalid(anyhow!(
            "several runbooks in {} have severity: {}: {}",
            dir.display(),
            severity.as_str(),
            matching.iter().map(|r| r.source.path.display().to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// `runbooks/<name>.yaml` (or `.yml`): a name from that folder, never a path to elsewhere.
pub fn runbook_named(config: &Config, name: &str) -> Result<LoadedRunbook, Error> {
    let files = runbook::files_in(&config.runbooks)
        .with_context(|| format!("cannot read the runbooks folder {}", config.runbooks.display()))
        .map_err(Error::invalid)?;
    let stem = |path: &PathBuf| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(path) = files.iter().find(|path| stem(path) == name) {
        return Ok(LoadedRunbook::load(path)?);
    }
    let known: Vec<String> = files.iter().map(stem).collect();
    let hint = if known.is_empty() {
        "the folder has no runbooks".to_string()
    } else {
        format!("runbooks there: {}", echo::clip(&known.join(", ")))
    };
    let shown = crate::untrusted::one_line(&echo::clip(name)).into_owned();
    let error = if name.contains(['/', '\\']) || name.starts_with('.') {
        anyhow!(
            "`{shown}` is not a runbook name: `rollout run` takes the name of a file in {}, without .yaml",
            config.runbooks.display()
        )
    } else {
        anyhow!("no runbook named {shown} in {}", config.runbooks.display())
    };
    Err(Error::invalid(error).with_hint(hint))
}
