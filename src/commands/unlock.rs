//! `rollout unlock RUNBOOK`: remove a lock a run left behind, once the operator has typed the
//! runbook's name (`--yes` for scripts); journaled as a run of its own.

use std::path::Path;

use crate::cli::UnlockArgs;
use crate::config::Config;
use crate::engine::lock;
use crate::engine::{self, journal};
use crate::error::{Error, ExitCode};
use crate::state::{self, postgres};
use crate::ui::Ui;
use crate::ui::prompt::NoAnswer;

pub fn unlock(ui: &Ui, config: Option<&Path>, cwd: &Path, args: &UnlockArgs) -> Result<ExitCode, Error> {
    let config = Config::discover(config, cwd)?;
    let runbook = super::runbook_named(&config, &args.runbook)?;
    let state_dir = journal::state_dir();
    let path = lock::path(&state_dir, &config.path, &runbook);
    // Held from here on: no run can take the lock while the operator decides, and it is
    // removed while still held. One a process holds is refused (exit 5), whatever its host.
    let unlocking = lock::take_to_remove(&path, &runbook.name)?;
    // On a shared backend, the team's lock: refused while a connection holds it.
    let shared = match state::shared(&config)? {
        Some(target) => {
            let mut client = state::connect(&target)?;
            match postgres::holder(&target, &mut client, &runbook.name)? {
                Some(row) if !postgres::is_free(&target, &mut client, &runbook.name)? => {
                    return Err(Error::new(
                        ExitCode::Locked,
                        anyhow::anyhow!("runbook {} is locked in the shared state by {row}", runbook.name),
                    )
                    .with_hint("unlock removes only a lock no connection holds: wait for that run, or stop it first"));
                }
                Some(row) => Some((target, client, row)),
                None => None,
            }
        }
        None => None,
    };
    let holder = match (&unlocking, &shared) {
        (Some(unlocking), _) => unlocking.holder.to_string(),
        (None, Some((_, _, row))) => row.to_string(),
        (None, None) => {
            ui.always(format!("runbook {} is not locked ({})", runbook.name, path.display()));
            return Ok(ExitCode::Success);
        }
    };
    ui.always(format!("The lock of runbook {} names {holder}", ui.bold(&runbook.name)));
    match &shared {
        Some((target, _, _)) => ui.always(format!(
            "  left behind: no connection holds it (the next run would take it over); shared state {}, schema {}",
            target.shown, target.schema
        )),
        None => ui.always(format!(
            "  left behind: no process holds it (the next run would take it over); lock file {}",
            path.display()
        )),
    }
    if !args.yes {
        if !ui.interactive() {
            return Err(Error::invalid(anyhow::anyhow!(
                "stdin is not a terminal, so nobody can type the runbook's name"
            ))
            .with_hint("pass --yes to remove the lock without asking (for scripts)"));
        }
        match ui.type_to_confirm("Removing it lets another run of this runbook start.", &runbook.name) {
            Ok(true) => {}
            Err(NoAnswer::Interrupted) => {
                ui.always("  not removed");
                return Ok(ExitCode::Interrupted);
            }
            // Anything but the name, or no answer at all, leaves the lock as it is.
            Ok(false) | Err(NoAnswer::Closed | NoAnswer::Unseen) => {
                ui.always("  not removed");
                return Ok(ExitCode::Aborted);
            }
        }
    }
    if let Some(unlocking) = unlocking {
        unlocking.remove()?;
    }
    let lock_name = match &shared {
        Some((target, _, _)) => {
            format!("{} in the shared state ({}, schema {})", runbook.name, target.shown, target.schema)
        }
        None => path.display().to_string(),
    };
    if let Some((target, mut client, _)) = shared {
        postgres::remove_holder(&target, &mut client, &runbook.name)?;
        let journaled = engine::journal_unlock(&config, &runbook, &state_dir, &lock_name, &holder)
            .map_err(|e| e.with_hint("the lock was removed, but this could not be journaled"))?;
        state::upload(&target, &mut client, &state_dir)?;
        ui.always(format!("{} removed the lock of runbook {} (journal {journaled})", ui.good("✓"), runbook.name));
        return Ok(ExitCode::Success);
    }
    let journaled = engine::journal_unlock(&config, &runbook, &state_dir, &lock_name, &holder)
        .map_err(|e| e.with_hint("the lock was removed, but this could not be journaled"))?;
    ui.always(format!("{} removed the lock of runbook {} (journal {journaled})", ui.good("✓"), runbook.name));
    Ok(ExitCode::Success)
}
