//! A local emulator of LaunchDarkly's REST API v2 for feature flags: get a flag, change it
//! with a semantic patch (turnFlagOn, turnFlagOff, updateFallthroughVariationOrRollout), faults.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::http_server::{Handler, Request, Response, Server, percent_decode};

pub const SEMANTIC_PATCH: &str = "application/json; domain-model=launchdarkly.semanticpatch";

/// What one environment serves.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvState {
    pub on: bool,
    pub fallthrough: Fallthrough,
    pub off_variation: usize,
}

/// The default ("fallthrough") rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Fallthrough {
    Variation(usize),
    /// (variation index, weight in thousandths of a percent).
    Rollout(Vec<(usize, u64)>),
}

/// The running emulator; derefs to its [`Server`] for faults and recorded requests.
///
/// What it serves (facts from launchdarkly.com/docs/api: "Get feature flag", "Update feature
/// flag", the overview's Errors, Updates and Rate limiting sections):
/// - Every route needs `Authorization: <token>` (no `Bearer`); otherwise 401
///   `{"code": "unauthorized", "message": "Invalid account ID header", "id"}`.
/// - `GET /api/v2/flags/{projectKey}/{flagKey}[?env=a,b]` → 200 flag: `key`, `name`, `kind`,
///   `_version`, `variations: [{"_id", "value", "name"}]`, `defaults`, `_links` and
///   `environments: {envKey: {"on", "archived", "salt", "sel", "lastModified", "version",
///   "targets": [], "contextTargets": [], "rules": [], "fallthrough": {"variation": i} |
///   {"rollout": {"variations": [{"variation": i, "weight": w}]}}, "offVariation",
///   "prerequisites": [], "_site", "_environmentName", "trackEvents", "trackEventsFallthrough"}}`.
///   Weights are thousandths of a percent (5% = 5000) and sum to 100000. `env` keeps only the
///   named environments. Unknown project or flag (GET or PATCH) → 404 `{"code": "not_found",
///   "message": "Invalid resource identifier", "id"}`.
/// - `PATCH /api/v2/flags/{projectKey}/{flagKey}` with `Content-Type: application/json;
///   domain-model=launchdarkly.semanticpatch` and `{"environmentKey", "comment",
///   "instructions": [...]}` → 200 with the whole updated flag. Instructions apply all or
///   none; a change bumps `_version` and the environment's `version`. Any other content type
///   (JSON patch is not emulated), a malformed body, a missing or unknown environment, an
///   unknown instruction kind, an unknown variation id or weights not summing to 100000 → 400
///   `{"code": "invalid_request", "message", "id"}` and nothing changes.
/// - Injected 429s carry `Retry-After` (seconds) and `X-Ratelimit-Reset` (epoch milliseconds)
///   with `{"code": "rate_limited", ...}`; other injected statuses carry `{"code", "message"}`.
pub struct LaunchDarkly {
    server: Server,
    api: Arc<Api>,
}

struct Api {
    token: String,
    flags: Mutex<BTreeMap<(String, String), Flag>>,
    ids: AtomicU64,
}

struct Flag {
    key: String,
    variations: Vec<(String, Value)>,
    version: u64,
    created: u64,
    environments: BTreeMap<String, Env>,
}

struct Env {
    state: EnvState,
    version: u64,
    last_modified: u64,
}

impl LaunchDarkly {
    /// Requires `Authorization: <token>`.
    pub fn start(token: &str) -> LaunchDarkly {
        let api = Arc::new(Api { token: token.into(), flags: Mutex::default(), ids: AtomicU64::new(1) });
        LaunchDarkly { server: Server::start(api.clone(), ""), api }
    }

    /// Add a boolean flag (variation 0 = true, 1 = false) that is on and serves true in each
    /// environment, off variation false.
    pub fn add_flag(&self, project: &str, key: &str, environments: &[&str]) {
        let variations = [true, false].iter().map(|v| (self.api.next_id(), json!(v))).collect();
        let state = EnvState { on: true, fallthrough: Fallthrough::Variation(0), off_variation: 1 };
        let environments = environments
            .iter()
            .map(|e| (e.to_string(), Env { state: state.clone(), version: 1, last_modified: now_ms() }));
        let flag =
            Flag { key: key.into(), variations, version: 1, created: now_ms(), environments: environments.collect() };
        self.api.flags.lock().unwrap().insert((project.into(), key.into()), flag);
    }

