//! `rollout timeline RUN...`: a postmortem-ready record of an incident's runs, read from their
//! journals: summary, time to mitigate, a timeline table, and the headings to fill.

use std::path::Path;

use jiff::Timestamp;
use serde::Serialize;

use super::gate_figures::{GateFigures, fetch_reports, gates};
use super::runs::{Told, human, open};
use crate::cli::{TimelineArgs, TimelineFormat};
use crate::engine::journal;
use crate::engine::story::{Attempt, Moment, StepResult, Story};
use crate::error::{Error, ExitCode};
use crate::ui::Ui;
use crate::untrusted::printable;

/// The headings of the postmortem template that only people can fill in.
const QUESTIONS: [&str; 4] = [
    "How do the KPIs you gathered compare to your pre-launch definition(s) of success?",
    "What qualitative feedback have you gathered from users or other stakeholders?",
    "Which of the assumptions you listed in your product outline were/were not validated?",
    "How might your product evolve now or in the future based on these results?",
];

const TO_FILL: &str = "_To fill in._";

const CHARTS_HINT: &str =
    "_Charts: `rollout timeline RUN... --output FILE.md` writes one SVG per gate beside the Markdown, linked here._";

const REPORTS_NOTE: &str = "GA4 standard reports over the runs' days (UTC), fetched when this timeline was made: they lag 4 to 48 hours, so a recent run's figures grow.";

/// One run, as the summary names it.
#[derive(Debug, Serialize)]
struct RunLine {
    run_id: String,
    runbook: String,
    who: String,
    started: Timestamp,
    finished: Option<Timestamp>,
    /// The run's status, or `not finished`.
    status: String,
}

#[derive(Debug, Serialize)]
struct Summary {
    runs: Vec<RunLine>,
    /// What each step that changed something did, `step: what`.
    changed: Vec<String>,
    /// How the latest run ended.
    status: String,
}

/// The first step of all the runs that reduced exposure.
#[derive(Debug, Serialize)]
struct Mitigated {
    run_id: String,
    step: String,
    from: Timestamp,
    to: Timestamp,
    what: String,
}

/// One line of the timeline table.
#[derive(Debug, Serialize)]
struct Row {
    time: Timestamp,
    run_id: String,
    step: String,
    who: String,
    what: String,
    link: String,
}

