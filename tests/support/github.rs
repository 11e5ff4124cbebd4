//! A local emulator of the GitHub REST API for Actions (api.github.com, API version
//! 2022-11-28): workflow dispatch with and without `return_run_details`, the older servers that
//! refuse that field, run listing with filters, run polling with ETags, rate-limit headers.
//!
//! It also holds what the four CI emulators share (gitlab, jenkins and buildkite re-export it):
//! a run's scripted life ([`Outcome`], [`Script`], [`Life`]) and timestamp helpers.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::http_server::{Handler, Request, Response, Server, percent_decode, reason};

// ---------------------------------------------------------------------------------------------
// Shared by the CI emulators.

/// How a triggered run ends. Each emulator maps it to its vendor's words.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Success,
    Failure,
    Cancelled,
    /// Waits for a person: GitHub `waiting`, GitLab `manual`, Buildkite `blocked`, Jenkins a
    /// queue item blocked with `why: "Waiting for approval"`. Never ends by itself.
    NeedsHuman,
    /// Runs forever.
    Never,
    /// The vendor's own final word, shown as is (e.g. GitHub `timed_out`, GitLab `skipped`,
    /// Jenkins `UNSTABLE`, Buildkite `not_run`).
    Other(String),
}

/// A run's scripted life, set by the test before the trigger.
#[derive(Clone, Debug, PartialEq)]
pub enum Script {
    /// The first `polls` status reads answer "not finished" (the first of them the vendor's
    /// queued word, later ones its running word); every read after that shows the outcome.
    /// With 0, the first read already shows the outcome.
    Polls(Outcome, u32),
    /// "Not finished" until this long after the trigger (wall clock), then the outcome.
    For(Outcome, Duration),
}

impl Default for Script {
    fn default() -> Script {
        Script::Polls(Outcome::Success, 1)
    }
}

/// Where a run is, as one status read sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Queued,
    Running,
    /// The outcome shows (for [`Outcome::Never`] this is never reached: it stays `Running`).
    Done(Outcome),
}

/// One run's script, trigger time and status reads.
#[derive(Clone, Debug)]
pub struct Life {
    pub script: Script,
    pub triggered: Instant,
    /// When each status read (poll) arrived.
    pub polls: Vec<Instant>,
    /// When the outcome was first shown.
    pub finished: Option<jiff::Timestamp>,
}

impl Life {
    pub fn new(script: Script) -> Life {
        Life { script, triggered: Instant::now(), polls: Vec::new(), finished: None }
    }

    /// Record a status read and say what it sees.
    pub fn poll(&mut self) -> Phase {
        self.polls.push(Instant::now());
        let phase = self.phase();
        if matches!(phase, Phase::Done(_)) && self.finished.is_none() {
            self.finished = Some(jiff::Timestamp::now());
        }
        phase
    }

    /// What the latest read saw (listings show this without counting as a poll).
    pub fn phase(&self) -> Phase {
        let reads = self.polls.len();
        let (outcome, done) = match &self.script {
            Script::Polls(outcome, polls) => (outcome, reads > *polls as usize),
            Script::For(outcome, duration) => (outcome, self.triggered.elapsed() >= *duration),
        };
        match (done, outcome) {
            (true, Outcome::Never) => Phase::Running,
            (true, outcome) => Phase::Done(outcome.clone()),
            (false, _) if reads <= 1 => Phase::Queued,
            (false, _) => Phase::Running,
        }
    }
}

