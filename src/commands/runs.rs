//! `rollout runs`: past runs and rehearsals from their journals, oldest first, with how each
//! ended; a table, or with `--json` one object per run. Reads `<state dir>` and nothing else.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::event::RunStatus;
use crate::engine::journal;
use crate::engine::state::RunState;
use crate::error::{Error, ExitCode};
use crate::ui::Ui;

/// One run as its journal tells it; also the `--json` object.
#[derive(Debug, Serialize)]
struct Summary {
    run_id: String,
    runbook: String,
    rehearsal: bool,
    dry_run: bool,
    started: jiff::Timestamp,
    /// None while the journal has no `run_finished`: the run is still going, or crashed.
    status: Option<RunStatus>,
    exit_code: Option<i32>,
    steps_done: usize,
    steps_total: usize,
    journal: PathBuf,
}

impl Summary {
    fn new(state: RunState, journal: &Path, rehearsal: bool) -> Summary {
        Summary {
            steps_done: state.done().len(),
            run_id: state.run_id,
            runbook: state.runbook,
            rehearsal,
            dry_run: state.dry_run,
            started: state.started.unwrap_or_default(),
            status: state.status,
            exit_code: state.exit_code,
            steps_total: state.total,
            journal: journal.to_path_buf(),
        }
    }
}

/// Read one journal; its unreadable lines are skipped with a warning, not the whole run.
fn summarize(ui: &Ui, journal: &Path, rehearsal: bool) -> Option<Summary> {
    let read = journal::read(journal).map_err(|e| ui.warn(format!("{e:#}"))).ok()?;
    for warning in read.warnings {
        ui.warn(warning);
    }
    let state = RunState::fold(&read.records);
    if state.is_none() {
        ui.warn(format!("{} is not a readable journal", journal.display()));
    }
    Some(Summary::new(state?, journal, rehearsal))
}

/// The journals in `dir`; anything that is not a regular file (a FIFO would block) is skipped.
fn journals(ui: &Ui, dir: &Path, rehearsal: bool) -> Vec<(PathBuf, bool)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push((path, rehearsal));
        } else {
            ui.warn(format!("{} is not a regular file: skipped", path.display()));
        }
    }
    files
}

fn row(summary: &Summary) -> String {
    let mut status = summary.status.map_or("running or crashed", RunStatus::as_str).to_string();
    if summary.dry_run {
        status.push_str(" (dry run)");
    }
    if summary.rehearsal {
        status.push_str(" (rehearsal)");
    }
    format!(
        "{:40}  {:10}  {:18}  {:>6}  {}",
        summary.run_id,
        summary.runbook,
        status,
        format!("{}/{}", summary.steps_done, summary.steps_total),
        summary.started
    )
}

pub fn runs(ui: &Ui) -> Result<ExitCode, Error> {
    let state = journal::state_dir();
    let dir = journal::runs_dir(&state);
    let mut files = journals(ui, &dir, false);
    files.extend(journals(ui, &journal::runs_dir(&journal::rehearsals_dir(&state)), true));
    if files.is_empty() {
        ui.say(format!("no runs yet in {}", dir.display()));
        return Ok(ExitCode::Success);
    }
    if !ui.json() {
        ui.stdout(format!("{:40}  {:10}  {:18}  {:6}  STARTED", "RUN", "RUNBOOK", "STATUS", "STEPS"));
    }
    let mut summaries: Vec<Summary> =
        files.into_iter().filter_map(|(file, rehearsal)| summarize(ui, &file, rehearsal)).collect();
    // By time, runs and rehearsals together; run ids start with their second only.
    summaries.sort_by(|a, b| (a.started, &a.run_id).cmp(&(b.started, &b.run_id)));
    for summary in summaries {
        if ui.json() {
            ui.stdout(serde_json::to_string(&summary).unwrap_or_default());
        } else {
            ui.stdout(row(&summary));
        }
    }
    Ok(ExitCode::Success)
}