    /// Seed what an environment of an existing flag serves.
    pub fn set_env(&self, project: &str, key: &str, env: &str, state: EnvState) {
        let mut flags = self.api.flags.lock().unwrap();
        let flag = flags.get_mut(&(project.into(), key.into())).expect("flag seeded with add_flag");
        flag.environments.insert(env.into(), Env { state, version: 1, last_modified: now_ms() });
    }

    /// What an environment serves now.
    pub fn env(&self, project: &str, key: &str, env: &str) -> Option<EnvState> {
        let flags = self.api.flags.lock().unwrap();
        flags.get(&(project.into(), key.into()))?.environments.get(env).map(|e| e.state.clone())
    }

    /// The `_id` of variation `index` (0 = true, 1 = false for `add_flag`).
    pub fn variation_id(&self, project: &str, key: &str, index: usize) -> String {
        let flags = self.api.flags.lock().unwrap();
        flags[&(project.into(), key.into())].variations[index].0.clone()
    }
}

impl Deref for LaunchDarkly {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Handler for Api {
    fn handle(&self, request: &Request) -> Response {
        if request.header("Authorization") != Some(self.token.as_str()) {
            return self.ld_error(401, "unauthorized", "Invalid account ID header");
        }
        let segments: Vec<String> = request.path.split('/').skip(1).map(|s| percent_decode(s, false)).collect();
        let [api, v2, flags, project, key] = segments.as_slice() else { return self.not_found() };
        if (api.as_str(), v2.as_str(), flags.as_str()) != ("api", "v2", "flags") {
            return self.not_found();
        }
        let mut all = self.flags.lock().unwrap();
        let Some(flag) = all.get_mut(&(project.clone(), key.clone())) else { return self.not_found() };
        match request.method.as_str() {
            "GET" => {
                let wanted: Option<Vec<String>> = request
                    .query
                    .split('&')
                    .filter_map(|pair| pair.strip_prefix("env="))
                    .map(|list| list.split(',').map(|e| percent_decode(e, true)).collect::<Vec<_>>())
                    .reduce(|mut a, b| {
                        a.extend(b);
                        a
                    });
                Response::json(200, &flag_json(project, flag, wanted.as_deref()))
            }
            "PATCH" => match self.patch(flag, request) {
                Ok(()) => Response::json(200, &flag_json(project, flag, None)),
                Err(message) => self.ld_error(400, "invalid_request", &message),
            },
            _ => self.ld_error(405, "method_not_allowed", "Method not allowed"),
        }
    }

    fn error(&self, status: u16, retry_after: Option<u64>) -> Response {
        match retry_after {
            Some(seconds) => self
                .ld_error(429, "rate_limited", "You've exceeded the API rate limit. Try again later.")
                .with_header("X-Ratelimit-Reset", &(now_ms() + seconds * 1000).to_string()),
            None => {
                let code = match status {
                    400 => "invalid_request",
                    401 => "unauthorized",
                    403 => "forbidden",
                    404 => "not_found",
                    409 => "conflict",
                    503 => "service_unavailable",
                    _ => "internal_server_error",
                };
                self.ld_error(status, code, "Injected error")
            }
        }
    }
}

impl Api {
    fn next_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::SeqCst);
        format!("{:08x}-0000-4000-8000-{:012x}", n >> 48, n & 0xffff_ffff_ffff)
    }

    fn ld_error(&self, status: u16, code: &str, message: &str) -> Response {
        Response::json(status, &json!({ "code": code, "message": message, "id": self.next_id() }))
    }

    fn not_found(&self) -> Response {
        self.ld_error(404, "not_found", "Invalid resource identifier")
    }

    /// Validate every instruction first, then apply them all (semantic patches never apply in part).
    fn patch(&self, flag: &mut Flag, request: &Request) -> Result<(), String> {
        let content_type = request.header("Content-Type").unwrap_or("");
        let mut parts = content_type.split(';').map(str::trim);
        let semantic = parts.next().is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
            && parts.any(|p| p.replace(' ', "").eq_ignore_ascii_case("domain-model=launchdarkly.semanticpatch"));
        if !semantic {
            return Err(format!("Unsupported patch: expected Content-Type: {SEMANTIC_PATCH}"));
        }
        let body = request.json().ok_or("Request body is not valid JSON")?;
        let body = body.as_object().ok_or("Semantic patch must be a JSON object")?;
        let instructions = body.get("instructions").and_then(Value::as_array).ok_or("instructions is required")?;
        let env_key = body.get("environmentKey").and_then(Value::as_str).ok_or("environmentKey is required")?;
        let env = flag.environments.get(env_key).ok_or_else(|| format!("Unknown environment key: {env_key}"))?;
        let mut state = env.state.clone();
        for instruction in instructions {
            match instruction.get("kind").and_then(Value::as_str) {
                Some("turnFlagOn") => state.on = true,
                Some("turnFlagOff") => state.on = false,
                Some("updateFallthroughVariationOrRollout") => {
                    state.fallthrough = fallthrough(&flag.variations, instruction)?;
                }
                Some(kind) => return Err(format!("Unknown instruction kind: {kind}")),
                None => return Err("Each instruction needs a kind".into()),
            }
        }
        if state != env.state {
            let env = flag.environments.get_mut(env_key).expect("checked above");
            env.state = state;
            env.version += 1;
            env.last_modified = now_ms();
            flag.version += 1;
        }
        Ok(())
    }
}

