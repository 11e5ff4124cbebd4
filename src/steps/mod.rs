//! Step kinds behind one trait: a read-only `preview` of what would change, `apply`,
//! and `verify` that reads the result back. Steps know their service's trait, not its vendor.

pub mod ci;
pub mod flag;
pub mod gate;
pub mod manual;
pub mod notify;
pub mod revert;
pub mod wait;

use std::cell::OnceCell;
use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use indexmap::IndexMap;

use crate::ci::{Pipelines, RunHandle};
use crate::config::Config;
use crate::flags::{FlagService, FlagState, Reach};
use crate::git::GitRemote;
use crate::git::revert::Plan;
use crate::metrics::MetricSource;
use crate::notify::Webhook;
use crate::runbook::resolve::{Action, Outputs};
use crate::runbook::{Service, StepKind};
use crate::ui::Ui;

/// What a step would change, read live.
#[derive(Debug, Clone, Default)]
pub struct Preview {
    /// One line: `flag x (flagd flags.json): on, 100% -> off`.
    pub effect: String,
    /// The state before, in full (what undo would restore), with a `summary`.
    pub before: serde_json::Value,
    /// The state the step leads to, with a `summary`.
    pub after: serde_json::Value,
    /// Shown on `[d]etails`.
    pub details: Vec<String>,
    /// Already in the target state: nothing to write, and these are the step's outputs.
    pub unchanged: Option<Outputs>,
    /// What later previews of the same run should assume once this step has run.
    pub projection: Option<Projected>,
    /// Lines shown under the effect, always: what a write clears and cannot put back.
    pub notes: Vec<String>,
    /// For a flag: whether the change gives the feature to fewer users, more, the same, or unknown.
    pub reach: Option<Reach>,
    /// The step's direction forbids this change (the flag already went further): not written.
    pub against_direction: bool,
    /// What `apply` carries out, exactly as this preview worked it out.
    pub change: Change,
}

/// The change a preview planned, typed per kind: `apply` consumes it instead of working it out
/// again, so the write is the one the operator confirmed.
#[derive(Debug, Clone, Default)]
pub enum Change {
    /// Nothing planned beyond the preview's own fields: `apply` reads what it needs.
    #[default]
    None,
    /// The flag state the write starts from and the one it leads to.
    Flag(flag::FlagWrite),
    /// The revert commits to make, onto the tip the preview read.
    Revert(Plan),
    /// A pipeline run triggered before the run stopped, followed instead of a new trigger.
    Follow(RunHandle),
    /// A pipeline run may have been started before the run stopped and cannot be followed:
    /// nothing is triggered again; why.
    Lost(String),
}

/// What `apply` did: the step's outputs, and what `verify` reads back, typed.
#[derive(Debug, Clone)]
pub struct Applied {
    pub outputs: Outputs,
    pub landed: Landed,
}

impl Applied {
    /// Outputs with nothing for `verify` to read back.
    pub fn outputs(outputs: Outputs) -> Applied {
        Applied { outputs, landed: Landed::Nothing }
    }
}

/// What a write left in the service, for `verify` to read back.
#[derive(Debug, Clone)]
pub enum Landed {
    /// Nothing to read back: a check, a message, a pipeline already followed to its end.
    Nothing,
    /// The state the flag should now report.
    Flag(FlagState),
    /// The commit the destination branch should now point at.
    Pushed(git2::Oid),
}

/// A change later previews should assume (a dry run never makes it).
#[derive(Debug, Clone)]
pub enum Projected {
    Flag { name: String, state: FlagState },
}

/// The state earlier steps of a plan will have left.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    flags: HashMap<String, FlagState>,
}

impl Projection {
    pub fn record(&mut self, projected: Projected) {
        match projected {
            Projected::Flag { name, state } => {
                self.flags.insert(name, state);
            }
        }
    }

    pub fn flag(&self, name: &str) -> Option<&FlagState> {
        self.flags.get(name)
    }
}

/// What a step may use while it works.
pub struct Context<'a> {
    pub ui: &'a Ui,
    pub run_id: &'a str,
    /// When the step's `timeout` runs out.
    pub deadline: Option<Instant>,
    pub projection: &'a Projection,
    /// Where the run stands, one line, for notifications.
    pub progress: String,
    /// Journal what the step did on its way, at once (see `Note`).
    pub journal: &'a dyn Fn(Note) -> Result<()>,
    /// The pipeline run this step triggered before the run stopped, as journaled: a resumed
    /// step follows it instead of triggering another.
    pub earlier_run: Option<RunHandle>,
    /// `--yes`: nobody is there to judge what a step cannot decide alone (previews never ask).
    pub yes: bool,
}

