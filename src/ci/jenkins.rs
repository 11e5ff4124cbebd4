//! Jenkins: `buildWithParameters` with basic auth (an API token needs no crumb; a password gets
//! one first), then the queue item (201 or 303) until it becomes a build, then the build.

use std::cell::RefCell;
use std::collections::HashMap;

use anyhow::{Result, anyhow, bail};
use base64::Engine;
use reqwest::{Method, StatusCode};

use super::{PipelineRequest, Pipelines, RunHandle, RunState, Verdict, trigger_once};
use crate::config::{HttpSettings, JenkinsConfig, JenkinsSecret};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client, Response, segment};

pub struct Jenkins {
    client: Client,
    /// Whether a password (not an API token) authenticates: then CSRF crumbs are needed.
    password: bool,
    /// Queue item URL -> build URL, once the item left the queue: a cache, since the queue item
    /// names its build, so a run re-attaches from its journaled queue URL alone.
    builds: RefCell<HashMap<String, String>>,
}

impl Jenkins {
    pub fn new(config: &JenkinsConfig, http: &HttpSettings) -> Result<Jenkins> {
        let (url, user) = (&config.url, &config.username);
        let (env, password) = match &config.secret {
            JenkinsSecret::ApiToken(env) => (env, false),
            JenkinsSecret::Password(env) => (env, true),
        };
        let secret = crate::redact::secret_from_env(env).ok_or_else(|| {
            anyhow!("{env} is not set: export it with the Jenkins {}", if password { "password" } else { "API token" })
        })?;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
        crate::redact::register_basic(user, &secret);
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {basic}"))?;
        value.set_sensitive(true);
        let auth = Auth { header: reqwest::header::AUTHORIZATION, value, env: env.clone() };
        Ok(Jenkins {
            client: Client::new("Jenkins", url, http, config.allow_insecure_http, Some(auth))?,
            password,
            builds: RefCell::default(),
        })
    }

    /// `folder/deploy` -> `/job/folder/job/deploy`.
    fn job(pipeline: &str) -> String {
        pipeline.split('/').filter(|s| !s.is_empty()).map(|s| format!("/job/{}", segment(s))).collect()
    }

    /// The build a queue item became (its URL, with a trailing slash), or the run's state while
    /// it is still queued or was cancelled there.
    fn left_queue(&self, run: &RunHandle) -> Result<Result<String, RunState>> {
        let item: serde_json::Value = self.client.get(&format!("{}api/json", run.id), &[])?.ok()?.json()?;
        if item["cancelled"] == serde_json::json!(true) {
            let verdict = Verdict { conclusion: "cancelled in the queue".into(), ..Verdict::default() };
            return Ok(Err(RunState::Cancelled(verdict)));
        }
        match item["executable"]["url"].as_str() {
            Some(url) if url.ends_with('/') => Ok(Ok(url.to_string())),
            Some(url) => Ok(Ok(format!("{url}/"))),
            None => Ok(Err(RunState::Running(Some(format!("queued: {}", item["why"].as_str().unwrap_or("waiting")))))),
        }
    }

    /// The crumb header (and session cookie) a password-authenticated POST needs.
    fn crumb(&self) -> Result<Vec<(String, String)>> {
        if !self.password {
            return Ok(Vec::new());
        }
        let answer = self.client.get("/crumbIssuer/api/json", &[])?.ok()?;
        let crumb: serde_json::Value = answer.json()?;
        let field = crumb["crumbRequestField"].as_str().unwrap_or("Jenkins-Crumb").to_string();
        let value = crumb["crumb"].as_str().ok_or_else(|| anyhow!("Jenkins's crumb issuer gave no crumb"))?.to_string();
        crate::redact::register(&value);
        let mut headers = vec![(field, value)];
        if let Some(cookie) = answer.header("set-cookie") {
            headers.push(("Cookie".to_string(), cookie.split(';').next().unwrap_or_default().to_string()));
        }
        Ok(headers)
    }
}

impl Pipelines for Jenkins {
    fn describe(&self) -> String {
        format!("Jenkins {}", self.client.base())
    }

