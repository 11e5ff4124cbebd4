//! A local emulator of the Flipper HTTP API (flipper + flipper-api gems 1.x, as observed on
//! 1.4.2 behind WEBrick) mounted at `/flipper/api`: features, all six gates, a token header,
//! faults.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::http_server::{Handler, Request, Response, Server, form_pairs, percent_decode, reason};

pub const MOUNT: &str = "/flipper/api";
const MORE_INFO: &str = "https://flippercloud.io/docs/api#error-code-reference";
const PERCENTAGE_INVALID: &str = "Percentage must be a positive number less than or equal to 100.";

/// A feature's gate values, as the Flipper adapter stores them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gates {
    pub boolean: bool,
    /// The expression gate: a JSON object such as `{"Equal":[{"Property":["plan"]},"basic"]}`.
    pub expression: Option<Value>,
    /// Flipper ids such as `"User;42"`.
    pub actors: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    /// The exact string stored: None until set; `"0"` after the gate is disabled; otherwise
    /// e.g. `"5"`, `"2.5"`, `"33.333"` or `"5.0"`.
    pub percentage_of_actors: Option<String>,
    pub percentage_of_time: Option<String>,
}

impl Gates {
    /// The boolean gate set: on for everyone.
    pub fn on() -> Gates {
        Gates { boolean: true, ..Gates::default() }
    }

    /// Only `percentage_of_actors` set, to this stored string.
    pub fn percentage_of_actors(percentage: &str) -> Gates {
        Gates { percentage_of_actors: Some(percentage.to_string()), ..Gates::default() }
    }

    /// Only the groups gate set, to these group names.
    pub fn with_groups(names: &[&str]) -> Gates {
        Gates { groups: names.iter().map(|name| name.to_string()).collect(), ..Gates::default() }
    }

