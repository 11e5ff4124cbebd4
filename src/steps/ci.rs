//! The `ci` step: check the pipeline can run, trigger it, and wait for its verdict (see
//! `wait`: spinner, timeout, Ctrl-C); the tail of its output is kept in the journal.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::wait::{self, Ended, Policy, Poll, Progress};
use super::{Applied, Change, Context, Done, Held, Note, Preview, Services, Step, journaled};
use crate::ci::{PipelineRequest, Pipelines, RunHandle, RunState, UNKNOWN_RUN, UnknownRun, Verdict};
use crate::echo::short_id;
use crate::error::{Interrupted, Started};
use crate::git::GitRemote;
use crate::runbook::kinds::ci::CiRequest;
use crate::runbook::resolve::Outputs;

/// How long a pipeline may run when neither the step nor the runbook says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

pub struct CiStep<'s> {
    pipelines: &'s dyn Pipelines,
    /// Used to check that the ref exists on the remote, when git is configured.
    git: Option<&'s GitRemote>,
    request: CiRequest,
}

/// The step that runs `request`'s pipeline on the configured CI, checking its ref with git if
/// git is configured.
pub fn build<'s>(services: &'s Services, request: CiRequest) -> Result<Box<dyn Step + 's>> {
    Ok(Box::new(CiStep { pipelines: services.pipelines()?, git: services.git().ok(), request }))
}

/// A pipeline as the step journals it: the step's `before` (not triggered: no `run`) and its
/// `after` (the run asked for). The run itself is journaled when triggered (`step_triggered`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiState {
    pub pipeline: String,
    #[serde(flatten)]
    pub run: Option<CiRun>,
}

/// The run a `ci` step asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiRun {
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub inputs: IndexMap<String, String>,
}

