//! `rollout runs`: past runs and rehearsals from their journals, oldest first, with how each
//! ended; a table, or with `--json` one object per run. Reads `<state dir>` and nothing else.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::event::{Event, RunStatus};
use crate::engine::journal;
use crate::error::{Error, ExitCode};
use crate::ui::Ui;

/// One run as its journal tells it; also the `--json` object.
#[derive(Debug, Serialize)]
struct Summary {
    run_id: String,
    runbook: String,
    rehearsal: bool,
    dry_run: bool,
    started: String,
    /// None while the journal has no `run_finished`: the run is still going, or crashed.
    status: Option<RunStatus>,
    exit_code: Option<i32>,
    steps_done: usize,
    steps_total: usize,
    journal: PathBuf,
}

/// Fold one event into the run; `None` when the journal does not start with `run_started`.
fn fold(summary: Option<Summary>, value: serde_json::Value, journal: &Path, rehearsal: bool) -> Option<Summary> {
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(run_id), ts) = (field("run_id"), field("ts").unwrap_or_default()) else { return summary };
    // An event this version does not know (a newer rollout's) changes nothing here.
    let Ok(event) = serde_json::from_value::<Event>(value) else { return summary };
    match event {
        Event::RunStarted { runbook, dry_run, .. } => Some(Summary {
            run_id,
            runbook,
            rehearsal,
            dry_run,
            started: ts,
            status: None,
            exit_code: None,
            steps_done: 0,
            steps_total: 0,
            journal: journal.to_path_buf(),
        }),
        event => {
            let mut summary = summary?;
            match event {
                Event::StepStarted { total, .. } => summary.steps_total = total,
                Event::StepSucceeded { .. } => summary.steps_done += 1,
                Event::RunFinished { status, exit_code } => {
                    (summary.status, summary.exit_code) = (Some(status), Some(exit_code));
                }
                _ => {}
            }
            Some(summary)
        }
    }
}

/// Read one journal. A line that is not JSON (the last one, cut short by a crash, even inside
/// a character) is skipped with a warning, not the whole run.
fn summarize(ui: &Ui, journal: &Path, rehearsal: bool) -> Option<Summary> {
    let bytes = std::fs::read(journal).map_err(|e| ui.warn(format!("cannot read {}: {e}", journal.display()))).ok()?;
    let complete = bytes.ends_with(b"\n");
    let lines: Vec<(usize, &[u8])> = bytes.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()).collect();
    let last = lines.last().map(|(number, _)| *number);
    let mut summary = None;
    for (number, line) in lines {
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(value) => summary = fold(summary, value, journal, rehearsal),
            Err(_) if Some(number) == last && !complete => ui.warn(format!(
                "{}: its last line was cut short (the run stopped while writing it): skipped",
                journal.display()
            )),
            Err(_) => ui.warn(format!("{}: line {} is not JSON: skipped", journal.display(), number + 1)),
        }
    }
    if summary.is_none() {
        ui.warn(format!("{} is not a readable journal", journal.display()));
    }
    summary
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
    // Run ids start with their time: by file name is by time, runs and rehearsals together.
    files.sort_by(|(a, _), (b, _)| a.file_name().cmp(&b.file_name()));
    if files.is_empty() {
        ui.say(format!("no runs yet in {}", dir.display()));
        return Ok(ExitCode::Success);
    }
    if !ui.json() {
        ui.stdout(format!("{:40}  {:10}  {:18}  {:6}  STARTED", "RUN", "RUNBOOK", "STATUS", "STEPS"));
    }
    for (file, rehearsal) in files {
        let Some(summary) = summarize(ui, &file, rehearsal) else { continue };
        if ui.json() {
            ui.stdout(serde_json::to_string(&summary).unwrap_or_default());
        } else {
            ui.stdout(row(&summary));
        }
    }
    Ok(ExitCode::Success)
}