    /// "on", "off" or "conditional", as `Flipper::Feature#state` (1.x) decides: "on" when the
    /// boolean gate is set or percentage_of_time is 100; "conditional" when any other gate could
    /// enable it (an expression, actors, groups, a percentage above 0); otherwise "off".
    pub fn state(&self) -> &'static str {
        let percent = |value: &Option<String>| value.as_deref().map(ruby_number).unwrap_or(0.0);
        let expression = self.expression.as_ref().is_some_and(|e| !e.as_object().is_some_and(Map::is_empty));
        if self.boolean || percent(&self.percentage_of_time) == 100.0 {
            "on"
        } else if expression
            || !self.actors.is_empty()
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
/// What it serves, paths relative to the mount (from a real flipper-api 1.4.2 behind WEBrick,
/// and the gem's `lib/flipper/api` source where that was silent):
/// - WEBrick first: `POST` or `PUT` without `Content-Length` (or `Transfer-Encoding`) → 411
///   `text/html`, before auth or routing. A bodiless POST must send `Content-Length: 0`.
/// - Auth is the mounting app's: a missing or wrong token header → 401 `text/plain`
///   `Unauthorized` (default header `Authorization: Bearer <token>`, configurable).
/// - Parameters (Rack's): the query, overridden by a form body (Content-Type
///   `application/x-www-form-urlencoded`, or none on a POST), or by a JSON object body only
///   when Content-Type is exactly `application/json` (with `; charset=utf-8` the body is
///   ignored). A JSON body that is not an object → 500.
/// - `GET /features` → 200 `{"features": [feature, ...]}` (sorted by key). `POST /features`
///   with `name` → 200 feature, created; without → 422 code 5.
/// - `GET /features/{name}` → 200 feature, or 404 `{"code": 1, "message": "Feature not found.",
///   "more_info": "https://flippercloud.io/docs/api#error-code-reference"}`. `DELETE` → 204,
///   removed. `DELETE /features/{name}/clear` → 204, every gate cleared.
/// - Gates (`POST` enables, `DELETE` disables; either creates the feature; 200 feature):
///   - `boolean`: POST (no body) sets it **and clears every other gate**; DELETE clears all.
///   - `percentage_of_actors`, `percentage_of_time`: POST `percentage`, read as Ruby does (must
///     contain a digit; with a `.` it is `to_f`, else `to_i`, so "2.50" → "2.5", "05" → "5")
///     and stored as that number's `to_s` ("33.333", "5.0"); outside 0–100 or without a
///     digit → 422 `{"code": 3, "message": "Percentage must be a positive number less than or
///     equal to 100.", "more_info": ...}`. `percentage=0` is stored as "0" (state off).
///     DELETE stores "0".
///   - `actors`: `flipper_id` added / removed; missing → 422 code 4.
///   - `groups`: `name` added / removed; missing or empty → 422 code 5; a group not
///     registered with [`Flipper::register_group`] (unless `allow_unregistered_groups=true`)
///     → 404 `{"code": 2, "message": "Group not registered.", ...}`.
///   - `expression`: POST a JSON object body (Content-Type exactly `application/json`) with
///     one key; anything else → 500. DELETE clears it.
/// - feature = `{"key", "state": "on"|"off"|"conditional", "gates": [{"key", "name", "value"}]}`
///   with all six gates in the gem's order: boolean (`"true"` or null), expression (object or
///   null), actors (name "actor", array), percentage_of_actors and percentage_of_time (the
///   stored strings, or null), groups (name "group", array). State: see [`Gates::state`].
/// - A method a route does not support (e.g. `PUT .../boolean`, `GET .../actors`) → 500
///   `text/plain`. A path under the mount but not under `/features` → 404 `{}` (JSON); a
///   path outside the mount → 404 `text/plain` `Not Found` (the mounting app's).
/// - Names are percent-decoded (`+` is a space) and may contain slashes.
/// - Injected error statuses answer `text/plain` with the reason phrase, as a Rack app would.
pub struct Flipper {
    server: Server,
    api: Arc<Api>,
}

struct Api {
    header: String,
    expected: String,
    features: Mutex<BTreeMap<String, Gates>>,
    groups: Mutex<BTreeSet<String>>,
    /// Someone else's change, made once a feature has been read this many more times.
    pending: Mutex<Option<(String, usize, Gates)>>,
}

impl Flipper {
    /// Requires `Authorization: Bearer <token>`.
    pub fn start(token: &str) -> Flipper {
        Flipper::start_with_header("Authorization", &format!("Bearer {token}"))
    }

    /// Requires header `name` to equal `value` exactly (e.g. `X-Flipper-Token`, `secret`).
    pub fn start_with_header(name: &str, value: &str) -> Flipper {
        let api = Arc::new(Api {
            header: name.into(),
            expected: value.into(),
            features: Mutex::default(),
            groups: Mutex::default(),
            pending: Mutex::default(),
        });
        Flipper { server: Server::start(api.clone(), MOUNT), api }
    }

    /// Seed a feature's gates.
    pub fn set(&self, name: &str, gates: Gates) {
        self.api.features.lock().unwrap().insert(name.to_string(), gates);
    }

    /// A feature's gates now, if it exists.
    /// Another operator sets `name` to `gates` right after rollout has read it `reads` more
    /// times: the world moving between a preview and the write.
    pub fn change_after_reads(&self, name: &str, reads: usize, gates: Gates) {
        *self.api.pending.lock().unwrap() = Some((name.to_string(), reads, gates));
    }

    pub fn gates(&self, name: &str) -> Option<Gates> {
        self.api.features.lock().unwrap().get(name).cloned()
    }

