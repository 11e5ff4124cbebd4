//! `rollout state migrate` and `rollout state sync`: the shared backend's schema made or
//! brought up to date, and the shared journal given what this machine's journals have.

use std::path::Path;

use anyhow::anyhow;

use crate::cli::StateCommand;
use crate::config::Config;
use crate::engine::journal;
use crate::error::{Error, ExitCode};
use crate::state::{self, postgres};
use crate::ui::Ui;

/// The shared backend of the config found, or why there is none.
pub fn target(config: Option<&Path>, cwd: &Path) -> Result<postgres::Target, Error> {
    let config = Config::discover(config, cwd)?;
    state::shared(&config)?.ok_or_else(|| {
        Error::invalid(anyhow!("{} keeps its state in local files: there is no shared backend", config.path.display()))
            .with_hint("set `state: { backend: postgres, url_env: ROLLOUT_STATE_URL }` in rollout.yaml")
    })
}

pub fn state(ui: &Ui, config: Option<&Path>, cwd: &Path, command: &StateCommand) -> Result<ExitCode, Error> {
    let target = target(config, cwd)?;
    let mut client = target.connect()?;
    let migrated = postgres::migrate(&target, &mut client)?;
    let place = format!("{}, schema {}", target.shown, target.schema);
    match command {
        StateCommand::Migrate if migrated.from == migrated.to => {
            ui.always(format!("the shared state ({place}) is at version {}: nothing to do", migrated.to));
        }
        StateCommand::Migrate => ui.always(format!(
            "{} the shared state ({place}) is at version {} (it was at {})",
            ui.good("✓"),
            migrated.to,
            migrated.from
        )),
        StateCommand::Sync => {
            let state_dir = journal::state_dir();
            let sent = state::upload(&target, &mut client, &state_dir)?;
            for run in &sent.differing {
                ui.warn(format!(
                    "run {run}: this machine's journal differs from the shared one (another host took it up): not sent"
                ));
            }
            let copied = state::download(&target, &mut client, &state_dir)?;
            ui.always(format!(
                "{} sent {} event(s) of {} run(s) to the shared journal ({place}); copied {copied} event(s) from it",
                ui.good("✓"),
                sent.events,
                sent.runs
            ));
            if !sent.differing.is_empty() {
                return Ok(ExitCode::StepFailed);
            }
        }
    }
    Ok(ExitCode::Success)
}
