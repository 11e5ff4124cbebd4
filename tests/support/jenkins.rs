//! A local emulator of Jenkins's remote access API: `buildWithParameters` with basic auth (API
//! token, or password plus CSRF crumb and its session cookie), the queue item, the build, jobs
//! in folders, `?tree=` filtering.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::http_server::{Handler, Request, Response, Server, form_pairs, percent_decode, reason};

pub use super::github::{Life, Outcome, Phase, Script};

const VERSION: &str = "2.462.3";
const NO_CRUMB: &str = "No valid crumb was included in the request";

/// What becomes of a queue item once its queue reads are spent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QueueEnd {
    /// It leaves the queue as a build (`executable: {number, url}`).
    Starts,
    /// It is cancelled in the queue (`cancelled: true`, `executable: null`).
    Cancelled,
}

/// A triggered build as the emulator recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Build {
    /// The queue item id (`/queue/item/{queue_id}/`).
    pub queue_id: u64,
    /// The job's full name (`folder/deploy`).
    pub job: String,
    /// Build parameters as sent (form body or query), `delay`/`token`/crumb left out.
    pub params: Vec<(String, String)>,
    /// The build number, once the item left the queue as a build.
    pub number: Option<u64>,
    /// How many later triggers were merged into this item (answered 303).
    pub merged: usize,
}

struct Job {
    path: String,
    buildable: bool,
    /// Declared parameters; None accepts any parameter.
    declared: Option<Vec<String>>,
    next_number: u64,
}

struct Rec {
    build: Build,
    queue_polls: u32,
    queue_end: QueueEnd,
    queue_reads: Vec<Instant>,
    in_queue_since: u64,
    life: Life,
}

struct State {
    jobs: Vec<Job>,
    recs: Vec<Rec>,
    script: Script,
    queue: (u32, QueueEnd),
    next_queue_id: u64,
    merge_next: bool,
    /// Queue items are gone (Jenkins keeps one about five minutes after its build starts).
    queue_forgotten: bool,
    /// Session cookie value → crumb.
    sessions: BTreeMap<String, String>,
}

/// The running emulator; derefs to its [`Server`] for faults and recorded requests.
///
/// What it serves (facts from jenkins.io "Remote Access API" and "CSRF Protection", and the
/// core sources `ParametersDefinitionProperty`, `ParameterizedJobMixIn`, `BasicHeaderProcessor`,
/// `CrumbFilter`, `Queue`). `url()` is the root, `http://127.0.0.1:PORT` (no trailing slash);
/// jobs are `/job/NAME`, in folders `/job/a/job/b` (segments URL-encoded).
/// - Basic auth `user:api_token` ([`Jenkins::start`]) or `user:password`
///   ([`Jenkins::with_password`]). Wrong credentials → 401, `WWW-Authenticate: Basic
///   realm="Jenkins"`, HTML "Invalid password/token for user: X"; none → 403 HTML
///   "Authentication required" with `X-You-Are-Authenticated-As: anonymous` and
///   `X-Required-Permission: hudson.model.Hudson.Read`.
/// - `GET /crumbIssuer/api/json` → `{"_class":"hudson.security.csrf.DefaultCrumbIssuer",
///   "crumb":"<64 hex>","crumbRequestField":"Jenkins-Crumb"}` with `Set-Cookie:
///   JSESSIONID.<hex>=<session>; Path=/; HttpOnly`. With a password, every POST needs header
///   (or form field) `Jenkins-Crumb: <crumb>` and that cookie back, else 403 HTML "No valid
///   crumb was included in the request". API-token requests need neither.
/// - `POST /job/NAME/buildWithParameters` (params in the form body or query; `delay`, `token`
///   are not parameters) → 201, empty body, `Location: <root>/queue/item/N/`; after
///   [`Jenkins::merge_next_trigger`] → 303 with the `Location` of the existing item. `GET` →
///   405. Unknown job → 404 HTML; disabled job → 409 HTML "NAME is not buildable!".
///   `POST /job/NAME/build` behaves the same without parameters.
/// - `GET /queue/item/N/api/json` (a poll) → `_class` `hudson.model.Queue$WaitingItem` (first
///   read, `why: "In the quiet period. Expires in 4.9 sec"`), `$BuildableItem` (later reads,
///   `why: "Waiting for next available executor"`), `$BlockedItem` (NeedsHuman, `blocked:
///   true`, `why: "Waiting for approval"`, forever), then `$LeftItem` with `executable:
///   {"_class","number","url"}` and `cancelled: false`, or `cancelled: true`, `executable:
///   null`. Also `id`, `url: "queue/item/N/"`, `task {name,url}`, `params`, `actions`.
/// - `GET /job/NAME/N/api/json` (a poll) → `{"_class":"hudson.model.FreeStyleBuild",
///   "building","result","url","number","queueId","timestamp","duration",...}`; `result`
///   null while building, then SUCCESS, FAILURE, ABORTED or the [`Outcome::Other`] word
///   (UNSTABLE, NOT_BUILT). Unknown → 404.
/// - `GET /job/NAME/api/json` → the job (`name`, `fullName`, `url`, `buildable`, `color`,
///   `inQueue`, `nextBuildNumber`, `lastBuild`, `property` with parameter definitions); a
///   folder → `com.cloudbees.hudson.plugins.folder.Folder` with `jobs`; `GET /api/json` → the
///   root with `jobs`. Unknown → 404 HTML.
/// - `?tree=a,b[c,d]` keeps only those fields (and `_class`), as Jenkins does.
/// - Every answer carries `X-Jenkins`, `X-Hudson`, `X-Jenkins-Session`. Injected statuses answer
///   Jetty's HTML error page.
pub struct Jenkins {
    server: Server,
    api: Arc<Api>,
}

