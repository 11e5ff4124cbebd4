//! `rollout approve RUN` and `rollout reject RUN --reason`: a second engineer sees the plan a
//! waiting step will carry out, with its digest, and lets it act (or not), from their own shell.

use std::path::Path;

use anyhow::anyhow;

use crate::cli::{ApproveArgs, RejectArgs};
use crate::engine::event::{Event, Record};
use crate::engine::lock;
use crate::engine::story::short;
use crate::error::{Error, ExitCode};
use crate::state::{self, postgres};
use crate::ui::Ui;
use crate::untrusted::printable;

/// What a run waits for: the step, the plan's digest, and what the engineer is shown.
struct Waiting {
    run_id: String,
    step: String,
    digest: String,
    allow_self: bool,
    min: u32,
    /// `user@host` who asked (started or last resumed the run), and the user alone.
    asker: String,
    asker_user: String,
    lines: Vec<String>,
}

pub fn approve(ui: &Ui, config: Option<&Path>, cwd: &Path, args: &ApproveArgs) -> Result<ExitCode, Error> {
    let (target, mut client, waiting) = waiting(config, cwd, &args.run)?;
    show(ui, &waiting);
    let me = lock::user();
    if me == waiting.asker_user && !waiting.allow_self {
        return Err(Error::new(
            ExitCode::Aborted,
            anyhow!("{me} asked for this approval: step {} needs another engineer's (allow_self: false)", waiting.step),
        ));
    }
    if !args.yes {
        if !ui.interactive() {
            return Err(Error::invalid(anyhow!("stdin is not a terminal, so nobody can answer"))
                .with_hint("pass --yes to approve the plan shown without asking"));
        }
        let question =
            format!("Approve step {} of run {} (plan {})?", waiting.step, waiting.run_id, short(&waiting.digest));
        match ui.choose(&question, &["yes", "no"], None) {
            Ok(0) => {}
            _ => {
                ui.always("  not approved");
                return Ok(ExitCode::Aborted);
            }
        }
    }
    decide(&target, &mut client, &waiting, true, "")?;
    ui.always(format!(
        "{} approved step {} of run {} (plan {}); it acts once {} approval(s) are in",
        ui.good("✓"),
        waiting.step,
        waiting.run_id,
        short(&waiting.digest),
        waiting.min
    ));
    Ok(ExitCode::Success)
}

pub fn reject(ui: &Ui, config: Option<&Path>, cwd: &Path, args: &RejectArgs) -> Result<ExitCode, Error> {
    let (target, mut client, waiting) = waiting(config, cwd, &args.run)?;
    show(ui, &waiting);
    decide(&target, &mut client, &waiting, false, &args.reason)?;
    ui.always(format!("{} rejected step {} of run {}: it does not act", ui.good("✓"), waiting.step, waiting.run_id));
    Ok(ExitCode::Success)
}

fn decide(
    target: &postgres::Target,
    client: &mut ::postgres::Client,
    waiting: &Waiting,
    approve: bool,
    reason: &str,
) -> Result<(), Error> {
    let decision = postgres::Decision { user: lock::user(), host: lock::host(), approve, reason: reason.to_string() };
    postgres::decide(target, client, &waiting.run_id, &waiting.step, &waiting.digest, &decision)
}

fn show(ui: &Ui, waiting: &Waiting) {
    ui.always(format!(
        "Run {} asks {} for approval of step {} (asked by {}):",
        waiting.run_id,
        if waiting.min == 1 { "one engineer".to_string() } else { format!("{} engineers", waiting.min) },
        ui.bold(&waiting.step),
        waiting.asker
    ));
    for line in &waiting.lines {
        ui.always(format!("  {line}"));
    }
    ui.always(format!("  plan digest {} (the runbook, the inputs, and the live before and after)", waiting.digest));
}

/// The run `run` of the shared journal, and the approval it waits for now.
fn waiting(
    config: Option<&Path>,
    cwd: &Path,
    run: &str,
) -> Result<(postgres::Target, ::postgres::Client, Waiting), Error> {
    let target = super::state::target(config, cwd)?;
    let mut client = state::connect(&target)?;
    let run_id = state::find_run(&target, &mut client, run)?;
    let records: Vec<Record> = postgres::lines(&target, &mut client, &run_id, 0)?
        .iter()
        .filter_map(|line| serde_json::from_str(&line.text).ok())
        .collect();
    let mut asker = (String::new(), String::new());
    let mut runbook = String::new();
    let mut inputs = String::new();
    let mut preview: Option<(String, String, String)> = None;
    let mut waiting: Option<(String, String, u32, bool)> = None;
    for record in &records {
        match &record.event {
            Event::RunStarted { runbook: name, inputs: given, origin, .. } => {
                runbook = name.clone();
                inputs = given.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
                if let Some(o) = origin {
                    asker = (format!("{}@{}", o.user, o.host), o.user.clone());
                }
            }
            Event::RunResumed { user, host, .. } => asker = (format!("{user}@{host}"), user.clone()),
            Event::StepPreview { step, before, after, reach } => {
                let summary =
                    |v: &serde_json::Value| v.get("summary").and_then(|s| s.as_str()).unwrap_or("?").to_string();
                let reach = reach.map(|r| format!("  [{}]", r.as_str())).unwrap_or_default();
                preview = Some((step.clone(), summary(before), format!("{}{reach}", summary(after))));
            }
            Event::ApprovalRequested { step, digest, min, allow_self } => {
                waiting = Some((step.clone(), digest.clone(), *min, *allow_self));
            }
            Event::StepApproved { .. }
            | Event::StepRejected { .. }
            | Event::ApprovalOverridden { .. }
            | Event::RunFinished { .. } => waiting = None,
            _ => {}
        }
    }
    let Some((step, digest, min, allow_self)) = waiting else {
        return Err(Error::invalid(anyhow!("run {run_id} waits for no approval now"))
            .with_hint(format!("`rollout watch {run_id}` follows it")));
    };
    let mut lines = vec![format!("runbook {}, inputs: {}", printable(&runbook), printable(&inputs))];
    if let Some((_, before, after)) = preview.filter(|(s, _, _)| *s == step) {
        lines.push(format!("now:   {}", printable(&before)));
        lines.push(format!("after: {}", printable(&after)));
    }
    let waiting = Waiting { run_id, step, digest, allow_self, min, asker: asker.0, asker_user: asker.1, lines };
    Ok((target, client, waiting))
}
