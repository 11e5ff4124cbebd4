//! `rollout runs`: past runs from the journal, newest last, with how each ended.
//! Reads `<state dir>/runs/*.jsonl` and nothing else.

use crate::engine::event::Event;
use crate::engine::journal;
use crate::error::{Error, ExitCode};
use crate::ui::Ui;

struct Summary {
    run_id: String,
    runbook: String,
    dry_run: bool,
    started: String,
    done: usize,
    total: usize,
    status: String,
}

fn summarize(text: &str) -> Option<Summary> {
    let mut summary: Option<Summary> = None;
    for line in text.lines() {
        // A line a crash cut short is skipped, not the whole run.
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(run_id) = value.get("run_id").and_then(|r| r.as_str()).map(str::to_string) else { continue };
        let ts = value.get("ts").and_then(|t| t.as_str()).unwrap_or_default().to_string();
        let Ok(event) = serde_json::from_value::<Event>(value) else { continue };
        match event {
            Event::RunStarted { runbook, dry_run, .. } => {
                summary = Some(Summary {
                    run_id,
                    runbook,
                    dry_run,
                    started: ts,
                    done: 0,
                    total: 0,
                    status: "running or crashed".into(),
                })
            }
            Event::StepStarted { total, .. } => summary.as_mut()?.total = total,
            Event::StepSucceeded { .. } => summary.as_mut()?.done += 1,
            Event::RunFinished { status, .. } => summary.as_mut()?.status = status.as_str().into(),
            _ => {}
        }
    }
    summary
}

pub fn runs(ui: &Ui) -> Result<ExitCode, Error> {
    let dir = journal::runs_dir(&journal::state_dir());
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    if files.is_empty() {
        ui.say(format!("no runs yet in {}", dir.display()));
        return Ok(ExitCode::Success);
    }
    ui.stdout(format!("{:40}  {:10}  {:18}  {:6}  STARTED", "RUN", "RUNBOOK", "STATUS", "STEPS"));
    for file in files {
        let Some(s) = std::fs::read_to_string(&file).ok().as_deref().and_then(summarize) else {
            ui.warn(format!("{} is not a readable journal", file.display()));
            continue;
        };
        let status = if s.dry_run { format!("{} (dry run)", s.status) } else { s.status };
        ui.stdout(format!(
            "{:40}  {:10}  {:18}  {:>6}  {}",
            s.run_id,
            s.runbook,
            status,
            format!("{}/{}", s.done, s.total),
            s.started
        ));
    }
    Ok(ExitCode::Success)
}