/// The gaps between consecutive instants (e.g. poll times), to check a backoff.
pub fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// `2026-01-02T03:04:05Z` (GitHub) or, with `millis`, `2026-01-02T03:04:05.678Z` (GitLab,
/// Buildkite).
pub fn iso(ts: jiff::Timestamp, millis: bool) -> String {
    if millis {
        ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    } else {
        ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

pub fn epoch_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// GitHub.

const DOCS: &str = "https://docs.github.com/rest";
const DISPATCH_DOCS: &str = "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event";
const WORKFLOW_DOCS: &str = "https://docs.github.com/rest/actions/workflows#get-a-workflow";
const RUN_DOCS: &str = "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run";
const LIST_DOCS: &str = "https://docs.github.com/rest/actions/workflow-runs#list-workflow-runs-for-a-workflow";
const PRIMARY_DOCS: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-rate-limit";
const SECONDARY_DOCS: &str = "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";
const SECONDARY_MESSAGE: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.";
const NO_USER_AGENT: &str = "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.";
const HTML: &str = "https://github.com";

/// How the dispatch endpoint treats `return_run_details`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// github.com today: `true` → 200 with the run's details; `false` or absent → 204.
    Details,
    /// github.com before the field existed, as a server that ignores it: always 204.
    NoDetails,
    /// An older GitHub Enterprise Server (3.19 and before): the field is not in its schema, so a
    /// body with it → 422 `Invalid request.\n\n"return_run_details" is not a permitted key.`
    /// (GitHub's documented status for "Invalid request"); without it → 204.
    GhesOld,
    /// The same, but answering that refusal with 400 (what some reports describe).
    GhesOldBadRequest,
}

/// A triggered run as the emulator recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub id: u64,
    pub run_number: u64,
    /// `owner/repo`.
    pub repo: String,
    /// The workflow's file name (`deploy.yml`).
    pub workflow: String,
    /// The `ref` as sent.
    pub git_ref: String,
    /// The branch or tag name it resolved to (the run's `head_branch`).
    pub head_branch: String,
    pub head_sha: String,
    /// The `inputs` object as sent (`{}` when absent).
    pub inputs: Value,
    /// Whether the dispatch asked for `return_run_details: true`.
    pub return_run_details: bool,
    /// The `X-GitHub-Api-Version` header of the dispatch, if any.
    pub api_version: Option<String>,
    /// `created_at` (second precision, as GitHub shows it).
    pub created_at: jiff::Timestamp,
}

struct Workflow {
    id: u64,
    repo: String,
    file: String,
    state: String,
    created: jiff::Timestamp,
}

struct RunRec {
    run: Run,
    workflow_id: u64,
    life: Life,
    hidden: bool,
    listing_reads_left: usize,
}

struct State {
    mode: Mode,
    script: Script,
    workflows: Vec<Workflow>,
    /// (repo, name) → (sha, is_tag).
    refs: BTreeMap<(String, String), (String, bool)>,
    default_branch: BTreeMap<String, String>,
    runs: Vec<RunRec>,
    hide_new: bool,
    listing_delay: usize,
    next_run_id: u64,
    limit: u64,
    used: u64,
    reset: u64,
    primary_status: u16,
    secondary_status: u16,
}

