//! A local emulator of the GitLab REST API v4 for CI: create a pipeline with a personal token,
//! trigger one with a pipeline trigger token, poll it, look up the project and a commit.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::http_server::{Handler, Request, Response, Server, form_pairs, percent_decode, reason};

pub use super::github::{Life, Outcome, Phase, Script};
use super::github::{epoch_seconds, iso};

pub const MOUNT: &str = "/api/v4";

/// How a pipeline was created.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// `POST /projects/:id/pipeline` with a personal/project access token (`source: "api"`).
    Api,
    /// `POST /projects/:id/trigger/pipeline` with this trigger token (`source: "trigger"`).
    Trigger(String),
}

/// A created pipeline as the emulator recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub id: u64,
    pub iid: u64,
    pub project_id: u64,
    /// `group/project`.
    pub project: String,
    pub git_ref: String,
    pub sha: String,
    pub tag: bool,
    /// (key, value) in the order sent: `variables: [{key, value}]` or `variables[KEY]=value`.
    pub variables: Vec<(String, String)>,
    pub source: Source,
    pub created_at: jiff::Timestamp,
}

struct Project {
    id: u64,
    path: String,
    /// name → (sha, is_tag), in insertion order for the default branch.
    refs: BTreeMap<String, (String, bool)>,
    default_branch: Option<String>,
    trigger_tokens: Vec<String>,
    created: jiff::Timestamp,
}

struct Rec {
    pipeline: Pipeline,
    life: Life,
}

struct State {
    projects: Vec<Project>,
    script: Script,
    pipelines: Vec<Rec>,
    next_id: u64,
    limit: u64,
    observed: u64,
    window_start: u64,
}

/// The running emulator; derefs to its [`Server`] for faults and recorded requests.
///
/// What it serves under `/api/v4` (facts from GitLab's `doc/api/pipelines.md`, `doc/api/
/// pipeline_triggers.md`, `doc/api/rest/_index.md` and the Grape sources `lib/api/ci/
/// pipelines.rb` and `lib/api/ci/triggers.rb`; rate-limit headers from GitLab.com's rate-limit
/// docs and Rack::Attack's answer). `:id` is the numeric id or the URL-encoded path
/// (`group%2Fproject`; an unencoded slash does not match the route → 404 `{"error":"404 Not
/// Found"}`).
/// - Personal token: `PRIVATE-TOKEN: <token>` or `Authorization: Bearer <token>`. A wrong
///   token → 401 `{"message":"401 Unauthorized"}`; none → 401 on POST, and 404 `{"message":
///   "404 Project Not Found"}` on GET (projects are private).
/// - `GET /projects/:id` → `{"id","path_with_namespace","default_branch","web_url",...}`;
///   unknown → 404 `{"message":"404 Project Not Found"}`.
/// - `GET /projects/:id/repository/commits/:sha` (a sha, a prefix of 8+, a branch or a tag) →
///   `{"id","short_id","title",...}`; unknown → 404 `{"message":"404 Commit Not Found"}`.
/// - `POST /projects/:id/pipeline` with `ref` (JSON body, form or query) and `variables: [{key,
///   value, variable_type}]` (JSON, or form `variables[][key]`/`variables[][value]`) → 201
///   pipeline, `source: "api"`, `status: "created"`. No ref → 400 `{"error":"ref is
///   missing"}`; unknown ref → 400 `{"message":{"base":["Reference not found"]}}`.
/// - `POST /projects/:id/trigger/pipeline` with `token`, `ref`, `variables[KEY]=value` (form,
///   query or JSON `{"variables":{"KEY":"value"}}`) → 201 pipeline, `source: "trigger"`. A
///   wrong token → 404 `{"message":"404 Not Found"}`; missing params → 400 `{"error":"token is
///   missing"}` / `"ref is missing"`; unknown ref → 400 `{"message":{"base":["Reference not
///   found"]}}`; variables not strings → 400 `{"message":"variables needs to be a map of
///   key-valued strings"}`.
/// - `GET /projects/:id/pipelines/:pipeline_id` → the pipeline (a poll: advances its script):
///   `status` pending → running → success / failed / canceled / manual (NeedsHuman) / the
///   [`Outcome::Other`] word; `id`, `iid`, `project_id`, `sha`, `ref`, `source`, `web_url`
///   (`<url>/<path>/-/pipelines/<id>`), timestamps, `detailed_status`. Unknown → 404
///   `{"message":"404 Pipeline Not Found"}` (answered after the project check).
/// - `GET /projects/:id/pipelines` (`ref`, `sha`, `status`, `source`; newest first) and
///   `GET /projects/:id/pipelines/:pipeline_id/variables` → `[{"key","variable_type","value"}]`.
/// - Every answer carries `RateLimit-Name: throttle_authenticated_api`, `RateLimit-Limit`
///   (2000 a minute), `RateLimit-Observed`, `RateLimit-Remaining`, `RateLimit-Reset` (epoch
///   seconds) and `RateLimit-ResetTime` (HTTP date). Over the limit, or `Fault::RateLimited`:
///   429 text/plain `Retry later\n` with `Retry-After`. Other injected statuses answer
///   `{"message":"<code> <reason>"}`.
pub struct GitLab {
    server: Server,
    api: Arc<Api>,
}

