//! The preflight: steps previewed read-only before they run, each assuming the earlier ones did
//! what they say; in the background, the steps of each service are checked side by side.

use std::collections::HashMap;
use std::time::Instant;

use super::{Script, Scripted};
use crate::ci::RunHandle;
use crate::error::Error;
use crate::runbook::inputs::Inputs;
use crate::runbook::resolve::{self, Action, Outputs, Scope, Unresolved};
use crate::runbook::template::Ref;
use crate::runbook::{LoadedRunbook, Service};
use crate::steps::{Context, Note, Preview, Projection, Step, StepFactory};
use crate::ui::Ui;
use crate::yaml::Diagnostics;

/// A preflight look at one step; a ready step is kept, so that it runs with what its preview
/// worked out (brought up to date when its turn comes).
pub(super) enum Planned<'a> {
    /// Its preview, the step, and when the preview's read had come back.
    Ready(Box<Preview>, Box<dyn Step + 'a>, Instant),
    /// Needs the output of an earlier step: checked when it runs.
    Deferred(Ref),
    Failed(anyhow::Error),
}

/// A look from the background thread: the preview without the step, whose services stay there.
pub(super) enum Checked {
    Ready(Box<Preview>, Instant),
    Deferred(Ref),
    Failed(anyhow::Error),
}

impl From<Planned<'_>> for Checked {
    fn from(planned: Planned<'_>) -> Checked {
        match planned {
            Planned::Ready(preview, _, read) => Checked::Ready(preview, read),
            Planned::Deferred(reference) => Checked::Deferred(reference),
            Planned::Failed(error) => Checked::Failed(error),
        }
    }
}

/// The preflight going on in another thread: what it will find. Never joined before it has
/// finished: a run that ends does not wait for it.
pub(super) struct Background {
    thread: std::thread::JoinHandle<Result<Vec<(usize, Checked)>, Error>>,
    /// Held back until dropped: the first mitigation step goes out without the background's
    /// work (git's set-up alone is tens of milliseconds of CPU) competing with it.
    go: Option<std::sync::mpsc::Sender<()>>,
}

impl Background {
    /// Let the checks begin (the mitigation's first write is out, or its prompt is up).
    pub fn start(&mut self) {
        self.go = None;
    }

    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    pub fn join(mut self) -> std::thread::Result<Result<Vec<(usize, Checked)>, Error>> {
        self.start();
        self.thread.join()
    }
}

/// What a preflight in another thread needs, its own: it may outlive the walk.
pub(super) struct Owned {
    pub ui: Ui,
    pub run_id: String,
    pub runbook: LoadedRunbook,
    pub inputs: Inputs,
    pub outputs: HashMap<String, Outputs>,
    pub earlier: HashMap<String, (String, String)>,
    pub script: Option<Script>,
}

/// Preview `indexes` in another thread with `services`, from `projection` on, each service's
/// steps side by side ([`Lookup::side_by_side`]).
pub(super) fn in_background(
    services: Box<dyn StepFactory + Send>,
    owned: Owned,
    indexes: Vec<usize>,
    mut projection: Projection,
) -> Background {
    let (go, held) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        // Until the walk lets go (its sender dropped).
        let _ = held.recv();
        let lookup = Lookup {
            ui: &owned.ui,
            run_id: &owned.run_id,
            runbook: &owned.runbook,
            inputs: &owned.inputs,
            outputs: &owned.outputs,
            earlier: &owned.earlier,
            script: owned.script.as_ref(),
        };
        let (here, elsewhere) = lookup.side_by_side(&*services, &indexes, &mut projection)?;
        let mut found: Vec<(usize, Checked)> =
            here.into_iter().map(|(index, planned)| (index, Checked::from(planned))).chain(elsewhere).collect();
        found.sort_by_key(|(index, _)| *index);
        Ok(found)
    });
    Background { thread, go: Some(go) }
}

/// `indexes` by service, each in order: those checked here (the first step's service, and the
/// steps that use none, whose checks read nothing), and one group for each other service.
fn by_service(runbook: &LoadedRunbook, indexes: &[usize]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let service = |index: usize| runbook.runbook.steps[index].kind().service();
    let first = indexes.first().map(|&index| service(index));
    let mut here = Vec::new();
    let mut others: Vec<(Option<Service>, Vec<usize>)> = Vec::new();
    for &index in indexes {
        let of = service(index);
        if of.is_none() || Some(of) == first {
            here.push(index);
        } else if let Some((_, group)) = others.iter_mut().find(|(service, _)| *service == of) {
            group.push(index);
        } else {
            others.push((of, vec![index]));
        }
    }
    (here, others.into_iter().map(|(_, group)| group).collect())
}

/// What [`Lookup::side_by_side`] found: the steps checked here, and the findings from elsewhere.
pub(super) type SideBySide<'f> = (Vec<(usize, Planned<'f>)>, Vec<(usize, Checked)>);