struct Api {
    user: String,
    secret: String,
    password: bool,
    base: Mutex<String>,
    state: Mutex<State>,
}

impl Jenkins {
    /// Basic auth with `user:api_token`; no crumb needed.
    pub fn start(user: &str, api_token: &str) -> Jenkins {
        Jenkins::launch(user, api_token, false)
    }

    /// Basic auth with `user:password`; POSTs need a crumb and its session cookie.
    pub fn with_password(user: &str, password: &str) -> Jenkins {
        Jenkins::launch(user, password, true)
    }

    fn launch(user: &str, secret: &str, password: bool) -> Jenkins {
        let state = State {
            jobs: Vec::new(),
            recs: Vec::new(),
            script: Script::default(),
            queue: (1, QueueEnd::Starts),
            next_queue_id: 41,
            merge_next: false,
            queue_forgotten: false,
            sessions: BTreeMap::new(),
        };
        let api = Arc::new(Api {
            user: user.into(),
            secret: secret.into(),
            password,
            base: Mutex::default(),
            state: Mutex::new(state),
        });
        let server = Server::start(api.clone(), "");
        *api.base.lock().unwrap() = server.url();
        Jenkins { server, api }
    }

    /// The root URL Jenkins writes into the URLs it answers with (its configured "Jenkins URL"),
    /// for a Jenkins reached through a proxy; by default its own address.
    pub fn set_root_url(&self, url: &str) {
        *self.api.base.lock().unwrap() = url.trim_end_matches('/').to_string();
    }

    /// Add a parameterized job that takes any parameter (`deploy`, `folder/deploy`).
    pub fn add_job(&self, path: &str) {
        self.push_job(path, None);
    }

    fn push_job(&self, path: &str, declared: Option<Vec<String>>) {
        let job = Job { path: path.trim_matches('/').into(), buildable: true, declared, next_number: 1 };
        self.api.state.lock().unwrap().jobs.push(job);
    }

    /// Disable a job: `buildable: false`, color `disabled`, triggers answer 409.
    pub fn disable_job(&self, path: &str) {
        let mut state = self.api.state.lock().unwrap();
        state.jobs.iter_mut().find(|j| j.path == path).expect("job added").buildable = false;
    }

    /// The build script (build-status reads) of every build triggered from now on.
    pub fn script(&self, outcome: Outcome, polls: u32) {
        self.api.state.lock().unwrap().script = Script::Polls(outcome, polls);
    }

    /// How many queue-item reads answer "waiting" before the item leaves, and how it leaves
    /// (default 1, Starts). Applies to items queued from now on.
    pub fn queue_script(&self, polls: u32, end: QueueEnd) {
        self.api.state.lock().unwrap().queue = (polls, end);
    }