fn fallthrough(variations: &[(String, Value)], instruction: &Value) -> Result<Fallthrough, String> {
    let index_of = |id: &str| variations.iter().position(|(v, _)| v == id).ok_or(format!("Unknown variation ID: {id}"));
    match (instruction.get("variationId"), instruction.get("rolloutWeights")) {
        (Some(id), None) => Ok(Fallthrough::Variation(index_of(id.as_str().ok_or("variationId must be a string")?)?)),
        (None, Some(Value::Object(weights))) => {
            let mut rollout = Vec::new();
            for (id, weight) in weights {
                let weight = weight.as_u64().filter(|w| *w <= 100_000).ok_or("Weights must be integers 0-100000")?;
                rollout.push((index_of(id)?, weight));
            }
            if rollout.iter().map(|(_, w)| w).sum::<u64>() != 100_000 {
                return Err("Rollout weights must sum to 100000".into());
            }
            rollout.sort();
            Ok(Fallthrough::Rollout(rollout))
        }
        _ => Err("updateFallthroughVariationOrRollout needs either variationId or rolloutWeights".into()),
    }
}

fn flag_json(project: &str, flag: &Flag, only: Option<&[String]>) -> Value {
    let mut environments = Map::new();
    for (key, env) in &flag.environments {
        if only.is_some_and(|only| !only.contains(key)) {
            continue;
        }
        let fallthrough = match &env.state.fallthrough {
            Fallthrough::Variation(index) => json!({ "variation": index }),
            Fallthrough::Rollout(weights) => {
                let variations: Vec<Value> =
                    weights.iter().map(|(index, weight)| json!({ "variation": index, "weight": weight })).collect();
                json!({ "rollout": { "variations": variations } })
            }
        };
        environments.insert(
            key.clone(),
            json!({
                "on": env.state.on,
                "archived": false,
                "salt": format!("{}{key}", flag.key),
                "sel": "",
                "lastModified": env.last_modified,
                "version": env.version,
                "targets": [],
                "contextTargets": [],
                "rules": [],
                "fallthrough": fallthrough,
                "offVariation": env.state.off_variation,
                "prerequisites": [],
                "_site": { "href": format!("/{project}/{key}/features/{}", flag.key), "type": "text/html" },
                "_environmentName": key,
                "trackEvents": false,
                "trackEventsFallthrough": false,
            }),
        );
    }
    let variations: Vec<Value> = flag
        .variations
        .iter()
        .map(|(id, value)| json!({ "_id": id, "value": value, "name": value.to_string() }))
        .collect();
    let links = |href: String| json!({ "href": href, "type": "application/json" });
    json!({
        "name": flag.key,
        "kind": "boolean",
        "key": flag.key,
        "_version": flag.version,
        "creationDate": flag.created,
        "variations": variations,
        "temporary": false,
        "tags": [],
        "archived": false,
        "deprecated": false,
        "defaults": { "onVariation": 0, "offVariation": 1 },
        "_links": {
            "parent": links(format!("/api/v2/flags/{project}")),
            "self": links(format!("/api/v2/flags/{project}/{}", flag.key)),
        },
        "environments": environments,
    })
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