/// What it takes to resolve and preview a run's steps, all borrowed.
#[derive(Clone, Copy)]
pub(super) struct Lookup<'s> {
    pub ui: &'s Ui,
    pub run_id: &'s str,
    pub runbook: &'s LoadedRunbook,
    pub inputs: &'s Inputs,
    pub outputs: &'s HashMap<String, Outputs>,
    /// The pipeline runs steps triggered before a resumed run stopped: (run id, URL) by step;
    /// a step confirmed with no trigger journaled may have triggered one (`UNKNOWN_RUN`).
    pub earlier: &'s HashMap<String, (String, String)>,
    pub script: Option<&'s Script>,
}

/// The action of step `index`: the script's, or the runbook's with what `scope` knows.
pub(super) fn action(
    runbook: &LoadedRunbook,
    script: Option<&Script>,
    index: usize,
    scope: Scope,
) -> Result<Action, Unresolved> {
    match script.map(|s| &s.steps[index]) {
        Some(Scripted::Act(action)) => Ok(action.clone()),
        // A scripted skip is never carried out, so never resolved either.
        Some(Scripted::Skip(_)) | None => resolve::action(runbook, index, scope),
    }
}

impl Lookup<'_> {
    /// Preview `indexes` as [`Lookup::check`] does, the steps of each service side by side. The
    /// steps of one service are checked in order (a flag step assumes what the earlier ones
    /// leave); those of different services read nothing the others change, so the first
    /// service's are checked here with `services` (and kept as steps), and each other's in a
    /// thread of its own on services of its own (its findings, without steps): the git fetch
    /// and plan, the CI reads and the flag reads at once. One after another when the services
    /// cannot be forked (they hold no connections).
    pub fn side_by_side<'f>(
        &self,
        services: &'f dyn StepFactory,
        indexes: &[usize],
        projection: &mut Projection,
    ) -> Result<SideBySide<'f>, Error> {
        let (first, others) = by_service(self.runbook, indexes);
        let forks: Option<Vec<Box<dyn StepFactory + Send>>> = others.iter().map(|_| services.fork()).collect();
        let Some(forks) = forks.filter(|forks| !forks.is_empty()) else {
            return Ok((self.check(services, indexes, projection)?, Vec::new()));
        };
        let lookup = *self;
        std::thread::scope(|scope| {
            let threads: Vec<_> = forks
                .into_iter()
                .zip(others)
                .map(|(services, group)| {
                    let projection = projection.clone();
                    scope.spawn(move || lookup.checked(&*services, &group, projection))
                })
                .collect();
            let here = self.check(services, &first, projection);
            // Every thread is joined before any error is reported: the first step's comes first.
            let joined: Vec<Result<Vec<(usize, Checked)>, Error>> = threads
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a preflight check stopped unexpectedly").into()))
                })
                .collect();
            let here = here?;
            let mut elsewhere = Vec::new();
            for found in joined {
                elsewhere.extend(found?);
            }
            Ok((here, elsewhere))
        })
    }

    /// [`Lookup::check`], the findings without the steps (which stay with `services`).
    fn checked(
        &self,
        services: &dyn StepFactory,
        indexes: &[usize],
        mut projection: Projection,
    ) -> Result<Vec<(usize, Checked)>, Error> {
        let plan = self.check(services, indexes, &mut projection)?;
        Ok(plan.into_iter().map(|(index, planned)| (index, Checked::from(planned))).collect())
    }

    /// The action of step `index`, with the outputs known when the preflight began.
    pub fn action(&self, index: usize) -> Result<Action, Unresolved> {
        action(self.runbook, self.script, index, Scope { inputs: self.inputs, outputs: self.outputs })
    }

    /// Preview the steps `indexes` in order with `services`, each assuming the earlier ones
    /// (and what `projection` already holds) did what they say.
    pub fn check<'f>(
        &self,
        services: &'f dyn StepFactory,
        indexes: &[usize],
        projection: &mut Projection,
    ) -> Result<Vec<(usize, Planned<'f>)>, Error> {
        let quiet = |_: Note| Ok(());
        let mut plan = Vec::new();
        for &index in indexes {
            let id = &self.runbook.runbook.steps[index].common.id;
            let planned = match self.action(index) {
                Err(Unresolved::Waiting(reference)) => Planned::Deferred(reference),
                Err(Unresolved::Invalid(diagnostic)) => return Err(Diagnostics(vec![diagnostic]).into()),
                Ok(action) => {
                    // A service that cannot be set up (a token not set) leaves the step unchecked.
                    let step = match services.step(action) {
                        Ok(step) => step,
                        Err(error) => {
                            plan.push((index, Planned::Failed(error)));
                            continue;
                        }
                    };
                    let cx = Context {
                        ui: self.ui,
                        run_id: self.run_id,
                        deadline: None,
                        projection,
                        progress: String::new(),
                        journal: &quiet,
                        earlier_run: self.earlier.get(id).map(|(run, url)| RunHandle::journaled(run, url)),
                        yes: false,
                    };
                    match step.preview(&cx) {
                        Ok(preview) => {
                            if let Some(projected) = preview.projection.clone() {
                                projection.record(projected);
                            }
                            Planned::Ready(Box::new(preview), step, Instant::now())
                        }
                        Err(error) => Planned::Failed(error),
                    }
                }
            };
            plan.push((index, planned));
        }
        Ok(plan)
    }
}