    /// Register a group (`Flipper.register(name)` in the app), so the groups gate accepts it.
    pub fn register_group(&self, name: &str) {
        self.api.groups.lock().unwrap().insert(name.to_string());
    }
}

impl Deref for Flipper {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

/// The gate routes, `/features/{name}/{gate}`.
const GATE_ROUTES: [&str; 7] =
    ["percentage_of_time", "percentage_of_actors", "actors", "groups", "boolean", "clear", "expression"];

impl Handler for Api {
    fn handle(&self, request: &Request) -> Response {
        let method = match request.method.as_str() {
            "HEAD" => "GET",
            other => other,
        };
        // WEBrick reads the request before the app sees it.
        if matches!(method, "POST" | "PUT")
            && request.header("Content-Length").is_none()
            && request.header("Transfer-Encoding").is_none()
        {
            return length_required();
        }
        let Some(route) = request.path.strip_prefix(MOUNT) else { return Response::text(404, "Not Found") };
        if request.header(&self.header) != Some(self.expected.as_str()) {
            return Response::text(401, "Unauthorized");
        }
        let params = match Params::of(request) {
            Ok(params) => params,
            Err(response) => return response,
        };
        if route == "/features" || route == "/features/" {
            return match method {
                "GET" => {
                    let features = self.features.lock().unwrap();
                    let list: Vec<Value> = features.iter().map(|(name, gates)| feature_json(name, gates)).collect();
                    Response::json(200, &json!({ "features": list }))
                }
                "POST" => match params.get("name") {
                    Some(name) => {
                        let mut features = self.features.lock().unwrap();
                        let gates = features.entry(name.to_string()).or_default();
                        Response::json(200, &feature_json(name, gates))
                    }
                    None => flipper_error(422, 5, "Required parameter name is missing."),
                },
                _ => unsupported(),
            };
        }
        let Some(rest) = route.strip_prefix("/features/") else { return Response::json(404, &json!({})) };
        let trimmed = rest.strip_suffix('/').unwrap_or(rest);
        for gate in GATE_ROUTES {
            if let Some(name) = trimmed.strip_suffix(gate).and_then(|n| n.strip_suffix('/')) {
                return self.gate(method, gate, &percent_decode(name, true), &params, request);
            }
        }
        let name = percent_decode(rest, true);
        match method {
            "GET" => {
                let mut features = self.features.lock().unwrap();
                let answer = match features.get(&name) {
                    Some(gates) => Response::json(200, &feature_json(&name, gates)),
                    None => flipper_error(404, 1, "Feature not found."),
                };
                let mut pending = self.pending.lock().unwrap();
                if let Some((_, reads, _)) = pending.as_mut().filter(|(feature, ..)| *feature == name) {
                    *reads = reads.saturating_sub(1);
                    if *reads == 0 {
                        let (feature, _, gates) = pending.take().expect("matched above");
                        features.insert(feature, gates);
                    }
                }
                answer
            }
            "DELETE" => {
                self.features.lock().unwrap().remove(&name);
                no_content()
            }
            _ => unsupported(),
        }
    }

