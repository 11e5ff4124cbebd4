//! CI/CD services behind one trait: check a pipeline, trigger a run, poll it to a verdict.
//! One module per service; the `ci` step never names a vendor.

pub mod command;

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use indexmap::IndexMap;

use crate::config::{CiConfig, CiProvider};

/// What to run: the step's pipeline, ref and inputs.
#[derive(Debug, Clone)]
pub struct PipelineRequest {
    pub pipeline: String,
    pub git_ref: Option<String>,
    pub inputs: IndexMap<String, String>,
    /// The rollout run that asks, for the service's records.
    pub run_id: String,
}

/// A triggered run.
#[derive(Debug, Clone)]
pub struct RunHandle {
    pub id: String,
    pub url: Option<String>,
}

/// How a finished run ended, with what it printed last.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub conclusion: String,
    pub log_tail: String,
    pub commit: Option<String>,
}

#[derive(Debug, Clone)]
pub enum RunState {
    /// Still going; the text is the latest thing worth showing.
    Running(Option<String>),
    Succeeded(Verdict),
    Failed(Verdict),
    Cancelled(Verdict),
}

pub trait Pipelines {
    /// Where pipelines run, for messages: `command sh deploy.sh`.
    fn describe(&self) -> String;
    /// Read-only check that the pipeline can be triggered; says what would run.
    fn check(&self, request: &PipelineRequest) -> Result<String>;
    fn trigger(&self, request: &PipelineRequest) -> Result<RunHandle>;
    fn poll(&self, run: &RunHandle) -> Result<RunState>;
    /// The wait is over without a verdict (timeout, Ctrl-C): a local process is stopped,
    /// a remote run is left running.
    fn stop_waiting(&self, run: &RunHandle) -> String;
    /// How long to wait before the next poll, given how long the run has been going.
    fn poll_interval(&self, elapsed: Duration) -> Duration;
}

/// The configured CI service.
pub fn pipelines(config: &CiConfig, config_dir: &Path) -> Result<Box<dyn Pipelines>> {
    match config.provider {
        CiProvider::Command => Ok(Box::new(command::CommandPipeline::new(config, config_dir)?)),
        other => anyhow::bail!(
            "ci provider `{}` is not available in this build of rollout; use `command` or a newer rollout",
            other.as_str()
        ),
    }
}
