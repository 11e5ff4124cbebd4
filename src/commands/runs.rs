//! `rollout runs`: past runs and rehearsals from their journals, oldest first, with who ran them
//! and how each ended; or `rollout runs RUN`, one run's story. Reads `<state dir>` and nothing else.

use std::path::{Path, PathBuf};

use jiff::fmt::friendly::{Designator, FractionalUnit, Spacing, SpanPrinter};
use serde::Serialize;

use crate::cli::RunsArgs;
use crate::engine::event::{Purpose, RunStatus};
use crate::engine::journal;
use crate::engine::lock::{self, Holder};
use crate::engine::state::RunState;
use crate::engine::story::{Moment, Standing, Story};
use crate::error::{Error, ExitCode};
use crate::ui::Ui;
use crate::untrusted::{one_line, printable};

/// One run's story with the journal it was read from.
#[derive(Debug)]
pub struct Told {
    pub story: Story,
    pub journal: PathBuf,
    pub rehearsal: bool,
    /// What `rollout runs` keeps of the engine's own fold: the steps done, the step count.
    steps: (usize, usize),
}

/// One run as its journal tells it; also the `--json` object.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    run_id: &'a str,
    runbook: &'a str,
    rehearsal: bool,
    dry_run: bool,
    started: jiff::Timestamp,
    /// None while the journal has no `run_finished`: the run is still going, or crashed.
    status: Option<RunStatus>,
    exit_code: Option<i32>,
    steps_done: usize,
    steps_total: usize,
    journal: &'a Path,
    purpose: Option<&'a Purpose>,
    who: &'a str,
    finished: Option<jiff::Timestamp>,
    duration_ms: Option<u64>,
    /// `status`, or for a run not finished: `running`, `crashed`, `running on HOST`.
    state: String,
    step_reached: Option<String>,
    time_to_mitigate_ms: Option<u64>,
}

impl Told {
    fn summary(&self, holders: &[Holder]) -> Summary<'_> {
        let story = &self.story;
        Summary {
            run_id: &story.run_id,
            runbook: &story.runbook,
            rehearsal: self.rehearsal,
            dry_run: story.dry_run,
            started: story.started,
            status: story.status,
            exit_code: story.exit_code,
            steps_done: self.steps.0,
            steps_total: self.steps.1,
            journal: &self.journal,
            purpose: story.purpose.as_ref(),
            who: &story.who,
            finished: story.finished,
            duration_ms: story.duration_ms,
            state: story.standing(holders).short(),
            step_reached: story.reached(),
            time_to_mitigate_ms: story.mitigated.as_ref().map(|m| m.after_ms),
        }
    }
}

/// `340 msecs`, `12.5 secs`, `2 mins 14 secs`.
pub fn human(ms: u64) -> String {
    let duration = jiff::SignedDuration::from_millis(i64::try_from(ms).unwrap_or(i64::MAX));
    let printer = SpanPrinter::new()
        .designator(Designator::Short)
        .spacing(Spacing::BetweenUnitsAndDesignators)
        .zero_unit(jiff::Unit::Millisecond);
    match ms {
        0..1_000 => printer.duration_to_string(&duration),
        1_000..60_000 => {
            printer.fractional(Some(FractionalUnit::Second)).precision(Some(1)).duration_to_string(&duration)
        }
        _ => printer.duration_to_string(&duration.round(jiff::Unit::Second).unwrap_or(duration)),
    }
}