    fn check(&self, request: &PipelineRequest) -> Result<String> {
        let job = Self::job(&request.pipeline);
        let answer = self.client.get(&format!("{job}/api/json"), &[("tree", "buildable,fullName,url")])?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(Precondition(format!(
                "Jenkins job {} does not exist at {}",
                request.pipeline,
                self.client.base()
            ))
            .into());
        }
        let details: serde_json::Value = answer.ok()?.json()?;
        match details["buildable"].as_bool() {
            Some(true) => {}
            Some(false) => {
                return Err(Precondition(format!(
                    "Jenkins job {} is disabled (buildable: false): enable it in Jenkins, then run again",
                    request.pipeline
                ))
                .into());
            }
            None => {
                return Err(Precondition(format!(
                    "Jenkins {} is not a job that can be built ({}): check the step's pipeline",
                    request.pipeline,
                    details["_class"].as_str().unwrap_or("no `buildable` field")
                ))
                .into());
            }
        }
        Ok(format!("builds job {} with ROLLOUT_REF={}", request.pipeline, request.git_ref.as_deref().unwrap_or("")))
    }

    fn trigger(&self, request: &PipelineRequest) -> Result<RunHandle> {
        let job = Self::job(&request.pipeline);
        let mut form = vec![
            ("ROLLOUT_PIPELINE".to_string(), request.pipeline.clone()),
            ("ROLLOUT_REF".to_string(), request.git_ref.clone().unwrap_or_default()),
            ("ROLLOUT_RUN_ID".to_string(), request.run_id.clone()),
        ];
        form.extend(request.inputs.iter().map(|(k, v)| (k.clone(), v.clone())));
        let crumb = self.crumb()?;
        let headers: Vec<(&str, &str)> = crumb.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let send = || {
            self.client.send_once(
                Method::POST,
                &format!("{job}/buildWithParameters"),
                &[],
                Some(&Body::Form(form)),
                &headers,
            )
        };
        let read = |answer: &Response| {
            if !(answer.status == StatusCode::CREATED || answer.status == StatusCode::SEE_OTHER) {
                bail!("Jenkins answered the build request with {}, not 201 or 303 with a queue item", answer.status);
            }
            let queue = answer
                .header("location")
                .ok_or_else(|| anyhow!("Jenkins's answer has no Location of the queue item"))?
                .to_string();
            Ok(RunHandle { id: if queue.ends_with('/') { queue } else { format!("{queue}/") }, url: None })
        };
        let look_at = format!("{}{job}/", self.client.base().trim_end_matches('/'));
        trigger_once(&look_at, send, read)
    }

    /// The build, once the queue item named it.
    fn durable(&self, run: &RunHandle) -> Option<RunHandle> {
        let build = self.builds.borrow().get(&run.id).cloned()?;
        Some(RunHandle { id: build.clone(), url: Some(build) })
    }

    fn poll(&self, run: &RunHandle) -> Result<RunState> {
        let cached = self.builds.borrow().get(&run.id).cloned();
        let build_url = match cached {
            Some(url) => url,
            // A build's own URL (journaled once known): polled directly.
            None if !run.id.contains("/queue/item/") => run.id.clone(),
            None => match self.left_queue(run)? {
                Ok(url) => {
                    self.builds.borrow_mut().insert(run.id.clone(), url.clone());
                    url
                }
                Err(state) => return Ok(state),
            },
        };
        let build: serde_json::Value = self
            .client
            .get(&format!("{build_url}api/json"), &[("tree", "building,result,url,number")])?
            .ok()?
            .json()?;
        let number = build["number"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        let result = build["result"].as_str().unwrap_or_default().to_string();
        let verdict = || Verdict {
            conclusion: result.to_ascii_lowercase(),
            log_tail: String::new(),
            commit: None,
            id: Some(number.clone()),
            url: build["url"].as_str().map(str::to_string),
        };
        Ok(match (build["building"].as_bool().unwrap_or(true), result.as_str()) {
            (true, _) | (false, "") => RunState::Running(Some(format!("build #{number} running"))),
            (false, "SUCCESS") => RunState::Succeeded(verdict()),
            (false, "ABORTED") => RunState::Cancelled(verdict()),
            (false, _) => RunState::Failed(verdict()),
        })
    }
}
