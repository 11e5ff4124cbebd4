//! GitLab CI: a pipeline created with a project or personal token (`PRIVATE-TOKEN`), or with a
//! pipeline trigger token; polled until it ends. `manual` means a person must play a job.

use std::time::Duration;

use anyhow::{Result, anyhow};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{PipelineRequest, Pipelines, RunHandle, RunState, Verdict, trigger_once};
use crate::config::{GitlabConfig, HttpSettings};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client, Response, segment};

const DEFAULT_URL: &str = "https://gitlab.com";

pub struct GitLab {
    client: Client,
    /// The project's id or its url-encoded path.
    project: String,
    trigger_token: Option<String>,
}

impl GitLab {
    pub fn new(config: &GitlabConfig, http: &HttpSettings) -> Result<GitLab> {
        // A trigger token can start a pipeline but not read one: a token is always needed.
        let hosted = &config.hosted;
        let auth = Auth::from_env(&hosted.token_env, "PRIVATE-TOKEN", "{token}", "GitLab")?;
        let trigger_token = match &config.trigger_token_env {
            Some(env) => Some(
                crate::redact::secret_from_env(env)
                    .ok_or_else(|| anyhow!("{env} is not set: export it with the GitLab pipeline trigger token"))?,
            ),
            None => None,
        };
        let url = hosted.url.as_deref().unwrap_or(DEFAULT_URL);
        Ok(GitLab {
            client: Client::new("GitLab", url, http, hosted.allow_insecure_http, Some(auth))?,
            project: segment(&hosted.repo),
            trigger_token,
        })
    }

    fn send(&self, method: Method, path: &str, body: Option<&Body>) -> Result<Response> {
        self.client.send_once(method, &format!("/api/v4/projects/{}{path}", self.project), &[], body, &[])
    }

    /// The project's default branch, where a step without `ref` runs (as the preview says).
    fn default_branch(&self) -> Result<String> {
        let project: serde_json::Value = self.send(Method::GET, "", None)?.ok()?.json()?;
        project["default_branch"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("GitLab did not say the project's default branch"))
    }

    /// The project's pipelines page, where the operator can find a run rollout could not.
    fn pipelines_page(&self) -> String {
        format!("{}/{}/-/pipelines", self.client.base().trim_end_matches('/'), self.project.replace("%2F", "/"))
    }

    fn variables(request: &PipelineRequest) -> Vec<(String, String)> {
        let mut variables = vec![
            ("ROLLOUT_PIPELINE".to_string(), request.pipeline.clone()),
            ("ROLLOUT_RUN_ID".to_string(), request.run_id.clone()),
        ];
        variables.extend(request.inputs.iter().map(|(k, v)| (k.clone(), v.clone())));
        variables
    }
}

impl Pipelines for GitLab {
    fn describe(&self) -> String {
        format!("GitLab {}", self.project.replace("%2F", "/"))
    }

    fn check(&self, request: &PipelineRequest) -> Result<String> {
        let shown = self.project.replace("%2F", "/");
        let project = self.send(Method::GET, "", None)?;
        if project.status == StatusCode::NOT_FOUND {
            return Err(
                Precondition(format!("GitLab project {shown} does not exist (or the token cannot see it)")).into()
            );
        }
        let project: serde_json::Value = project.ok()?.json()?;
        let git_ref = request
            .git_ref
            .clone()
            .or_else(|| project["default_branch"].as_str().map(str::to_string))
            .unwrap_or_else(|| "main".into());
        let commit = self.send(Method::GET, &format!("/repository/commits/{}", segment(&git_ref)), None)?;
        if commit.status == StatusCode::NOT_FOUND {
            return Err(Precondition(format!("ref {git_ref} does not exist in GitLab project {shown}")).into());
        }
        let sha = commit.ok()?.json::<serde_json::Value>()?["id"]
            .as_str()
            .map(|s| crate::echo::short_id(s).to_string())
            .unwrap_or_default();
        Ok(format!("creates a pipeline of {shown} on {git_ref} at {sha}"))
    }

    fn trigger(&self, request: &PipelineRequest) -> Result<RunHandle> {
        let git_ref = match &request.git_ref {
            Some(git_ref) => git_ref.clone(),
            None => self.default_branch()?,
        };
        let send = || match &self.trigger_token {
            Some(token) => {
                let mut form = vec![("token".to_string(), token.clone()), ("ref".to_string(), git_ref.clone())];
                form.extend(Self::variables(request).into_iter().map(|(k, v)| (format!("variables[{k}]"), v)));
                self.send(Method::POST, "/trigger/pipeline", Some(&Body::Form(form)))
            }
            None => {
                let variables: Vec<_> = Self::variables(request)
                    .into_iter()
                    .map(|(key, value)| json!({ "key": key, "value": value }))
                    .collect();
                self.send(
                    Method::POST,
                    "/pipeline",
                    Some(&Body::Json(json!({ "ref": git_ref, "variables": variables }))),
                )
            }
        };
        let read = |answer: &Response| {
            let pipeline: serde_json::Value = answer.json()?;
            let id = pipeline["id"].as_u64().ok_or_else(|| {
                anyhow!("GitLab's answer has no pipeline id: {}", crate::untrusted::excerpt(&answer.text))
            })?;
            Ok(RunHandle { id: id.to_string(), url: pipeline["web_url"].as_str().map(str::to_string) })
        };
        trigger_once(&self.pipelines_page(), send, read)
    }

    fn poll(&self, run: &RunHandle) -> Result<RunState> {
        let pipeline: serde_json::Value =
            self.send(Method::GET, &format!("/pipelines/{}", segment(&run.id)), None)?.ok()?.json()?;
        let status = pipeline["status"].as_str().unwrap_or("unknown").to_string();
        let verdict = || Verdict {
            conclusion: status.clone(),
            log_tail: String::new(),
            commit: pipeline["sha"].as_str().map(str::to_string),
            ..Verdict::default()
        };
        Ok(match status.as_str() {
            "success" => RunState::Succeeded(verdict()),
            "failed" | "skipped" => RunState::Failed(verdict()),
            "canceled" | "canceling" => RunState::Cancelled(verdict()),
            "manual" => RunState::NeedsHuman("a manual job is waiting for someone to play it".into()),
            other => RunState::Running(Some(other.replace('_', " "))),
        })
    }

    fn rate_limit_pause(&self) -> Option<Duration> {
        self.client.rate_limit_pause()
    }
}