    /// Every queue item so far is gone, as Jenkins drops one some minutes after its build
    /// started: reading it answers 404.
    pub fn forget_queue(&self) {
        self.api.state.lock().unwrap().queue_forgotten = true;
    }

    /// The next trigger of a job is merged into its newest queue item: 303, that item's URL.
    pub fn merge_next_trigger(&self) {
        self.api.state.lock().unwrap().merge_next = true;
    }

    /// Every queue item created so far, oldest first.
    pub fn runs(&self) -> Vec<Build> {
        self.api.state.lock().unwrap().recs.iter().map(|r| r.build.clone()).collect()
    }
}

impl Deref for Jenkins {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

/// Jetty's error page.
fn html_error(status: u16, text: &str) -> Response {
    let body = format!(
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n<title>Error {status} {text}</title>\n</head>\n<body><h2>HTTP ERROR {status} {text}</h2>\n<table>\n<tr><th>URI:</th><td>/</td></tr>\n<tr><th>STATUS:</th><td>{status}</td></tr>\n<tr><th>MESSAGE:</th><td>{text}</td></tr>\n</table>\n</body>\n</html>\n"
    );
    Response {
        status,
        headers: vec![("Content-Type".into(), "text/html;charset=utf-8".into())],
        body: body.into_bytes(),
    }
}

fn with_jenkins_headers(response: Response) -> Response {
    response
        .with_header("X-Jenkins", VERSION)
        .with_header("X-Hudson", "1.395")
        .with_header("X-Jenkins-Session", "1f3b5c7d")
}

/// Standard base64 (with or without padding); None when malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.trim().trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|&c| c == byte)? as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Jenkins's `tree` spec: `a,b[c,d],e{0,5}` → [(a, None), (b, Some("c,d")), (e, None)].
fn parse_tree(spec: &str) -> Vec<(String, Option<String>)> {
    let mut fields = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    let bytes = spec.as_bytes();
    for i in 0..=bytes.len() {
        let c = bytes.get(i).copied();
        match c {
            Some(b'[') | Some(b'{') => depth += 1,
            Some(b']') | Some(b'}') => depth -= 1,
            Some(b',') if depth == 0 => {}
            None => {}
            _ => continue,
        }
        if c.is_none() || (c == Some(b',') && depth == 0) {
            let part = spec[start..i].trim();
            start = i + 1;
            if part.is_empty() {
                continue;
            }
            let part = part.split('{').next().unwrap_or(part);
            match part.split_once('[') {
                Some((name, rest)) => fields.push((name.to_string(), Some(rest.trim_end_matches(']').to_string()))),
                None => fields.push((part.to_string(), None)),
            }
        }
    }
    fields
}

fn apply_tree(value: &Value, spec: &str) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| apply_tree(v, spec)).collect()),
        Value::Object(map) => {
            let mut kept = Map::new();
            if let Some(class) = map.get("_class") {
                kept.insert("_class".into(), class.clone());
            }
            for (name, sub) in parse_tree(spec) {
                if let Some(field) = map.get(&name) {
                    let field = match sub {
                        Some(sub) if !field.is_null() => apply_tree(field, &sub),
                        _ => field.clone(),
                    };
                    kept.insert(name, field);
                }
            }
            Value::Object(kept)
        }
        other => other.clone(),
    }
}

enum Auth {
    Token,
    Password,
}

impl Handler for Api {
    fn handle(&self, request: &Request) -> Response {
        with_jenkins_headers(self.route(request))
    }

    fn error(&self, status: u16, _retry_after: Option<u64>) -> Response {
        with_jenkins_headers(html_error(status, reason(status)))
    }
}

impl Api {
    fn base(&self) -> String {
        self.base.lock().unwrap().clone()
    }