/// The running emulator; derefs to its [`Server`] for faults and recorded requests.
///
/// What it serves (facts from GitHub's REST docs for API version 2022-11-28 and the official
/// OpenAPI description, npm `@octokit/openapi` 23.0.2: "Create a workflow dispatch event",
/// "Get a workflow", "List workflow runs for a workflow", "Get a workflow run", "Get a
/// repository", "Get a commit"; "Rate limits for the REST API"; "Troubleshooting the REST API";
/// "Best practices" on conditional requests). Paths may carry GHES's `/api/v3` prefix.
/// - Every request needs a `User-Agent` (else 403 text/plain "Request forbidden by
///   administrative rules...") and `Authorization: Bearer <token>` (or `token <token>`). A
///   wrong token → 401 `{"message":"Bad credentials","documentation_url":...,"status":"401"}`;
///   no token → 404 Not Found (GitHub hides private repositories from anonymous callers).
/// - Errors are `{"message","documentation_url","status"}` with `status` a string ("404").
/// - `POST /repos/{o}/{r}/actions/workflows/{file or id}/dispatches` `{"ref","inputs",
///   "return_run_details"}` → see [`Mode`]; 200 body `{"workflow_run_id","run_url",
///   "html_url"}`. Bad JSON → 400 "Problems parsing JSON"; not an object → 400 "Body should be
///   a JSON object"; unknown key → 422 `Invalid request.\n\n"k" is not a permitted key.`; no
///   ref → 422 `Invalid request.\n\n"ref" wasn't supplied.`; wrong types → 422 `Invalid
///   request.\n\nFor 'properties/inputs', 5 is not an object.` (likewise `a string`, `a
///   boolean`); unknown ref → 422 "No ref found for: X"; disabled workflow → 422 "Cannot
///   trigger a 'workflow_dispatch' on a disabled workflow"; unknown repo or workflow → 404.
/// - `GET .../workflows/{file or id}` → the workflow (`id`, `name`, `path`, `state`, ...).
/// - `GET .../workflows/{id}/runs` and `GET /repos/{o}/{r}/actions/runs` → `{"total_count",
///   "workflow_runs"}` newest first, filtered by `event`, `branch`, `status` (a status or a
///   conclusion), `head_sha`, `created` (`>=T`, `>T`, `<=T`, `<T`, `A..B`, or a date; T is
///   ISO 8601, compared at second precision; an unparseable value matches nothing), with
///   `per_page` (30, max 100) and `page`. Runs hidden by [`GitHub::hide_new_runs`] or still
///   within [`GitHub::listing_delay`] are left out.
/// - `GET /repos/{o}/{r}/actions/runs/{id}` → the run: counts as a poll and advances its
///   script. `status` queued → in_progress → completed (`conclusion` success, failure,
///   cancelled or the [`Outcome::Other`] word), or `waiting` for [`Outcome::NeedsHuman`].
/// - `GET /repos/{o}/{r}` → `{"full_name","default_branch","permissions":{"push":true},...}`;
///   `GET /repos/{o}/{r}/commits/{ref}` → `{"sha",...}` or 422 "No commit found for SHA: X".
/// - GETs answering 200 carry `ETag: W/"<sha256 of the body>"`; `If-None-Match` with it →
///   304, no body, not counted against the rate limit.
/// - Every answer carries `x-ratelimit-limit` (5000), `-remaining`, `-used`, `-reset` (epoch
///   seconds, an hour after start) and `-resource: core`, and `x-github-api-version-selected`.
///   Once `remaining` is 0: 403 (or 429, [`GitHub::primary_limit_status`]) "API rate limit
///   exceeded for user ID 1...". `Fault::RateLimited` → 429 (or 403,
///   [`GitHub::secondary_limit_status`]) "You have exceeded a secondary rate limit..." with
///   `Retry-After`.
pub struct GitHub {
    server: Server,
    api: Arc<Api>,
}

struct Api {
    token: String,
    base: Mutex<String>,
    state: Mutex<State>,
}

impl GitHub {
    /// Requires `Authorization: Bearer <token>` (or `token <token>`).
    pub fn start(token: &str) -> GitHub {
        let state = State {
            mode: Mode::Details,
            script: Script::default(),
            workflows: Vec::new(),
            refs: BTreeMap::new(),
            default_branch: BTreeMap::new(),
            runs: Vec::new(),
            hide_new: false,
            listing_delay: 0,
            next_run_id: 9_000_000_001,
            limit: 5000,
            used: 0,
            reset: epoch_seconds() + 3600,
            primary_status: 403,
            secondary_status: 429,
        };
        let api = Arc::new(Api { token: token.into(), base: Mutex::default(), state: Mutex::new(state) });
        let server = Server::start(api.clone(), "");
        *api.base.lock().unwrap() = server.url();
        GitHub { server, api }
    }

    /// Add a dispatchable, active workflow (e.g. `("acme/app", "deploy.yml")`); its numeric id.
    pub fn add_workflow(&self, repo: &str, file: &str) -> u64 {
        let mut state = self.api.state.lock().unwrap();
        let id = 161_335 + state.workflows.len() as u64;
        state.workflows.push(Workflow {
            id,
            repo: repo.into(),
            file: file.into(),
            state: "active".into(),
            created: jiff::Timestamp::now(),
        });
        id
    }

    /// Set a workflow's `state` (`active`, `disabled_manually`, ...); only `active` dispatches.
    pub fn set_workflow_state(&self, repo: &str, file: &str, value: &str) {
        let mut state = self.api.state.lock().unwrap();
        let workflow = state.workflows.iter_mut().find(|w| w.repo == repo && w.file == file).expect("workflow added");
        workflow.state = value.into();
    }

    /// Add a branch; the first branch added to a repository is its default branch.
    pub fn add_branch(&self, repo: &str, name: &str, sha: &str) {
        let mut state = self.api.state.lock().unwrap();
        state.refs.insert((repo.into(), name.into()), (sha.into(), false));
        state.default_branch.entry(repo.into()).or_insert_with(|| name.into());
    }