#[derive(Debug, Serialize)]
struct Took {
    run_id: String,
    step: String,
    attempt: usize,
    result: StepResult,
    duration_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Problem {
    time: Option<Timestamp>,
    run_id: String,
    step: String,
    error: String,
}

#[derive(Debug, Serialize)]
struct Skip {
    run_id: String,
    step: String,
    why: String,
}

/// The whole record; also the `--format json` object.
#[derive(Debug, Serialize)]
struct Timeline {
    title: String,
    summary: Summary,
    time_to_mitigate_ms: Option<u64>,
    mitigated: Option<Mitigated>,
    rows: Vec<Row>,
    durations: Vec<Took>,
    errors: Vec<Problem>,
    gates: Vec<GateFigures>,
    skipped: Vec<Skip>,
    went_well: Vec<String>,
    went_wrong: Vec<String>,
    questions: [&'static str; 4],
}

/// A moment to the second, with its date: an incident may cross midnight.
fn at_second(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn status(story: &Story) -> String {
    story.status.map_or("not finished", |s| s.as_str()).to_string()
}

fn run_line(story: &Story) -> RunLine {
    RunLine {
        run_id: story.run_id.clone(),
        runbook: story.purpose_text(),
        who: story.who.clone(),
        started: story.started,
        finished: story.finished,
        status: status(story),
    }
}

/// `index/total step`, or the step alone when it never started.
fn step_label(attempt: &Attempt) -> String {
    let retry = if attempt.attempt > 1 { format!(" (attempt {})", attempt.attempt) } else { String::new() };
    match attempt.index.zip(attempt.total) {
        Some((index, total)) => format!("{index}/{total} {}{retry}", attempt.step),
        None => format!("{}{retry}", attempt.step),
    }
}

fn row(story: &Story, time: Timestamp, moment: Moment<'_>) -> Row {
    let row = |step: &str, who: &str, what: String, link: String| Row {
        time,
        run_id: story.run_id.clone(),
        step: step.to_string(),
        who: who.to_string(),
        what,
        link,
    };
    match moment {
        Moment::Started => {
            let dry = if story.dry_run { " (dry run)" } else { "" };
            row(
                "start",
                &story.who,
                format!("run {} of {} started{dry}", story.run_id, story.purpose_text()),
                "".into(),
            )
        }
        Moment::Step(attempt) => {
            let who = attempt.confirmed().map_or_else(|| attempt.who.clone(), |how| format!("{} ({how})", attempt.who));
            row(&step_label(attempt), &who, attempt.what(), attempt.link().unwrap_or_default())
        }
        Moment::Resumed(resume) => {
            let mut what = format!("run {} resumed at {}", story.run_id, resume.at);
            if resume.forced {
                what.push_str(" (--force)");
            }
            if !resume.drift.is_empty() {
                what.push_str(&format!("; drift: {}", resume.drift.join("; ")));
            }
            row("resume", &resume.who, what, "".into())
        }
        Moment::Lock(event) => row("lock", story.who_at(time), event.what.clone(), "".into()),
        Moment::Approval(event) => row("approval", story.who_at(time), event.what.clone(), "".into()),
        Moment::Finished(end) => {
            let what = format!("run {} {} (exit {})", story.run_id, end.status.as_str(), end.exit_code);
            row("end", story.who_at(time), what, "".into())
        }
    }
}

impl Mitigated {
    /// Time to mitigate, in milliseconds.
    fn ms(&self) -> u64 {
        u64::try_from(self.to.duration_since(self.from).as_millis()).unwrap_or(0)
    }
}

/// The earliest mitigation of all the runs, timed from the earliest run's start.
fn mitigated(runs: &[Told]) -> Option<Mitigated> {
    let from = runs.iter().map(|t| t.story.started).min()?;
    let (story, first) =
        runs.iter().filter_map(|t| t.story.mitigated.as_ref().map(|m| (&t.story, m))).min_by_key(|(_, m)| m.at)?;
    Some(Mitigated {
        run_id: story.run_id.clone(),
        step: first.step.clone(),
        from,
        to: first.at,
        what: first.what.clone(),
    })
}

/// Each step's latest attempt (`latest`) or every attempt, with its run.
fn attempts<'a>(stories: &[&'a Story], latest: bool) -> Vec<(&'a Story, &'a Attempt)> {
    let of = |s: &'a Story| if latest { s.latest() } else { s.steps.iter().collect() };
    stories.iter().copied().flat_map(|s| of(s).into_iter().map(move |a| (s, a))).collect()
}

fn summary(stories: &[&Story], steps: &[(&Story, &Attempt)]) -> Summary {
    let did = |a: &Attempt| a.outcome.as_deref().map_or_else(|| a.what(), |o| printable(o).into_owned());
    Summary {
        runs: stories.iter().map(|s| run_line(s)).collect(),
        changed: steps.iter().filter(|(_, a)| a.changed()).map(|(_, a)| format!("{}: {}", a.step, did(a))).collect(),
        status: stories.iter().max_by_key(|s| s.started).map(|s| status(s)).unwrap_or_default(),
    }
}

fn durations(every: &[(&Story, &Attempt)]) -> Vec<Took> {
    let took = |(s, a): &(&Story, &Attempt)| Took {
        run_id: s.run_id.clone(),
        step: a.step.clone(),
        attempt: a.attempt,
        result: a.result,
        duration_ms: a.duration_ms,
    };
    every.iter().filter(|(_, a)| a.started.is_some()).map(took).collect()
}

fn errors(every: &[(&Story, &Attempt)]) -> Vec<Problem> {
    let problem = |(s, a): &(&Story, &Attempt)| {
        let error = printable(a.error.as_deref()?).into_owned();
        Some(Problem { time: a.at(), run_id: s.run_id.clone(), step: a.step.clone(), error })
    };
    every.iter().filter_map(problem).collect()
}

fn skipped(steps: &[(&Story, &Attempt)]) -> Vec<Skip> {
    let skip = |(s, a): &(&Story, &Attempt)| Skip {
        run_id: s.run_id.clone(),
        step: a.step.clone(),
        why: printable(a.how.as_deref().unwrap_or("skipped")).into_owned(),
    };
    steps.iter().filter(|(_, a)| a.result == StepResult::Skipped).map(skip).collect()
}

/// `Postmortem: <runbooks> incident, <date of the first start>`.
fn title(stories: &[&Story]) -> String {
    let mut runbooks: Vec<&str> = stories.iter().filter(|s| s.purpose.is_none()).map(|s| s.runbook.as_str()).collect();
    if runbooks.is_empty() {
        runbooks = stories.iter().map(|s| s.runbook.as_str()).take(1).collect();
    }
    let first = stories.iter().map(|s| s.started).min().unwrap_or_default();
    format!("Postmortem: {} incident, {}", runbooks.join(", "), first.strftime("%Y-%m-%d"))
}

/// The record of `runs`, in time order.
fn build(runs: &[Told]) -> Timeline {
    let stories: Vec<&Story> = runs.iter().map(|t| &t.story).collect();
    let mut rows: Vec<Row> =
        stories.iter().flat_map(|s| s.moments().into_iter().map(|(ts, m)| row(s, ts, m))).collect();
    rows.sort_by_key(|r| r.time);
    let (steps, every) = (attempts(&stories, true), attempts(&stories, false));
    let mitigated = mitigated(runs);
    Timeline {
        title: title(&stories),
        summary: summary(&stories, &steps),
        time_to_mitigate_ms: mitigated.as_ref().map(Mitigated::ms),
        went_well: went_well(&steps, mitigated.as_ref()),
        went_wrong: went_wrong(&stories, &every, mitigated.is_none()),
        mitigated,
        rows,
        durations: durations(&every),
        errors: errors(&every),
        gates: gates(&every),
        skipped: skipped(&steps),
        questions: QUESTIONS,
    }
}

fn went_well(steps: &[(&Story, &Attempt)], mitigated: Option<&Mitigated>) -> Vec<String> {
    let mut well = Vec::new();
    if let Some(m) = mitigated {
        well.push(format!("Mitigated {} after the first run started, by step {}.", human(m.ms()), m.step));
    }
    let done: Vec<&str> =
        steps.iter().filter(|(_, a)| a.result == StepResult::Done).map(|(_, a)| a.step.as_str()).collect();
    if !done.is_empty() {
        well.push(format!("Steps done: {}.", done.join(", ")));
    }
    well
}

fn went_wrong(stories: &[&Story], every: &[(&Story, &Attempt)], unmitigated: bool) -> Vec<String> {
    let mut wrong: Vec<String> = every
        .iter()
        .filter(|(_, a)| a.result == StepResult::Failed)
        .map(|(s, a)| {
            format!(
                "Step {} of run {} failed: {}",
                a.step,
                s.run_id,
                a.error.as_deref().map(printable).unwrap_or_default()
            )
        })
        .collect();
    wrong.extend(stories.iter().filter(|s| s.status.is_none()).map(|s| format!("Run {} did not finish.", s.run_id)));
    if unmitigated {
        wrong.push("Not mitigated by these runs: no step gave the feature to fewer users or deployed a revert.".into());
    }
    wrong
}

/// The most characters of one text from the journal a timeline shows (an error with a CI
/// log tail fits; a runaway one is cut, saying how long it was).
const SHOWN: usize = 4000;

/// Text from the journal as markdown shows it: printable, `&` and `<` as entities, so that no
/// tag or entity of a log line is markup in the postmortem (`->` stays as it is), and cut at
/// `SHOWN` characters.
fn inert(text: &str) -> String {
    let cut = match text.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}… ({} characters)", &text[..at], text.chars().count()),
        None => text.to_string(),
    };
    printable(&cut).replace('&', "&amp;").replace('<', "&lt;")
}

