//! CI/CD services behind one trait: check a pipeline, trigger a run, poll it to a verdict.
//! One module per service; the `ci` step never names a vendor.

pub mod buildbot;
pub mod buildkite;
pub mod command;
pub mod github;
pub mod gitlab;
pub mod jenkins;

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use indexmap::IndexMap;

use crate::config::{CiConfig, HttpSettings};
use crate::error::{Interrupted, Started};
use crate::http::Response;
use crate::untrusted::printable;

/// What to run: the step's pipeline, ref and inputs.
#[derive(Debug, Clone)]
pub struct PipelineRequest {
    pub pipeline: String,
    pub git_ref: Option<String>,
    pub inputs: IndexMap<String, String>,
    /// The rollout run that asks, for the service's records.
    pub run_id: String,
    /// How long the step waits for the run in all.
    pub timeout: Duration,
}

/// A triggered run.
#[derive(Debug, Clone)]
pub struct RunHandle {
    pub id: String,
    pub url: Option<String>,
}

impl RunHandle {
    /// The run as the journal records it (`step_triggered`'s `pipeline_run` and `url`, empty when
    /// none): all a service needs to poll it, so a later rollout process can follow it too.
    pub fn journaled(pipeline_run: &str, url: &str) -> RunHandle {
        RunHandle { id: pipeline_run.to_string(), url: (!url.is_empty()).then(|| url.to_string()) }
    }
}

/// The run id journaled for a trigger the service accepted without saying which run it started.
pub const UNKNOWN_RUN: &str = "unknown";

/// The service accepted the trigger, but its answer does not say which run it started: rollout
/// neither guesses nor triggers again, and the operator looks at `look_at`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{why}; the pipeline was probably triggered, but which run it started is not known: look for it at {look_at} (rollout does not trigger it again)"
)]
pub struct UnknownRun {
    pub why: String,
    /// Where the operator can see the pipeline's runs.
    pub look_at: String,
}

impl UnknownRun {
    /// The unknown run a trigger failed with, if that is how it failed.
    pub fn find(error: &anyhow::Error) -> Option<&UnknownRun> {
        error.downcast_ref::<Started>().and_then(|started| started.0.downcast_ref())
    }
}

/// The service refused the trigger in an answer that looks like a success (Buildbot's JSON-RPC
/// error in a 200): nothing started, so the step may be tried again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Send the request that starts a run (`send`, once: see `Client::send_once`) and read the run
/// from the answer (`read`). This is the one place that decides what a failed trigger means.
/// Trying the step again would send the trigger again, so every failure once the request may
/// have arrived is `Started`, naming `look_at` (where the operator can see the runs): no answer
/// or a 5xx (the service may have acted on it), and a success the run cannot be read from
/// (`UnknownRun`). Only a refusal, a 4xx or `Refused`, leaves the step free to be tried again.
pub fn trigger_once(
    look_at: &str,
    send: impl FnOnce() -> Result<Response>,
    read: impl FnOnce(&Response) -> Result<RunHandle>,
) -> Result<RunHandle> {
    let maybe_started = |error: anyhow::Error| -> anyhow::Error {
        Started(
            error.context(format!("the trigger may have started a run: look at {look_at} before triggering it again")),
        )
        .into()
    };
    let answer = send().map_err(maybe_started)?;
    if answer.status.is_client_error() {
        return Err(failure(answer));
    }
    if answer.status.is_server_error() {
        return Err(maybe_started(failure(answer)));
    }
    read(&answer).map_err(|error| {
        if error.is::<Refused>() || Interrupted::is_in(&error) {
            return error;
        }
        Started(UnknownRun { why: format!("{error:#}"), look_at: look_at.to_string() }.into()).into()
    })
}

/// The error an answer that is not a success stands for.
fn failure(answer: Response) -> anyhow::Error {
    match answer.ok() {
        Err(error) => error,
        Ok(answer) => anyhow::anyhow!("{} {} was answered with {}", answer.method, answer.url, answer.status),
    }
}

/// How a finished run ended, with what it printed last.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub conclusion: String,
    pub log_tail: String,
    /// The commit the run built, when the service says.
    pub commit: Option<String>,
    /// The run's final id and web page, when they only become known as it runs (Jenkins).
    pub id: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone)]
pub enum RunState {
    /// Still going; the text is the latest thing worth showing.
    Running(Option<String>),
    /// Waiting for a person (an approval, a manual job, a block step): never a success.
    NeedsHuman(String),
    Succeeded(Verdict),
    Failed(Verdict),
    Cancelled(Verdict),
}