    fn authenticate(&self, request: &Request) -> Result<Auth, Response> {
        let Some(value) = request.header("Authorization") else {
            return Err(html_error(403, "Authentication required")
                .with_header("X-You-Are-Authenticated-As", "anonymous")
                .with_header("X-You-Are-In-Group-Disabled", "JENKINS-39402: use -Dhudson.security.AccessDeniedException2.REPORT_GROUP_HEADERS=true or use /whoAmI to diagnose")
                .with_header("X-Required-Permission", "hudson.model.Hudson.Read")
                .with_header("X-Permission-Implied-By", "hudson.security.Permission.GenericRead"));
        };
        let decoded = value
            .strip_prefix("Basic ")
            .and_then(base64_decode)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())));
        let Some((user, secret)) = decoded else {
            return Err(html_error(401, "Malformed HTTP basic Authorization header")
                .with_header("WWW-Authenticate", "Basic realm=\"Jenkins\""));
        };
        if user == self.user && secret == self.secret {
            return Ok(if self.password { Auth::Password } else { Auth::Token });
        }
        Err(html_error(401, &format!("Invalid password/token for user: {user}"))
            .with_header("WWW-Authenticate", "Basic realm=\"Jenkins\""))
    }

    fn route(&self, request: &Request) -> Response {
        let auth = match self.authenticate(request) {
            Ok(auth) => auth,
            Err(refusal) => return refusal,
        };
        let mut segments: Vec<String> = request.path.split('/').skip(1).map(|s| percent_decode(s, false)).collect();
        if segments.last().is_some_and(|s| s.is_empty()) {
            segments.pop();
        }
        let mut state = self.state.lock().unwrap();
        if request.method == "POST" && matches!(auth, Auth::Password) && !self.crumb_ok(&state, request) {
            return html_error(403, NO_CRUMB);
        }
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let tree = request.query_param("tree");
        let answer = |value: Value| {
            let value = match &tree {
                Some(spec) => apply_tree(&value, spec),
                None => value,
            };
            Response::json(200, &value)
        };
        match (request.method.as_str(), segments.as_slice()) {
            ("GET", ["crumbIssuer", "api", "json"]) => return self.crumb(&mut state),
            ("GET", ["api", "json"]) => return answer(self.root_json(&state)),
            ("GET", ["queue", "item", _, "api", "json"]) if state.queue_forgotten => {
                return html_error(404, "Not Found");
            }
            ("GET", ["queue", "item", id, "api", "json"]) => {
                return match state.recs.iter().position(|r| r.build.queue_id.to_string() == *id) {
                    Some(index) => answer(self.queue_read(&mut state, index)),
                    None => html_error(404, "Not Found"),
                };
            }
            _ => {}
        }
        // /job/a/job/b/<tail>
        let mut names = Vec::new();
        let mut rest = segments.as_slice();
        while let ["job", name, tail @ ..] = rest {
            names.push(*name);
            rest = tail;
        }
        if names.is_empty() {
            return html_error(404, "Not Found");
        }
        let path = names.join("/");
        let job = state.jobs.iter().position(|j| j.path == path);
        let is_folder = job.is_none() && state.jobs.iter().any(|j| j.path.starts_with(&format!("{path}/")));
        match (request.method.as_str(), rest, job) {
            ("GET", ["api", "json"], Some(index)) => answer(self.job_json(&state, index)),
            ("GET", ["api", "json"], None) if is_folder => answer(self.folder_json(&state, &path)),
            ("POST", ["buildWithParameters"] | ["build"], Some(index)) => self.trigger(&mut state, request, index),
            (_, ["buildWithParameters"] | ["build"], Some(_)) => html_error(405, "Method Not Allowed"),
            ("GET", [number, "api", "json"], Some(_)) => {
                let found = state.recs.iter().position(|r| {
                    r.build.job == path && r.build.number.map(|n| n.to_string()).as_deref() == Some(*number)
                });
                match found {
                    Some(index) => {
                        state.recs[index].life.poll();
                        answer(self.build_json(&state, index))
                    }
                    None => html_error(404, "Not Found"),
                }
            }
            _ => html_error(404, "Not Found"),
        }
    }

    fn crumb_ok(&self, state: &State, request: &Request) -> bool {
        let sent = request
            .header("Jenkins-Crumb")
            .map(str::to_string)
            .or_else(|| form_pairs(&request.text()).into_iter().find(|(k, _)| k == "Jenkins-Crumb").map(|(_, v)| v));
        let Some(sent) = sent else { return false };
        let cookies = request.header("Cookie").unwrap_or("");
        cookies
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .any(|(name, value)| name.starts_with("JSESSIONID.") && state.sessions.get(value) == Some(&sent))
    }

    fn crumb(&self, state: &mut State) -> Response {
        let session = format!(
            "node0{:x}{}.node0",
            state.sessions.len() + 7,
            &hex(&format!("session{}", state.sessions.len()))[..12]
        );
        let crumb = hex(&format!("crumb:{session}"));
        state.sessions.insert(session.clone(), crumb.clone());
        Response::json(
            200,
            &json!({ "_class": "hudson.security.csrf.DefaultCrumbIssuer", "crumb": crumb, "crumbRequestField": "Jenkins-Crumb" }),
        )
        .with_header("Set-Cookie", &format!("JSESSIONID.5c4b3a29={session}; Path=/; HttpOnly"))
    }

    fn job_url(&self, path: &str) -> String {
        let encoded: String = path.split('/').map(|n| format!("job/{}/", encode(n))).collect();
        format!("{}/{encoded}", self.base())
    }

    fn trigger(&self, state: &mut State, request: &Request, index: usize) -> Response {
        let path = state.jobs[index].path.clone();
        if !state.jobs[index].buildable {
            return html_error(409, &format!("java.io.IOException: {path} is not buildable!"));
        }
        let base = self.base();
        if state.merge_next {
            state.merge_next = false;
            let waiting = state.recs.iter().rposition(|r| r.build.job == path && r.build.number.is_none());
            let newest = state.recs.iter().rposition(|r| r.build.job == path);
            if let Some(existing) = waiting.or(newest) {
                state.recs[existing].build.merged += 1;
                let id = state.recs[existing].build.queue_id;
                return Response { status: 303, headers: Vec::new(), body: Vec::new() }
                    .with_header("Location", &format!("{base}/queue/item/{id}/"));
            }
        }
        let mut pairs = form_pairs(&request.query);
        let is_form = request.header("Content-Type").is_none_or(|t| t.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            pairs.extend(form_pairs(&request.text()));
        }
        let declared = state.jobs[index].declared.clone();
        let params: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "delay" | "token" | "Jenkins-Crumb" | "json" | "cause"))
            .filter(|(k, _)| declared.as_ref().is_none_or(|d| d.contains(k)))
            .collect();
        let id = state.next_queue_id;
        state.next_queue_id += 1;
        let build = Build { queue_id: id, job: path, params, number: None, merged: 0 };
        let (queue_polls, queue_end) = state.queue;
        let in_queue_since = jiff::Timestamp::now().as_millisecond() as u64;
        let life = Life::new(state.script.clone());
        state.recs.push(Rec { build, queue_polls, queue_end, queue_reads: Vec::new(), in_queue_since, life });
        Response { status: 201, headers: Vec::new(), body: Vec::new() }
            .with_header("Location", &format!("{base}/queue/item/{id}/"))
    }

    fn actions(&self, rec: &Rec) -> Value {
        let parameters: Vec<Value> = rec
            .build
            .params
            .iter()
            .map(|(k, v)| json!({ "_class": "hudson.model.StringParameterValue", "name": k, "value": v }))
            .collect();
        json!([
            { "_class": "hudson.model.ParametersAction", "parameters": parameters },
            { "_class": "hudson.model.CauseAction", "causes": [{
                "_class": "hudson.model.Cause$UserIdCause",
                "shortDescription": format!("Started by user {}", self.user),
                "userId": self.user, "userName": self.user }] },
        ])
    }

    fn queue_read(&self, state: &mut State, index: usize) -> Value {
        let rec = &mut state.recs[index];
        rec.queue_reads.push(Instant::now());
        let reads = rec.queue_reads.len();
        let blocked =
            matches!(&rec.life.script, Script::Polls(Outcome::NeedsHuman, _) | Script::For(Outcome::NeedsHuman, _));
        let leaves = !blocked && (rec.build.number.is_some() || reads > rec.queue_polls as usize);
        if leaves && rec.build.number.is_none() && rec.queue_end == QueueEnd::Starts {
            let job = state.jobs.iter_mut().find(|j| j.path == state.recs[index].build.job).expect("job");
            let number = job.next_number;
            job.next_number += 1;
            state.recs[index].build.number = Some(number);
        }
        let rec = &state.recs[index];
        let params: String = rec.build.params.iter().map(|(k, v)| format!("\n{k}={v}")).collect();
        let task = json!({
            "_class": "hudson.model.FreeStyleProject",
            "name": rec.build.job.rsplit('/').next().unwrap_or(&rec.build.job),
            "url": self.job_url(&rec.build.job),
            "color": "notbuilt",
        });
        let mut item = json!({
            "actions": self.actions(rec),
            "blocked": false,
            "buildable": false,
            "id": rec.build.queue_id,
            "inQueueSince": rec.in_queue_since,
            "params": params,
            "stuck": false,
            "task": task,
            "url": format!("queue/item/{}/", rec.build.queue_id),
            "why": null,
        });
        let (class, why) = if blocked {
            item["blocked"] = json!(true);
            ("hudson.model.Queue$BlockedItem", Some("Waiting for approval"))
        } else if !leaves && reads <= 1 {
            item["timestamp"] = json!(rec.in_queue_since + 5000);
            ("hudson.model.Queue$WaitingItem", Some("In the quiet period. Expires in 4.9 sec"))
        } else if !leaves {
            item["buildable"] = json!(true);
            item["pending"] = json!(false);
            item["buildableStartMilliseconds"] = json!(rec.in_queue_since + 5000);
            ("hudson.model.Queue$BuildableItem", Some("Waiting for next available executor"))
        } else {
            let cancelled = rec.build.number.is_none();
            item["cancelled"] = json!(cancelled);
            item["executable"] = match rec.build.number {
                Some(number) => json!({
                    "_class": "hudson.model.FreeStyleBuild",
                    "number": number,
                    "url": format!("{}{number}/", self.job_url(&rec.build.job)),
                }),
                None => Value::Null,
            };
            ("hudson.model.Queue$LeftItem", None)
        };
        item["_class"] = json!(class);
        item["why"] = json!(why);
        item
    }

    fn build_json(&self, state: &State, index: usize) -> Value {
        let rec = &state.recs[index];
        let number = rec.build.number.unwrap_or(0);
        let (building, result) = match rec.life.phase() {
            Phase::Queued | Phase::Running | Phase::Done(Outcome::Never | Outcome::NeedsHuman) => (true, None),
            Phase::Done(Outcome::Success) => (false, Some("SUCCESS".to_string())),
            Phase::Done(Outcome::Failure) => (false, Some("FAILURE".to_string())),
            Phase::Done(Outcome::Cancelled) => (false, Some("ABORTED".to_string())),
            Phase::Done(Outcome::Other(word)) => (false, Some(word)),
        };
        let started = rec.in_queue_since + 5000;
        let duration = match (&rec.life.finished, building) {
            (Some(done), false) => (done.as_millisecond() as u64).saturating_sub(started),
            _ => 0,
        };
        json!({
            "_class": "hudson.model.FreeStyleBuild",
            "actions": self.actions(rec),
            "artifacts": [],
            "building": building,
            "description": null,
            "displayName": format!("#{number}"),
            "duration": duration,
            "estimatedDuration": 60000,
            "executor": if building { json!({ "_class": "hudson.model.Executor" }) } else { Value::Null },
            "fullDisplayName": format!("{} #{number}", rec.build.job.replace('/', " » ")),
            "id": number.to_string(),
            "keepLog": false,
            "number": number,
            "queueId": rec.build.queue_id,
            "result": result,
            "timestamp": started,
            "url": format!("{}{number}/", self.job_url(&rec.build.job)),
            "builtOn": "",
            "changeSet": { "_class": "hudson.scm.EmptyChangeLogSet", "items": [], "kind": null },
            "culprits": [],
        })
    }

    fn build_ref(&self, rec: &Rec) -> Value {
        match rec.build.number {
            Some(number) => json!({
                "_class": "hudson.model.FreeStyleBuild",
                "number": number,
                "url": format!("{}{number}/", self.job_url(&rec.build.job)),
            }),
            None => Value::Null,
        }
    }

    fn job_json(&self, state: &State, index: usize) -> Value {
        let job = &state.jobs[index];
        let recs: Vec<&Rec> = state.recs.iter().filter(|r| r.build.job == job.path).collect();
        let builds: Vec<Value> =
            recs.iter().rev().filter(|r| r.build.number.is_some()).map(|r| self.build_ref(r)).collect();
        let in_queue = recs.iter().any(|r| r.build.number.is_none() && r.queue_end == QueueEnd::Starts);
        let last = recs.iter().rev().find(|r| r.build.number.is_some());
        let last_done = recs.iter().rev().find(|r| {
            r.build.number.is_some()
                && matches!(r.life.phase(), Phase::Done(ref o) if !matches!(o, Outcome::Never | Outcome::NeedsHuman))
        });
        let color = if !job.buildable {
            "disabled"
        } else if builds.is_empty() {
            "notbuilt"
        } else {
            "blue"
        };
        let definitions: Vec<Value> = job
            .declared
            .iter()
            .flatten()
            .map(|name| json!({
                "_class": "hudson.model.StringParameterDefinition",
                "defaultParameterValue": { "_class": "hudson.model.StringParameterValue", "name": name, "value": "" },
                "description": "", "name": name, "type": "StringParameterDefinition",
            }))
            .collect();
        let name = job.path.rsplit('/').next().unwrap_or(&job.path);
        json!({
            "_class": "hudson.model.FreeStyleProject",
            "actions": [{}, { "_class": "hudson.model.ParametersDefinitionProperty", "parameterDefinitions": definitions.clone() }],
            "description": "",
            "displayName": name,
            "displayNameOrNull": null,
            "fullDisplayName": job.path.replace('/', " » "),
            "fullName": job.path,
            "name": name,
            "url": self.job_url(&job.path),
            "buildable": job.buildable,
            "builds": builds,
            "color": color,
            "firstBuild": recs.iter().find(|r| r.build.number.is_some()).map(|r| self.build_ref(r)).unwrap_or(Value::Null),
            "healthReport": [],
            "inQueue": in_queue,
            "keepDependencies": false,
            "lastBuild": last.map(|r| self.build_ref(r)).unwrap_or(Value::Null),
            "lastCompletedBuild": last_done.map(|r| self.build_ref(r)).unwrap_or(Value::Null),
            "nextBuildNumber": job.next_number,
            "property": [{ "_class": "hudson.model.ParametersDefinitionProperty", "parameterDefinitions": definitions }],
            "queueItem": null,
            "concurrentBuild": false,
            "disabled": !job.buildable,
            "scm": { "_class": "hudson.scm.NullSCM" },
        })
    }

    /// The direct children of `prefix` ("" for the root): jobs and folders.
    fn children(&self, state: &State, prefix: &str) -> Vec<Value> {
        let mut seen: BTreeMap<String, Value> = BTreeMap::new();
        for job in &state.jobs {
            let rest =
                if prefix.is_empty() { Some(job.path.as_str()) } else { job.path.strip_prefix(&format!("{prefix}/")) };
            let Some(rest) = rest else { continue };
            let child = rest.split('/').next().unwrap_or(rest);
            let full = if prefix.is_empty() { child.to_string() } else { format!("{prefix}/{child}") };
            let value = if rest.contains('/') {
                json!({ "_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": child, "url": self.job_url(&full) })
            } else {
                let color = if job.buildable { "blue" } else { "disabled" };
                json!({ "_class": "hudson.model.FreeStyleProject", "name": child, "url": self.job_url(&full), "color": color })
            };
            seen.entry(child.to_string()).or_insert(value);
        }
        seen.into_values().collect()
    }

    fn folder_json(&self, state: &State, path: &str) -> Value {
        let name = path.rsplit('/').next().unwrap_or(path);
        json!({
            "_class": "com.cloudbees.hudson.plugins.folder.Folder",
            "description": null,
            "displayName": name,
            "fullDisplayName": path.replace('/', " » "),
            "fullName": path,
            "name": name,
            "url": self.job_url(path),
            "jobs": self.children(state, path),
        })
    }

    fn root_json(&self, state: &State) -> Value {
        json!({
            "_class": "hudson.model.Hudson",
            "mode": "NORMAL",
            "nodeDescription": "the Jenkins controller's built-in node",
            "nodeName": "",
            "numExecutors": 2,
            "jobs": self.children(state, ""),
            "quietingDown": false,
            "url": format!("{}/", self.base()),
            "useCrumbs": true,
            "useSecurity": true,
        })
    }
}

fn hex(seed: &str) -> String {
    format!("{:x}", Sha256::digest(seed.as_bytes()))
}

/// Percent-encode a job name for a URL path segment.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
