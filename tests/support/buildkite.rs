//! A local emulator of Buildkite's REST API (api.buildkite.com/v2) for builds: create a build,
//! poll it, read the pipeline, with the organization and per-user rate limits and their headers.

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::http_server::{Handler, Request, Response, Server, percent_decode, reason};

pub use super::github::{Life, Outcome, Phase, Script};
use super::github::{epoch_seconds, iso};

const WEB: &str = "https://buildkite.com";
const UNAUTHORIZED: &str = "Authentication required. Please supply a valid API Access Token: https://buildkite.com/docs/apis/rest-api#authentication";

/// A created build as the emulator recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Build {
    pub number: u64,
    /// The build's UUID.
    pub id: String,
    pub org: String,
    pub pipeline: String,
    pub commit: String,
    pub branch: String,
    pub message: Option<String>,
    /// The `env` object as sent (`{}` when absent).
    pub env: Value,
    /// The `meta_data` object as sent (`{}` when absent).
    pub meta_data: Value,
    /// The `author` object as sent, if any.
    pub author: Option<Value>,
    pub created_at: jiff::Timestamp,
}

struct Pipeline {
    org: String,
    slug: String,
    id: String,
    created: jiff::Timestamp,
}

struct Rec {
    build: Build,
    life: Life,
}

struct Window {
    limit: u64,
    used: u64,
}

struct State {
    pipelines: Vec<Pipeline>,
    recs: Vec<Rec>,
    script: Script,
    org: Window,
    user: Window,
    window_start: u64,
}

/// The running emulator; derefs to its [`Server`] for faults and recorded requests.
///
/// What it serves (facts from Buildkite's docs `apis/rest_api/builds.md` (Create a build, Get a
/// build, the build data model and its states), `apis/rest_api/pipelines.md` and
/// `apis/rest_api/rate_limits.md`). `url()` stands for `https://api.buildkite.com`.
/// - `Authorization: Bearer <token>`; missing or wrong → 401 `{"message":"Authentication
///   required. Please supply a valid API Access Token: https://buildkite.com/docs/apis/
///   rest-api#authentication"}`.
/// - `GET /v2/organizations/{org}/pipelines/{pipeline}` → the pipeline (`id`, `slug`, `name`,
///   `url`, `web_url`, `repository`, `default_branch`, `builds_url`, ...). Unknown → 404
///   `{"message":"No organization found"}` / `{"message":"No pipeline found"}`.
/// - `POST .../pipelines/{pipeline}/builds` JSON `{commit, branch, message, env, meta_data,
///   author, ...}` → 201 build with `state: "scheduled"`. Missing `commit`/`branch` → 422
///   `{"message":"Validation Failed","errors":[{"field":"commit","code":"missing"}]}` (the
///   docs give only the message; the errors' shape is approximate).
/// - `GET .../builds/{number}` (a poll) → the build: `id`, `graphql_id`, `url`, `web_url`
///   (`https://buildkite.com/{org}/{pipeline}/builds/{n}`), `number`, `state`, `blocked`,
///   `message`, `commit`, `branch`, `env`, `source: "api"`, `creator`, `jobs`, `created_at`,
///   `scheduled_at`, `started_at`, `finished_at`, `meta_data`, `pipeline`. `state` goes
///   scheduled → running → passed / failed / canceled / blocked (`blocked: true`) / the
///   [`Outcome::Other`] word (e.g. skipped, not_run, failing). Unknown → 404 `{"message":"No
///   build found"}`.
/// - `GET .../builds` (`branch`, `commit`, `state` filters; newest first) → the builds.
/// - Every answer carries `RateLimit-Scope: rest`, `RateLimit-Remaining`, `RateLimit-Limit`
///   (200 a minute for the organization), `RateLimit-Reset` (seconds until the window ends) and
///   `RateLimit-User-Scope: rest_user`, `RateLimit-User-Remaining`, `RateLimit-User-Limit` (50
///   a minute), `RateLimit-User-Reset`. Over either → 429 `{"message":"You have exceeded your
///   API rate limit. Please wait N seconds before making more requests.","scope":"rest" or
///   "rest_user","limit","current","reset"}`; `Fault::RateLimited` gives the same with
///   `Retry-After`.
pub struct Buildkite {
    server: Server,
    api: Arc<Api>,
}

struct Api {
    token: String,
    base: Mutex<String>,
    state: Mutex<State>,
}