    pub fn set_mode(&self, mode: Mode) {
        self.api.state.lock().unwrap().mode = mode;
    }

    /// The script of every run triggered from now on.
    pub fn script(&self, outcome: Outcome, polls: u32) {
        self.api.state.lock().unwrap().script = Script::Polls(outcome, polls);
    }

    /// Every run triggered so far ends with `outcome` at its next status read.
    pub fn finish_runs(&self, outcome: Outcome) {
        for run in &mut self.api.state.lock().unwrap().runs {
            run.life.script = Script::Polls(outcome.clone(), 0);
        }
    }

    /// Runs triggered from now on never show up in run listings (they still answer by id).
    pub fn hide_new_runs(&self) {
        self.api.state.lock().unwrap().hide_new = true;
    }

    /// Every run triggered so far, oldest first.
    pub fn runs(&self) -> Vec<Run> {
        self.api.state.lock().unwrap().runs.iter().map(|r| r.run.clone()).collect()
    }

    /// When each of those reads arrived.
    pub fn poll_times(&self, run: u64) -> Vec<Instant> {
        let state = self.api.state.lock().unwrap();
        state.runs.iter().find(|r| r.run.id == run).map(|r| r.life.polls.clone()).unwrap_or_default()
    }
}

impl Deref for GitHub {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

fn gh_error(status: u16, message: &str, docs: &str) -> Response {
    Response::json(status, &json!({ "message": message, "documentation_url": docs, "status": status.to_string() }))
}

fn invalid(message: &str) -> Response {
    gh_error(422, &format!("Invalid request.\n\n{message}"), DISPATCH_DOCS)
}

fn not_found(docs: &str) -> Response {
    gh_error(404, "Not Found", docs)
}

/// `W/"..."` and `"..."` compare equal (If-None-Match uses the weak comparison).
fn etag_matches(header: &str, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").trim_matches('"').to_string();
    header.split(',').any(|candidate| candidate.trim() == "*" || strip(candidate) == strip(etag))
}

impl Handler for Api {
    fn handle(&self, request: &Request) -> Response {
        let api_version = request.header("X-GitHub-Api-Version").unwrap_or("2022-11-28").to_string();
        if request.header("User-Agent").is_none_or(|ua| ua.trim().is_empty()) {
            return Response::text(403, NO_USER_AGENT);
        }
        let mut state = self.state.lock().unwrap();
        let response = if state.used >= state.limit {
            let status = state.primary_status;
            gh_error(
                status,
                "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000 and timestamp 2026-01-01 00:00:00 UTC.",
                PRIMARY_DOCS,
            )
        } else {
            let response = self.route(&mut state, request);
            if response.status != 304 {
                state.used += 1;
            }
            response
        };
        let remaining = state.limit.saturating_sub(state.used);
        response
            .with_header("x-ratelimit-limit", &state.limit.to_string())
            .with_header("x-ratelimit-remaining", &remaining.to_string())
            .with_header("x-ratelimit-used", &state.used.to_string())
            .with_header("x-ratelimit-reset", &state.reset.to_string())
            .with_header("x-ratelimit-resource", "core")
            .with_header("x-github-api-version-selected", &api_version)
    }

