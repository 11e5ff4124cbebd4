//! A run on the shared backend: the team's lock taken beside this machine's, and each journal
//! line copied to the shared journal as it is written, which is waited for before a step.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::config::Config;
use crate::error::{Error, ExitCode, Precondition};
use crate::interrupt;
use crate::state::postgres::{self, SharedLock, Taker};
use crate::state::{self, SharedJournal};
use crate::ui::Ui;

/// The pause between tries while a step waits for the shared journal.
const RETRY: Duration = Duration::from_secs(2);

/// The shared journal and lock of one run.
#[derive(Debug)]
pub struct Shared {
    pub journal: SharedJournal,
    pub lock: SharedLock,
    /// How long a step waits for an unreachable shared journal before the run stops there.
    patience: Duration,
}

/// The team's lock of `runbook` for run `run_id`, and its shared journal with every line the
/// local journal at `path` has so far; None on a local backend.
pub fn take(config: &Config, runbook: &str, run_id: &str, path: &Path) -> Result<Option<Shared>, Error> {
    let Some(target) = state::shared(config)? else { return Ok(None) };
    let patience = match config.state {
        crate::config::StateConfig::Postgres { patience, .. } => patience,
        crate::config::StateConfig::Local => return Ok(None),
    };
    let unreachable = |error: Error| {
        if error.code != ExitCode::StepFailed {
            return error;
        }
        Error::new(ExitCode::Preflight, Precondition(format!("{:#}", error.error))).with_hint(format!(
            "the team's lock and journal are there: a run waits for them; to run without them, give -C a config with `state: {{ backend: local }}` ({})",
            target.env
        ))
    };
    let client = state::connect(&target).map_err(unreachable)?;
    let taker = Taker { run_id: run_id.to_string(), user: super::lock::user(), host: super::lock::host() };
    let lock = SharedLock::acquire(&target, runbook, &taker).map_err(unreachable)?;
    let journal = SharedJournal::new(&target, client, run_id, &taker.host);
    journal.send_missing(path)?;
    Ok(Some(Shared { journal, lock, patience }))
}

impl Shared {
    /// The decisions other engineers made on plan `digest` of the run's `step`.
    pub fn decisions(&self, run_id: &str, step: &str, digest: &str) -> Result<Vec<postgres::Decision>, Error> {
        self.journal.decisions(run_id, step, digest)
    }

    /// Before a step: the shared journal has every line so far, and the lock is still this
    /// run's. A journal out of reach is waited for (a while, saying so); the reason to stop
    /// otherwise.
    pub fn settle(&self, ui: &Ui, step: &str) -> Result<(), Error> {
        let started = Instant::now();
        let mut said = false;
        loop {
            if self.lock.lost() {
                return Err(anyhow!(
                    "the shared lock was lost while {} could not be reached, and another run holds it now: this run stops before step {step}",
                    self.lock.shown
                )
                .into());
            }
            let error = match self.journal.flush() {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if started.elapsed() >= self.patience {
                return Err(Error::from(anyhow!(
                    "the shared journal ({}) could not be reached for {} s: this run stops before step {step}, its local journal complete; {:#}",
                    self.journal.shown(),
                    self.patience.as_secs(),
                    error.error
                ))
                .with_hint(format!(
                    "`rollout state sync` sends the shared journal the {} event(s) it lacks; `rollout resume` goes on",
                    self.journal.behind()
                )));
            }
            if !said {
                ui.warn(format!(
                    "waiting up to {} s for the shared journal ({}) before step {step}: {:#}",
                    self.patience.as_secs(),
                    self.journal.shown(),
                    error.error
                ));
                said = true;
            }
            if interrupt::sleep(RETRY) {
                let why = format!("while waiting for the shared journal before step {step}");
                return Err(anyhow::Error::from(crate::error::Interrupted(why)).into());
            }
        }
    }
}