/// What a step journals while it works, before it ends.
#[derive(Debug, Clone, Copy)]
pub enum Note<'n> {
    /// A pipeline run was started (its id and URL): journaled at once, so that it is never
    /// triggered twice.
    Triggered { run: &'n str, url: &'n str },
    /// A gate read its metric.
    Sampled(&'n gate::GateSample),
}

/// A step the journal says was done: what its last preview said it leads to, and its outputs.
#[derive(Debug, Clone, Copy)]
pub struct Done<'a> {
    pub after: &'a serde_json::Value,
    pub outputs: &'a Outputs,
}

/// What a read-only re-check of a done step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// It still holds: what was read.
    Holds(String),
    /// It no longer holds: what moved.
    Drifted(String),
    /// Nothing to read back (a message sent, a manual step): why.
    Unchecked(String),
}

pub trait Step {
    /// Read the live state and say what `apply` would change; never writes.
    fn preview(&self, cx: &Context) -> Result<Preview>;
    /// The preflight's preview of this step (`planned`), brought up to date when the step's turn
    /// comes: read again by default (earlier steps may have changed what it reads); a step whose
    /// preview is costly keeps it when a cheap read shows nothing it rests on moved.
    fn refresh(&self, cx: &Context, _planned: Preview) -> Result<Preview> {
        self.preview(cx)
    }
    /// Read again right before the write (unless, under `--yes`, the preview's read just came
    /// back); a preview that differs from the confirmed one means the world moved since.
    fn recheck(&self, _cx: &Context, _confirmed: &Preview) -> Result<Option<Preview>> {
        Ok(None)
    }
    /// Make the change the preview described.
    fn apply(&self, cx: &Context, preview: &Preview) -> Result<Applied>;
    /// Read the result back and confirm it holds.
    fn verify(&self, cx: &Context, applied: &Applied) -> Result<()>;
    /// Read, without writing, whether what this step did earlier (`done`, from the journal)
    /// still holds: before a run is resumed.
    fn holds(&self, _cx: &Context, _done: Done) -> Result<Held> {
        Ok(Held::Unchecked("nothing to read back".into()))
    }
    /// What the step did, one line for the operator once it verified:
    /// `pushed 69a913a onto origin/main (was a3593e9)`, `run 4812 succeeded at 69a913a`.
    fn outcome(&self, _outputs: &Outputs) -> String {
        "done".into()
    }
    /// The prompt's question.
    fn question(&self) -> &'static str {
        "Apply?"
    }
}

/// What the walk needs of the services: the step for an action, and a look at the service
/// of each kind of step. The real one is `Services`; engine tests pass fakes.
pub trait StepFactory {
    /// The step that carries out `action`; fails when its service cannot be set up.
    fn step(&self, action: Action) -> Result<Box<dyn Step + '_>>;
    /// Set up the service a kind of step uses, so that a config problem shows before the run.
    fn prepare(&self, kind: StepKind) -> Result<()>;
    /// Where a kind of step acts, for the run header.
    fn describe(&self, kind: StepKind) -> Option<(&'static str, String)>;
    /// Services of the same config, with connections of their own, for another thread (the
    /// preflight in the background), which may outlive the walk; None when there are none.
    fn fork(&self) -> Option<Box<dyn StepFactory + Send>> {
        None
    }
}

/// The configured services, each built on first use.
pub struct Services<'c> {
    config: &'c Config,
    flags: OnceCell<Box<dyn FlagService>>,
    git: OnceCell<GitRemote>,
    pipelines: OnceCell<Box<dyn Pipelines>>,
    webhook: OnceCell<Webhook>,
    metrics: OnceCell<IndexMap<String, Box<dyn MetricSource>>>,
}

impl<'c> Services<'c> {
    pub fn new(config: &'c Config) -> Self {
        crate::git::bound_network_waits(&config.http);
        Services {
            config,
            flags: OnceCell::new(),
            git: OnceCell::new(),
            pipelines: OnceCell::new(),
            webhook: OnceCell::new(),
            metrics: OnceCell::new(),
        }
    }

    /// Every source under `metrics:`, set up at once.
    fn metrics(&self) -> Result<&IndexMap<String, Box<dyn MetricSource>>> {
        if self.metrics.get().is_none() {
            if self.config.metrics.is_empty() {
                anyhow::bail!("{} has no `metrics` section", self.config.path.display());
            }
            let mut sources = IndexMap::new();
            for (name, config) in &self.config.metrics {
                let source = crate::metrics::source(config, &self.config.http)
                    .map_err(|e| e.context(format!("metrics source `{name}`")))?;
                sources.insert(name.clone(), source);
            }
            let _ = self.metrics.set(sources);
        }
        Ok(self.metrics.get().expect("set above"))
    }

