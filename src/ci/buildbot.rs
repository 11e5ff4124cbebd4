//! Buildbot: a force scheduler called over JSON-RPC (its answer's shape is checked, since an
//! unknown method is a 200 with a null result), then the build request and its build.

use anyhow::{Result, anyhow};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{PipelineRequest, Pipelines, Refused, RunHandle, RunState, Verdict, trigger_once};
use crate::config::{BuildbotConfig, HttpSettings};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client, Response, segment};

pub struct Buildbot {
    client: Client,
}

impl Buildbot {
    pub fn new(config: &BuildbotConfig, http: &HttpSettings) -> Result<Buildbot> {
        let auth = config
            .token_env
            .as_deref()
            .map(|env| Auth::from_env(env, "Authorization", "Bearer {token}", "Buildbot"))
            .transpose()?;
        Ok(Buildbot { client: Client::new("Buildbot", &config.url, http, config.allow_insecure_http, auth)? })
    }

    /// The build's page in Buildbot's web UI.
    fn web_url(&self, builder: Option<u64>, number: Option<u64>) -> Option<String> {
        Some(format!("{}/#/builders/{}/builds/{}", self.client.base().trim_end_matches('/'), builder?, number?))
    }

    fn scheduler(&self, name: &str) -> Result<serde_json::Value> {
        let answer = self.client.get(&format!("/api/v2/forceschedulers/{}", segment(name)), &[])?;
        let missing = || Precondition(format!("Buildbot has no force scheduler {name} at {}", self.client.base()));
        if answer.status == StatusCode::NOT_FOUND {
            return Err(missing().into());
        }
        let listed: serde_json::Value = answer.ok()?.json()?;
        listed["forceschedulers"].get(0).cloned().ok_or_else(|| missing().into())
    }
}

impl Pipelines for Buildbot {
    fn describe(&self) -> String {
        format!("Buildbot {}", self.client.base())
    }

    fn check(&self, request: &PipelineRequest) -> Result<String> {
        let scheduler = self.scheduler(&request.pipeline)?;
        let builders: Vec<&str> = scheduler["builder_names"]
            .as_array()
            .map(|b| b.iter().filter_map(|n| n.as_str()).collect())
            .unwrap_or_default();
        Ok(format!("forces {} on builder {}", request.pipeline, builders.join(", ")))
    }

    fn trigger(&self, request: &PipelineRequest) -> Result<RunHandle> {
        let scheduler = self.scheduler(&request.pipeline)?;
        let mut params = json!({
            "builderNames": scheduler["builder_names"],
            "reason": format!("rollout run {}", request.run_id),
            "branch": request.git_ref.clone().unwrap_or_default(),
            "rollout_run": request.run_id,
        });
        for (key, value) in &request.inputs {
            params[key] = json!(value);
        }
        let call = json!({ "jsonrpc": "2.0", "method": "force", "id": 1, "params": params });
        let path = format!("/api/v2/forceschedulers/{}", segment(&request.pipeline));
        let send = || self.client.send_once(Method::POST, &path, &[], Some(&Body::Json(call)), &[]);
        let read = |response: &Response| {
            let answer: serde_json::Value = response
                .json()
                .map_err(|_| anyhow!("Buildbot answered the force call with something that is not JSON-RPC"))?;
            if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
                // A refusal in a 200 (a 4xx or 5xx is judged by its status).
                let said = error["message"].as_str().map_or_else(|| error.to_string(), str::to_string);
                let said = crate::untrusted::printable(&said);
                return Err(Refused(format!("Buildbot refused to force {}: {said}", request.pipeline)).into());
            }
            // result = [buildsetid, {builderid: buildrequestid}]
            let requests =
                answer["result"].get(1).and_then(|r| r.as_object()).filter(|r| !r.is_empty()).ok_or_else(|| {
                    anyhow!(
                        "Buildbot answered the force call with an unexpected result ({}); is {} a force scheduler?",
                        answer["result"],
                        request.pipeline
                    )
                })?;
            let request_id = requests.values().next().expect("not empty");
            let request_id = request_id
                .as_u64()
                .ok_or_else(|| anyhow!("Buildbot's build request id is not a number: {request_id}"))?;
            Ok(RunHandle { id: request_id.to_string(), url: None })
        };
        trigger_once(&format!("{}/#/builders", self.client.base().trim_end_matches('/')), send, read)
    }

    fn poll(&self, run: &RunHandle) -> Result<RunState> {
        let builds: serde_json::Value =
            self.client.get("/api/v2/builds", &[("buildrequestid", &run.id)])?.ok()?.json()?;
        let Some(build) = builds["builds"].as_array().and_then(|b| b.last()) else {
            let listed: serde_json::Value =
                self.client.get(&format!("/api/v2/buildrequests/{}", segment(&run.id)), &[])?.ok()?.json()?;
            let request = &listed["buildrequests"][0];
            if request["complete"] == json!(true) {
                return Ok(RunState::Cancelled(Verdict {
                    conclusion: "cancelled before it started".into(),
                    log_tail: String::new(),
                    commit: None,
                    ..Verdict::default()
                }));
            }
            return Ok(RunState::Running(Some("waiting for a worker".into())));
        };
        if build["complete"] != json!(true) {
            return Ok(RunState::Running(build["state_string"].as_str().map(str::to_string)));
        }
        let verdict = |conclusion: &str| Verdict {
            conclusion: conclusion.into(),
            log_tail: build["state_string"].as_str().unwrap_or_default().into(),
            url: self.web_url(build["builderid"].as_u64(), build["number"].as_u64()),
            ..Verdict::default()
        };
        Ok(match build["results"].as_u64() {
            Some(0) => RunState::Succeeded(verdict("success")),
            Some(1) => RunState::Succeeded(verdict("warnings")),
            Some(2) => RunState::Failed(verdict("failure")),
            Some(3) => RunState::Failed(verdict("skipped")),
            Some(4) => RunState::Failed(verdict("exception")),
            Some(5) => RunState::Running(Some("retrying".into())),
            Some(6) => RunState::Cancelled(verdict("cancelled")),
            _ => RunState::Failed(verdict("unknown result")),
        })
    }
}
