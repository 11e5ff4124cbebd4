//! The `ci` step: check the pipeline can run, trigger it, and wait for its verdict with a
//! spinner, a timeout and Ctrl-C handling; the tail of its output is kept in the journal.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::json;

use super::{Context, Preview, Step, snapshot};
use crate::ci::{PipelineRequest, Pipelines, RunState};
use crate::error::{Interrupted, Started};
use crate::git::GitRemote;
use crate::interrupt;
use crate::runbook::resolve::{CiRequest, Outputs};

/// How long a pipeline may run when neither the step nor the runbook says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

pub struct CiStep<'s> {
    pub pipelines: &'s dyn Pipelines,
    /// Used to check that the ref exists on the remote, when git is configured.
    pub git: Option<&'s GitRemote>,
    pub request: CiRequest,
}

impl CiStep<'_> {
    fn pipeline_request(&self, run_id: &str) -> PipelineRequest {
        PipelineRequest {
            pipeline: self.request.pipeline.clone(),
            git_ref: self.request.git_ref.clone(),
            inputs: self.request.inputs.clone(),
            run_id: run_id.to_string(),
            timeout: self.request.timeout.unwrap_or(DEFAULT_TIMEOUT),
        }
    }

    fn title(&self) -> String {
        match &self.request.git_ref {
            Some(git_ref) => format!("pipeline {} at ref {git_ref}", self.request.pipeline),
            None => format!("pipeline {}", self.request.pipeline),
        }
    }

    /// The ref's commit on the remote, when git is configured and the ref is a branch there.
    fn ref_commit(&self) -> Option<String> {
        let git = self.git?;
        let git_ref = self.request.git_ref.as_deref()?;
        if git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(git_ref.to_string());
        }
        let repo = git.open().ok()?;
        git.remote_head(&repo, git_ref).ok().flatten().map(|oid| oid.to_string())
    }
}

impl Step for CiStep<'_> {
    fn preview(&self, cx: &Context) -> Result<Preview> {
        let runs = self.pipelines.check(&self.pipeline_request(cx.run_id))?;
        let wait = if self.request.wait { "waits for the result" } else { "does not wait" };
        let mut details = vec![format!("{} {runs}", self.pipelines.describe())];
        details.extend(self.request.inputs.iter().map(|(k, v)| format!("  input {k} = {v}")));
        Ok(Preview {
            effect: format!("{} via {}; {wait}", self.title(), self.pipelines.describe()),
            before: snapshot("not triggered", json!({ "pipeline": self.request.pipeline })),
            after: snapshot(
                format!("{} run", self.title()),
                json!({ "pipeline": self.request.pipeline, "ref": self.request.git_ref, "inputs": self.request.inputs }),
            ),
            details,
            unchanged: None,
            projection: None,
        })
    }

    fn apply(&self, cx: &Context, _preview: &Preview) -> Result<Outputs> {
        let commit = self.ref_commit().unwrap_or_else(|| self.request.git_ref.clone().unwrap_or_default());
        let run = self.pipelines.trigger(&self.pipeline_request(cx.run_id))?;
        // Journaled before anything else can fail or hang: the run must never be started twice.
        (cx.triggered)(&run.id, run.url.as_deref().unwrap_or_default()).map_err(Started)?;
        let mut outputs = Outputs::from([
            ("run_id".to_string(), run.id.clone()),
            ("url".to_string(), run.url.clone().unwrap_or_default()),
            ("conclusion".to_string(), "triggered".to_string()),
            ("commit".to_string(), commit),
        ]);
        if !self.request.wait {
            return Ok(outputs);
        }
        let started = Instant::now();
        let timeout = self.request.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let deadline = cx.deadline.map_or(started + timeout, |d| d.min(started + timeout));
        let label = match &run.url {
            Some(url) => format!("{} run {} ({url})", self.title(), run.id),
            None => format!("{} run {}", self.title(), run.id),
        };
        let spinner = cx.ui.spinner(format!("waiting for {label}"));
        let mut polls = 0;
        let mut waiting_for_human: Option<String> = None;
        let verdict = loop {
            let state = self.pipelines.poll(&run).map_err(|e| {
                spinner.finish_and_clear();
                Started(e.context(format!("lost track of {label} while it may still be running")))
            })?;
            match state {
                RunState::Running(latest) => {
                    spinner.set_message(crate::redact::scrub(&latest.unwrap_or_default()).into_owned())
                }
                RunState::NeedsHuman(why) => {
                    if waiting_for_human.as_deref() != Some(why.as_str()) {
                        spinner.suspend(|| {
                            cx.ui.warn(format!(
                                "{label} needs a human: {why}; still waiting (Ctrl-C stops rollout waiting; the pipeline keeps running)"
                            ))
                        });
                        waiting_for_human = Some(why.clone());
                    }
                    spinner.set_message(format!("needs a human: {why}"));
                }
                RunState::Succeeded(verdict) => break verdict,
                RunState::Failed(verdict) | RunState::Cancelled(verdict) => {
                    spinner.finish_and_clear();
                    let at = verdict.url.as_deref().map(|u| format!(" ({u})")).unwrap_or_default();
                    bail!("{label} ended: {}{at}\n{}", verdict.conclusion, indent(&verdict.log_tail));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                spinner.finish_and_clear();
                let stopped = self.pipelines.stop_waiting(&run);
                let human =
                    waiting_for_human.map(|why| format!(" (it was waiting for a human: {why})")).unwrap_or_default();
                let limit =
                    humantime::format_duration(Duration::from_secs((deadline - started).as_secs_f64().round() as u64));
                return Err(Started(anyhow!("{label} did not finish within {limit}{human}; {stopped}")).into());
            }
            // The last poll comes at the deadline itself, not a whole interval before it.
            let pause = self.pipelines.poll_interval(polls).max(self.pipelines.rate_limit_pause().unwrap_or_default());
            let pause = pause.min(deadline - now);
            polls += 1;
            if interrupt::sleep(pause) {
                spinner.finish_and_clear();
                let stopped = self.pipelines.stop_waiting(&run);
                return Err(Interrupted(format!("while waiting for {label}; {stopped}")).into());
            }
        };
        spinner.finish_and_clear();
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
        Ok(outputs)
    }

    fn verify(&self, _cx: &Context, _outputs: &Outputs) -> Result<()> {
        Ok(())
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n")
}