    /// The metrics source named `name`.
    fn metric(&self, name: &str) -> Result<&dyn MetricSource> {
        let sources = self.metrics()?;
        let names = sources.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        sources.get(name).map(|s| s.as_ref()).ok_or_else(|| {
            anyhow::anyhow!(
                "{} names no metrics source `{}`: its sources are {names}",
                self.config.path.display(),
                crate::echo::clip(name)
            )
        })
    }

    fn flags(&self) -> Result<&dyn FlagService> {
        if self.flags.get().is_none() {
            let config = self
                .config
                .flags
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("{} has no `flags` section", self.config.path.display()))?;
            let _ = self.flags.set(crate::flags::service(config, &self.config.dir, &self.config.http)?);
        }
        Ok(self.flags.get().map(|b| b.as_ref()).expect("set above"))
    }

    fn git(&self) -> Result<&GitRemote> {
        if self.git.get().is_none() {
            let config = self
                .config
                .git
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("{} has no `git` section", self.config.path.display()))?;
            let _ = self.git.set(GitRemote::new(config, &self.config.dir)?);
        }
        Ok(self.git.get().expect("set above"))
    }

    fn pipelines(&self) -> Result<&dyn Pipelines> {
        if self.pipelines.get().is_none() {
            let config = self
                .config
                .ci
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("{} has no `ci` section", self.config.path.display()))?;
            let _ = self.pipelines.set(crate::ci::pipelines(config, &self.config.dir, &self.config.http)?);
        }
        Ok(self.pipelines.get().map(|b| b.as_ref()).expect("set above"))
    }

    fn webhook(&self) -> Result<&Webhook> {
        if self.webhook.get().is_none() {
            let config = self
                .config
                .notify
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("{} has no `notify` section", self.config.path.display()))?;
            let _ = self.webhook.set(Webhook::new(config, &self.config.http)?);
        }
        Ok(self.webhook.get().expect("set above"))
    }
}

impl StepFactory for Services<'_> {
    fn step(&self, action: Action) -> Result<Box<dyn Step + '_>> {
        match action {
            Action::Flag(change) => flag::build(self, change),
            Action::Restore(restore) => flag::build_restore(self, *restore),
            Action::Revert(request) => revert::build(self, request),
            Action::Ci(request) => ci::build(self, request),
            Action::Gate(request) => gate::build(self, *request),
            Action::Manual(request) => manual::build(request),
            Action::Notify(request) => notify::build(self, request),
        }
    }

    /// None for steps that touch no service and for notify, whose webhook the header does not show.
    fn describe(&self, kind: StepKind) -> Option<(&'static str, String)> {
        match kind.service()? {
            Service::Flags => self.flags().ok().map(|f| ("flags", f.location())),
            Service::Git => self.git().ok().map(|g| ("git", g.describe())),
            Service::Ci => self.pipelines().ok().map(|p| ("ci", p.describe())),
            Service::Metrics => self.metrics().ok().map(|sources| {
                let shown: Vec<String> = sources.iter().map(|(name, s)| format!("{name}: {}", s.describe())).collect();
                ("metrics", shown.join(", "))
            }),
            Service::Notify => None,
        }
    }

    /// The background preflight is not waited for when a run ends (aborted, interrupted): its
    /// services get a config of their own, kept until the process ends.
    fn fork(&self) -> Option<Box<dyn StepFactory + Send>> {
        let config: &'static Config = Box::leak(Box::new(self.config.clone()));
        Some(Box::new(Services::new(config)))
    }

    fn prepare(&self, kind: StepKind) -> Result<()> {
        match kind.service() {
            Some(Service::Flags) => self.flags().map(drop),
            Some(Service::Git) => self.git().map(drop),
            Some(Service::Ci) => self.pipelines().map(drop),
            Some(Service::Metrics) => self.metrics().map(drop),
            Some(Service::Notify) => self.webhook().map(drop),
            None => Ok(()),
        }
    }
}

/// A JSON snapshot with the human summary first.
pub fn snapshot(summary: impl Into<String>, data: serde_json::Value) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert("summary".into(), serde_json::Value::String(summary.into()));
    if let serde_json::Value::Object(fields) = data {
        object.extend(fields);
    }
    serde_json::Value::Object(object)
}

/// A typed step state as the journal holds it: `snapshot` of its fields.
pub fn journaled(summary: impl Into<String>, state: &impl serde::Serialize) -> serde_json::Value {
    snapshot(summary, serde_json::to_value(state).expect("a step state is plain data and always serialises"))
}

#[cfg(test)]
mod send {
    fn assert_send<T: Send>() {}
    #[test]
    fn services_can_move_to_another_thread() {
        assert_send::<super::Services<'static>>();
        assert_send::<super::Preview>();
    }
}