impl Buildkite {
    /// Requires `Authorization: Bearer <token>`.
    pub fn start(token: &str) -> Buildkite {
        let state = State {
            pipelines: Vec::new(),
            recs: Vec::new(),
            script: Script::default(),
            org: Window { limit: 200, used: 0 },
            user: Window { limit: 50, used: 0 },
            window_start: epoch_seconds(),
        };
        let api = Arc::new(Api { token: token.into(), base: Mutex::default(), state: Mutex::new(state) });
        let server = Server::start(api.clone(), "");
        *api.base.lock().unwrap() = server.url();
        Buildkite { server, api }
    }

    pub fn add_pipeline(&self, org: &str, slug: &str) {
        let id = uuid(&format!("pipeline/{org}/{slug}"));
        self.api.state.lock().unwrap().pipelines.push(Pipeline {
            org: org.into(),
            slug: slug.into(),
            id,
            created: jiff::Timestamp::now(),
        });
    }

    /// The script of every build created from now on.
    pub fn script(&self, outcome: Outcome, polls: u32) {
        self.api.state.lock().unwrap().script = Script::Polls(outcome, polls);
    }

    pub fn script_for(&self, outcome: Outcome, duration: Duration) {
        self.api.state.lock().unwrap().script = Script::For(outcome, duration);
    }

    /// Requests a minute: the organization's (default 200) and the user's (default 50).
    pub fn set_rate_limits(&self, org: u64, user: u64) {
        let mut state = self.api.state.lock().unwrap();
        state.org.limit = org;
        state.user.limit = user;
    }

    /// Every build created so far, oldest first.
    pub fn runs(&self) -> Vec<Build> {
        self.api.state.lock().unwrap().recs.iter().map(|r| r.build.clone()).collect()
    }
}

