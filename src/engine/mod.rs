//! The walk: check inputs, preflight every step, then for each step preview -> confirm ->
//! apply -> verify -> record. Every event is journaled and fsynced before the next step.

pub mod event;
pub mod journal;
pub mod lock;
mod preflight;
mod shared;
pub mod state;
pub mod story;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::error::{Error, ExitCode, Interrupted, Precondition, Started};
use crate::interrupt;
use crate::runbook::inputs::{self, Inputs};
use crate::runbook::resolve::{self, Action, Outputs, Scope, Unresolved};
use crate::runbook::template::Ref;
use crate::runbook::{LoadedRunbook, PreflightOrder, Service, StepKind, validate};
use crate::steps::{Context, Note, Preview, Projection, Step, StepFactory};
use crate::ui::Ui;
use crate::ui::prompt::{Answer, NoAnswer};
use crate::yaml::Diagnostics;
use event::{By, Event, Origin, Purpose, Record, RunStatus};
use journal::Journal;
use lock::RunLock;
use preflight::{Background, Checked, Lookup, Planned};
use state::{RunState, StepResult};

/// How often a step waiting for approval looks for decisions.
const APPROVAL_POLL: Duration = Duration::from_millis(500);

/// Under `--yes`, how long since a step's read came back it may still be the read the write
/// follows: the write goes out at once, and a second read would only repeat the first, leaving
/// no narrower gap (a round trip to a hosted flag service takes about as long). Anything older,
/// and any write an operator answered for, is read again first.
const JUST_READ: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    pub vars: Vec<String>,
    pub dry_run: bool,
    pub yes: bool,
    pub from: Option<String>,
    /// The pause before retrying a failed step (default `Backoff::STEP_RETRY`).
    pub retry_pause: Option<Backoff>,
    /// Take an earlier run up again instead of starting one.
    pub resume: Option<Resumption>,
    /// The steps' actions given, not resolved from the runbook (an undo's).
    pub script: Option<Script>,
    /// `--break-glass REASON`: steps that need approval act without it, loudly journaled.
    pub break_glass: Option<String>,
}

/// A run taken up again by `rollout resume`: its records so far, and the step to go on from.
/// It goes on in the same journal, under the same run id.
#[derive(Debug, Clone)]
pub struct Resumption {
    pub run_id: String,
    pub records: Vec<Record>,
    /// The index of the step to go on from.
    pub at: usize,
    pub forced: bool,
    /// What the re-check found no longer holds, journaled in `run_resumed`.
    pub drift: Vec<String>,
}

/// A walk whose steps are given: one per step of the runbook, carried out or skipped.
#[derive(Debug, Clone)]
pub struct Script {
    pub purpose: Purpose,
    pub steps: Vec<Scripted>,
}

#[derive(Debug, Clone)]
pub enum Scripted {
    Act(Action),
    /// Not carried out, for this reason (journaled in `step_skipped`).
    Skip(String),
}

/// The end of a run: its exit code and its state, as its records tell it.
#[derive(Debug)]
pub struct Finished {
    pub code: ExitCode,
    pub state: RunState,
}

fn new_run_id(runbook: &str) -> String {
    let now = jiff::Timestamp::now();
    format!("{}-{runbook}-{:04x}", now.strftime("%Y%m%dT%H%M%SZ"), rand::random::<u16>())
}