struct Api {
    token: String,
    base: Mutex<String>,
    state: Mutex<State>,
}

impl GitLab {
    /// Requires `PRIVATE-TOKEN: <token>` (or `Authorization: Bearer <token>`) except on the
    /// trigger route. `url()` is `http://127.0.0.1:PORT` (the instance root; the API is under
    /// `/api/v4`).
    pub fn start(token: &str) -> GitLab {
        let state = State {
            projects: Vec::new(),
            script: Script::default(),
            pipelines: Vec::new(),
            next_id: 1001,
            limit: 2000,
            observed: 0,
            window_start: epoch_seconds(),
        };
        let api = Arc::new(Api { token: token.into(), base: Mutex::default(), state: Mutex::new(state) });
        let server = Server::start(api.clone(), "");
        *api.base.lock().unwrap() = server.url();
        GitLab { server, api }
    }

    /// Add a project (`group/project`) with its numeric id.
    pub fn add_project(&self, path: &str, id: u64) {
        self.api.state.lock().unwrap().projects.push(Project {
            id,
            path: path.into(),
            refs: BTreeMap::new(),
            default_branch: None,
            trigger_tokens: Vec::new(),
            created: jiff::Timestamp::now(),
        });
    }

    /// Add a branch; the first branch added is the project's default branch.
    pub fn add_branch(&self, path: &str, name: &str, sha: &str) {
        let mut state = self.api.state.lock().unwrap();
        let project = state.projects.iter_mut().find(|p| p.path == path).expect("project added");
        project.refs.insert(name.into(), (sha.into(), false));
        project.default_branch.get_or_insert_with(|| name.into());
    }

    /// A pipeline trigger token of the project.
    pub fn add_trigger_token(&self, path: &str, token: &str) {
        let mut state = self.api.state.lock().unwrap();
        let project = state.projects.iter_mut().find(|p| p.path == path).expect("project added");
        project.trigger_tokens.push(token.into());
    }

    /// The script of every pipeline created from now on.
    pub fn script(&self, outcome: Outcome, polls: u32) {
        self.api.state.lock().unwrap().script = Script::Polls(outcome, polls);
    }

    /// Every pipeline created so far, oldest first.
    pub fn runs(&self) -> Vec<Pipeline> {
        self.api.state.lock().unwrap().pipelines.iter().map(|r| r.pipeline.clone()).collect()
    }
}