pub trait Pipelines: Send {
    /// Where pipelines run, for messages: `command sh deploy.sh`.
    fn describe(&self) -> String;
    /// Read-only check that the pipeline can be triggered; says what would run.
    fn check(&self, request: &PipelineRequest) -> Result<String>;
    fn trigger(&self, request: &PipelineRequest) -> Result<RunHandle>;
    fn poll(&self, run: &RunHandle) -> Result<RunState>;
    /// The wait is over without a verdict (timeout, Ctrl-C): a local process is stopped,
    /// a remote run is left running. Says which.
    fn stop_waiting(&self, run: &RunHandle) -> String {
        let at = run.url.as_deref().map(|u| format!(" at {u}")).unwrap_or_default();
        format!("run {} goes on{at}: rollout never cancels a remote run", run.id)
    }
    /// A handle that outlasts `run`, once the service names the run by something longer-lived
    /// than what the trigger answered (Jenkins: the build, which outlives its queue item by
    /// far): journaled, so that a later rollout process follows that.
    fn durable(&self, _run: &RunHandle) -> Option<RunHandle> {
        None
    }
    /// How long to wait before poll number `polls` (from 0): steady at first, then backing off.
    fn poll_interval(&self, polls: u32) -> Duration {
        crate::backoff::poll_pause(polls, false)
    }
    /// The least wait the service's rate limit asks for, from its last answer.
    fn rate_limit_pause(&self) -> Option<Duration> {
        None
    }
}

/// The configured CI service, behind `Printable`.
pub fn pipelines(config: &CiConfig, config_dir: &Path, http: &HttpSettings) -> Result<Box<dyn Pipelines>> {
    let service: Box<dyn Pipelines> = match config {
        CiConfig::Command(config) => Box::new(command::CommandPipeline::new(config, config_dir)),
        CiConfig::Github(config) => Box::new(github::GitHub::new(config, http)?),
        CiConfig::Gitlab(config) => Box::new(gitlab::GitLab::new(config, http)?),
        CiConfig::Jenkins(config) => Box::new(jenkins::Jenkins::new(config, http)?),
        CiConfig::Buildkite(config) => Box::new(buildkite::Buildkite::new(config, http)?),
        CiConfig::Buildbot(config) => Box::new(buildbot::Buildbot::new(config, http)?),
    };
    Ok(Box::new(Printable(service)))
}

/// Every CI service behind one guard: what it says (a run's id, URL and state, a log tail, a
/// workflow's name) reaches the terminal and the journal with its control characters shown,
/// not obeyed. Errors that quote a service are made printable where they are made (`http`).
struct Printable(Box<dyn Pipelines>);

fn shown(text: String) -> String {
    printable(&text).into_owned()
}

impl Pipelines for Printable {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn check(&self, request: &PipelineRequest) -> Result<String> {
        self.0.check(request).map(shown)
    }

    fn trigger(&self, request: &PipelineRequest) -> Result<RunHandle> {
        let run = self.0.trigger(request)?;
        Ok(RunHandle { id: shown(run.id), url: run.url.map(shown) })
    }

    fn poll(&self, run: &RunHandle) -> Result<RunState> {
        let verdict = |v: Verdict| Verdict {
            conclusion: shown(v.conclusion),
            log_tail: shown(v.log_tail),
            commit: v.commit.map(shown),
            id: v.id.map(shown),
            url: v.url.map(shown),
        };
        Ok(match self.0.poll(run)? {
            RunState::Running(latest) => RunState::Running(latest.map(shown)),
            RunState::NeedsHuman(why) => RunState::NeedsHuman(shown(why)),
            RunState::Succeeded(v) => RunState::Succeeded(verdict(v)),
            RunState::Failed(v) => RunState::Failed(verdict(v)),
            RunState::Cancelled(v) => RunState::Cancelled(verdict(v)),
        })
    }

    fn stop_waiting(&self, run: &RunHandle) -> String {
        self.0.stop_waiting(run)
    }

    fn poll_interval(&self, polls: u32) -> Duration {
        self.0.poll_interval(polls)
    }

    fn durable(&self, run: &RunHandle) -> Option<RunHandle> {
        self.0.durable(run)
    }

    fn rate_limit_pause(&self) -> Option<Duration> {
        self.0.rate_limit_pause()
    }
}
