//! GitHub Actions: `workflow_dispatch`, asking for the run's details in the answer and, when
//! the server does not give them (204, or 400 from an older Enterprise Server), finding the run.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{PipelineRequest, Pipelines, RunHandle, RunState, Verdict, trigger_once};
use crate::backoff::Backoff;
use crate::config::{HostedCiConfig, HttpSettings};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client, Response, segment};

const DEFAULT_URL: &str = "https://api.github.com";
const HEADERS: [(&str, &str); 2] = [("Accept", "application/vnd.github+json"), ("X-GitHub-Api-Version", "2022-11-28")];
/// How long to look for the run a 204 dispatch started (at most half the step's timeout).
const FIND_FOR: Duration = Duration::from_secs(30);

pub struct GitHub {
    client: Client,
    repo: String,
    /// The web server's base, for pages the operator can open: `https://github.com`.
    web: String,
    /// Per run: the ETag and state of the last full answer, for free 304 polls.
    seen: RefCell<HashMap<String, (String, RunState)>>,
}

#[derive(Debug, Deserialize)]
struct Run {
    id: u64,
    status: String,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    head_sha: Option<String>,
}

impl GitHub {
    pub fn new(config: &HostedCiConfig, http: &HttpSettings) -> Result<GitHub> {
        let env = &config.token_env;
        let auth = Auth::from_env(env, "Authorization", "Bearer {token}", "GitHub")?;
        let url = config.url.as_deref().unwrap_or(DEFAULT_URL);
        Ok(GitHub {
            client: Client::new("GitHub", url, http, config.allow_insecure_http, Some(auth))?,
            repo: config.repo.clone(),
            web: web_base(url),
            seen: RefCell::default(),
        })
    }

    /// The workflow's runs page, where the operator can find a run rollout could not.
    fn runs_page(&self, pipeline: &str) -> String {
        format!("{}/{}/actions/workflows/{}", self.web, self.repo, segment(pipeline))
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Body>,
        extra: &[(&str, &str)],
    ) -> Result<Response> {
        let mut headers = HEADERS.to_vec();
        headers.extend_from_slice(extra);
        self.client.send_once(method, &format!("/repos/{}{path}", self.repo), query, body, &headers)
    }

    fn workflow(&self, pipeline: &str) -> String {
        format!("/actions/workflows/{}", segment(pipeline))
    }

    /// The ref to run on: the step's, or the repository's default branch.
    fn git_ref(&self, request: &PipelineRequest) -> Result<String> {
        if let Some(git_ref) = &request.git_ref {
            return Ok(git_ref.clone());
        }
        let repo: serde_json::Value = self.send(Method::GET, "", &[], None, &[])?.ok()?.json()?;
        repo["default_branch"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("GitHub did not say {}'s default branch", self.repo))
    }

    fn dispatch(&self, request: &PipelineRequest, git_ref: &str, details: bool) -> Result<Response> {
        let mut body = json!({ "ref": git_ref, "inputs": request.inputs });
        if details {
            body["return_run_details"] = json!(true);
        }
        self.send(
            Method::POST,
            &format!("{}/dispatches", self.workflow(&request.pipeline)),
            &[],
            Some(&Body::Json(body)),
            &[],
        )
    }

    /// The newest workflow_dispatch run of the workflow on `git_ref` created since `since`.
    fn find_run(&self, request: &PipelineRequest, git_ref: &str, since: jiff::Timestamp) -> Result<RunHandle> {
        let created = format!(">={}", since.strftime("%Y-%m-%dT%H:%M:%SZ"));
        let started = std::time::Instant::now();
        let find_for = FIND_FOR.min(request.timeout / 2);
        let mut polls = 0;
        loop {
            let path = format!("{}/runs", self.workflow(&request.pipeline));
            let query = [
                ("event", "workflow_dispatch"),
                ("branch", git_ref),
                ("created", created.as_str()),
                ("per_page", "10"),
            ];
            let listed: serde_json::Value = self.send(Method::GET, &path, &query, None, &[])?.ok()?.json()?;
            let runs: Vec<Run> = serde_json::from_value(listed["workflow_runs"].clone()).unwrap_or_default();
            if let Some(run) = runs.into_iter().max_by_key(|r| r.id) {
                return Ok(RunHandle { id: run.id.to_string(), url: run.html_url });
            }
            if started.elapsed() > find_for {
                bail!(
                    "workflow {} was dispatched on {git_ref}, but no run of it created since {} has shown up in {} s",
                    request.pipeline,
                    since,
                    find_for.as_secs()
                );
            }
            if crate::interrupt::sleep(Backoff::FIND.pause(polls)) {
                return Err(crate::error::Interrupted(format!(
                    "while looking for the run of {} that was just dispatched",
                    request.pipeline
                ))
                .into());
            }
            polls += 1;
        }
    }