fn preview_event(step: &str, preview: &Preview) -> Event {
    Event::StepPreview {
        step: step.to_string(),
        before: preview.before.clone(),
        after: preview.after.clone(),
        reach: preview.reach,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn format_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// Everything that can be refused before a run starts (exit 2): inputs, `--from`,
/// no terminal, steps the config cannot serve, values of the wrong type.
fn check_before_start(
    ui: &Ui,
    config: &Config,
    runbook: &LoadedRunbook,
    options: &WalkOptions,
) -> Result<(Inputs, usize), Error> {
    let inputs = inputs::resolve(runbook, &options.vars)?;
    let from = match (&options.resume, &options.from) {
        (Some(resumption), _) => resumption.at,
        (None, None) => 0,
        (None, Some(id)) => runbook.step_index(id).ok_or_else(|| {
            let ids: Vec<&str> = runbook.runbook.steps.iter().map(|s| s.common.id.as_str()).collect();
            Error::invalid(anyhow!("--from {id}: runbook {} has no step `{id}`", runbook.name))
                .with_hint(format!("its steps are {}", ids.join(", ")))
        })?,
    };
    if !options.dry_run && !options.yes && !ui.interactive() {
        return Err(Error::invalid(anyhow!("stdin is not a terminal, so nobody can answer the prompts"))
            .with_hint("pass --yes to answer yes to every prompt (for scripts), or --dry-run to only check"));
    }
    let mut problems = validate::against_config(runbook, config);
    let earlier = options.resume.as_ref().and_then(|r| RunState::fold(&r.records)).unwrap_or_default();
    for index in from..runbook.runbook.steps.len() {
        if options.script.is_some() {
            break;
        }
        match resolve::action(runbook, index, Scope { inputs: &inputs, outputs: earlier.outputs() }) {
            Err(Unresolved::Invalid(diagnostic)) => problems.push(diagnostic),
            Err(Unresolved::Waiting(Ref::Output { step, output }))
                if runbook.step_index(&step).is_some_and(|i| i < from) =>
            {
                let this = &runbook.runbook.steps[index].common.id;
                return Err(Error::invalid(anyhow!(
                    "--from {}: step {this} reads steps.{step}.{output}, which step {step} produces, but --from skips it",
                    options.from.as_deref().unwrap_or_default()
                ))
                .with_hint(format!("start at {step} or earlier")));
            }
            Ok(_) | Err(Unresolved::Waiting(_)) => {}
        }
    }
    if !problems.is_empty() {
        return Err(Diagnostics(problems).into());
    }
    Ok((inputs, from))
}

/// The steps from `from` on that the preflight looks at (not the scripted skips, nor what a
/// resumed run already settled), and how many of the first of them only reduce exposure and
/// may run while the rest is checked.
fn preflight_order(runbook: &LoadedRunbook, options: &WalkOptions, from: usize) -> (Vec<usize>, usize) {
    let settled =
        options.resume.as_ref().and_then(|r| RunState::fold(&r.records)).map(|state| settled(runbook, &state));
    let indexes: Vec<usize> = (from..runbook.runbook.steps.len())
        .filter(|&i| {
            !matches!(options.script.as_ref().map(|s| &s.steps[i]), Some(Scripted::Skip(_)))
                && !settled.as_ref().is_some_and(|s| s.contains(&runbook.runbook.steps[i].common.id))
        })
        .collect();
    let early = if options.dry_run || runbook.runbook.preflight == PreflightOrder::AllFirst {
        0
    } else {
        indexes.iter().take_while(|i| runbook.runbook.steps[**i].only_reduces_exposure()).count()
    };
    (indexes, early)
}

/// The steps of `state`'s run already done or skipped: a resumed run never runs them again.
fn settled(runbook: &LoadedRunbook, state: &RunState) -> std::collections::HashSet<String> {
    runbook
        .runbook
        .steps
        .iter()
        .map(|s| s.common.id.clone())
        .filter(|id| matches!(state.result(id), Some(StepResult::Done | StepResult::Skipped)))
        .collect()
}

/// Walk `runbook` against `services` (built from `config` by the commands, fakes in tests).
pub fn walk(
    ui: &Ui,
    config: &Config,
    services: &dyn StepFactory,
    runbook: &LoadedRunbook,
    options: &WalkOptions,
    state_dir: &Path,
) -> Result<Finished, Error> {
    let (inputs, from) = check_before_start(ui, config, runbook, options)?;
    // The leading steps that only reduce exposure run as soon as they are checked; the rest is
    // checked meanwhile, on services of its own in another thread. Every service is set up (its
    // secrets known to the scrubber, its config checked) before the run starts; but git's first
    // read, whose libgit2 set-up alone (its TLS) takes tens of milliseconds, is left to the
    // background, and the header shows the remote with the rest of the plan.
    let (indexes, early) = preflight_order(runbook, options, from);
    let background = if early > 0 && early < indexes.len() { services.fork() } else { None };
    let mitigation_uses = |kind: StepKind| indexes[..early].iter().any(|&i| runbook.runbook.steps[i].kind() == kind);
    let mut later: Vec<StepKind> = Vec::new();
    for &index in &indexes {
        let kind = runbook.runbook.steps[index].kind();
        services.prepare(kind).map_err(Error::invalid)?;
        let deferred = background.is_some() && kind.service() == Some(Service::Git) && !mitigation_uses(kind);
        if deferred && !later.contains(&kind) {
            later.push(kind);
        }
    }
    let (mut run, _lock) = match &options.resume {
        Some(resumption) => {
            resume(Walk { ui, config, services, runbook, options, later: &later }, state_dir, inputs, resumption)?
        }
        None => start(Walk { ui, config, services, runbook, options, later: &later }, state_dir, inputs)?,
    };
    run.mitigating = indexes[..early].to_vec();
    let (outputs, earlier) = run.known();
    let (inputs, run_id) = (run.inputs.clone(), run.run_id.clone());
    let lookup = Lookup {
        ui,
        run_id: &run_id,
        runbook,
        inputs: &inputs,
        outputs: &outputs,
        earlier: &earlier,
        script: options.script.as_ref(),
    };
    let mut projection = Projection::default();
    let Some(factory) = background else {
        let checked = lookup
            .side_by_side(services, &indexes, &mut projection)
            .and_then(|(here, elsewhere)| Ok(here.into_iter().chain(run.own(elsewhere)?).collect::<Vec<_>>()));
        let mut plan = match checked {
            Ok(plan) => plan,
            Err(error) => return run.stopped_by(error),
        };
        plan.sort_by_key(|(index, _)| *index);
        if let Some(finished) = run.preflight_verdict(&plan, options.dry_run)? {
            return Ok(finished);
        }
        return run.steps(from, plan, None);
    };
    let (first, rest) = indexes.split_at(early);
    let plan = lookup.check(services, first, &mut projection)?;
    let owned = preflight::Owned {
        ui: ui.muted(),
        run_id: run_id.clone(),
        runbook: runbook.clone(),
        inputs: inputs.clone(),
        outputs: outputs.clone(),
        earlier: earlier.clone(),
        script: options.script.clone(),
    };
    let at = rest[0];
    let handle = preflight::in_background(factory, owned, rest.to_vec(), projection);
    if plan.iter().any(|(_, p)| matches!(p, Planned::Failed(_))) {
        // A mitigation step cannot be checked: every step is reported, and none runs.
        let mut all = plan;
        run.describe_later();
        match run.wait_for(handle)? {
            Waited::Found(rest) => all.extend(rest),
            Waited::Ended(finished) => return *finished,
        }
        if let Some(finished) = run.preflight_verdict(&all, false)? {
            return Ok(finished);
        }
        return run.steps(from, all, None);
    }
    run.show_early(&plan, indexes.len())?;
    run.steps(from, plan, Some((at, handle)))
}

/// How waiting for the background preflight ended.
enum Waited<'a> {
    /// What it found, with steps of this thread's services.
    Found(Vec<(usize, Planned<'a>)>),
    /// The run ended while waiting (Ctrl-C), or because it could not look.
    Ended(Box<Result<Finished, Error>>),
}

/// What a walk is given: where it speaks, the config and its services, the runbook, the options.
#[derive(Clone, Copy)]
struct Walk<'a> {
    ui: &'a Ui,
    config: &'a Config,
    services: &'a dyn StepFactory,
    runbook: &'a LoadedRunbook,
    options: &'a WalkOptions,
    /// The kinds of service only steps checked in the background use: not described in the
    /// header, but with the rest of the plan.
    later: &'a [StepKind],
}

/// Start a new run: its journal, `run_started`, the header and (unless a dry run) the lock.
fn start<'a>(walk: Walk<'a>, state_dir: &Path, inputs: Inputs) -> Result<(Run<'a>, Option<RunLock>), Error> {
    let Walk { ui, config, runbook, options, .. } = walk;
    let run_id = new_run_id(&runbook.name);
    let journal = match Journal::create(state_dir, &run_id) {
        Ok(journal) => journal,
        Err(error) if options.dry_run => {
            ui.warn(format!("{error:#}: this dry run goes on, and no journal is written"));
            Journal::unwritten()
        }
        Err(error) => return Err(error.into()),
    };
    let run = Run::new(walk, inputs, run_id, journal, RunState::default());
    run.record(Event::RunStarted {
        runbook: runbook.name.clone(),
        severity: runbook.runbook.severity.map(|s| s.as_str().to_string()),
        dry_run: options.dry_run,
        inputs: run.inputs.clone(),
        origin: Some(Box::new(origin(config, runbook, options))),
        purpose: options.script.as_ref().map(|s| s.purpose.clone()),
        scrubbed_inputs: run
            .inputs
            .iter()
            .filter(|(_, value)| crate::redact::scrub(value) != value.as_str())
            .map(|(name, _)| name.clone())
            .collect(),
    })?;
    run.header(options.dry_run);
    if options.dry_run {
        return Ok((run, None));
    }
    match RunLock::acquire(state_dir, &config.path, runbook, &run.run_id) {
        Ok(lock) => {
            run.taken_over(&lock)?;
            let mut run = run;
            run.share(true)?;
            Ok((run, Some(lock)))
        }
        Err(error) => {
            let status = if error.code == ExitCode::Locked { RunStatus::LockRefused } else { RunStatus::Failed };
            run.record(Event::RunFinished { status, exit_code: error.code.code() })?;
            Err(error)
        }
    }
}

/// Take `resumption`'s run up again: the lock first (a run still going is never written to),
/// then `run_resumed` in its own journal.
fn resume<'a>(
    walk: Walk<'a>,
    state_dir: &Path,
    inputs: Inputs,
    resumption: &Resumption,
) -> Result<(Run<'a>, Option<RunLock>), Error> {
    let Walk { config, runbook, .. } = walk;
    let lock = RunLock::acquire(state_dir, &config.path, runbook, &resumption.run_id)?;
    let journal = Journal::reopen(state_dir, &resumption.run_id)?;
    let state = RunState::fold(&resumption.records).unwrap_or_default();
    let run_id = resumption.run_id.clone();
    let settled = settled(runbook, &state);
    let mut run = Run::new(walk, inputs, run_id, journal, state);
    run.settled = settled;
    run.share(false)?;
    let at = runbook.runbook.steps.get(resumption.at).map_or("the end", |s| s.common.id.as_str());
    run.record(Event::RunResumed {
        user: lock::user(),
        host: lock::host(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        at: at.to_string(),
        forced: resumption.forced,
        drift: resumption.drift.clone(),
    })?;
    run.header(false);
    run.taken_over(&lock)?;
    Ok((run, Some(lock)))
}

/// Journal `rollout unlock` as a run of its own: who removed which lock, naming its holder.
/// Returns the journal's path.
pub fn journal_unlock(
    config: &Config,
    runbook: &LoadedRunbook,
    state_dir: &Path,
    lock: &str,
    holder: &str,
) -> Result<String, Error> {
    let run_id = new_run_id(&runbook.name);
    let journal = Journal::create(state_dir, &run_id)?;
    for event in [
        Event::RunStarted {
            runbook: runbook.name.clone(),
            severity: runbook.runbook.severity.map(|s| s.as_str().to_string()),
            dry_run: false,
            inputs: Inputs::default(),
            origin: Some(Box::new(origin(config, runbook, &WalkOptions::default()))),
            purpose: Some(Purpose::Unlock),
            scrubbed_inputs: Vec::new(),
        },
        Event::LockBroken { lock: lock.to_string(), holder: holder.to_string() },
        Event::RunFinished { status: RunStatus::Succeeded, exit_code: 0 },
    ] {
        journal.append(&Record::now(&run_id, event).to_line())?;
    }
    Ok(journal.to_string())
}

/// Where this run comes from, for a later run that takes it up again.
fn origin(config: &Config, runbook: &LoadedRunbook, options: &WalkOptions) -> Origin {
    let config_bytes = std::fs::read(&config.path).ok();
    // A shipped runbook's path (`<shipped>/...`) is no file, and stays as it is.
    let absolute =
        |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string();
    Origin {
        runbook_path: absolute(&runbook.source.path),
        runbook_sha256: event::sha256(runbook.source.text.as_bytes()),
        config_path: absolute(&config.path),
        config_sha256: config_bytes.as_deref().map(event::sha256),
        user: lock::user(),
        host: lock::host(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        from: options.from.clone(),
        runbook_text: Some(runbook.source.text.clone()),
        config_text: config_bytes.and_then(|bytes| String::from_utf8(bytes).ok()),
    }
}

/// How a step's wait for approval ended.
enum Approval {
    Given,
    /// An engineer rejected its plan: it does not act.
    Rejected,
    /// Its state could not be read again after the approval.
    Unreadable(anyhow::Error),
}

enum Flow {
    Next,
    FailedContinue,
    Stop(RunStatus, ExitCode),
}

struct Run<'a> {
    ui: &'a Ui,
    config: &'a Config,
    runbook: &'a LoadedRunbook,
    services: &'a dyn StepFactory,
    inputs: Inputs,
    run_id: String,
    journal: Journal,
    /// The fold of every record so far: what the tally, summary and progress are read from.
    state: RefCell<RunState>,
    started: Instant,
    yes: bool,
    retry_pause: Backoff,
    script: Option<&'a Script>,
    /// The steps a resumed run had already done or skipped, wherever they are: never run again.
    settled: std::collections::HashSet<String>,
    /// Taken up again by `rollout resume`: the steps before the one it goes on from are the
    /// journal's already.
    resumed: bool,
    /// The kinds of service described with the rest of the plan, not in the header.
    later: Vec<StepKind>,
    /// On a shared backend: the team's lock and the shared journal.
    shared: Option<shared::Shared>,
    /// The leading steps that only reduce exposure: never held up by the shared journal.
    mitigating: Vec<usize>,
    /// `--break-glass`: why steps act without the approvals they need.
    break_glass: Option<String>,
}

impl<'a> Run<'a> {
    fn new(walk: Walk<'a>, inputs: Inputs, run_id: String, journal: Journal, state: RunState) -> Run<'a> {
        let Walk { ui, config, services, runbook, options, later } = walk;
        Run {
            later: later.to_vec(),
            ui,
            config,
            runbook,
            services,
            inputs,
            run_id,
            journal,
            state: RefCell::new(state),
            started: Instant::now(),
            yes: options.yes,
            retry_pause: options.retry_pause.unwrap_or(Backoff::STEP_RETRY),
            script: options.script.as_ref(),
            settled: Default::default(),
            resumed: options.resume.is_some(),
            shared: None,
            mitigating: Vec::new(),
            break_glass: options.break_glass.clone(),
        }
    }

    /// Take the team's lock and start the shared journal, on a shared backend. A new run
    /// journals a refusal as its end; a resumed one is refused before it writes anything, as
    /// with this machine's lock, so its journal keeps how it stopped.
    fn share(&mut self, journal_refusal: bool) -> Result<(), Error> {
        let Some(path) = self.journal.path().map(Path::to_path_buf) else { return Ok(()) };
        match shared::take(self.config, &self.runbook.name, &self.run_id, &path) {
            Ok(shared) => {
                self.shared = shared;
                if let Some(holder) = self.shared.as_ref().and_then(|s| s.lock.taken_over.clone()) {
                    self.ui.warn(format!("took over the shared lock left by {holder}: its connection is gone"));
                    self.record(Event::LockTakenOver { holder: holder.to_string() })?;
                }
                Ok(())
            }
            Err(error) if !journal_refusal => Err(error),
            Err(error) => {
                let status = if error.code == ExitCode::Locked { RunStatus::LockRefused } else { RunStatus::Failed };
                self.record(Event::RunFinished { status, exit_code: error.code.code() })?;
                // A refused run is the team's to see too, when the database can be reached.
                if error.code == ExitCode::Locked
                    && let Ok(Some(target)) = crate::state::shared(self.config)
                {
                    let _ = crate::state::send_run(&target, &path, &self.run_id);
                }
                Err(error)
            }
        }
    }

    /// Say and journal that the lock was left by a run whose process is gone.
    fn taken_over(&self, lock: &RunLock) -> Result<(), Error> {
        let Some(holder) = &lock.taken_over else { return Ok(()) };
        self.ui.warn(format!("took over the lock left by {holder}: no process holds it"));
        self.record(Event::LockTakenOver { holder: holder.to_string() })
    }

    /// What the script says of step `index`, if the steps are scripted.
    fn scripted(&self, index: usize) -> Option<&'a Scripted> {
        self.script.map(|s| &s.steps[index])
    }

    /// The action of step `index`: the script's, or the runbook's with what is known so far.
    fn action(&self, index: usize) -> Result<Action, Unresolved> {
        let outputs = self.scope_outputs();
        preflight::action(self.runbook, self.script, index, Scope { inputs: &self.inputs, outputs: &outputs })
    }

    fn total(&self) -> usize {
        self.runbook.runbook.steps.len()
    }

    fn ids(&self) -> Vec<&str> {
        self.runbook.runbook.steps.iter().map(|s| s.common.id.as_str()).collect()
    }

    /// Journal one event, show it with `--json`, and fold it into the run's state.
    fn record(&self, event: Event) -> Result<(), Error> {
        let record = Record::now(&self.run_id, event);
        let line = record.to_line();
        let seq = self.journal.append(&line).map_err(Error::from)?;
        if let Some(shared) = &self.shared {
            shared.journal.push(self.ui, seq, &line);
        }
        self.ui.event(&line);
        self.state.borrow_mut().apply(&record);
        Ok(())
    }

    /// What the steps so far produced, for the templates of the next.
    fn scope_outputs(&self) -> std::cell::Ref<'_, HashMap<String, Outputs>> {
        std::cell::Ref::map(self.state.borrow(), RunState::outputs)
    }

    /// The header's lines for the services set up in the background, now that they are.
    fn describe_later(&self) {
        for &kind in &self.later {
            self.describe(kind);
        }
    }

    /// Where a kind of step acts, one header line.
    fn describe(&self, kind: StepKind) {
        if let Some((label, place)) = self.services.describe(kind) {
            self.ui.say(format!("  {label:<7} {place}"));
        }
    }

    fn header(&self, dry_run: bool) {
        let book = &self.runbook.runbook;
        let ui = self.ui;
        let mode = if dry_run { "Dry run of runbook" } else { "Runbook" };
        let total = self.total();
        ui.say(format!("{mode} {}: {} ({total} step{})", ui.bold(&self.runbook.name), book.title, plural(total)));
        if dry_run {
            ui.say("  nothing will be changed and nothing will be asked");
        }
        let config = std::path::absolute(&self.config.path).unwrap_or_else(|_| self.config.path.clone());
        ui.say(format!("  config  {}", config.display()));
        let mut kinds: Vec<crate::runbook::StepKind> = Vec::new();
        for spec in &book.steps {
            if !kinds.contains(&spec.kind()) {
                kinds.push(spec.kind());
            }
        }
        for kind in kinds {
            if self.later.contains(&kind) {
                if let Some(label) = kind.service().and_then(Service::label) {
                    ui.say(format!("  {label:<7} checked in the background, shown with the rest of the plan"));
                }
            } else {
                self.describe(kind);
            }
        }
        for spec in &book.steps {
            let crate::runbook::StepKindSpec::Revert(revert) = &spec.kind else { continue };
            let (remote, branch) = self.config.git.as_ref().map_or(("origin", "main"), |g| (&g.remote, &g.branch));
            let fate = match (&revert.branch, revert.push) {
                (_, false) => "made in the clone only, not pushed".to_string(),
                (Some(new), true) => format!("pushed to a new branch {} on {remote}", new.0),
                (None, true) => format!("pushed onto {remote}/{branch}"),
            };
            ui.say(format!("  revert  step {}: the revert is {fate}", spec.common.id));
        }
        if !self.inputs.is_empty() {
            let shown: Vec<String> = self.inputs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            ui.say(format!("  inputs  {}", shown.join(" ")));
        }
        ui.say(ui.dim(format!("  run {} · journal {}", self.run_id, self.journal)));
    }

    /// What step `id` may use; a pipeline run it triggered before the run stopped is passed on.
    fn context<'p>(
        &'p self,
        id: &str,
        projection: &'p Projection,
        deadline: Option<Instant>,
        journal: &'p dyn Fn(Note) -> anyhow::Result<()>,
    ) -> Context<'p> {
        let earlier_run =
            self.state.borrow().earlier_runs().get(id).map(|(run, url)| crate::ci::RunHandle::journaled(run, url));
        Context {
            ui: self.ui,
            run_id: &self.run_id,
            deadline,
            projection,
            progress: self.progress(),
            journal,
            earlier_run,
            yes: self.yes,
        }
    }

    fn progress(&self) -> String {
        self.state.borrow().progress(self.total())
    }

    /// The background's findings with steps of this thread's services for the ready ones.
    fn own(&self, checked: Vec<(usize, Checked)>) -> Result<Vec<(usize, Planned<'a>)>, Error> {
        let services = self.services;
        checked
            .into_iter()
            .map(|(index, checked)| {
                let planned = match checked {
                    Checked::Ready(preview, read) => match self.action(index) {
                        Ok(action) => Planned::Ready(preview, services.step(action).map_err(Error::invalid)?, read),
                        Err(Unresolved::Waiting(reference)) => Planned::Deferred(reference),
                        Err(Unresolved::Invalid(diagnostic)) => return Err(Diagnostics(vec![diagnostic]).into()),
                    },
                    Checked::Deferred(reference) => Planned::Deferred(reference),
                    Checked::Failed(error) => Planned::Failed(error),
                };
                Ok((index, planned))
            })
            .collect()
    }

    /// One plan line per step; failures are journaled (except in a dry run, which journals its
    /// whole plan). Returns how many could not succeed, and how many could not be checked.
    fn show_plan(&mut self, plan: &[(usize, Planned<'a>)], dry_run: bool) -> Result<(usize, usize), Error> {
        let ui = self.ui;
        let (mut preconditions, mut errors) = (0, 0);
        for (index, planned) in plan {
            let index = *index;
            let spec = &self.runbook.runbook.steps[index];
            let id = spec.common.id.clone();
            let label = format!("  {}/{} {}:", index + 1, self.total(), ui.bold(&id));
            if dry_run {
                let kind = spec.kind().as_str().into();
                self.record(Event::StepStarted { step: id.clone(), index: index + 1, total: self.total(), kind })?;
            }
            match planned {
                Planned::Ready(preview, ..) => {
                    ui.say(format!("{label} {}", preview.effect));
                    for note in &preview.notes {
                        ui.say(format!("      {} {note}", ui.caution("!")));
                    }
                    if dry_run {
                        self.record(preview_event(&id, preview))?;
                    }
                }
                Planned::Deferred(reference) => ui.say(format!("{label} checked when it runs (it needs {reference})")),
                Planned::Failed(error) => {
                    if Precondition::is_in(error) {
                        preconditions += 1;
                    } else {
                        errors += 1;
                    }
                    ui.always(format!("{label} {} {error:#}", ui.bad("✗")));
                    let error = format!("{error:#}");
                    self.record(Event::StepFailed {
                        step: id,
                        error,
                        unanswered: false,
                        unsettled: false,
                        next: None,
                    })?;
                }
            }
        }
        Ok((preconditions, errors))
    }

    /// The mitigation steps' plan, checked; the rest is being checked in the background.
    fn show_early(&mut self, plan: &[(usize, Planned<'a>)], total: usize) -> Result<(), Error> {
        self.show_plan(plan, false)?;
        let ui = self.ui;
        ui.say(ui.dim(format!(
            "  preflight: {} of {total} steps checked, the rest in the background ({} only reduce{} exposure, so {} first)",
            plan.len(),
            if plan.len() == 1 { "it" } else { "they" },
            if plan.len() == 1 { "s" } else { "" },
            if plan.len() == 1 { "it goes" } else { "they go" }
        )));
        Ok(())
    }

    /// The rest of the plan, checked in the background while the mitigation ran: the run stops
    /// here if a step cannot succeed, and what was already done stays.
    fn rest_verdict(&mut self, plan: &[(usize, Planned<'a>)]) -> Result<Option<Finished>, Error> {
        let ui = self.ui;
        self.describe_later();
        ui.say(ui.dim("  preflight of the other steps:"));
        let (preconditions, errors) = self.show_plan(plan, false)?;
        if preconditions + errors == 0 {
            let checked = plan.iter().filter(|(_, p)| matches!(p, Planned::Ready(..))).count();
            let deferred = plan.len() - checked;
            let later = if deferred > 0 { format!(", {deferred} checked when they run") } else { String::new() };
            ui.say(ui.dim(format!("  preflight: {checked} more step{} checked{later}", plural(checked))));
            return Ok(None);
        }
        let done = self.state.borrow().done().iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let stays = if done.is_empty() {
            "nothing was changed".to_string()
        } else {
            format!("what was already done stays: {}", done.join(", "))
        };
        if errors > 0 {
            ui.always(format!("{} Preflight could not check every step; stopped here, {stays}.", ui.bad("✗")));
            return self.finish(RunStatus::Failed, ExitCode::StepFailed).map(Some);
        }
        ui.always(format!(
            "{} Preflight failed: {preconditions} of the {} other steps cannot succeed; stopped before them, {stays}.",
            ui.bad("✗"),
            plan.len()
        ));
        self.finish(RunStatus::PreflightFailed, ExitCode::Preflight).map(Some)
    }

    /// Wait for the background preflight, saying so if it takes a while; Ctrl-C ends the
    /// run (what was already done stays, and the summary says so), never the wait alone.
    fn wait_for(&mut self, mut handle: Background) -> Result<Waited<'a>, Error> {
        handle.start();
        let ui = self.ui;
        let mut said = false;
        let started = Instant::now();
        while !handle.is_finished() {
            if !said && started.elapsed() > Duration::from_millis(500) {
                ui.say(ui.dim("  waiting for the preflight of the other steps (Ctrl-C stops here)"));
                said = true;
            }
            if interrupt::sleep(Duration::from_millis(20)) {
                ui.always(format!("  {} interrupted while the other steps were being checked", ui.caution("■")));
                return Ok(Waited::Ended(Box::new(self.finish(RunStatus::Interrupted, ExitCode::Interrupted))));
            }
        }
        let found = handle
            .join()
            .map_err(|_| Error::from(anyhow!("the preflight in the background stopped unexpectedly")))
            .and_then(|found| found)
            .and_then(|checked| self.own(checked));
        Ok(match found {
            Ok(rest) => Waited::Found(rest),
            Err(error) => Waited::Ended(Box::new(self.stopped_by(error))),
        })
    }

    /// Whether step `index` ran to its end: done, it leaves what its preview said it would (or
    /// found that already so).
    fn changed_as_planned(&self, index: usize) -> bool {
        self.state.borrow().result(&self.runbook.runbook.steps[index].common.id) == Some(StepResult::Done)
    }

    /// What the steps so far produced, and the pipeline runs they may have left going: what a
    /// preflight resolves and previews with.
    fn known(&self) -> (HashMap<String, Outputs>, HashMap<String, (String, String)>) {
        let state = self.state.borrow();
        (state.outputs().clone(), state.earlier_runs())
    }

    /// Preview `indexes` again here, from the live state and what the run has done so far.
    fn check_again(&self, indexes: &[usize]) -> Result<Vec<(usize, Planned<'a>)>, Error> {
        let (outputs, earlier) = self.known();
        let lookup = Lookup {
            ui: self.ui,
            run_id: &self.run_id,
            runbook: self.runbook,
            inputs: &self.inputs,
            outputs: &outputs,
            earlier: &earlier,
            script: self.script,
        };
        lookup.check(self.services, indexes, &mut Projection::default())
    }

    /// The background preflight could not look at the rest: the run ends there, journaled,
    /// with that error's exit code.
    fn stopped_by(&mut self, error: Error) -> Result<Finished, Error> {
        let status = if error.code == ExitCode::Preflight { RunStatus::PreflightFailed } else { RunStatus::Failed };
        self.record(Event::RunFinished { status, exit_code: error.code.code() })?;
        Err(error)
    }

    /// Print the plan (every step's preview, and what cannot succeed); end the run if it must.
    fn preflight_verdict(&mut self, plan: &[(usize, Planned<'a>)], dry_run: bool) -> Result<Option<Finished>, Error> {
        let ui = self.ui;
        let (preconditions, errors) = self.show_plan(plan, dry_run)?;
        let checked = plan.iter().filter(|(_, p)| matches!(p, Planned::Ready(..))).count();
        let deferred = plan.iter().filter(|(_, p)| matches!(p, Planned::Deferred(_))).count();
        let later = if deferred > 0 { format!(", {deferred} checked when they run") } else { String::new() };
        if errors > 0 {
            ui.always(format!("{} Preflight could not check every step; nothing was changed.", ui.bad("✗")));
            return self.finish(RunStatus::Failed, ExitCode::StepFailed).map(Some);
        }
        if preconditions > 0 {
            ui.always(format!(
                "{} Preflight failed: {preconditions} of {} steps cannot succeed; nothing was changed.",
                ui.bad("✗"),
                plan.len()
            ));
            return self.finish(RunStatus::PreflightFailed, ExitCode::Preflight).map(Some);
        }
        if dry_run {
            ui.always(format!(
                "{} Dry run passed: {checked} step{} checked{later}, nothing changed.",
                ui.good("✓"),
                plural(checked)
            ));
            return self.finish(RunStatus::Succeeded, ExitCode::Success).map(Some);
        }
        ui.say(ui.dim(format!("  preflight: {checked} step{} checked{later}", plural(checked))));
        Ok(None)
    }

    /// Walk the steps from `from`, with what the preflight planned; `pending`, the rest of the
    /// plan from the background, is waited for before the step it starts at.
    fn steps(
        &mut self,
        from: usize,
        plan: Vec<(usize, Planned<'a>)>,
        mut pending: Option<(usize, Background)>,
    ) -> Result<Finished, Error> {
        // The first step to run is applied with what its preflight preview worked out.
        let fresh = plan.first().map(|(index, _)| *index);
        // While the rest is checked in the background, the steps planned here are the mitigation.
        let early: Vec<usize> = if pending.is_some() { plan.iter().map(|(i, _)| *i).collect() } else { Vec::new() };
        let mut plans: HashMap<usize, Planned<'a>> = plan.into_iter().collect();
        // The background starts checking once the first mitigation step is written, or as
        // soon as an operator is asked about it (it checks while they read).
        if let Some((_, background)) = pending.as_mut().filter(|_| !self.yes) {
            background.start();
        }
        let mut failed = false;
        for index in 0..self.total() {
            let id = self.runbook.runbook.steps[index].common.id.clone();
            if index < from {
                // A resumed run journals the `--from` skips its start did not get to.
                let before_from = {
                    let state = self.state.borrow();
                    let from = state.from.as_deref().and_then(|id| self.runbook.step_index(id));
                    from.is_some_and(|f| index < f) && state.result(&id).is_none()
                };
                if !self.resumed || before_from {
                    self.skip(index, None)?;
                }
                continue;
            }
            if let Some((_, handle)) = pending.take_if(|(at, _)| *at <= index) {
                let mut rest = match self.wait_for(handle)? {
                    Waited::Found(rest) => rest,
                    Waited::Ended(finished) => return *finished,
                };
                // The background assumed every mitigation step would do what it said; one the
                // operator skipped (or that found nothing to change) did not: look again, live.
                if early.iter().any(|i| !self.changed_as_planned(*i)) {
                    let indexes: Vec<usize> = rest.iter().map(|(i, _)| *i).collect();
                    rest = self.check_again(&indexes)?;
                }
                if let Some(finished) = self.rest_verdict(&rest)? {
                    return Ok(finished);
                }
                plans.extend(rest);
            }
            if self.settled.contains(&id) {
                continue;
            }
            if interrupt::requested() {
                return self.finish(RunStatus::Interrupted, ExitCode::Interrupted);
            }
            if let Some(Scripted::Skip(reason)) = self.scripted(index) {
                self.skip(index, Some(reason.clone()))?;
                continue;
            }
            if let Some(shared) = self.shared.as_ref().filter(|_| !self.mitigating.contains(&index))
                && let Err(error) = shared.settle(self.ui, &id)
            {
                let status = if Interrupted::is_in(&error.error) { RunStatus::Interrupted } else { RunStatus::Failed };
                self.ui.always(format!("{} {:#}", self.ui.bad("✗"), error.error));
                for hint in &error.hints {
                    self.ui.always(format!("  {hint}"));
                }
                return self.finish(status, error.code);
            }
            let flow = self.step(index, plans.remove(&index), fresh == Some(index))?;
            if let Some((_, background)) = pending.as_mut() {
                background.start();
            }
            match flow {
                Flow::Next => {}
                Flow::FailedContinue => failed = true,
                Flow::Stop(status, code) => return self.finish(status, code),
            }
        }
        if failed {
            self.finish(RunStatus::Failed, ExitCode::StepFailed)
        } else {
            self.finish(RunStatus::Succeeded, ExitCode::Success)
        }
    }

    /// Skip step `index` without asking: one before `--from` (no reason), or for `reason`.
    fn skip(&mut self, index: usize, reason: Option<String>) -> Result<(), Error> {
        let spec = &self.runbook.runbook.steps[index];
        let why = match &reason {
            Some(reason) => reason.clone(),
            None => format!("--from {}", self.state.borrow().from.as_deref().unwrap_or_default()),
        };
        self.ui.say(format!("Step {}/{} · {} · skipped ({why})", index + 1, self.total(), spec.common.id));
        let by = if reason.is_some() { By::Rollout } else { By::Operator };
        self.record(Event::StepSkipped { step: spec.common.id.clone(), by, reason })
    }

    /// Run step `index`: `planned` is what the preflight found, used as it is when `fresh` (it
    /// was just read) and brought up to date otherwise.
    fn step(&mut self, index: usize, planned: Option<Planned<'a>>, fresh: bool) -> Result<Flow, Error> {
        let ui = self.ui;
        let spec = self.runbook.runbook.steps[index].clone();
        let id = spec.common.id.clone();
        self.record(Event::StepStarted {
            step: id.clone(),
            index: index + 1,
            total: self.total(),
            kind: spec.kind().as_str().into(),
        })?;
        let optional = if spec.common.optional { ui.dim(" (optional)") } else { String::new() };
        ui.say("");
        ui.say(format!("Step {}/{} · {} · {}{optional}", index + 1, self.total(), ui.bold(&id), spec.common.name));

        let action = match self.action(index) {
            Ok(action) => action,
            Err(Unresolved::Waiting(reference)) => {
                let error =
                    anyhow!("this step needs {reference}, which that step did not produce (it was skipped or failed)");
                return self.fail(&spec, error);
            }
            Err(Unresolved::Invalid(diagnostic)) => return self.fail(&spec, anyhow!(diagnostic.to_string())),
        };
        let projection = Projection::default();
        let quiet = |_: Note| Ok(());
        // When the read the preview shows came back: a write right after it needs no second.
        let (step, preview, read_at) = match planned {
            Some(Planned::Ready(preview, step, read)) if fresh => (step, Ok(*preview), read),
            Some(Planned::Ready(preview, step, _)) => {
                let preview = step.refresh(&self.context(&id, &projection, None, &quiet), *preview);
                (step, preview, Instant::now())
            }
            _ => {
                let step = self.services.step(action).map_err(Error::invalid)?;
                let preview = step.preview(&self.context(&id, &projection, None, &quiet));
                (step, preview, Instant::now())
            }
        };
        let mut preview = match preview {
            Ok(preview) => preview,
            Err(error) => return self.fail(&spec, error),
        };
        let earlier_samples = self.state.borrow().samples(&id);
        if earlier_samples > 0 {
            preview.notes.push(format!(
                "this gate took {earlier_samples} sample{} before the run stopped: its window starts again",
                plural(earlier_samples)
            ));
        }
        self.record(preview_event(&id, &preview))?;
        self.show_preview(&preview);
        let mut rechecks = 0;
        let by = loop {
            if let Some(outputs) = preview.unchanged.clone() {
                ui.say(format!("  {} nothing to change", ui.good("✓")));
                let outcome = Some(preview.effect.clone());
                let event = Event::StepSucceeded { step: id, outputs, duration_ms: 0, outcome };
                return self.record(event).map(|()| Flow::Next);
            }
            let by = match self.confirm(index, &spec, step.as_ref(), &preview)? {
                Ok(by) => by,
                Err(flow) => return Ok(flow),
            };
            // The operator may have looked at the prompt for minutes: read again before writing.
            // Under --yes nobody looked: a read that came back moments ago is the one the write
            // follows; but once a read found the world moving, it is read again until it holds.
            if by == By::YesFlag && rechecks == 0 && read_at.elapsed() < JUST_READ {
                break by;
            }
            let fresh = match step.recheck(&self.context(&id, &projection, None, &quiet), &preview) {
                Ok(None) => break by,
                Ok(Some(fresh)) => fresh,
                Err(error) => return self.fail(&spec, error),
            };
            rechecks += 1;
            ui.always(format!("  {} it changed since it was shown; read again just now:", ui.caution("!")));
            self.record(preview_event(&id, &fresh))?;
            self.show_preview(&fresh);
            if rechecks > 3 || (self.yes && fresh.against_direction) {
                let why = if rechecks > 3 { "it keeps changing" } else { "it moved past the step's direction" };
                let error =
                    anyhow!("not written: {why} since it was confirmed; look at it before running this step again");
                return self.fail(&spec, error);
            }
            preview = fresh;
        };
        if let Some(approval) = spec.approval(self.runbook.runbook.approval) {
            let cx = self.context(&id, &projection, None, &quiet);
            match self.approved(&spec, approval, step.as_ref(), &mut preview, &cx)? {
                Approval::Given => {}
                Approval::Rejected => return Ok(Flow::Stop(RunStatus::Aborted, ExitCode::Aborted)),
                Approval::Unreadable(error) => return self.fail(&spec, error),
            }
        }
        self.record(Event::StepConfirmed { step: id.clone(), by })?;

        let started = Instant::now();
        let mut attempt = 0;
        let outcome = loop {
            let deadline = spec.common.timeout.map(|t| Instant::now() + t);
            let journal = |note: Note| {
                let event = match note {
                    Note::Triggered { run, url } => {
                        Event::StepTriggered { step: id.clone(), pipeline_run: run.into(), url: url.into() }
                    }
                    Note::Sampled(sample) => Event::StepSampled { step: id.clone(), sample: sample.clone() },
                };
                self.record(event).map_err(|e| anyhow!("{e}"))
            };
            let cx = self.context(&id, &projection, deadline, &journal);
            let result = step.apply(&cx, &preview).and_then(|applied| {
                step.verify(&cx, &applied).map_err(|e| e.context("the change was made but did not verify"))?;
                Ok(applied.outputs)
            });
            match result {
                Err(error)
                    if attempt < spec.common.retries && !Interrupted::is_in(&error) && !Started::is_in(&error) =>
                {
                    attempt += 1;
                    let pause = self.retry_pause.pause(attempt - 1);
                    ui.warn(format!(
                        "attempt {attempt} failed: {error:#}; retrying in {} s ({} left)",
                        pause.as_secs(),
                        spec.common.retries - attempt + 1
                    ));
                    if interrupt::sleep(pause) {
                        break Err(anyhow!(Interrupted("while waiting to retry".into())));
                    }
                }
                other => break other,
            }
        };
        match outcome {
            Ok(outputs) => {
                let elapsed = started.elapsed();
                let outcome = step.outcome(&outputs);
                let took = if spec.kind().paced_by_operator() {
                    String::new()
                } else {
                    format!(" ({})", format_duration(elapsed))
                };
                ui.say(format!("  {} {outcome}{took}", ui.good("✓")));
                let duration_ms = elapsed.as_millis() as u64;
                self.record(Event::StepSucceeded { step: id, outputs, duration_ms, outcome: Some(outcome) })?;
                Ok(Flow::Next)
            }
            Err(error) => self.fail(&spec, error),
        }
    }

    /// Wait until enough other engineers approved this step's plan, as it is just before it
    /// acts: an approval binds to the plan's digest, so a before-state that moved meanwhile is
    /// shown and asked about again. `Err` is where the run goes instead (a rejection).
    fn approved(
        &self,
        spec: &crate::runbook::StepSpec,
        approval: crate::runbook::Approval,
        step: &dyn Step,
        preview: &mut Preview,
        cx: &Context,
    ) -> Result<Approval, Error> {
        let (ui, id) = (self.ui, spec.common.id.clone());
        let me = format!("{}@{}", lock::user(), lock::host());
        if let Some(reason) = &self.break_glass {
            ui.always(format!(
                "  {} BREAK GLASS: step {id} needs {} approval(s) and acts without them, by {me}: {reason}",
                ui.bad("!"),
                approval.min
            ));
            self.record(Event::ApprovalOverridden { step: id, reason: reason.clone(), by: me })?;
            return Ok(Approval::Given);
        }
        let Some(shared) = &self.shared else {
            return Err(Error::invalid(anyhow!("step {id} needs approval, which needs a shared state backend"))
                .with_hint(
                    "set `state: { backend: postgres, ... }` in rollout.yaml, or pass --break-glass \"reason\"",
                ));
        };
        loop {
            let digest = self.digest(&id, preview);
            let request = Event::ApprovalRequested {
                step: id.clone(),
                digest: digest.clone(),
                min: approval.min,
                allow_self: approval.allow_self,
            };
            self.record(request)?;
            shared.settle(ui, &id)?;
            let others = if approval.allow_self { "" } else { " other" };
            ui.always(format!(
                "  {} waiting for {}{others} engineer(s) to approve plan {}: `rollout approve {}` from their own shell (Ctrl-C stops)",
                ui.caution("?"),
                approval.min,
                story::short(&digest),
                self.run_id
            ));
            let me_user = lock::user();
            let by = loop {
                let decisions = shared.decisions(&self.run_id, &id, &digest)?;
                if let Some(no) = decisions.iter().find(|d| !d.approve) {
                    let by = format!("{}@{}", no.user, no.host);
                    ui.always(format!("  {} rejected by {by}: {}", ui.bad("✗"), no.reason));
                    self.record(Event::StepRejected { step: id, digest, by, reason: no.reason.clone() })?;
                    return Ok(Approval::Rejected);
                }
                let mut by: Vec<String> = decisions
                    .iter()
                    .filter(|d| d.approve && (approval.allow_self || d.user != me_user))
                    .map(|d| format!("{}@{}", d.user, d.host))
                    .collect();
                by.dedup();
                if by.len() >= approval.min as usize {
                    break by;
                }
                if interrupt::sleep(APPROVAL_POLL) {
                    return Err(anyhow!(Interrupted(format!("while step {id} waited for approval"))).into());
                }
            };
            ui.always(format!("  {} approved by {}", ui.good("✓"), by.join(", ")));
            self.record(Event::StepApproved { step: id.clone(), digest, by })?;
            // The approval was of the plan as it was: read again before acting on it.
            match step.recheck(cx, preview) {
                Ok(None) => return Ok(Approval::Given),
                Ok(Some(fresh)) => {
                    ui.always(format!(
                        "  {} it changed since it was approved: the approval was of what it was, so it is asked again",
                        ui.caution("!")
                    ));
                    self.record(preview_event(&id, &fresh))?;
                    self.show_preview(&fresh);
                    *preview = fresh;
                }
                Err(error) => return Ok(Approval::Unreadable(error)),
            }
        }
    }

    /// The digest an approval binds to: the runbook, the inputs and the step's live before
    /// and after, as journaled.
    fn digest(&self, step: &str, preview: &Preview) -> String {
        let plan = serde_json::json!({
            "runbook": event::sha256(self.runbook.source.text.as_bytes()),
            "inputs": self.inputs,
            "step": step,
            "before": preview.before,
            "after": preview.after,
        });
        event::sha256(plan.to_string().as_bytes())
    }

    fn show_preview(&self, preview: &Preview) {
        let ui = self.ui;
        ui.always(format!("  {}", preview.effect));
        for note in &preview.notes {
            ui.always(format!("  {} {note}", ui.caution("!")));
        }
    }

    /// Ask the operator (or take `--yes`); `Err` is where the run goes instead.
    fn confirm(
        &mut self,
        index: usize,
        spec: &crate::runbook::StepSpec,
        step: &dyn Step,
        preview: &Preview,
    ) -> Result<Result<By, Flow>, Error> {
        let ui = self.ui;
        if self.yes {
            ui.say(format!("  {} yes (--yes)", step.question()));
            return Ok(Ok(By::YesFlag));
        }
        let default = spec.common.optional.then_some(Answer::Skip);
        let question = if ui.is_quiet() {
            format!(
                "Step {}/{} {} ({}): {}",
                index + 1,
                self.total(),
                spec.common.id,
                spec.common.name,
                step.question()
            )
        } else {
            step.question().to_string()
        };
        loop {
            match ui.ask(&question, default) {
                Ok(Answer::Yes) => return Ok(Ok(By::Operator)),
                Ok(Answer::Details) => {
                    for line in &preview.details {
                        ui.always(format!("    {line}"));
                    }
                }
                Ok(Answer::Skip) => {
                    ui.always(format!("  {} skipped", ui.caution("–")));
                    let event = Event::StepSkipped { step: spec.common.id.clone(), by: By::Operator, reason: None };
                    return self.record(event).map(|()| Err(Flow::Next));
                }
                Ok(Answer::Abort) => return Ok(Err(Flow::Stop(RunStatus::Aborted, ExitCode::Aborted))),
                Err(NoAnswer::Closed) => {
                    ui.warn("stdin closed before an answer: treating it as abort");
                    return Ok(Err(Flow::Stop(RunStatus::Aborted, ExitCode::Aborted)));
                }
                Err(why @ (NoAnswer::Interrupted | NoAnswer::Unseen)) => {
                    let shown = match why {
                        NoAnswer::Unseen => {
                            "at the prompt, which nobody can see (stderr is closed or the terminal is gone)"
                        }
                        _ => "at the prompt",
                    };
                    let error = anyhow!(Interrupted(format!("{shown}; this step changed nothing")));
                    return self.failed(spec, error, true).map(Err);
                }
            }
        }
    }

    fn fail(&mut self, spec: &crate::runbook::StepSpec, error: anyhow::Error) -> Result<Flow, Error> {
        self.failed(spec, error, false)
    }

    /// The step failed; `unanswered`, at its prompt, so that it changed nothing and counts as not run.
    fn failed(
        &mut self,
        spec: &crate::runbook::StepSpec,
        error: anyhow::Error,
        unanswered: bool,
    ) -> Result<Flow, Error> {
        let ui = self.ui;
        ui.always(format!("  {} {error:#}", ui.bad("✗")));
        let unsettled = Started::is_in(&error) || Interrupted::is_in(&error);
        let error_text = format!("{error:#}");
        let next = match &spec.kind {
            crate::runbook::StepKindSpec::Gate(gate) if !Interrupted::is_in(&error) => {
                gate.incident.map(|severity| self.incident_command(severity))
            }
            _ => None,
        };
        if let Some(next) = &next {
            ui.always(format!("  {} roll back: {next}", ui.bold("next:")));
        }
        let step = spec.common.id.clone();
        self.record(Event::StepFailed { step, error: error_text, unanswered, unsettled, next })?;
        if Interrupted::is_in(&error) {
            return Ok(Flow::Stop(RunStatus::Interrupted, ExitCode::Interrupted));
        }
        if spec.common.on_failure == crate::runbook::OnFailure::Continue {
            ui.say("  continuing (on_failure: continue)");
            return Ok(Flow::FailedContinue);
        }
        Ok(Flow::Stop(RunStatus::Failed, ExitCode::StepFailed))
    }

    /// `rollout incident --severity high --var flag=x`: the incident runbook of `severity`,
    /// with each of its inputs this run has, and a placeholder for those it needs and lacks.
    fn incident_command(&self, severity: crate::runbook::Severity) -> String {
        // Quoted for a POSIX shell only when it needs it (shlex quotes `=` too).
        let quote = |text: &str| {
            let plain = text.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.,:/@%+=".contains(&b));
            if plain {
                text.to_string()
            } else {
                shlex::try_quote(text).map_or_else(|_| text.to_string(), |q| q.into_owned())
            }
        };
        let mut command = format!("rollout incident --severity {}", severity.as_str());
        let Ok(incident) = crate::commands::runbook_for_severity(&self.config.runbooks, severity) else {
            return command;
        };
        for (name, spec) in &incident.runbook.inputs {
            match self.inputs.get(name) {
                Some(value) => command.push_str(&format!(" --var {}", quote(&format!("{name}={value}")))),
                None if spec.default.is_none() => command.push_str(&format!(" --var {name}=...")),
                None => {}
            }
        }
        command
    }

    /// What each step did, once any step ran: flags before -> after, commits pushed,
    /// pipeline runs with their verdicts.
    fn summary(&self) {
        let Some(lines) = self.state.borrow().summary(&self.ids()) else { return };
        self.ui.always(self.ui.bold("Summary"));
        for line in lines {
            self.ui.always(line);
        }
    }

    fn finish(&mut self, status: RunStatus, code: ExitCode) -> Result<Finished, Error> {
        self.record(Event::RunFinished { status, exit_code: code.code() })?;
        let ui = self.ui;
        let counts = self.state.borrow().tally(&self.ids());
        let tally = format!("{counts} ({})", format_duration(self.started.elapsed()));
        match status {
            RunStatus::Succeeded if counts.done + counts.skipped == self.total() => {
                ui.always(format!("\n{} Run succeeded: {tally}", ui.good("✓")));
            }
            RunStatus::Succeeded | RunStatus::PreflightFailed | RunStatus::LockRefused => {}
            // A preflight that could not check a step has said so; no step ran.
            RunStatus::Failed if counts.not_run == self.total() => {}
            RunStatus::Failed => ui.always(format!("\n{} Run failed: {tally}", ui.bad("✗"))),
            RunStatus::Aborted => ui.always(format!("\n{} Run aborted by the operator: {tally}", ui.caution("■"))),
            RunStatus::Interrupted => ui.always(format!("\n{} Run interrupted: {tally}", ui.caution("■"))),
        }
        self.summary();
        if status != RunStatus::Succeeded {
            ui.always(format!("  the journal has every step: {}", self.journal));
        }
        Ok(Finished { code, state: self.state.borrow().clone() })
    }
}