/// `2026-12-02 03:12:09`, UTC.
fn moment(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// Read one journal; its unreadable lines are skipped with a warning, not the whole run.
fn read(ui: &Ui, journal: &Path, rehearsal: bool) -> Option<Told> {
    let read = journal::read(journal).map_err(|e| ui.warn(format!("{e:#}"))).ok()?;
    for warning in read.warnings {
        ui.warn(warning);
    }
    let (story, state) = (Story::fold(&read.records), RunState::fold(&read.records));
    let (Some(story), Some(state)) = (story, state) else {
        ui.warn(format!("{} is not a readable journal", journal.display()));
        return None;
    };
    Some(Told { story, journal: journal.to_path_buf(), rehearsal, steps: (state.done().len(), state.total) })
}

/// The story of `run` (its id, or the start of one), real or rehearsal; exit 2 if there is none.
pub fn open(ui: &Ui, state_dir: &Path, run: &str) -> Result<Told, Error> {
    let runs = journal::runs_dir(state_dir);
    let no_run = || {
        let shown = crate::untrusted::one_line(&crate::echo::clip(run)).into_owned();
        Error::invalid(anyhow::anyhow!("no run {shown} in {}; `rollout runs` lists them", runs.display()))
    };
    let (path, rehearsal) = journal::find(state_dir, run).map_err(Error::invalid)?.ok_or_else(no_run)?;
    read(ui, &path, rehearsal).ok_or_else(no_run)
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

/// Rows of cells (made printable, each on one line) as columns as wide as their widest cell, two spaces apart.
fn table(rows: &[Vec<String>]) -> Vec<String> {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| one_line(c).into_owned()).collect()).collect();
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let line = |row: &Vec<String>| {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        cells.join("  ").trim_end().to_string()
    };
    rows.iter().map(line).collect()
}

fn row(told: &Told, holders: &[Holder]) -> Vec<String> {
    let story = &told.story;
    let mut status = story.standing(holders).short();
    if story.dry_run {
        status.push_str(" (dry run)");
    }
    if told.rehearsal {
        status.push_str(" (rehearsal)");
    }
    let runbook = match &story.purpose {
        None => story.runbook.clone(),
        Some(Purpose::Undo { .. }) => format!("{} (undo)", story.runbook),
        Some(Purpose::Unlock) => format!("{} (unlock)", story.runbook),
    };
    let duration = story.duration_ms.map_or_else(|| "-".into(), human);
    let reached = story.reached().unwrap_or_else(|| "-".into());
    vec![story.run_id.clone(), runbook, story.who.clone(), moment(story.started), duration, status, reached]
}

/// Every run and rehearsal, by time; dry runs only with `--all`, in the table and in `--json`.
fn list(ui: &Ui, state: &Path, all: bool) -> Result<ExitCode, Error> {
    let dir = journal::runs_dir(state);
    let mut files = journals(ui, &dir, false);
    files.extend(journals(ui, &journal::runs_dir(&journal::rehearsals_dir(state)), true));
    if files.is_empty() {
        ui.say(format!("no runs yet in {}", dir.display()));
        return Ok(ExitCode::Success);
    }
    let mut told: Vec<Told> = files.into_iter().filter_map(|(file, rehearsal)| read(ui, &file, rehearsal)).collect();
    // By time, runs and rehearsals together; run ids start with their second only.
    told.sort_by(|a, b| (a.story.started, &a.story.run_id).cmp(&(b.story.started, &b.story.run_id)));
    let holders: Vec<Holder> = lock::holders(state).into_iter().map(|(_, holder)| holder).collect();
    let hidden = if all { 0 } else { told.iter().filter(|t| t.story.dry_run).count() };
    let shown = told.iter().filter(|t| all || !t.story.dry_run);
    if ui.json() {
        for run in shown {
            ui.stdout(serde_json::to_string(&run.summary(&holders)).unwrap_or_default());
        }
    } else {
        let header = ["RUN", "RUNBOOK", "WHO", "STARTED (UTC)", "DURATION", "STATUS", "STEP REACHED"];
        let mut rows = vec![header.map(String::from).to_vec()];
        rows.extend(shown.map(|t| row(t, &holders)));
        for line in table(&rows) {
            ui.stdout(line);
        }
    }
    if hidden > 0 {
        let runs = if hidden == 1 { "dry run" } else { "dry runs" };
        ui.say(format!("{hidden} {runs} not shown; `rollout runs --all` shows them"));
    }
    Ok(ExitCode::Success)
}