/// A table cell: inert, with `|` escaped and line breaks as `<br>`.
fn cell(text: &str) -> String {
    inert(text).replace('|', "\\|").replace('\n', "<br>")
}

/// `## heading`, a blank line, then `body`, then a blank line.
fn section(out: &mut Vec<String>, heading: &str, body: Vec<String>) {
    out.extend([format!("## {heading}"), String::new()]);
    out.extend(body);
    out.push(String::new());
}

/// A markdown table of `header` and `rows`, every cell escaped.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> Vec<String> {
    let line = |cells: Vec<String>| format!("| {} |", cells.join(" | "));
    let mut lines =
        vec![line(header.iter().map(|h| h.to_string()).collect()), format!("|{}", "---|".repeat(header.len()))];
    lines.extend(rows.into_iter().map(|r| line(r.iter().map(|c| cell(c)).collect())));
    lines
}

/// Items as a list, or `none` when there are none.
fn bullets(items: &[String], none: &str) -> Vec<String> {
    if items.is_empty() {
        return vec![none.to_string()];
    }
    // A list item may run over lines: each further line is indented under it.
    items.iter().map(|item| format!("- {}", inert(item).replace('\n', "\n  "))).collect()
}

fn summary_lines(t: &Timeline) -> Vec<String> {
    let mut lines: Vec<String> = t
        .summary
        .runs
        .iter()
        .map(|run| {
            let when = run.started.strftime("%Y-%m-%d %H:%M:%S");
            let (runbook, who) = (cell(&run.runbook), cell(&run.who));
            format!("- Run `{}`: {runbook}, by {who}, started {when} UTC, {}", run.run_id, run.status)
        })
        .collect();
    lines.extend([format!("- Final status: {}", t.summary.status), String::new(), "What changed:".into(), "".into()]);
    lines.extend(bullets(&t.summary.changed, "Nothing was changed."));
    lines
}