impl CiStep<'_> {
    fn state(&self, run: Option<CiRun>) -> CiState {
        CiState { pipeline: self.request.pipeline.clone(), run }
    }

    fn pipeline_request(&self, run_id: &str) -> PipelineRequest {
        PipelineRequest {
            pipeline: self.request.pipeline.clone(),
            git_ref: self.request.git_ref.clone(),
            inputs: self.request.inputs.clone(),
            run_id: run_id.to_string(),
            timeout: self.timeout(),
        }
    }

    fn title(&self) -> String {
        match &self.request.git_ref {
            Some(git_ref) => format!("pipeline {} at ref {git_ref}", self.request.pipeline),
            None => format!("pipeline {}", self.request.pipeline),
        }
    }

    fn timeout(&self) -> Duration {
        self.request.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// The commit the ref points at on the remote, read-only, or why it is not known.
    fn ref_commit(&self) -> Result<String, String> {
        let git_ref = self.request.git_ref.as_deref().ok_or("the step names no ref")?;
        if git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(git_ref.to_string());
        }
        let git = self.git.ok_or("git is not configured")?;
        let repo = git.open().map_err(|e| format!("{e:#}"))?;
        match git.remote_head(&repo, git_ref) {
            Ok(Some(oid)) => Ok(oid.to_string()),
            Ok(None) => Err(format!("{} has no branch {git_ref}", git.remote)),
            Err(error) => Err(format!("{error:#}")),
        }
    }

    /// `pipeline deploy.yml on main (at 69a913a)`, or why the commit is not known.
    fn target(&self) -> String {
        let Some(git_ref) = &self.request.git_ref else {
            return format!("pipeline {} on its default branch", self.request.pipeline);
        };
        let at = match self.ref_commit() {
            Ok(commit) => format!("at {}", short_id(&commit)),
            Err(why) => format!("commit not known: {why}"),
        };
        format!("pipeline {} on {git_ref} ({at})", self.request.pipeline)
    }

    /// Poll the run to its verdict: a run that failed, or a wait that timed out or was
    /// interrupted, is an error that leaves the run journaled.
    fn wait(&self, cx: &Context, run: &RunHandle) -> Result<Verdict> {
        let label = match &run.url {
            Some(url) => format!("{} run {} ({url})", self.title(), run.id),
            None => format!("{} run {}", self.title(), run.id),
        };
        let policy = Policy {
            interval: &|polls| self.pipelines.poll_interval(polls),
            rate_limit: &|| self.pipelines.rate_limit_pause(),
        };
        let mut waiting_for_human = None;
        let mut journaled = run.clone();
        let ended = wait::until(cx, &label, self.timeout(), &policy, |progress| {
            let polled = self.poll(run, &label, progress, &mut waiting_for_human);
            // A handle that outlasts the journaled one is journaled too, once: a later rollout
            // process follows the run by it.
            if let Some(durable) = self.pipelines.durable(run)
                && durable.id != journaled.id
            {
                let url = durable.url.clone().unwrap_or_default();
                if let Err(error) = (cx.journal)(Note::Triggered { run: &durable.id, url: &url }) {
                    progress.warn(format!("run {} could not be journaled by its build: {error:#}", run.id));
                }
                journaled = durable;
            }
            polled
        })?;
        let limit = match ended {
            Ended::Ready(verdict) => return Ok(verdict),
            Ended::Interrupted => {
                let stopped = self.pipelines.stop_waiting(run);
                return Err(Interrupted(format!("while waiting for {label}; {stopped}")).into());
            }
            Ended::TimedOut(limit) => humantime::format_duration(limit),
        };
        let stopped = self.pipelines.stop_waiting(run);
        let human = waiting_for_human.map(|why| format!(" (it was waiting for a human: {why})")).unwrap_or_default();
        Err(Started(anyhow!("{label} did not finish within {limit}{human}; {stopped}")).into())
    }

    /// One poll of the run; a run that needs a human says so once per reason.
    fn poll(
        &self,
        run: &RunHandle,
        label: &str,
        progress: &Progress,
        waiting_for_human: &mut Option<String>,
    ) -> Result<Poll<Verdict>> {
        let state = self
            .pipelines
            .poll(run)
            .map_err(|e| Started(e.context(format!("lost track of {label} while it may still be running"))))?;
        match state {
            RunState::Running(latest) => {
                Ok(Poll::Pending(crate::redact::scrub(&latest.unwrap_or_default()).into_owned()))
            }
            RunState::NeedsHuman(why) => {
                if waiting_for_human.as_deref() != Some(why.as_str()) {
                    progress.warn(format!(
                        "{label} needs a human: {why}; still waiting (Ctrl-C stops rollout waiting; the pipeline keeps running)"
                    ));
                    *waiting_for_human = Some(why.clone());
                }
                Ok(Poll::Pending(format!("needs a human: {why}")))
            }
            RunState::Succeeded(verdict) => Ok(Poll::Ready(verdict)),
            RunState::Failed(verdict) | RunState::Cancelled(verdict) => {
                let at = verdict.url.as_deref().map(|u| format!(" ({u})")).unwrap_or_default();
                bail!("{label} ended: {}{at}\n{}", verdict.conclusion, indent(&verdict.log_tail));
            }
        }
    }

    /// What to do about the run this step triggered before the run stopped: follow it (still
    /// going, or succeeded), trigger a new one (it failed: said in the effect), or nothing (it
    /// cannot be followed). A run that may have been started is never triggered again.
    fn earlier(&self, run: &RunHandle) -> (Option<String>, Change) {
        let at = run.url.as_deref().map(|u| format!(" ({u})")).unwrap_or_default();
        let lost = |why: String| {
            let effect = format!("{why}; it is not triggered again: skip this step once you have checked it");
            (Some(effect), Change::Lost(why))
        };
        if run.id == UNKNOWN_RUN && run.url.is_none() {
            return lost(format!(
                "this step was confirmed before the run stopped, and may have triggered a run of {} that the journal does not name: look at {}",
                self.title(),
                self.pipelines.describe()
            ));
        }
        if run.id == UNKNOWN_RUN {
            return lost(format!(
                "a trigger of {} was accepted before the run stopped, but which run it started is not known{at}",
                self.title()
            ));
        }
        match self.pipelines.poll(run) {
            Ok(RunState::Running(_) | RunState::NeedsHuman(_)) => (
                Some(format!(
                    "follows run {}{at} of {}, triggered before the run stopped and still going: not triggered again",
                    run.id,
                    self.title()
                )),
                Change::Follow(run.clone()),
            ),
            Ok(RunState::Succeeded(_)) => (
                Some(format!(
                    "run {}{at} of {}, triggered before the run stopped, has succeeded: its verdict is taken, nothing is triggered",
                    run.id,
                    self.title()
                )),
                Change::Follow(run.clone()),
            ),
            Ok(RunState::Failed(verdict) | RunState::Cancelled(verdict)) => (
                Some(format!(
                    "the earlier run {}{at} ended ({}); this triggers a new run of {}",
                    run.id,
                    verdict.conclusion,
                    self.target()
                )),
                Change::None,
            ),
            Err(error) => lost(format!(
                "run {}{at} of {}, triggered before the run stopped, cannot be followed: {error:#}",
                run.id,
                self.title()
            )),
        }
    }

    /// A trigger the service accepted without naming the run is journaled as such, so that the
    /// journal says a run was probably started, and where to look for it.
    fn journal_unknown_run(cx: &Context, error: anyhow::Error) -> anyhow::Error {
        if let Some(unknown) = UnknownRun::find(&error)
            && let Err(journal) = (cx.journal)(Note::Triggered { run: UNKNOWN_RUN, url: &unknown.look_at })
        {
            cx.ui.warn(format!("the trigger could not be journaled: {journal:#}"));
        }
        error
    }
}

