//! `rollout unlock RUNBOOK`: remove a lock a run left behind, once the operator has typed the
//! runbook's name (`--yes` for scripts); journaled as a run of its own.

use std::path::Path;

use anyhow::anyhow;

use crate::cli::UnlockArgs;
use crate::config::Config;
use crate::engine::lock::{self, Found, Liveness};
use crate::engine::{self, journal};
use crate::error::{Error, ExitCode};
use crate::ui::Ui;
use crate::ui::prompt::NoAnswer;

pub fn unlock(ui: &Ui, config: Option<&Path>, cwd: &Path, args: &UnlockArgs) -> Result<ExitCode, Error> {
    let config = Config::discover(config, cwd)?;
    let runbook = super::runbook_named(&config, &args.runbook)?;
    let state_dir = journal::state_dir();
    let path = lock::path(&state_dir, &config.path, &runbook);
    let Found::Holder { holder, held } = lock::inspect(&path)? else {
        ui.always(format!("runbook {} is not locked ({})", runbook.name, path.display()));
        return Ok(ExitCode::Success);
    };
    let liveness = holder.liveness();
    if liveness == Liveness::Running {
        return Err(Error::new(
            ExitCode::Locked,
            anyhow!("runbook {} is locked by {holder}, which is still running", runbook.name),
        )
        .with_hint(format!(
            "wait for it, or stop it first (kill {}); unlock removes only a lock nobody holds",
            holder.pid
        )));
    }
    let state = match (&liveness, held) {
        (Liveness::Elsewhere(host), true) => format!("held by a process on {host}, which rollout cannot see from here"),
        (Liveness::Elsewhere(host), false) => format!("left behind: no process holds it (its run was on {host})"),
        (_, true) => "held, though its process is gone from this host".to_string(),
        (_, false) => "left behind: its process is gone (the next run would take it over)".to_string(),
    };
    ui.always(format!("The lock of runbook {} names {holder}", ui.bold(&runbook.name)));
    ui.always(format!("  {state}; lock file {}", path.display()));
    if !args.yes {
        if !ui.interactive() {
            return Err(Error::invalid(anyhow!("stdin is not a terminal, so nobody can type the runbook's name"))
                .with_hint("pass --yes to remove the lock without asking (for scripts)"));
        }
        match ui.type_to_confirm("Removing it lets another run of this runbook start.", &runbook.name) {
            Ok(true) => {}
            Ok(false) | Err(NoAnswer::Closed | NoAnswer::Interrupted | NoAnswer::Unseen) => {
                // Anything but the name, or no answer at all, leaves the lock as it is.
                ui.always("  not removed");
                return Ok(ExitCode::Aborted);
            }
        }
    }
    lock::remove(&path)?;
    let journaled = engine::journal_unlock(&config, &runbook, &state_dir, &path, &holder)
        .map_err(|e| e.with_hint("the lock was removed, but this could not be journaled"))?;
    ui.always(format!("{} removed the lock of runbook {} (journal {journaled})", ui.good("✓"), runbook.name));
    Ok(ExitCode::Success)
}