fn impact(t: &Timeline) -> String {
    match &t.mitigated {
        Some(m) => format!(
            "Time to mitigate: {} (from {} UTC to {} UTC: {}, {})",
            human(m.ms()),
            at_second(m.from),
            at_second(m.to),
            m.step,
            cell(&m.what)
        ),
        None => "Time to mitigate: not mitigated by these runs.".into(),
    }
}

fn markdown(t: &Timeline) -> Vec<String> {
    let mut out = vec![format!("# {}", cell(&t.title)), String::new()];
    section(&mut out, "Summary", summary_lines(t));
    section(&mut out, "Impact", vec![impact(t)]);
    let rows =
        t.rows.iter().map(|r| vec![at_second(r.time), r.step.clone(), r.who.clone(), r.what.clone(), r.link.clone()]);
    section(&mut out, "Timeline", table(&["Time (UTC)", "Step", "Who", "What changed", "Link"], rows.collect()));
    let took = |d: &Took| {
        let step = if d.attempt > 1 { format!("{} (attempt {})", d.step, d.attempt) } else { d.step.clone() };
        let duration = d.duration_ms.map_or_else(|| "-".into(), human);
        vec![step, d.run_id.clone(), d.result.as_str().into(), duration]
    };
    section(
        &mut out,
        "Durations",
        table(&["Step", "Run", "Result", "Duration"], t.durations.iter().map(took).collect()),
    );
    let when = |e: &Problem| e.time.map(at_second).unwrap_or_default();
    let errors: Vec<String> =
        t.errors.iter().map(|e| format!("{} UTC, {} (run {}): {}", when(e), e.step, e.run_id, e.error)).collect();
    section(&mut out, "Errors", bullets(&errors, "None."));
    if !t.gates.is_empty() {
        let figure = |v: Option<f64>| v.map_or_else(|| "no data".into(), crate::runbook::kinds::gate::figure);
        let span = |g: &GateFigures| match (g.first, g.last) {
            (Some(first), Some(last)) => format!("{} to {}", at_second(first), at_second(last)),
            _ => String::new(),
        };
        let rows = t.gates.iter().map(|g| {
            let step = if g.attempt > 1 { format!("{} (attempt {})", g.step, g.attempt) } else { g.step.clone() };
            vec![
                step,
                g.run_id.clone(),
                g.result.as_str().into(),
                g.samples.to_string(),
                span(g),
                format!("{} / {} / {}", figure(g.lowest), figure(g.highest), figure(g.latest)),
                g.failed.to_string(),
                g.no_data.to_string(),
            ]
        });
        let header =
            ["Gate", "Run", "Result", "Samples", "Sampled (UTC)", "Lowest / highest / last", "Failed", "No data"];
        let mut body = table(&header, rows.collect());
        for g in &t.gates {
            if let Some(chart) = &g.chart {
                body.extend([String::new(), format!("![{}, run {}]({chart})", g.step, g.run_id)]);
            }
        }
        if t.gates.iter().all(|g| g.chart.is_none()) {
            body.extend([String::new(), CHARTS_HINT.to_string()]);
        }
        let reports: Vec<String> = t.gates.iter().filter_map(report_line).collect();
        if !reports.is_empty() {
            body.extend([String::new(), REPORTS_NOTE.to_string(), String::new()]);
            body.extend(bullets(&reports, ""));
        }
        section(&mut out, "Gates", body);
    }
    let skipped: Vec<String> = t.skipped.iter().map(|s| format!("{} (run {}): {}", s.step, s.run_id, s.why)).collect();
    section(&mut out, "Skipped steps", bullets(&skipped, "None."));
    for question in t.questions {
        section(&mut out, question, vec![TO_FILL.into()]);
    }
    section(&mut out, "Action items", table(&["Action", "Owner", "Due"], vec![vec![String::new(); 3]]));
    section(&mut out, "What went well", bullets(&t.went_well, TO_FILL));
    section(&mut out, "What went wrong", bullets(&t.went_wrong, TO_FILL));
    out.pop();
    out
}

