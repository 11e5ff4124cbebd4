//! Buildkite: create a build of a pipeline in the organization (`ci.repo`) and poll its state;
//! `blocked` waits for a person to unblock it. Polling respects the RateLimit-* headers.

use std::time::Duration;

use anyhow::{Result, anyhow};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{PipelineRequest, Pipelines, RunHandle, RunState, Verdict, trigger_once};
use crate::config::{HostedCiConfig, HttpSettings};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client, Response, segment};

const DEFAULT_URL: &str = "https://api.buildkite.com";

pub struct Buildkite {
    client: Client,
    organization: String,
}

impl Buildkite {
    pub fn new(config: &HostedCiConfig, http: &HttpSettings) -> Result<Buildkite> {
        let env = &config.token_env;
        let auth = Auth::from_env(env, "Authorization", "Bearer {token}", "Buildkite")?;
        let url = config.url.as_deref().unwrap_or(DEFAULT_URL);
        Ok(Buildkite {
            client: Client::new("Buildkite", url, http, config.allow_insecure_http, Some(auth))?,
            organization: config.repo.clone(),
        })
    }

    fn send(&self, method: Method, pipeline: &str, rest: &str, body: Option<&Body>) -> Result<Response> {
        let path = format!("/v2/organizations/{}/pipelines/{}{rest}", segment(&self.organization), segment(pipeline));
        self.client.send_once(method, &path, &[], body, &[])
    }
}

/// Buildkite's web pages (it is SaaS only, whatever API base is configured).
const WEB_URL: &str = "https://buildkite.com";

/// Run ids are `pipeline#number`, since builds are numbered per pipeline.
fn split(run: &RunHandle) -> Result<(&str, &str)> {
    run.id.rsplit_once('#').ok_or_else(|| anyhow!("not a Buildkite build id: {}", run.id))
}

impl Pipelines for Buildkite {
    fn describe(&self) -> String {
        format!("Buildkite {}", self.organization)
    }

    fn check(&self, request: &PipelineRequest) -> Result<String> {
        let answer = self.send(Method::GET, &request.pipeline, "", None)?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(Precondition(format!(
                "Buildkite pipeline {} does not exist in {}",
                request.pipeline, self.organization
            ))
            .into());
        }
        let pipeline: serde_json::Value = answer.ok()?.json()?;
        let branch = request
            .git_ref
            .clone()
            .or_else(|| pipeline["default_branch"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(format!("builds pipeline {} on {branch}", request.pipeline))
    }

    fn trigger(&self, request: &PipelineRequest) -> Result<RunHandle> {
        let mut env = serde_json::Map::new();
        env.insert("ROLLOUT_RUN_ID".into(), json!(request.run_id));
        for (key, value) in &request.inputs {
            env.insert(key.clone(), json!(value));
        }
        let branch = match &request.git_ref {
            Some(git_ref) => git_ref.clone(),
            None => {
                let pipeline: serde_json::Value = self.send(Method::GET, &request.pipeline, "", None)?.ok()?.json()?;
                pipeline["default_branch"].as_str().unwrap_or("main").to_string()
            }
        };
        let body = json!({
            "commit": "HEAD",
            "branch": branch,
            "message": format!("rollout run {}", request.run_id),
            "env": env,
        });
        let send = || self.send(Method::POST, &request.pipeline, "/builds", Some(&Body::Json(body)));
        let read = |answer: &Response| {
            let build: serde_json::Value = answer.json()?;
            let number = build["number"].as_u64().ok_or_else(|| {
                anyhow!("Buildkite's answer has no build number: {}", crate::untrusted::excerpt(&answer.text))
            })?;
            Ok(RunHandle {
                id: format!("{}#{number}", request.pipeline),
                url: build["web_url"].as_str().map(str::to_string),
            })
        };
        let builds_page = format!("{WEB_URL}/{}/{}/builds", self.organization, request.pipeline);
        trigger_once(&builds_page, send, read)
    }

    fn poll(&self, run: &RunHandle) -> Result<RunState> {
        let (pipeline, number) = split(run)?;
        let build: serde_json::Value =
            self.send(Method::GET, pipeline, &format!("/builds/{}", segment(number)), None)?.ok()?.json()?;
        let state = build["state"].as_str().unwrap_or("unknown").to_string();
        let verdict = || Verdict {
            conclusion: state.clone(),
            log_tail: String::new(),
            commit: build["commit"].as_str().map(str::to_string),
            ..Verdict::default()
        };
        Ok(match state.as_str() {
            "passed" => RunState::Succeeded(verdict()),
            "failed" | "skipped" | "not_run" | "waiting_failed" => RunState::Failed(verdict()),
            "canceled" | "canceling" => RunState::Cancelled(verdict()),
            "blocked" => RunState::NeedsHuman("the build is blocked until someone unblocks it".into()),
            other => RunState::Running(Some(other.replace('_', " "))),
        })
    }

    fn rate_limit_pause(&self) -> Option<Duration> {
        self.client.rate_limit_pause()
    }
}