impl Deref for GitLab {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

fn message(status: u16, text: &str) -> Response {
    Response::json(status, &json!({ "message": text }))
}

fn grape_error(status: u16, text: &str) -> Response {
    Response::json(status, &json!({ "error": text }))
}

fn route_not_found() -> Response {
    grape_error(404, "404 Not Found")
}

/// Parameters from the query, a form body and a JSON body, later sources winning (Grape merges
/// them). JSON values stay JSON; form and query values are strings.
fn params(request: &Request) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    let mut pairs = form_pairs(&request.query);
    let is_json = request.header("Content-Type").is_some_and(|t| t.starts_with("application/json"));
    if !is_json {
        pairs.extend(form_pairs(&request.text()));
    }
    // Bracketed keys: `variables[KEY]` (a hash) and `variables[][key]` (an array of hashes).
    let mut hash = serde_json::Map::new();
    let mut list: Vec<serde_json::Map<String, Value>> = Vec::new();
    for (key, value) in pairs {
        if let Some(field) = key.strip_prefix("variables[][").and_then(|k| k.strip_suffix(']')) {
            if list.last().is_none_or(|last| last.contains_key(field)) {
                list.push(serde_json::Map::new());
            }
            list.last_mut().unwrap().insert(field.into(), Value::String(value));
        } else if let Some(name) = key.strip_prefix("variables[").and_then(|k| k.strip_suffix(']')) {
            hash.insert(name.into(), Value::String(value));
        } else {
            all.insert(key, Value::String(value));
        }
    }
    if !hash.is_empty() {
        all.insert("variables".into(), Value::Object(hash));
    }
    if !list.is_empty() {
        all.insert("variables".into(), Value::Array(list.into_iter().map(Value::Object).collect()));
    }
    if is_json && let Some(Value::Object(body)) = request.json() {
        all.extend(body);
    }
    all
}

impl Handler for Api {
    fn handle(&self, request: &Request) -> Response {
        let mut state = self.state.lock().unwrap();
        let now = state.count();
        let response = if state.observed > state.limit {
            let retry = (state.window_start + 60).saturating_sub(now).max(1);
            Response::text(429, "Retry later\n").with_header("Retry-After", &retry.to_string())
        } else {
            self.route(&mut state, request)
        };
        with_rate_headers(&state, response)
    }

    fn error(&self, status: u16, retry_after: Option<u64>) -> Response {
        let mut state = self.state.lock().unwrap();
        state.count();
        let response = match retry_after {
            Some(_) => Response::text(429, "Retry later\n"),
            None => message(status, &format!("{status} {}", reason(status))),
        };
        with_rate_headers(&state, response)
    }
}

impl State {
    /// Count a request in the current one-minute window (starting a new one when due); now.
    fn count(&mut self) -> u64 {
        let now = epoch_seconds();
        if now >= self.window_start + 60 {
            self.window_start = now - (now - self.window_start) % 60;
            self.observed = 0;
        }
        self.observed += 1;
        now
    }
}

fn with_rate_headers(state: &State, response: Response) -> Response {
    let reset = state.window_start + 60;
    let reset_time = jiff::Timestamp::from_second(reset as i64)
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default();
    response
        .with_header("RateLimit-Name", "throttle_authenticated_api")
        .with_header("RateLimit-Limit", &state.limit.to_string())
        .with_header("RateLimit-Observed", &state.observed.to_string())
        .with_header("RateLimit-Remaining", &state.limit.saturating_sub(state.observed).to_string())
        .with_header("RateLimit-Reset", &reset.to_string())
        .with_header("RateLimit-ResetTime", &reset_time)
}

/// Whether the personal token is right: Some(true) right, Some(false) wrong, None absent.
fn personal_token(request: &Request, token: &str) -> Option<bool> {
    if let Some(value) = request.header("PRIVATE-TOKEN") {
        return Some(value == token);
    }
    let value = request.header("Authorization")?;
    let (scheme, sent) = value.split_once(' ').unwrap_or((value, ""));
    Some(scheme.eq_ignore_ascii_case("bearer") && sent.trim() == token)
}

