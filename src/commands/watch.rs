//! `rollout watch [RUN]`: a run followed live from another machine, event by event as the
//! shared journal gets them (LISTEN/NOTIFY); without RUN, the team's runs as they start and end.

use std::path::Path;
use std::time::Duration;

use ::postgres::fallible_iterator::FallibleIterator;
use anyhow::anyhow;

use crate::cli::WatchArgs;
use crate::engine::event::{Event, Record};
use crate::error::{Error, ExitCode};
use crate::interrupt;
use crate::state::postgres::{self, Target};
use crate::ui::Ui;
use crate::untrusted::one_line;

/// How long a wait for a notification lasts before Ctrl-C is looked at again.
const TICK: Duration = Duration::from_millis(500);

pub fn watch(ui: &Ui, config: Option<&Path>, cwd: &Path, args: &WatchArgs) -> Result<ExitCode, Error> {
    crate::interrupt::install();
    let target = super::state::target(config, cwd)?;
    let mut listener = crate::state::connect(&target)?;
    let mut reader = target.connect()?;
    listener.batch_execute(&format!("LISTEN \"{}\"", target.channel())).map_err(|e| target.refused(&e))?;
    let run = match &args.run {
        Some(run) => Some(crate::state::find_run(&target, &mut reader, run)?),
        None => None,
    };
    let mut next = 0;
    match &run {
        Some(run_id) => {
            ui.always(
                ui.dim(format!("following run {run_id} ({}, schema {}); Ctrl-C stops", target.shown, target.schema)),
            );
            if show(ui, &target, &mut reader, run_id, &mut next)? {
                return Ok(ExitCode::Success);
            }
        }
        None => ui.always(ui.dim(format!(
            "the team's runs as they start and end ({}, schema {}); Ctrl-C stops",
            target.shown, target.schema
        ))),
    }
    loop {
        if interrupt::requested() {
            return Ok(ExitCode::Interrupted);
        }
        // One notification at a time, each shown as it comes: the wait for the next is short,
        // so that Ctrl-C is seen between them.
        let heard = {
            let mut notifications = listener.notifications();
            let mut notices = notifications.timeout_iter(TICK);
            notices.next().map_err(|e| target.refused(&e))?.map(|notice| notice.payload().to_string())
        };
        if listener.is_closed() {
            return Err(Error::from(anyhow!("the shared state ({}) closed the connection", target.shown)));
        }
        if let Some(payload) = heard {
            let Some((run_id, seq)) = payload.split_once(' ') else { continue };
            match &run {
                Some(followed) if followed == run_id => {
                    if show(ui, &target, &mut reader, run_id, &mut next)? {
                        return Ok(ExitCode::Success);
                    }
                }
                Some(_) => {}
                None => {
                    let Ok(seq) = seq.parse::<i32>() else { continue };
                    for line in postgres::lines(&target, &mut reader, run_id, seq)?.into_iter().take(1) {
                        if let Ok(record) = serde_json::from_str::<Record>(&line.text)
                            && matches!(
                                record.event,
                                Event::RunStarted { .. } | Event::RunResumed { .. } | Event::RunFinished { .. }
                            )
                        {
                            ui.stdout(line_of(&record));
                        }
                    }
                }
            }
        }
    }
}

/// Print the run's events from `next` on; true once the run has ended.
fn show(
    ui: &Ui,
    target: &Target,
    client: &mut ::postgres::Client,
    run_id: &str,
    next: &mut i32,
) -> Result<bool, Error> {
    let mut ended = false;
    for line in postgres::lines(target, client, run_id, *next)? {
        *next = line.seq + 1;
        let Ok(record) = serde_json::from_str::<Record>(&line.text) else { continue };
        ended = matches!(record.event, Event::RunFinished { .. });
        ui.stdout(line_of(&record));
    }
    Ok(ended)
}

/// One event as a line: its time and what it says, as the runner was told it.
fn line_of(record: &Record) -> String {
    let at = record.ts.strftime("%H:%M:%S");
    let text = match &record.event {
        Event::RunStarted { runbook, dry_run, origin, .. } => {
            let who = origin.as_ref().map_or_else(|| "?".into(), |o| format!("{}@{}", o.user, o.host));
            let dry = if *dry_run { " (dry run)" } else { "" };
            format!("run {} of runbook {runbook} started by {who}{dry}", record.run_id)
        }
        Event::RunResumed { user, host, at, .. } => {
            format!("run {} resumed by {user}@{host} at step {at}", record.run_id)
        }
        Event::LockTakenOver { holder } => format!("took over the lock left by {holder}"),
        Event::LockBroken { holder, .. } => format!("removed the lock left by {holder}"),
        Event::StepStarted { step, index, total, kind } => format!("Step {index}/{total} · {step} · {kind}"),
        Event::StepPreview { before, after, reach, .. } => {
            let summary = |v: &serde_json::Value| v.get("summary").and_then(|s| s.as_str()).unwrap_or("?").to_string();
            let reach = reach.map(|r| format!(" ({})", r.as_str())).unwrap_or_default();
            format!("  {} -> {}{reach}", summary(before), summary(after))
        }
        Event::StepConfirmed { by, .. } => format!("  confirmed ({})", by_name(by)),
        Event::StepSkipped { step, reason, .. } => {
            format!("  {step} skipped ({})", reason.as_deref().unwrap_or("by the operator"))
        }
        Event::StepTriggered { pipeline_run, url, .. } => format!("  triggered run {pipeline_run} {url}"),
        Event::StepSampled { sample, .. } => {
            let value = sample.value.map_or_else(|| "no data".into(), crate::runbook::kinds::gate::figure);
            format!("  sample {value} ({})", by_name(&sample.judged))
        }
        Event::ApprovalRequested { step, digest, min, .. } => {
            let short = crate::engine::story::short(digest);
            format!("  {step} waits for {min} approval(s) of plan {short}: rollout approve {}", record.run_id)
        }
        Event::StepApproved { step, by, .. } => format!("  {step} approved by {}", by.join(", ")),
        Event::StepRejected { step, by, reason, .. } => format!("  {step} rejected by {by}: {reason}"),
        Event::ApprovalOverridden { step, reason, by } => {
            format!("  BREAK GLASS: {step} acts without its approval, by {by}: {reason}")
        }
        Event::StepSucceeded { step, outcome, duration_ms, .. } => {
            format!("  ✓ {step}: {} ({duration_ms} ms)", outcome.as_deref().unwrap_or("done"))
        }
        Event::StepFailed { step, error, .. } => format!("  ✗ {step}: {error}"),
        Event::RunFinished { status, exit_code } => {
            format!("run {} ended: {} (exit {exit_code})", record.run_id, by_name(status))
        }
    };
    format!("{at} {}", one_line(&crate::redact::scrub(&text)))
}

/// A serialized enum's name: `yes-flag`, `succeeded`.
fn by_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}