pub fn timeline(ui: &Ui, args: &TimelineArgs) -> Result<ExitCode, Error> {
    let state = journal::state_dir();
    let mut runs = args.runs.iter().map(|run| open(ui, &state, run)).collect::<Result<Vec<Told>, Error>>()?;
    runs.sort_by(|a, b| (a.story.started, &a.story.run_id).cmp(&(b.story.started, &b.story.run_id)));
    runs.dedup_by(|a, b| a.story.run_id == b.story.run_id);
    let mut timeline = build(&runs);
    fetch_reports(&mut timeline.gates);
    let json = args.format == TimelineFormat::Json || ui.json();
    let Some(output) = &args.output else {
        let text =
            if json { serde_json::to_string(&timeline).unwrap_or_default() } else { markdown(&timeline).join("\n") };
        ui.stdout(text);
        return Ok(ExitCode::Success);
    };
    // The charts first, so that the Markdown never links to a file that is not there.
    let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "timeline".into());
    let folder = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    for (i, gate) in timeline.gates.iter_mut().enumerate() {
        let name = gate.chart_name(&stem, i + 1);
        write_new(&folder.join(&name), &gate.drawing.svg().map_err(Error::invalid)?)?;
        gate.chart = Some(name);
    }
    let text =
        if json { serde_json::to_string(&timeline).unwrap_or_default() } else { markdown(&timeline).join("\n") + "\n" };
    write_new(output, &text)?;
    let charts = match timeline.gates.len() {
        0 => String::new(),
        1 => " and its gate's chart beside it".into(),
        n => format!(" and its {n} gates' charts beside it"),
    };
    ui.say(format!("wrote {}{charts}", output.display()));
    Ok(ExitCode::Success)
}

/// `text` as the file's whole content: written to a temp file beside it and renamed over it.
fn write_new(file: &Path, text: &str) -> Result<(), Error> {
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let cannot = |e: std::io::Error| {
        Error::invalid(anyhow::anyhow!("cannot write {}: {e}; name a file in a folder you can write", file.display()))
    };
    let mut temp = tempfile::Builder::new().prefix(".rollout-").suffix(".tmp").tempfile_in(folder).map_err(cannot)?;
    std::io::Write::write_all(&mut temp, text.as_bytes()).map_err(cannot)?;
    temp.persist(file).map_err(|e| cannot(e.error))?;
    Ok(())
}

/// `query: value (days)`, for a GA4 gate's standard report.
fn report_line(g: &GateFigures) -> Option<String> {
    let r = g.report.as_ref()?;
    let value = match (r.value, &r.no_value) {
        (Some(value), _) => crate::runbook::kinds::gate::figure(value),
        (None, why) => format!("no value ({})", why.as_deref().unwrap_or("no rows")),
    };
    let days =
        if r.first_day == r.last_day { r.first_day.clone() } else { format!("{} to {}", r.first_day, r.last_day) };
    let thresholded = if r.thresholded {
        "; subject to thresholding: GA4 withheld rows with few users, so it may be low"
    } else {
        ""
    };
    Some(format!("{} (run {}): `{}` = {value}, {days}{thresholded}", g.step, g.run_id, r.query))
}