/// The lines of one moment of the story.
fn told_moment(story: &Story, ts: jiff::Timestamp, moment: Moment<'_>) -> Vec<String> {
    let time = ts.strftime("%H:%M:%S");
    match moment {
        Moment::Started => vec![format!("{time}  run started by {}", story.who)],
        Moment::Resumed(resume) => {
            let forced = if resume.forced { " (--force)" } else { "" };
            let mut lines = vec![format!("{time}  resumed by {} at {}{forced}", resume.who, resume.at)];
            lines.extend(resume.drift.iter().map(|d| format!("          drift: {d}")));
            lines
        }
        Moment::Lock(event) | Moment::Approval(event) => vec![format!("{time}  {}", event.what)],
        Moment::Finished(end) => vec![format!("{time}  run {} (exit {})", end.status.as_str(), end.exit_code)],
        Moment::Step(attempt) => {
            let index = attempt.index.zip(attempt.total).map_or_else(String::new, |(i, n)| format!("{i}/{n} "));
            let kind = attempt.kind.as_ref().map_or_else(String::new, |kind| format!(" ({kind})"));
            let by = attempt.confirmed().map(|how| format!("by {how}"));
            let took = attempt.duration_ms.map(human);
            let notes: Vec<String> = by.into_iter().chain(took).collect();
            let notes = if notes.is_empty() { String::new() } else { format!("  [{}]", notes.join(", ")) };
            let mut lines = vec![format!("{time}  {index}{}{kind}: {}{notes}", attempt.step, attempt.what())];
            if let Some(link) = attempt.link() {
                lines.push(format!("          {link}"));
            }
            lines
        }
    }
}

/// The story of one run: its header, every moment in time order, then what takes it further.
fn show(ui: &Ui, state: &Path, run: &str) -> Result<ExitCode, Error> {
    let told = open(ui, state, run)?;
    let story = &told.story;
    if ui.json() {
        ui.stdout(serde_json::to_string(story).unwrap_or_default());
        return Ok(ExitCode::Success);
    }
    let holders: Vec<Holder> = lock::holders(state).into_iter().map(|(_, holder)| holder).collect();
    let kind = match (story.dry_run, told.rehearsal) {
        (true, _) => " (dry run)",
        (false, true) => " (rehearsal)",
        (false, false) => "",
    };
    let mut header = vec![
        ("run", format!("{}{kind}", story.run_id)),
        ("runbook", story.purpose_text()),
        ("who", story.who.clone()),
        ("started", format!("{} UTC", moment(story.started))),
        ("duration", story.duration_ms.map_or_else(|| "-".into(), human)),
        ("status", story.standing(&holders).long(&story.run_id)),
        ("journal", told.journal.display().to_string()),
    ];
    if let Some(mitigated) = &story.mitigated {
        header.push(("mitigated", format!("{} after the start, by {}", human(mitigated.after_ms), mitigated.step)));
    }
    for (label, value) in header {
        ui.stdout(format!("{label:<9} {}", one_line(&value)));
    }
    ui.stdout("");
    for (ts, moment) in story.moments() {
        for line in told_moment(story, ts, moment) {
            ui.stdout(printable(&line));
        }
    }
    // A run still going is taken further by itself, not by a resume.
    let going = matches!(story.standing(&holders), Standing::Running | Standing::Elsewhere(_));
    let next: Vec<&String> = if going { Vec::new() } else { story.next.iter().collect() };
    if going || !next.is_empty() {
        ui.stdout("");
    }
    if going {
        ui.stdout("next: nothing yet: the run is still going (its lock is held)");
    }
    for next in next {
        ui.stdout(format!("next: {next}"));
    }
    Ok(ExitCode::Success)
}

pub fn runs(ui: &Ui, args: &RunsArgs) -> Result<ExitCode, Error> {
    let state = journal::state_dir();
    match &args.run {
        Some(run) => show(ui, &state, run),
        None => list(ui, &state, args.all),
    }
}