    fn error(&self, status: u16, retry_after: Option<u64>) -> Response {
        let state = self.state.lock().unwrap();
        let response = match retry_after {
            Some(_) => gh_error(state.secondary_status, SECONDARY_MESSAGE, SECONDARY_DOCS),
            None => gh_error(status, reason(status), DOCS),
        };
        let remaining = state.limit.saturating_sub(state.used);
        response
            .with_header("x-ratelimit-limit", &state.limit.to_string())
            .with_header("x-ratelimit-remaining", &remaining.to_string())
            .with_header("x-ratelimit-used", &state.used.to_string())
            .with_header("x-ratelimit-reset", &state.reset.to_string())
            .with_header("x-ratelimit-resource", "core")
    }
}

impl Api {
    fn route(&self, state: &mut State, request: &Request) -> Response {
        let path = request.path.strip_prefix("/api/v3").unwrap_or(&request.path);
        let segments: Vec<String> = path.split('/').skip(1).map(|s| percent_decode(s, false)).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        if segments.first() != Some(&"repos") || segments.len() < 3 {
            return self.authorized(request).err().unwrap_or_else(|| not_found(DOCS));
        }
        if let Err(refusal) = self.authorized(request) {
            return refusal;
        }
        let repo = format!("{}/{}", segments[1], segments[2]);
        if !state.default_branch.contains_key(&repo) && !state.workflows.iter().any(|w| w.repo == repo) {
            return not_found(DOCS);
        }
        let method = request.method.as_str();
        let response = match (method, &segments[3..]) {
            ("GET", []) => Some(self.repository(state, &repo)),
            ("GET", ["commits", git_ref]) => Some(self.commit(state, &repo, git_ref)),
            ("GET", ["actions", "workflows", workflow]) => Some(match find_workflow(state, &repo, workflow) {
                Some(index) => Response::json(200, &self.workflow_json(&state.workflows[index])),
                None => not_found(WORKFLOW_DOCS),
            }),
            ("POST", ["actions", "workflows", workflow, "dispatches"]) => {
                Some(self.dispatch(state, request, &repo, workflow))
            }
            ("GET", ["actions", "workflows", workflow, "runs"]) => Some(match find_workflow(state, &repo, workflow) {
                Some(index) => {
                    let id = state.workflows[index].id;
                    self.list(state, request, &repo, Some(id))
                }
                None => not_found(LIST_DOCS),
            }),
            ("GET", ["actions", "runs"]) => Some(self.list(state, request, &repo, None)),
            ("GET", ["actions", "runs", id]) => Some(self.get_run(state, &repo, id)),
            _ => None,
        };
        let response = response.unwrap_or_else(|| not_found(DOCS));
        if method == "GET" && response.status == 200 {
            let etag = format!("W/\"{:x}\"", Sha256::digest(&response.body));
            if request.header("If-None-Match").is_some_and(|h| etag_matches(h, &etag)) {
                return Response { status: 304, headers: Vec::new(), body: Vec::new() }.with_header("ETag", &etag);
            }
            return response.with_header("ETag", &etag);
        }
        response
    }

    fn authorized(&self, request: &Request) -> Result<(), Response> {
        let Some(value) = request.header("Authorization") else { return Err(not_found(DOCS)) };
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        let scheme_ok = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token");
        if scheme_ok && token.trim() == self.token { Ok(()) } else { Err(gh_error(401, "Bad credentials", DOCS)) }
    }

    fn base(&self) -> String {
        self.base.lock().unwrap().clone()
    }

    fn repository(&self, state: &State, repo: &str) -> Response {
        let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
        let default = state.default_branch.get(repo).cloned().unwrap_or_else(|| "main".into());
        Response::json(
            200,
            &json!({
                "id": 1296269,
                "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
                "name": name,
                "full_name": repo,
                "owner": { "login": owner, "id": 1, "type": "Organization" },
                "private": true,
                "html_url": format!("{HTML}/{repo}"),
                "url": format!("{}/repos/{repo}", self.base()),
                "default_branch": default,
                "archived": false,
                "disabled": false,
                "visibility": "private",
                "permissions": { "admin": false, "maintain": false, "push": true, "triage": true, "pull": true },
            }),
        )
    }

    fn commit(&self, state: &State, repo: &str, git_ref: &str) -> Response {
        let by_name = state.refs.get(&(repo.to_string(), git_ref.to_string())).map(|(sha, _)| sha.clone());
        let by_sha =
            state.refs.iter().find(|((r, _), (sha, _))| r == repo && sha.starts_with(git_ref) && git_ref.len() >= 7);
        let Some(sha) = by_name.or_else(|| by_sha.map(|(_, (sha, _))| sha.clone())) else {
            return gh_error(
                422,
                &format!("No commit found for SHA: {git_ref}"),
                "https://docs.github.com/rest/commits/commits#get-a-commit",
            );
        };
        Response::json(
            200,
            &json!({
                "sha": sha,
                "node_id": "C_kwDOAAAAAQ",
                "url": format!("{}/repos/{repo}/commits/{sha}", self.base()),
                "html_url": format!("{HTML}/{repo}/commit/{sha}"),
                "commit": { "message": "Deployable change", "author": { "name": "Mona", "email": "mona@example.com" } },
                "parents": [],
            }),
        )
    }

