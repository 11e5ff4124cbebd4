//! A local emulator of the Flipper HTTP API (flipper-api gem 1.x) mounted at `/flipper/api`:
//! feature reads, the boolean and percentage-of-actors gates, a token header, faults.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::http_server::{Handler, Request, Response, Server, form_pairs, percent_decode, reason};

pub const MOUNT: &str = "/flipper/api";
const MORE_INFO: &str = "https://flippercloud.io/docs/api#error-code-reference";
const PERCENTAGE_INVALID: &str = "Percentage must be a positive number less than or equal to 100.";

/// A feature's gate values, as the Flipper adapter stores them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gates {
    pub boolean: bool,
    pub actors: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    /// None until set; `"0"` after the gate is disabled; otherwise e.g. `"5"` or `"0.5"`.
    pub percentage_of_actors: Option<String>,
    pub percentage_of_time: Option<String>,
}

impl Gates {
    /// "on", "off" or "conditional", as `Flipper::Feature#state` decides.
    pub fn state(&self) -> &'static str {
        let percent = |value: &Option<String>| value.as_deref().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        if self.boolean || percent(&self.percentage_of_time) == 100.0 {
            "on"
        } else if !self.actors.is_empty()
            || !self.groups.is_empty()
            || percent(&self.percentage_of_actors) > 0.0
            || percent(&self.percentage_of_time) > 0.0
        {
            "conditional"
        } else {
            "off"
        }
    }
}

/// The running emulator; derefs to its [`Server`] for faults and recorded requests.
///
/// What it serves (facts from the gem's `lib/flipper/api` source and specs, and `docs/api`):
/// - `GET /features` → 200 `{"features": [feature, ...]}` (sorted by key).
/// - `GET /features/{name}` → 200 feature, or 404 `{"code": 1, "message": "Feature not found.",
///   "more_info": "https://flippercloud.io/docs/api#error-code-reference"}`.
/// - `POST /features/{name}/boolean` → 200 feature, boolean gate on (creates the feature, as
///   the gem does). `DELETE` → 200 feature with every gate cleared.
/// - `POST /features/{name}/percentage_of_actors` with `percentage` (form body, JSON body as a
///   string or number, or query) → 200 feature; not a number or outside 0–100 → 422
///   `{"code": 3, "message": "Percentage must be a positive number less than or equal to 100.",
///   "more_info": ...}`. `DELETE` → 200 feature with the gate's value `"0"`.
/// - feature = `{"key", "state": "on"|"off"|"conditional", "gates": [{"key", "name", "value"}]}`
///   with gates in the gem's order: boolean (`"true"` or null), expression (null), actors
///   (name "actor", array), percentage_of_actors and percentage_of_time (strings as stored,
///   e.g. `"5"`, or null), groups (name "group", array). State is "on" when the boolean gate
///   is set or percentage_of_time is 100, "conditional" when another gate is enabled.
/// - Auth is the mounting app's: a missing or wrong token header → 401 `text/plain`
///   `Unauthorized` (default header `Authorization: Bearer <token>`, configurable).
/// - Other routes → 404 `text/plain` `Not Found`; other methods on a known route → 405.
///   Injected error statuses answer `text/plain` with the reason phrase, as a Rack app would.
pub struct Flipper {
    server: Server,
    api: Arc<Api>,
}

struct Api {
    header: String,
    expected: String,
    features: Mutex<BTreeMap<String, Gates>>,
}

impl Flipper {
    /// Requires `Authorization: Bearer <token>`.
    pub fn start(token: &str) -> Flipper {
        Flipper::start_with_header("Authorization", &format!("Bearer {token}"))
    }

    /// Requires header `name` to equal `value` exactly (e.g. `X-Flipper-Token`, `secret`).
    pub fn start_with_header(name: &str, value: &str) -> Flipper {
        let api = Arc::new(Api { header: name.into(), expected: value.into(), features: Mutex::default() });
        Flipper { server: Server::start(api.clone(), MOUNT), api }
    }

    /// Add a feature with every gate clear (state "off").
    pub fn add(&self, name: &str) {
        self.set(name, Gates::default());
    }

    /// Seed a feature's gates.
    pub fn set(&self, name: &str, gates: Gates) {
        self.api.features.lock().unwrap().insert(name.to_string(), gates);
    }

    /// A feature's gates now, if it exists.
    pub fn gates(&self, name: &str) -> Option<Gates> {
        self.api.features.lock().unwrap().get(name).cloned()
    }
}