    fn state(run: &Run) -> RunState {
        let verdict = |conclusion: &str| Verdict {
            conclusion: conclusion.to_string(),
            commit: run.head_sha.clone(),
            url: run.html_url.clone(),
            ..Verdict::default()
        };
        match (run.status.as_str(), run.conclusion.as_deref()) {
            ("completed", Some(c @ ("success" | "neutral"))) => RunState::Succeeded(verdict(c)),
            ("completed", Some("cancelled")) => RunState::Cancelled(verdict("cancelled")),
            ("completed", Some("action_required")) => {
                RunState::NeedsHuman("the run needs an action in GitHub (action_required)".into())
            }
            ("completed", other) => RunState::Failed(verdict(other.unwrap_or("completed without a conclusion"))),
            ("waiting", _) => RunState::NeedsHuman("waiting for a reviewer to approve the deployment".into()),
            (status, _) => RunState::Running(Some(status.replace('_', " "))),
        }
    }
}

/// The web server of an API base: `https://api.github.com` is github.com, an Enterprise
/// Server's `https://HOST/api/v3` is `https://HOST`; anything else (a proxy) serves both.
fn web_base(api: &str) -> String {
    let api = api.trim_end_matches('/');
    if api == DEFAULT_URL {
        return "https://github.com".into();
    }
    api.strip_suffix("/api/v3").unwrap_or(api).to_string()
}

impl Pipelines for GitHub {
    fn describe(&self) -> String {
        format!("GitHub Actions {}", self.repo)
    }

    fn check(&self, request: &PipelineRequest) -> Result<String> {
        let response = self.send(Method::GET, &self.workflow(&request.pipeline), &[], None, &[])?;
        if response.status == StatusCode::NOT_FOUND {
            return Err(Precondition(format!("workflow {} does not exist in {}", request.pipeline, self.repo)).into());
        }
        let workflow: serde_json::Value = response.ok()?.json()?;
        let state = workflow["state"].as_str().unwrap_or("active");
        if state != "active" {
            return Err(Precondition(format!(
                "workflow {} in {} is {state}: enable it first",
                request.pipeline, self.repo
            ))
            .into());
        }
        let repo: serde_json::Value = self.send(Method::GET, "", &[], None, &[])?.ok()?.json()?;
        if repo["permissions"]["push"] == json!(false) {
            return Err(Precondition(format!(
                "the token cannot trigger workflows in {}: it has no write access",
                self.repo
            ))
            .into());
        }
        let git_ref = match &request.git_ref {
            Some(git_ref) => git_ref.clone(),
            None => repo["default_branch"].as_str().unwrap_or("main").to_string(),
        };
        let commit = self.send(Method::GET, &format!("/commits/{}", segment(&git_ref)), &[], None, &[])?;
        if matches!(commit.status, StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY) {
            return Err(Precondition(format!("ref {git_ref} does not exist in {}", self.repo)).into());
        }
        let sha = commit.ok()?.json::<serde_json::Value>()?["sha"]
            .as_str()
            .map(|s| crate::echo::short_id(s).to_string())
            .unwrap_or_default();
        Ok(format!(
            "runs workflow {} ({}) on {git_ref} at {sha}",
            workflow["name"].as_str().unwrap_or(&request.pipeline),
            request.pipeline
        ))
    }

    fn trigger(&self, request: &PipelineRequest) -> Result<RunHandle> {
        let git_ref = self.git_ref(request)?;
        let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5);
        let send = || {
            let answer = self.dispatch(request, &git_ref, true)?;
            if matches!(answer.status, StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY)
                && answer.text.contains("return_run_details")
            {
                // An older GitHub Enterprise Server does not know the field: ask the old way.
                return self.dispatch(request, &git_ref, false);
            }
            Ok(answer)
        };
        let read = |answer: &Response| {
            if answer.status == StatusCode::NO_CONTENT {
                return self.find_run(request, &git_ref, since);
            }
            let details: serde_json::Value = answer.json()?;
            let id = details["workflow_run_id"].as_u64().ok_or_else(|| {
                anyhow!("GitHub's dispatch answer has no workflow_run_id: {}", crate::untrusted::excerpt(&answer.text))
            })?;
            Ok(RunHandle { id: id.to_string(), url: details["html_url"].as_str().map(str::to_string) })
        };
        trigger_once(&self.runs_page(&request.pipeline), send, read)
    }

    fn poll(&self, run: &RunHandle) -> Result<RunState> {
        let etag = self.seen.borrow().get(&run.id).map(|(etag, _)| etag.clone());
        let conditional: Vec<(&str, &str)> = etag.as_deref().map(|e| vec![("If-None-Match", e)]).unwrap_or_default();
        let response =
            self.send(Method::GET, &format!("/actions/runs/{}", segment(&run.id)), &[], None, &conditional)?;
        if response.status == StatusCode::NOT_MODIFIED
            && let Some((_, state)) = self.seen.borrow().get(&run.id)
        {
            return Ok(state.clone());
        }
        let response = response.ok()?;
        let details: Run = response.json()?;
        let state = Self::state(&details);
        if let Some(etag) = response.header("etag") {
            self.seen.borrow_mut().insert(run.id.clone(), (etag.to_string(), state.clone()));
        }
        Ok(state)
    }

    fn rate_limit_pause(&self) -> Option<Duration> {
        self.client.rate_limit_pause()
    }

    /// Steady while the run's polls are conditional (GitHub answers 304 without counting them
    /// against the rate limit).
    fn poll_interval(&self, polls: u32) -> Duration {
        crate::backoff::poll_pause(polls, !self.seen.borrow().is_empty())
    }
}