impl Step for CiStep<'_> {
    fn preview(&self, cx: &Context) -> Result<Preview> {
        let runs = self.pipelines.check(&self.pipeline_request(cx.run_id))?;
        let wait = if self.request.wait {
            format!("waits up to {}", humantime::format_duration(self.timeout()))
        } else {
            "does not wait".to_string()
        };
        let mut details = vec![format!("{} {runs}", self.pipelines.describe())];
        details.extend(self.request.inputs.iter().map(|(k, v)| format!("  input {k} = {v}")));
        let run = CiRun { git_ref: self.request.git_ref.clone(), inputs: self.request.inputs.clone() };
        let (earlier, change) = cx.earlier_run.as_ref().map_or((None, Change::None), |run| self.earlier(run));
        let effect = earlier.unwrap_or_else(|| format!("{} via {}, {wait}", self.target(), self.pipelines.describe()));
        Ok(Preview {
            effect,
            change,
            before: journaled("not triggered", &self.state(None)),
            after: journaled(format!("{} run", self.title()), &self.state(Some(run))),
            details,
            unchanged: None,
            projection: None,
            ..Preview::default()
        })
    }

    fn apply(&self, cx: &Context, preview: &Preview) -> Result<Applied> {
        let commit = self.ref_commit().unwrap_or_else(|_| self.request.git_ref.clone().unwrap_or_default());
        let run = match &preview.change {
            Change::Follow(run) => run.clone(),
            Change::Lost(why) => return Err(Started(anyhow!("{why}: not triggered again")).into()),
            _ => {
                let started = self
                    .pipelines
                    .trigger(&self.pipeline_request(cx.run_id))
                    .map_err(|e| Self::journal_unknown_run(cx, e))?;
                let url = started.url.unwrap_or_default();
                // Journaled before anything else can fail or hang: the run must never be started twice.
                (cx.journal)(Note::Triggered { run: &started.id, url: &url }).map_err(|e| {
                    let at = if url.is_empty() { String::new() } else { format!(" ({url})") };
                    Started(e.context(format!(
                        "pipeline run {}{at} was started, but the journal could not record it",
                        started.id
                    )))
                })?;
                // Followed from what the journal holds only, as a later rollout process would follow it.
                RunHandle::journaled(&started.id, &url)
            }
        };
        let mut outputs = Outputs::from([
            ("run_id".to_string(), run.id.clone()),
            ("url".to_string(), run.url.clone().unwrap_or_default()),
            ("conclusion".to_string(), "triggered".to_string()),
            ("commit".to_string(), commit),
        ]);
        if !self.request.wait {
            return Ok(Applied::outputs(outputs));
        }
        let verdict = self.wait(cx, &run)?;
        cx.ui.detail(indent(&verdict.log_tail));
        outputs.insert("conclusion".into(), verdict.conclusion);
        if let Some(commit) = verdict.commit {
            outputs.insert("commit".into(), commit);
        }
        if let Some(id) = verdict.id {
            outputs.insert("run_id".into(), id);
        }
        if let Some(url) = verdict.url {
            outputs.insert("url".into(), url);
        }
        outputs.insert("log_tail".into(), verdict.log_tail);
        Ok(Applied::outputs(outputs))
    }

    fn verify(&self, _cx: &Context, _applied: &Applied) -> Result<()> {
        Ok(())
    }

    /// The pipeline run's verdict, asked again.
    fn holds(&self, _cx: &Context, done: Done) -> Result<Held> {
        let get = |key: &str| done.outputs.get(key).map(String::as_str).unwrap_or_default();
        if get("conclusion") == "triggered" {
            return Ok(Held::Unchecked(format!("run {} was triggered, not waited for", get("run_id"))));
        }
        let run = RunHandle::journaled(get("run_id"), get("url"));
        let label = format!("{} run {}", self.title(), run.id);
        let state = match self.pipelines.poll(&run) {
            Ok(state) => state,
            // Its verdict is in the journal: not being able to ask again is no drift.
            Err(error) => {
                return Ok(Held::Unchecked(format!(
                    "{label}: {} as journaled; it cannot be asked again ({})",
                    get("conclusion"),
                    crate::untrusted::excerpt(&format!("{error:#}"))
                )));
            }
        };
        Ok(match state {
            RunState::Succeeded(verdict) => Held::Holds(format!("{label}: {}", verdict.conclusion)),
            RunState::Failed(verdict) | RunState::Cancelled(verdict) => {
                Held::Drifted(format!("{label} now reports {}", verdict.conclusion))
            }
            RunState::Running(_) | RunState::NeedsHuman(_) => Held::Drifted(format!("{label} is running again")),
        })
    }

    /// `run 4812 succeeded at 69a913a (https://...)`.
    fn outcome(&self, outputs: &Outputs) -> String {
        let get = |key: &str| outputs.get(key).map(String::as_str).filter(|v| !v.is_empty());
        let verdict = match get("conclusion").unwrap_or_default() {
            "triggered" => "was triggered (not waited for)".to_string(),
            "success" | "passed" => "succeeded".to_string(),
            other => format!("succeeded ({other})"),
        };
        let at = get("commit").map(|c| format!(" at {}", short_id(c))).unwrap_or_default();
        let url = get("url").map(|u| format!(" ({u})")).unwrap_or_default();
        format!("run {} {verdict}{at}{url}", get("run_id").unwrap_or("?"))
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_states_read_back_from_the_journal_shape_they_are_written_in() {
        let before = CiState { pipeline: "deploy.yml".into(), run: None };
        let written = journaled("not triggered", &before);
        assert_eq!(written.to_string(), r#"{"summary":"not triggered","pipeline":"deploy.yml"}"#);
        assert_eq!(serde_json::from_value::<CiState>(written).unwrap(), before);
        let run = CiRun { git_ref: None, inputs: IndexMap::from([("env".to_string(), "prod".to_string())]) };
        let after = CiState { pipeline: "deploy.yml".into(), run: Some(run) };
        let written = journaled("pipeline deploy.yml run", &after);
        assert_eq!(
            written.to_string(),
            r#"{"summary":"pipeline deploy.yml run","pipeline":"deploy.yml","ref":null,"inputs":{"env":"prod"}}"#
        );
        assert_eq!(serde_json::from_value::<CiState>(written).unwrap(), after);
    }
}