    fn workflow_json(&self, workflow: &Workflow) -> Value {
        let name = workflow.file.rsplit_once('.').map(|(stem, _)| stem).unwrap_or(&workflow.file);
        json!({
            "id": workflow.id,
            "node_id": format!("W_kwDO{}", workflow.id),
            "name": name,
            "path": format!(".github/workflows/{}", workflow.file),
            "state": workflow.state,
            "created_at": iso(workflow.created, false),
            "updated_at": iso(workflow.created, false),
            "url": format!("{}/repos/{}/actions/workflows/{}", self.base(), workflow.repo, workflow.id),
            "html_url": format!("{HTML}/{}/blob/main/.github/workflows/{}", workflow.repo, workflow.file),
            "badge_url": format!("{HTML}/{}/workflows/{name}/badge.svg", workflow.repo),
        })
    }

    fn dispatch(&self, state: &mut State, request: &Request, repo: &str, workflow: &str) -> Response {
        let Some(index) = find_workflow(state, repo, workflow) else { return not_found(DISPATCH_DOCS) };
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return gh_error(400, "Problems parsing JSON", DISPATCH_DOCS);
        };
        let Some(body) = body.as_object() else { return gh_error(400, "Body should be a JSON object", DISPATCH_DOCS) };
        let knows_details = matches!(state.mode, Mode::Details | Mode::NoDetails);
        for key in body.keys() {
            let permitted = key == "ref" || key == "inputs" || (key == "return_run_details" && knows_details);
            if !permitted {
                let mut refusal = invalid(&format!("\"{key}\" is not a permitted key."));
                if state.mode == Mode::GhesOldBadRequest {
                    refusal =
                        gh_error(400, &format!("Invalid request.\n\n\"{key}\" is not a permitted key."), DISPATCH_DOCS);
                }
                return refusal;
            }
        }
        let git_ref = match body.get("ref") {
            None => return invalid("\"ref\" wasn't supplied."),
            Some(Value::String(git_ref)) => git_ref.clone(),
            Some(other) => return invalid(&format!("For 'properties/ref', {other} is not a string.")),
        };
        let inputs = match body.get("inputs") {
            None | Some(Value::Null) => json!({}),
            Some(inputs @ Value::Object(_)) => inputs.clone(),
            Some(other) => return invalid(&format!("For 'properties/inputs', {other} is not an object.")),
        };
        let details = match body.get("return_run_details") {
            None => false,
            Some(Value::Bool(details)) => *details,
            Some(other) => return invalid(&format!("For 'properties/return_run_details', {other} is not a boolean.")),
        };
        if state.workflows[index].state != "active" {
            return gh_error(422, "Cannot trigger a 'workflow_dispatch' on a disabled workflow", DISPATCH_DOCS);
        }
        let name =
            git_ref.strip_prefix("refs/heads/").or_else(|| git_ref.strip_prefix("refs/tags/")).unwrap_or(&git_ref);
        let Some((sha, _)) = state.refs.get(&(repo.to_string(), name.to_string())).cloned() else {
            return gh_error(422, &format!("No ref found for: {git_ref}"), DISPATCH_DOCS);
        };
        let id = state.next_run_id;
        state.next_run_id += 7;
        let workflow_id = state.workflows[index].id;
        let run_number = state.runs.iter().filter(|r| r.workflow_id == workflow_id).count() as u64 + 1;
        let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap();
        let run = Run {
            id,
            run_number,
            repo: repo.into(),
            workflow: state.workflows[index].file.clone(),
            git_ref: git_ref.clone(),
            head_branch: name.into(),
            head_sha: sha,
            inputs,
            return_run_details: details,
            api_version: request.header("X-GitHub-Api-Version").map(str::to_string),
            created_at: now,
        };
        let (hidden, listing_reads_left) = (state.hide_new, state.listing_delay);
        state.runs.push(RunRec { run, workflow_id, life: Life::new(state.script.clone()), hidden, listing_reads_left });
        if details && state.mode == Mode::Details {
            return Response::json(
                200,
                &json!({
                    "workflow_run_id": id,
                    "run_url": format!("{}/repos/{repo}/actions/runs/{id}", self.base()),
                    "html_url": format!("{HTML}/{repo}/actions/runs/{id}"),
                }),
            );
        }
        Response { status: 204, headers: Vec::new(), body: Vec::new() }
    }