impl Api {
    fn route(&self, state: &mut State, request: &Request) -> Response {
        let Some(rest) = request.path.strip_prefix(MOUNT) else { return route_not_found() };
        let segments: Vec<String> = rest.split('/').skip(1).map(|s| percent_decode(s, false)).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let ["projects", id, tail @ ..] = segments.as_slice() else { return route_not_found() };
        let method = request.method.as_str();
        let known = matches!(
            (method, tail),
            ("GET", [])
                | ("GET", ["repository", "commits", _])
                | ("POST", ["pipeline"])
                | ("POST", ["trigger", "pipeline"])
                | ("GET", ["pipelines"])
                | ("GET", ["pipelines", _])
                | ("GET", ["pipelines", _, "variables"])
        );
        if !known {
            return route_not_found();
        }
        let project = state.projects.iter().position(|p| p.id.to_string() == *id || p.path == *id);
        if tail == ["trigger", "pipeline"] {
            return self.trigger(state, request, project);
        }
        match personal_token(request, &self.token) {
            Some(false) => return message(401, "401 Unauthorized"),
            None if method != "GET" => return message(401, "401 Unauthorized"),
            None => return message(404, "404 Project Not Found"),
            Some(true) => {}
        }
        let Some(project) = project else { return message(404, "404 Project Not Found") };
        match (method, tail) {
            ("GET", []) => Response::json(200, &self.project_json(&state.projects[project])),
            ("GET", ["repository", "commits", sha]) => self.commit(&state.projects[project], sha),
            ("POST", ["pipeline"]) => self.create(state, request, project),
            ("GET", ["pipelines"]) => self.list(state, request, project),
            ("GET", ["pipelines", pipeline]) => {
                let project_id = state.projects[project].id;
                let found = state
                    .pipelines
                    .iter()
                    .position(|r| r.pipeline.project_id == project_id && r.pipeline.id.to_string() == *pipeline);
                match found {
                    Some(index) => {
                        state.pipelines[index].life.poll();
                        Response::json(200, &self.pipeline_json(state, index, true))
                    }
                    None => message(404, "404 Pipeline Not Found"),
                }
            }
            ("GET", ["pipelines", pipeline, "variables"]) => {
                let project_id = state.projects[project].id;
                match state
                    .pipelines
                    .iter()
                    .find(|r| r.pipeline.project_id == project_id && r.pipeline.id.to_string() == *pipeline)
                {
                    Some(rec) => {
                        let list: Vec<Value> = rec
                            .pipeline
                            .variables
                            .iter()
                            .map(|(k, v)| json!({ "key": k, "variable_type": "env_var", "value": v }))
                            .collect();
                        Response::json(200, &Value::Array(list))
                    }
                    None => message(404, "404 Pipeline Not Found"),
                }
            }
            _ => route_not_found(),
        }
    }

    fn base(&self) -> String {
        self.base.lock().unwrap().clone()
    }

    fn project_json(&self, project: &Project) -> Value {
        let name = project.path.rsplit('/').next().unwrap_or(&project.path);
        let namespace = project.path.rsplit_once('/').map(|(ns, _)| ns).unwrap_or("");
        json!({
            "id": project.id,
            "description": null,
            "name": name,
            "name_with_namespace": project.path.replace('/', " / "),
            "path": name,
            "path_with_namespace": project.path,
            "created_at": iso(project.created, true),
            "default_branch": project.default_branch,
            "ssh_url_to_repo": format!("git@127.0.0.1:{}.git", project.path),
            "http_url_to_repo": format!("{}/{}.git", self.base(), project.path),
            "web_url": format!("{}/{}", self.base(), project.path),
            "visibility": "private",
            "archived": false,
            "jobs_enabled": true,
            "namespace": { "id": 7, "name": namespace, "path": namespace, "kind": "group", "full_path": namespace },
        })
    }

