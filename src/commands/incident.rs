//! `rollout incident --severity S` and `rollout run NAME`: walk a runbook of the
//! configured team against its real services.

use std::path::Path;

use crate::cli::{IncidentArgs, RunArgs, WalkArgs};
use crate::config::Config;
use crate::engine::{self, WalkOptions, journal};
use crate::error::{Error, ExitCode};
use crate::runbook::LoadedRunbook;
use crate::steps::Services;
use crate::ui::Ui;

fn options(args: &WalkArgs) -> WalkOptions {
    WalkOptions {
        vars: args.vars.clone(),
        dry_run: args.dry_run,
        yes: args.yes,
        from: args.from.clone(),
        break_glass: args.break_glass.clone(),
        ..WalkOptions::default()
    }
}

fn walk(ui: &Ui, config: &Config, runbook: &LoadedRunbook, args: &WalkArgs) -> Result<ExitCode, Error> {
    crate::interrupt::install();
    let services = Services::new(config);
    engine::walk(ui, config, &services, runbook, &options(args), &journal::state_dir()).map(|finished| finished.code)
}

pub fn incident(ui: &Ui, config: Option<&Path>, cwd: &Path, args: &IncidentArgs) -> Result<ExitCode, Error> {
    let config = Config::discover(config, cwd)?;
    let runbook = super::runbook_for_severity(&config.runbooks, args.severity)?;
    walk(ui, &config, &runbook, &args.walk)
}

pub fn run(ui: &Ui, config: Option<&Path>, cwd: &Path, args: &RunArgs) -> Result<ExitCode, Error> {
    let config = Config::discover(config, cwd)?;
    let runbook = super::runbook_named(&config, &args.name)?;
    walk(ui, &config, &runbook, &args.walk)
}