impl Deref for Flipper {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Handler for Api {
    fn handle(&self, request: &Request) -> Response {
        if request.header(&self.header) != Some(self.expected.as_str()) {
            return Response::text(401, "Unauthorized");
        }
        let Some(route) = request.path.strip_prefix(MOUNT) else { return Response::text(404, "Not Found") };
        let method = request.method.as_str();
        if route == "/features" || route == "/features/" {
            return match method {
                "GET" => {
                    let features = self.features.lock().unwrap();
                    let list: Vec<Value> = features.iter().map(|(name, gates)| feature_json(name, gates)).collect();
                    Response::json(200, &json!({ "features": list }))
                }
                _ => Response::text(405, "Method Not Allowed"),
            };
        }
        let Some(rest) = route.strip_prefix("/features/") else { return Response::text(404, "Not Found") };
        let rest = rest.trim_end_matches('/');
        if let Some(name) = rest.strip_suffix("/boolean") {
            let name = percent_decode(name, true);
            let mut features = self.features.lock().unwrap();
            let gates = match method {
                "POST" => {
                    let gates = features.entry(name.clone()).or_default();
                    gates.boolean = true;
                    gates.clone()
                }
                // Disabling the boolean gate clears every gate (the adapter's `clear`).
                "DELETE" => {
                    features.insert(name.clone(), Gates::default());
                    Gates::default()
                }
                _ => return Response::text(405, "Method Not Allowed"),
            };
            return Response::json(200, &feature_json(&name, &gates));
        }
        if let Some(name) = rest.strip_suffix("/percentage_of_actors") {
            let name = percent_decode(name, true);
            let value = match method {
                "POST" => match percentage(request) {
                    Some(value) => value,
                    None => return flipper_error(422, 3, PERCENTAGE_INVALID),
                },
                "DELETE" => "0".to_string(),
                _ => return Response::text(405, "Method Not Allowed"),
            };
            let mut features = self.features.lock().unwrap();
            let gates = features.entry(name.clone()).or_default();
            gates.percentage_of_actors = Some(value);
            return Response::json(200, &feature_json(&name, gates));
        }
        // Names may contain slashes. Other gates (actors, groups, percentage_of_time,
        // expression) and DELETE of a whole feature are not emulated.
        let name = percent_decode(rest, true);
        match (method, self.features.lock().unwrap().get(&name)) {
            ("GET", Some(gates)) => Response::json(200, &feature_json(&name, gates)),
            ("GET", None) => flipper_error(404, 1, "Feature not found."),
            _ if rest.contains('/') => Response::text(404, "Not Found"),
            _ => Response::text(405, "Method Not Allowed"),
        }
    }

    fn error(&self, status: u16, _retry_after: Option<u64>) -> Response {
        Response::text(status, reason(status))
    }
}

fn flipper_error(status: u16, code: u32, message: &str) -> Response {
    Response::json(status, &json!({ "code": code, "message": message, "more_info": MORE_INFO }))
}

fn feature_json(name: &str, gates: &Gates) -> Value {
    json!({
        "key": name,
        "state": gates.state(),
        "gates": [
            { "key": "boolean", "name": "boolean", "value": gates.boolean.then_some("true") },
            { "key": "expression", "name": "expression", "value": null },
            { "key": "actors", "name": "actor", "value": gates.actors },
            { "key": "percentage_of_actors", "name": "percentage_of_actors", "value": gates.percentage_of_actors },
            { "key": "percentage_of_time", "name": "percentage_of_time", "value": gates.percentage_of_time },
            { "key": "groups", "name": "group", "value": gates.groups },
        ],
    })
}

/// The `percentage` parameter from a JSON body, a form body or the query, validated like the
/// gem (a decimal number, 0–100) and stored as Ruby would print it ("5", "0.5", "5.0").
fn percentage(request: &Request) -> Option<String> {
    let is_json = request.header("Content-Type").is_some_and(|t| t.starts_with("application/json"));
    let raw = if is_json {
        match request.json()?.get("percentage")? {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            _ => return None,
        }
    } else {
        let form = form_pairs(&request.text());
        let from_form = form.into_iter().find(|(k, _)| k == "percentage").map(|(_, v)| v);
        from_form.or_else(|| request.query_param("percentage"))?
    };
    let unsigned = raw.strip_prefix(['+', '-']).unwrap_or(&raw);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits(whole) || !digits(fraction) || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    if raw.contains('.') {
        let value: f64 = raw.parse().ok()?;
        let value = if value == 0.0 { 0.0 } else { value };
        (0.0..=100.0)
            .contains(&value)
            .then(|| if value.fract() == 0.0 { format!("{value:.1}") } else { value.to_string() })
    } else {
        let value: i64 = raw.parse().ok()?;
        (0..=100).contains(&value).then(|| value.to_string())
    }
}