    fn list(&self, state: &mut State, request: &Request, repo: &str, workflow: Option<u64>) -> Response {
        let event = request.query_param("event");
        let branch = request.query_param("branch");
        let status = request.query_param("status");
        let head_sha = request.query_param("head_sha");
        let created = request.query_param("created").map(|c| created_range(&c));
        let per_page =
            request.query_param("per_page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(30).clamp(1, 100);
        let page = request.query_param("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).max(1);
        let mut shown = Vec::new();
        for index in (0..state.runs.len()).rev() {
            let rec = &state.runs[index];
            if rec.run.repo != repo || workflow.is_some_and(|w| w != rec.workflow_id) || rec.hidden {
                continue;
            }
            let phase = rec.life.phase();
            let (run_status, conclusion) = words(&phase);
            let keep = event.as_deref().is_none_or(|e| e == "workflow_dispatch")
                && branch.as_deref().is_none_or(|b| b == rec.run.head_branch)
                && head_sha.as_deref().is_none_or(|s| s == rec.run.head_sha)
                && status.as_deref().is_none_or(|s| s == run_status || Some(s) == conclusion.as_deref())
                && created.as_ref().is_none_or(|range| range.as_ref().is_some_and(|r| r.contains(rec.run.created_at)));
            if !keep {
                continue;
            }
            if rec.listing_reads_left > 0 {
                state.runs[index].listing_reads_left -= 1;
                continue;
            }
            shown.push(index);
        }
        let total = shown.len();
        let page_runs: Vec<Value> =
            shown.iter().skip((page - 1) * per_page).take(per_page).map(|&i| self.run_json(state, i)).collect();
        Response::json(200, &json!({ "total_count": total, "workflow_runs": page_runs }))
    }

    fn get_run(&self, state: &mut State, repo: &str, id: &str) -> Response {
        let Some(index) = state.runs.iter().position(|r| r.run.id.to_string() == id && r.run.repo == repo) else {
            return not_found(RUN_DOCS);
        };
        state.runs[index].life.poll();
        Response::json(200, &self.run_json(state, index))
    }

    fn run_json(&self, state: &State, index: usize) -> Value {
        let rec = &state.runs[index];
        let run = &rec.run;
        let base = self.base();
        let repo = &run.repo;
        let (status, conclusion) = words(&rec.life.phase());
        let name = run.workflow.rsplit_once('.').map(|(stem, _)| stem).unwrap_or(&run.workflow);
        let created = iso(run.created_at, false);
        let updated = rec.life.finished.map(|t| iso(t, false)).unwrap_or_else(|| created.clone());
        let actor = json!({
            "login": "octocat", "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "User", "site_admin": false,
            "url": format!("{base}/users/octocat"), "html_url": format!("{HTML}/octocat"),
        });
        let (owner, repo_name) = repo.split_once('/').unwrap_or((repo, ""));
        let repository = json!({
            "id": 1296269, "name": repo_name, "full_name": repo, "private": true,
            "owner": { "login": owner, "id": 1 }, "html_url": format!("{HTML}/{repo}"),
            "url": format!("{base}/repos/{repo}"),
        });
        json!({
            "id": run.id,
            "name": name,
            "node_id": format!("WFR_kwLO{}", run.id),
            "check_suite_id": run.id + 1,
            "check_suite_node_id": format!("CS_kwDO{}", run.id + 1),
            "head_branch": run.head_branch,
            "head_sha": run.head_sha,
            "path": format!(".github/workflows/{}@{}", run.workflow, run.head_branch),
            "display_title": name,
            "run_number": run.run_number,
            "event": "workflow_dispatch",
            "status": status,
            "conclusion": conclusion,
            "workflow_id": rec.workflow_id,
            "url": format!("{base}/repos/{repo}/actions/runs/{}", run.id),
            "html_url": format!("{HTML}/{repo}/actions/runs/{}", run.id),
            "pull_requests": [],
            "created_at": created,
            "updated_at": updated,
            "actor": actor,
            "triggering_actor": actor,
            "run_attempt": 1,
            "referenced_workflows": [],
            "run_started_at": created,
            "jobs_url": format!("{base}/repos/{repo}/actions/runs/{}/jobs", run.id),
            "logs_url": format!("{base}/repos/{repo}/actions/runs/{}/logs", run.id),
            "check_suite_url": format!("{base}/repos/{repo}/check-suites/{}", run.id + 1),
            "artifacts_url": format!("{base}/repos/{repo}/actions/runs/{}/artifacts", run.id),
            "cancel_url": format!("{base}/repos/{repo}/actions/runs/{}/cancel", run.id),
            "rerun_url": format!("{base}/repos/{repo}/actions/runs/{}/rerun", run.id),
            "previous_attempt_url": null,
            "workflow_url": format!("{base}/repos/{repo}/actions/workflows/{}", rec.workflow_id),
            "head_commit": { "id": run.head_sha, "tree_id": run.head_sha, "message": "Deployable change",
                             "timestamp": created, "author": { "name": "Mona", "email": "mona@example.com" },
                             "committer": { "name": "Mona", "email": "mona@example.com" } },
            "repository": repository,
            "head_repository": repository,
        })
    }
}

fn find_workflow(state: &State, repo: &str, key: &str) -> Option<usize> {
    state.workflows.iter().position(|w| w.repo == repo && (w.file == key || w.id.to_string() == key))
}

/// GitHub's (status, conclusion) for a phase.
fn words(phase: &Phase) -> (String, Option<String>) {
    let done = |c: &str| ("completed".to_string(), Some(c.to_string()));
    match phase {
        Phase::Queued => ("queued".into(), None),
        Phase::Running => ("in_progress".into(), None),
        Phase::Done(Outcome::Success) => done("success"),
        Phase::Done(Outcome::Failure) => done("failure"),
        Phase::Done(Outcome::Cancelled) => done("cancelled"),
        Phase::Done(Outcome::NeedsHuman) => ("waiting".into(), None),
        Phase::Done(Outcome::Never) => ("in_progress".into(), None),
        Phase::Done(Outcome::Other(word)) => match word.as_str() {
            "queued" | "in_progress" | "waiting" | "requested" | "pending" => (word.clone(), None),
            _ => done(word),
        },
    }
}

/// A `created` filter: a half-open or closed range of instants (second precision).
#[derive(Debug)]
struct Range {
    from: Option<(jiff::Timestamp, bool)>,
    to: Option<(jiff::Timestamp, bool)>,
}

impl Range {
    fn contains(&self, t: jiff::Timestamp) -> bool {
        let after = self.from.is_none_or(|(from, inclusive)| if inclusive { t >= from } else { t > from });
        let before = self.to.is_none_or(|(to, inclusive)| if inclusive { t <= to } else { t < to });
        after && before
    }
}

/// Parse GitHub's date qualifier; None when it does not parse (then nothing matches).
fn created_range(text: &str) -> Option<Range> {
    let text = text.trim();
    let instant = |s: &str| -> Option<(jiff::Timestamp, Option<jiff::Timestamp>)> {
        if let Ok(t) = s.parse::<jiff::Timestamp>() {
            return Some((t, None));
        }
        let date: jiff::civil::Date = s.parse().ok()?;
        let start = date.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok()?.timestamp();
        Some((start, Some(start + jiff::SignedDuration::from_secs(86_399))))
    };
    if let Some(rest) = text.strip_prefix(">=") {
        return Some(Range { from: Some((instant(rest)?.0, true)), to: None });
    }
    if let Some(rest) = text.strip_prefix("<=") {
        let (start, end) = instant(rest)?;
        return Some(Range { from: None, to: Some((end.unwrap_or(start), true)) });
    }
    if let Some(rest) = text.strip_prefix('>') {
        let (start, end) = instant(rest)?;
        return Some(Range { from: Some((end.unwrap_or(start), false)), to: None });
    }
    if let Some(rest) = text.strip_prefix('<') {
        return Some(Range { from: None, to: Some((instant(rest)?.0, false)) });
    }
    if let Some((a, b)) = text.split_once("..") {
        let from = if a == "*" { None } else { Some((instant(a)?.0, true)) };
        let to = if b == "*" {
            None
        } else {
            let (start, end) = instant(b)?;
            Some((end.unwrap_or(start), true))
        };
        return Some(Range { from, to });
    }
    let (start, end) = instant(text)?;
    Some(Range { from: Some((start, true)), to: Some((end.unwrap_or(start), true)) })
}