impl Deref for Buildkite {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

fn message(status: u16, text: &str) -> Response {
    Response::json(status, &json!({ "message": text }))
}

/// A UUID-shaped id derived from `seed`.
fn uuid(seed: &str) -> String {
    let hex = format!("{:x}", Sha256::digest(seed.as_bytes()));
    format!("{}-{}-4{}-8{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

impl State {
    fn roll(&mut self) -> u64 {
        let now = epoch_seconds();
        if now >= self.window_start + 60 {
            self.window_start = now - (now - self.window_start) % 60;
            self.org.used = 0;
            self.user.used = 0;
        }
        (self.window_start + 60).saturating_sub(now).max(1)
    }

    fn limited(&self, scope: &str, window: &Window, reset: u64) -> Response {
        Response::json(
            429,
            &json!({
                "message": format!("You have exceeded your API rate limit. Please wait {reset} seconds before making more requests."),
                "scope": scope,
                "limit": window.limit,
                "current": window.used,
                "reset": reset,
            }),
        )
    }

    fn with_headers(&self, response: Response, reset: u64) -> Response {
        response
            .with_header("RateLimit-User-Scope", "rest_user")
            .with_header("RateLimit-User-Remaining", &self.user.limit.saturating_sub(self.user.used).to_string())
            .with_header("RateLimit-User-Limit", &self.user.limit.to_string())
            .with_header("RateLimit-User-Reset", &reset.to_string())
            .with_header("RateLimit-Scope", "rest")
            .with_header("RateLimit-Remaining", &self.org.limit.saturating_sub(self.org.used).to_string())
            .with_header("RateLimit-Limit", &self.org.limit.to_string())
            .with_header("RateLimit-Reset", &reset.to_string())
    }
}

impl Handler for Api {
    fn handle(&self, request: &Request) -> Response {
        let mut state = self.state.lock().unwrap();
        let reset = state.roll();
        state.org.used += 1;
        state.user.used += 1;
        let response = if state.user.used > state.user.limit {
            state.limited("rest_user", &state.user, reset)
        } else if state.org.used > state.org.limit {
            state.limited("rest", &state.org, reset)
        } else {
            self.route(&mut state, request)
        };
        state.with_headers(response, reset)
    }

    fn error(&self, status: u16, retry_after: Option<u64>) -> Response {
        let mut state = self.state.lock().unwrap();
        let reset = state.roll();
        state.org.used += 1;
        state.user.used += 1;
        let response = match retry_after {
            Some(seconds) => state.limited("rest", &state.org, seconds),
            None => message(status, reason(status)),
        };
        state.with_headers(response, reset)
    }
}

impl Api {
    fn base(&self) -> String {
        self.base.lock().unwrap().clone()
    }

    fn route(&self, state: &mut State, request: &Request) -> Response {
        let bearer = request.header("Authorization").and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
        });
        if bearer.as_deref() != Some(self.token.as_str()) {
            return message(401, UNAUTHORIZED);
        }
        let segments: Vec<String> = request.path.split('/').skip(1).map(|s| percent_decode(s, false)).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let ["v2", "organizations", org, "pipelines", slug, tail @ ..] = segments.as_slice() else {
            return message(404, "Not Found");
        };
        if !state.pipelines.iter().any(|p| p.org == *org) {
            return message(404, "No organization found");
        }
        let Some(pipeline) = state.pipelines.iter().position(|p| p.org == *org && p.slug == *slug) else {
            return message(404, "No pipeline found");
        };
        match (request.method.as_str(), tail) {
            ("GET", []) => Response::json(200, &self.pipeline_json(state, pipeline)),
            ("POST", ["builds"]) => self.create(state, request, pipeline),
            ("GET", ["builds"]) => self.list(state, request, pipeline),
            ("GET", ["builds", number]) => {
                let found = state.recs.iter().position(|r| {
                    r.build.org == *org && r.build.pipeline == *slug && r.build.number.to_string() == *number
                });
                match found {
                    Some(index) => {
                        state.recs[index].life.poll();
                        Response::json(200, &self.build_json(state, index, true))
                    }
                    None => message(404, "No build found"),
                }
            }
            _ => message(404, "Not Found"),
        }
    }

    fn pipeline_json(&self, state: &State, index: usize) -> Value {
        let p = &state.pipelines[index];
        let (org, slug) = (&p.org, &p.slug);
        let scheduled = state
            .recs
            .iter()
            .filter(|r| r.build.pipeline == *slug && r.build.org == *org && r.life.phase() == Phase::Queued)
            .count();
        json!({
            "id": p.id,
            "graphql_id": format!("UGlwZWxpbmUtLS0{}", &p.id[..8]),
            "url": format!("{}/v2/organizations/{org}/pipelines/{slug}", self.base()),
            "web_url": format!("{WEB}/{org}/{slug}"),
            "name": slug,
            "description": null,
            "slug": slug,
            "repository": format!("git@github.com:{org}/{slug}.git"),
            "cluster_id": null,
            "branch_configuration": null,
            "default_branch": "main",
            "skip_queued_branch_builds": false,
            "skip_queued_branch_builds_filter": null,
            "cancel_running_branch_builds": false,
            "cancel_running_branch_builds_filter": null,
            "allow_rebuilds": true,
            "provider": { "id": "github", "webhook_url": "", "settings": {} },
            "builds_url": format!("{}/v2/organizations/{org}/pipelines/{slug}/builds", self.base()),
            "badge_url": format!("https://badge.buildkite.com/{}.svg", &p.id[..12]),
            "created_by": null,
            "created_at": iso(p.created, true),
            "archived_at": null,
            "env": {},
            "scheduled_builds_count": scheduled,
            "running_builds_count": 0,
            "scheduled_jobs_count": 0,
            "running_jobs_count": 0,
            "waiting_jobs_count": 0,
            "visibility": "private",
            "tags": null,
            "emoji": null,
            "color": null,
        })
    }

    fn create(&self, state: &mut State, request: &Request, pipeline: usize) -> Response {
        let body = request.json().unwrap_or(Value::Null);
        let field = |name: &str| body.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let (commit, branch) = (field("commit"), field("branch"));
        if commit.is_none() || branch.is_none() {
            let mut errors = Vec::new();
            for (name, value) in [("commit", &commit), ("branch", &branch)] {
                if value.is_none() {
                    errors.push(json!({ "field": name, "code": "missing" }));
                }
            }
            return Response::json(422, &json!({ "message": "Validation Failed", "errors": errors }));
        }
        let object = |name: &str| match body.get(name) {
            Some(Value::Object(map)) => Value::Object(map.clone()),
            _ => json!({}),
        };
        let (org, slug) = (state.pipelines[pipeline].org.clone(), state.pipelines[pipeline].slug.clone());
        let number = state.recs.iter().filter(|r| r.build.org == org && r.build.pipeline == slug).count() as u64 + 1;
        let build = Build {
            number,
            id: uuid(&format!("build/{org}/{slug}/{number}")),
            org,
            pipeline: slug,
            commit: commit.unwrap_or_default(),
            branch: branch.unwrap_or_default(),
            message: field("message"),
            env: object("env"),
            meta_data: object("meta_data"),
            author: body.get("author").filter(|a| a.is_object()).cloned(),
            created_at: jiff::Timestamp::now(),
        };
        state.recs.push(Rec { build, life: Life::new(state.script.clone()) });
        let index = state.recs.len() - 1;
        Response::json(201, &self.build_json(state, index, false))
    }

    fn list(&self, state: &State, request: &Request, pipeline: usize) -> Response {
        let p = &state.pipelines[pipeline];
        let (branch, commit, wanted) =
            (request.query_param("branch"), request.query_param("commit"), request.query_param("state"));
        let builds: Vec<Value> = (0..state.recs.len())
            .rev()
            .filter(|&i| {
                let b = &state.recs[i].build;
                let (word, _) = state_word(&state.recs[i].life.phase());
                b.org == p.org
                    && b.pipeline == p.slug
                    && branch.as_deref().is_none_or(|x| x == b.branch)
                    && commit.as_deref().is_none_or(|x| x == b.commit)
                    && wanted.as_deref().is_none_or(|x| x == word)
            })
            .map(|i| self.build_json(state, i, true))
            .collect();
        Response::json(200, &Value::Array(builds))
    }

    /// The build; `seen` false for the creation answer (always `scheduled`).
    fn build_json(&self, state: &State, index: usize, seen: bool) -> Value {
        let rec = &state.recs[index];
        let b = &rec.build;
        let p = state.pipelines.iter().position(|p| p.org == b.org && p.slug == b.pipeline).unwrap_or(0);
        let (word, finished) = if seen { state_word(&rec.life.phase()) } else { ("scheduled".to_string(), false) };
        let created = iso(b.created_at, true);
        let started = (word != "scheduled").then(|| created.clone());
        let finished_at = if finished { rec.life.finished.map(|t| iso(t, true)) } else { None };
        let base = self.base();
        let url = format!("{base}/v2/organizations/{}/pipelines/{}/builds/{}", b.org, b.pipeline, b.number);
        let web_url = format!("{WEB}/{}/{}/builds/{}", b.org, b.pipeline, b.number);
        let job_id = uuid(&format!("job/{}", b.id));
        let (job_type, job_state) = match word.as_str() {
            "blocked" => ("manual", "blocked"),
            "scheduled" | "running" | "passed" | "failed" | "canceled" | "canceling" | "skipped" => {
                ("script", word.as_str())
            }
            _ => ("script", "running"),
        };
        let creator = json!({
            "id": uuid("user"), "graphql_id": "VXNlci0tLTE=", "name": "Rollout Bot",
            "email": "rollout@example.com", "avatar_url": "https://www.gravatar.com/avatar/0", "created_at": created,
        });
        json!({
            "id": b.id,
            "graphql_id": format!("QnVpbGQtLS0{}", &b.id[..8]),
            "url": url,
            "web_url": web_url,
            "number": b.number,
            "state": word,
            "cancel_reason": null,
            "blocked": word == "blocked",
            "message": b.message,
            "commit": b.commit,
            "branch": b.branch,
            "env": b.env,
            "source": "api",
            "creator": creator,
            "jobs": [{
                "id": job_id,
                "graphql_id": format!("Sm9iLS0t{}", &job_id[..8]),
                "type": job_type,
                "name": if job_type == "manual" { "Approve deploy" } else { "deploy" },
                "step_key": if job_type == "manual" { "approve" } else { "deploy" },
                "state": job_state,
                "web_url": format!("{web_url}#{job_id}"),
                "log_url": format!("{url}/jobs/{job_id}/log"),
                "raw_log_url": format!("{url}/jobs/{job_id}/log.txt"),
                "command": if job_type == "manual" { Value::Null } else { json!("scripts/deploy.sh") },
                "soft_failed": false,
                "exit_status": match job_state { "passed" => json!(0), "failed" => json!(1), _ => Value::Null },
                "created_at": created,
                "scheduled_at": created,
                "started_at": started,
                "finished_at": finished_at,
            }],
            "created_at": created,
            "scheduled_at": created,
            "started_at": started,
            "failing_at": null,
            "finished_at": finished_at,
            "meta_data": b.meta_data,
            "pull_request": null,
            "rebuilt_from": null,
            "pipeline": self.pipeline_json(state, p),
        })
    }
}

/// Buildkite's build state for a phase, and whether it is finished.
fn state_word(phase: &Phase) -> (String, bool) {
    let word = |w: &str, done: bool| (w.to_string(), done);
    match phase {
        Phase::Queued => word("scheduled", false),
        Phase::Running | Phase::Done(Outcome::Never) => word("running", false),
        Phase::Done(Outcome::Success) => word("passed", true),
        Phase::Done(Outcome::Failure) => word("failed", true),
        Phase::Done(Outcome::Cancelled) => word("canceled", true),
        Phase::Done(Outcome::NeedsHuman) => word("blocked", false),
        Phase::Done(Outcome::Other(w)) => {
            let done =
                matches!(w.as_str(), "passed" | "failed" | "canceled" | "skipped" | "not_run" | "waiting_failed");
            word(w, done)
        }
    }
}