    fn commit(&self, project: &Project, sha: &str) -> Response {
        let found =
            project.refs.get(sha).map(|(s, _)| s.clone()).or_else(|| {
                project.refs.values().map(|(s, _)| s).find(|s| sha.len() >= 8 && s.starts_with(sha)).cloned()
            });
        let Some(full) = found else { return message(404, "404 Commit Not Found") };
        let now = iso(project.created, true);
        Response::json(
            200,
            &json!({
                "id": full,
                "short_id": &full[..8.min(full.len())],
                "title": "Deployable change",
                "message": "Deployable change\n",
                "author_name": "Test", "author_email": "test@example.com", "authored_date": now,
                "committer_name": "Test", "committer_email": "test@example.com", "committed_date": now,
                "created_at": now,
                "parent_ids": [],
                "web_url": format!("{}/{}/-/commit/{full}", self.base(), project.path),
            }),
        )
    }

    fn create(&self, state: &mut State, request: &Request, project: usize) -> Response {
        let params = params(request);
        let Some(Value::String(git_ref)) = params.get("ref").cloned() else {
            return grape_error(400, "ref is missing");
        };
        let variables = match params.get("variables") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => {
                let mut pairs = Vec::new();
                for item in list {
                    let key = item.get("key").and_then(Value::as_str);
                    let value =
                        item.get("value").map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                    match (key, value) {
                        (Some(key), Some(value)) => pairs.push((key.to_string(), value)),
                        _ => return grape_error(400, "variables[key] is missing, variables[value] is missing"),
                    }
                }
                pairs
            }
            Some(_) => return grape_error(400, "variables is invalid"),
        };
        self.start_pipeline(state, project, &git_ref, variables, Source::Api)
    }

    fn trigger(&self, state: &mut State, request: &Request, project: Option<usize>) -> Response {
        if request.method != "POST" {
            return route_not_found();
        }
        let params = params(request);
        let missing: Vec<&str> = ["ref", "token"]
            .into_iter()
            .filter(|k| !matches!(params.get(*k), Some(Value::String(s)) if !s.is_empty()))
            .collect();
        if !missing.is_empty() {
            return grape_error(400, &missing.iter().map(|k| format!("{k} is missing")).collect::<Vec<_>>().join(", "));
        }
        let variables = match params.get("variables") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) if map.values().all(Value::is_string) => {
                map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()
            }
            Some(_) => return message(400, "variables needs to be a map of key-valued strings"),
        };
        let Some(project) = project else { return message(404, "404 Not Found") };
        let token = params["token"].as_str().unwrap_or_default().to_string();
        if !state.projects[project].trigger_tokens.contains(&token) {
            return message(404, "404 Not Found");
        }
        let git_ref = params["ref"].as_str().unwrap_or_default().to_string();
        self.start_pipeline(state, project, &git_ref, variables, Source::Trigger(token))
    }

    fn start_pipeline(
        &self,
        state: &mut State,
        project: usize,
        git_ref: &str,
        variables: Vec<(String, String)>,
        source: Source,
    ) -> Response {
        let name =
            git_ref.strip_prefix("refs/heads/").or_else(|| git_ref.strip_prefix("refs/tags/")).unwrap_or(git_ref);
        let Some((sha, tag)) = state.projects[project].refs.get(name).cloned() else {
            return Response::json(400, &json!({ "message": { "base": ["Reference not found"] } }));
        };
        let id = state.next_id;
        state.next_id += 1;
        let project_id = state.projects[project].id;
        let iid = state.pipelines.iter().filter(|r| r.pipeline.project_id == project_id).count() as u64 + 1;
        let pipeline = Pipeline {
            id,
            iid,
            project_id,
            project: state.projects[project].path.clone(),
            git_ref: name.into(),
            sha,
            tag,
            variables,
            source,
            created_at: jiff::Timestamp::now(),
        };
        let life = Life::new(state.script.clone());
        state.pipelines.push(Rec { pipeline, life });
        let index = state.pipelines.len() - 1;
        Response::json(201, &self.pipeline_json(state, index, false))
    }

    fn list(&self, state: &State, request: &Request, project: usize) -> Response {
        let project_id = state.projects[project].id;
        let wanted = |name: &str| request.query_param(name);
        let (git_ref, sha, status, source) = (wanted("ref"), wanted("sha"), wanted("status"), wanted("source"));
        let mut list = Vec::new();
        for index in (0..state.pipelines.len()).rev() {
            let rec = &state.pipelines[index];
            let (word, _) = status_words(&rec.life.phase(), rec.life.polls.is_empty());
            let source_word = if rec.pipeline.source == Source::Api { "api" } else { "trigger" };
            if rec.pipeline.project_id == project_id
                && git_ref.as_deref().is_none_or(|r| r == rec.pipeline.git_ref)
                && sha.as_deref().is_none_or(|s| s == rec.pipeline.sha)
                && status.as_deref().is_none_or(|s| s == word)
                && source.as_deref().is_none_or(|s| s == source_word)
            {
                let full = self.pipeline_json(state, index, true);
                let keys = [
                    "id",
                    "iid",
                    "project_id",
                    "status",
                    "source",
                    "ref",
                    "sha",
                    "name",
                    "web_url",
                    "created_at",
                    "updated_at",
                ];
                list.push(Value::Object(keys.iter().map(|k| (k.to_string(), full[*k].clone())).collect()));
            }
        }
        Response::json(200, &Value::Array(list))
    }

    /// The pipeline entity; `seen` false for the creation answer (always `created`).
    fn pipeline_json(&self, state: &State, index: usize, seen: bool) -> Value {
        let rec = &state.pipelines[index];
        let p = &rec.pipeline;
        let path = &p.project;
        let (status, finished) = if seen {
            status_words(&rec.life.phase(), rec.life.polls.is_empty())
        } else {
            ("created".to_string(), false)
        };
        let created = iso(p.created_at, true);
        let finished_at = if finished { rec.life.finished.map(|t| iso(t, true)) } else { None };
        let started_at = if seen && status != "created" && status != "pending" { Some(created.clone()) } else { None };
        let text = match status.as_str() {
            "success" => "passed",
            other => other,
        };
        json!({
            "id": p.id,
            "iid": p.iid,
            "project_id": p.project_id,
            "sha": p.sha,
            "ref": p.git_ref,
            "status": status,
            "source": if p.source == Source::Api { "api" } else { "trigger" },
            "name": null,
            "created_at": created,
            "updated_at": finished_at.clone().unwrap_or_else(|| created.clone()),
            "web_url": format!("{}/{path}/-/pipelines/{}", self.base(), p.id),
            "before_sha": "0000000000000000000000000000000000000000",
            "tag": p.tag,
            "yaml_errors": null,
            "user": { "id": 1, "username": "root", "name": "Administrator", "state": "active",
                      "web_url": format!("{}/root", self.base()) },
            "started_at": started_at,
            "finished_at": finished_at,
            "committed_at": null,
            "duration": null,
            "queued_duration": null,
            "coverage": null,
            "detailed_status": {
                "icon": format!("status_{status}"),
                "text": text,
                "label": text,
                "group": status,
                "tooltip": text,
                "has_details": true,
                "details_path": format!("/{path}/-/pipelines/{}", p.id),
                "illustration": null,
                "favicon": format!("/assets/ci_favicons/favicon_status_{status}.png"),
            },
        })
    }
}

/// GitLab's pipeline status for a phase, and whether it is finished.
fn status_words(phase: &Phase, never_read: bool) -> (String, bool) {
    let word = |w: &str, done: bool| (w.to_string(), done);
    match phase {
        Phase::Queued if never_read => word("created", false),
        Phase::Queued => word("pending", false),
        Phase::Running | Phase::Done(Outcome::Never) => word("running", false),
        Phase::Done(Outcome::Success) => word("success", true),
        Phase::Done(Outcome::Failure) => word("failed", true),
        Phase::Done(Outcome::Cancelled) => word("canceled", true),
        Phase::Done(Outcome::NeedsHuman) => word("manual", false),
        Phase::Done(Outcome::Other(w)) => {
            let done = matches!(w.as_str(), "success" | "failed" | "canceled" | "skipped");
            word(w, done)
        }
    }
}