    fn error(&self, status: u16, _retry_after: Option<u64>) -> Response {
        Response::text(status, reason(status))
    }
}

impl Api {
    fn gate(&self, method: &str, gate: &str, name: &str, params: &Params, request: &Request) -> Response {
        if !matches!(method, "POST" | "DELETE") || (gate == "clear" && method != "DELETE") {
            return unsupported();
        }
        let enable = method == "POST";
        // Checks that come before anything is stored.
        match gate {
            "percentage_of_actors" | "percentage_of_time"
                if enable && params.get("percentage").and_then(ruby_percentage).is_none() =>
            {
                return flipper_error(422, 3, PERCENTAGE_INVALID);
            }
            "actors" if params.get("flipper_id").is_none() => {
                return flipper_error(422, 4, "Required parameter flipper_id is missing.");
            }
            "groups" => match params.get("name") {
                None | Some("") => return flipper_error(422, 5, "Required parameter name is missing."),
                Some(group) => {
                    let allowed = params.get("allow_unregistered_groups") == Some("true");
                    if !allowed && !self.groups.lock().unwrap().contains(group) {
                        return flipper_error(404, 2, "Group not registered.");
                    }
                }
            },
            "expression"
                if enable && request_json(request).as_ref().and_then(Value::as_object).is_none_or(|o| o.len() != 1) =>
            {
                return unsupported();
            }
            _ => {}
        }
        let mut features = self.features.lock().unwrap();
        let gates = features.entry(name.to_string()).or_default();
        match (gate, enable) {
            ("boolean", true) => *gates = Gates::on(),
            ("boolean", false) | ("clear", _) => *gates = Gates::default(),
            ("percentage_of_actors", true) => {
                gates.percentage_of_actors = params.get("percentage").and_then(ruby_percentage)
            }
            ("percentage_of_actors", false) => gates.percentage_of_actors = Some("0".into()),
            ("percentage_of_time", true) => {
                gates.percentage_of_time = params.get("percentage").and_then(ruby_percentage)
            }
            ("percentage_of_time", false) => gates.percentage_of_time = Some("0".into()),
            ("actors", true) => {
                gates.actors.insert(params.get("flipper_id").unwrap_or_default().to_string());
            }
            ("actors", false) => {
                gates.actors.remove(params.get("flipper_id").unwrap_or_default());
            }
            ("groups", true) => {
                gates.groups.insert(params.get("name").unwrap_or_default().to_string());
            }
            ("groups", false) => {
                gates.groups.remove(params.get("name").unwrap_or_default());
            }
            ("expression", true) => gates.expression = request_json(request),
            ("expression", false) => gates.expression = None,
            _ => unreachable!("gate routes are listed in GATE_ROUTES"),
        }
        if gate == "clear" { no_content() } else { Response::json(200, &feature_json(name, gates)) }
    }
}

/// Rack's params: the query, then the form or JSON body over it (the last value of a key wins).
struct Params(BTreeMap<String, String>);

impl Params {
    fn of(request: &Request) -> Result<Params, Response> {
        let mut params: BTreeMap<String, String> = form_pairs(&request.query).into_iter().collect();
        let content_type = request.header("Content-Type");
        if content_type == Some("application/json") {
            // flipper-api's JsonParams: an exact match only; the body's keys join the query.
            if !request.body.is_empty() {
                let Some(Value::Object(body)) = request.json() else { return Err(unsupported()) };
                for (key, value) in body {
                    let text = match value {
                        Value::String(text) => text,
                        Value::Number(number) => number.to_string(),
                        Value::Bool(flag) => flag.to_string(),
                        _ => {
                            params.remove(&key);
                            continue;
                        }
                    };
                    params.insert(key, text);
                }
            }
        } else {
            let media = content_type.map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
            let form = match media.as_deref() {
                None | Some("") => request.method == "POST",
                Some(media) => media == "application/x-www-form-urlencoded",
            };
            if form {
                params.extend(form_pairs(&request.text()));
            }
        }
        Ok(Params(params))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// The body as JSON when flipper-api would parse it (Content-Type exactly `application/json`).
fn request_json(request: &Request) -> Option<Value> {
    (request.header("Content-Type") == Some("application/json")).then(|| request.json()).flatten()
}

fn flipper_error(status: u16, code: u32, message: &str) -> Response {
    Response::json(status, &json!({ "code": code, "message": message, "more_info": MORE_INFO }))
}

/// An action's `RequestMethodNotSupported` (or another exception) surfacing from Rack.
fn unsupported() -> Response {
    Response::text(500, "Internal Server Error")
}

fn no_content() -> Response {
    Response { status: 204, headers: Vec::new(), body: Vec::new() }
}

/// WEBrick's own error page for a POST or PUT without a length.
fn length_required() -> Response {
    let body = "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.0//EN\">\n<HTML>\n  <HEAD><TITLE>Length \
                Required</TITLE></HEAD>\n  <BODY>\n    <H1>Length Required</H1>\n    WEBrick::HTTPStatus::\
                LengthRequired\n  </BODY>\n</HTML>\n";
    Response {
        status: 411,
        headers: vec![("Content-Type".into(), "text/html; charset=ISO-8859-1".into())],
        body: body.into(),
    }
}

fn feature_json(name: &str, gates: &Gates) -> Value {
    json!({
        "key": name,
        "state": gates.state(),
        "gates": [
            { "key": "boolean", "name": "boolean", "value": gates.boolean.then_some("true") },
            { "key": "expression", "name": "expression", "value": gates.expression },
            { "key": "actors", "name": "actor", "value": gates.actors },
            { "key": "percentage_of_actors", "name": "percentage_of_actors", "value": gates.percentage_of_actors },
            { "key": "percentage_of_time", "name": "percentage_of_time", "value": gates.percentage_of_time },
            { "key": "groups", "name": "group", "value": gates.groups },
        ],
    })
}

/// The stored string for a `percentage` parameter, as the 1.x action and `Types::Percentage`
/// make it: it must contain a digit; with a `.` it is read with `String#to_f`, else `#to_i`
/// (both take the longest numeric prefix); the number must be within 0–100; it is stored as
/// the number's `to_s`. None → 422.
fn ruby_percentage(raw: &str) -> Option<String> {
    if !raw.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    if raw.contains('.') {
        let value = ruby_to_f(raw);
        (0.0..=100.0).contains(&value).then(|| ruby_float_to_s(value))
    } else {
        let value = ruby_to_i(raw);
        (0..=100).contains(&value).then(|| value.to_string())
    }
}

/// `Typecast.to_number` of a stored string, as a float.
fn ruby_number(stored: &str) -> f64 {
    if stored.contains('.') { ruby_to_f(stored) } else { ruby_to_i(stored) as f64 }
}

/// Leading whitespace, a sign, and digits with single underscores between them.
fn ruby_digits(text: &str) -> (bool, String, &str) {
    let text = text.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, text) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (digits, rest) = take_digits(text);
    (negative, digits, rest)
}

fn take_digits(text: &str) -> (String, &str) {
    let bytes = text.as_bytes();
    let mut digits = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            digits.push(bytes[i] as char);
        } else if !(bytes[i] == b'_' && i > 0 && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            break;
        }
        i += 1;
    }
    (digits, &text[i..])
}

fn ruby_to_i(text: &str) -> i64 {
    let (negative, digits, _) = ruby_digits(text);
    let value = digits.bytes().fold(0i64, |n, d| n.saturating_mul(10).saturating_add(i64::from(d - b'0')));
    if negative { -value } else { value }
}

fn ruby_to_f(text: &str) -> f64 {
    let (negative, whole, rest) = ruby_digits(text);
    let mut number = if whole.is_empty() { "0".to_string() } else { whole };
    let mut rest = rest;
    if let Some(after) = rest.strip_prefix('.') {
        let (fraction, after) = take_digits(after);
        if !fraction.is_empty() {
            number.push('.');
            number.push_str(&fraction);
            rest = after;
        }
    }
    if let Some(after) = rest.strip_prefix(['e', 'E']) {
        let (sign, after) = match after.as_bytes().first() {
            Some(b'-') => ("-", &after[1..]),
            Some(b'+') => ("", &after[1..]),
            _ => ("", after),
        };
        let (exponent, _) = take_digits(after);
        if !exponent.is_empty() {
            number.push_str(&format!("e{sign}{exponent}"));
        }
    }
    let value: f64 = number.parse().unwrap_or(0.0);
    if negative { -value } else { value }
}

/// Ruby's `Float#to_s`: the shortest round-trip digits, fixed notation for a decimal exponent
/// in -4..16 (always with a fraction, "5.0"), else `d.ddde-05`.
fn ruby_float_to_s(value: f64) -> String {
    if value == 0.0 {
        return if value.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let point: i32 = exponent.parse::<i32>().unwrap_or(0) + 1;
    let sign = if value < 0.0 { "-" } else { "" };
    let length = digits.len() as i32;
    if point > 0 && point <= 16 {
        if length <= point {
            format!("{sign}{digits}{}.0", "0".repeat((point - length) as usize))
        } else {
            format!("{sign}{}.{}", &digits[..point as usize], &digits[point as usize..])
        }
    } else if point <= 0 && point > -4 {
        format!("{sign}0.{}{digits}", "0".repeat(-point as usize))
    } else {
        let fraction = if length > 1 { &digits[1..] } else { "0" };
        let exponent = point - 1;
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{}.{fraction}e{exponent_sign}{:02}", &digits[..1], exponent.abs())
    }
}
