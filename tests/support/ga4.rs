//! A local emulator of Google Analytics 4's Data API v1beta (`:runReport`, `:runRealtimeReport`)
//! and Google's OAuth token endpoint: service-account JWTs, bearer tokens, validation, quotas.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::http_server::{Handler, Request, Response, Server, form_pairs, percent_decode};

pub const PROPERTY: &str = "419143770";
pub const CLIENT_EMAIL: &str = "rollout-gates@va-gov-analytics.iam.gserviceaccount.com";
pub const SCOPE: &str = "https://www.googleapis.com/auth/analytics.readonly";

/// The service account's key pair: a throwaway 2048-bit RSA key made for this emulator only.
const PRIVATE_PEM: &str = include_str!("../fixtures/ga4/private.pem");
const PUBLIC_PEM: &str = include_str!("../fixtures/ga4/public.pem");

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const HOUR_TOKENS: u64 = 40_000;
const DAY_TOKENS: u64 = 200_000;
/// Core tokens every Data API call costs.
const COST: u64 = 10;
const REALTIME_SCHEMA: &str = "https://developers.google.com/analytics/devguides/reporting/data/v1/realtime-api-schema";
const CORE_SCHEMA: &str = "https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema";

const REALTIME_METRICS: &[&str] = &["activeUsers", "eventCount", "keyEvents", "screenPageViews"];
const REALTIME_DIMENSIONS: &[&str] = &[
    "appVersion",
    "audienceId",
    "audienceName",
    "audienceResourceName",
    "city",
    "cityId",
    "country",
    "countryId",
    "deviceCategory",
    "eventName",
    "minutesAgo",
    "platform",
    "streamId",
    "streamName",
    "unifiedScreenName",
];
/// The core metrics served, with the type GA4 gives each.
const CORE_METRICS: &[(&str, &str)] = &[
    ("activeUsers", "TYPE_INTEGER"),
    ("totalUsers", "TYPE_INTEGER"),
    ("newUsers", "TYPE_INTEGER"),
    ("screenPageViews", "TYPE_INTEGER"),
    ("screenPageViewsPerUser", "TYPE_FLOAT"),
    ("userEngagementDuration", "TYPE_SECONDS"),
    ("averageSessionDuration", "TYPE_SECONDS"),
    ("eventCount", "TYPE_INTEGER"),
    ("sessions", "TYPE_INTEGER"),
    ("engagedSessions", "TYPE_INTEGER"),
    ("keyEvents", "TYPE_INTEGER"),
    ("bounceRate", "TYPE_FLOAT"),
    ("engagementRate", "TYPE_FLOAT"),
];
const CORE_DIMENSIONS: &[&str] = &[
    "pagePath",
    "pagePathPlusQueryString",
    "pageLocation",
    "pageTitle",
    "hostName",
    "eventName",
    "linkUrl",
    "linkDomain",
    "outbound",
    "date",
    "dateHour",
    "country",
    "deviceCategory",
    "unifiedScreenName",
];
const MATCH_TYPES: &[&str] = &["EXACT", "BEGINS_WITH", "ENDS_WITH", "CONTAINS", "FULL_REGEXP", "PARTIAL_REGEXP"];

struct Token {
    value: String,
    expires: Instant,
}

struct State {
    /// This emulator's `<url>/token`, the only audience a JWT may name.
    audience: String,
    realtime: Option<Vec<f64>>,
    report: Option<Vec<f64>>,
    thresholded: bool,
    lifetime: u64,
    tokens: Vec<Token>,
    hour_remaining: u64,
    day_remaining: u64,
    /// The next Data API calls answer 429 this many times.
    exhausted: u32,
}

/// The running emulator; derefs to its [`Server`] for faults and recorded requests.
///
/// What it serves (Google's "Using OAuth 2.0 for Server to Server Applications" and the Data API
/// v1beta reference: `properties.runReport`, `properties.runRealtimeReport`, "Realtime API
/// schema", "API schema", "Quotas"). `url()` stands for both `https://oauth2.googleapis.com`
/// and `https://analyticsdata.googleapis.com`. The service account's key ([`Ga4::key_file`]) is
/// a throwaway RSA key made for this emulator, in `tests/fixtures/ga4/`.
/// - `POST /token` form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`,
///   the JWT RS256-signed with the key (header `kid` the key's id, or none), claims `iss`
///   [`CLIENT_EMAIL`], `scope` with [`SCOPE`], `aud` exactly `<url>/token`, `iat` and `exp` at
///   most an hour apart around now (60 s leeway) → 200 `{"access_token":"ya29...",
///   "expires_in":3599,"token_type":"Bearer"}`. Else 400 `{"error":"invalid_grant",
///   "error_description":"Invalid JWT Signature."}` (or the time, audience or account
///   message), `invalid_scope`, `unsupported_grant_type`, `invalid_request`.
/// - `POST /v1beta/properties/419143770:runRealtimeReport` and `...:runReport` (the colon may
///   come as `%3A`) with `Authorization: Bearer <token>`: a missing, unknown or expired token →
///   401 `UNAUTHENTICATED`; another property → 403 `PERMISSION_DENIED`; a body GA4 would refuse
///   (unknown fields, no metrics, a metric or dimension outside the schema, here or in any
///   `dimensionFilter` field, a bad `matchType`, `minuteRanges` beyond the last 30 minutes,
///   `dateRanges` missing or not `YYYY-MM-DD`/`today`/`yesterday`/`NdaysAgo`) → 400
///   `INVALID_ARGUMENT` with Google's message; [`Ga4::exhaust`] → 429 `RESOURCE_EXHAUSTED`
///   (no Retry-After). Errors are `{"error":{"code":N,"message":"...","status":"..."}}`.
/// - 200 `{"dimensionHeaders":[],"metricHeaders":[{"name":"activeUsers","type":"TYPE_INTEGER"}],
///   "rows":[{"dimensionValues":[],"metricValues":[{"value":"42"}]}],"rowCount":1,"kind":...}`,
///   values as strings; with nothing configured no `rows` and `"rowCount":0`. runReport adds
///   `"metadata":{"currencyCode":"USD","timeZone":"America/New_York"}` (and
///   `subjectToThresholding`); `"returnPropertyQuota":true` adds `propertyQuota`, every call
///   costing 10 tokens of the hour's 40,000 and the day's 200,000.
/// - Anything else → 404 `NOT_FOUND`; injected faults answer Google's 500 `INTERNAL`, 503
///   `UNAVAILABLE` and so on.
pub struct Ga4 {
    server: Server,
    state: Arc<Mutex<State>>,
}

struct Api(Arc<Mutex<State>>);

/// The private key's id in the key file and the JWT header: a digest of the public key.
fn key_id() -> String {
    format!("{:x}", Sha256::digest(PUBLIC_PEM.as_bytes()))[..40].to_string()
}

fn google_error(code: u16, status: &str, message: &str) -> Response {
    Response::json(code, &json!({ "error": { "code": code, "message": message, "status": status } }))
}

fn invalid(message: &str) -> Response {
    google_error(400, "INVALID_ARGUMENT", message)
}

fn oauth_error(error: &str, description: &str) -> Response {
    Response::json(400, &json!({ "error": error, "error_description": description }))
}

fn exhausted() -> Response {
    google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Exhausted property tokens per hour. To learn more, see https://developers.google.com/analytics/devguides/reporting/data/v1/quotas",
    )
}

impl Handler for Api {
    fn handle(&self, request: &Request) -> Response {
        let mut state = self.0.lock().unwrap();
        let path = percent_decode(&request.path, false);
        if request.method == "POST" && path == "/token" {
            return grant(&mut state, request);
        }
        let route = path.strip_prefix("/v1beta/properties/").and_then(|rest| rest.split_once(':'));
        let realtime = match route {
            Some((_, "runRealtimeReport")) => true,
            Some((_, "runReport")) => false,
            _ => return not_found(),
        };
        if request.method != "POST" {
            return not_found();
        }
        if !authorized(&state, request) {
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            );
        }
        if route.map(|(property, _)| property) != Some(PROPERTY) {
            return google_error(
                403,
                "PERMISSION_DENIED",
                "User does not have sufficient permissions for this property. To learn more about Property ID, see https://developers.google.com/analytics/devguides/reporting/data/v1/property-id.",
            );
        }
        let Some(body) = request.json() else {
            return invalid("Invalid JSON payload received. Unexpected token.");
        };
        let asked = match validate(&body, realtime) {
            Ok(asked) => asked,
            Err(message) => return invalid(&message),
        };
        if state.exhausted > 0 {
            state.exhausted -= 1;
            return exhausted();
        }
        state.hour_remaining = state.hour_remaining.saturating_sub(COST);
        state.day_remaining = state.day_remaining.saturating_sub(COST);
        Response::json(200, &answer(&state, &asked, realtime))
    }

    fn error(&self, status: u16, _retry_after: Option<u64>) -> Response {
        match status {
            400 => invalid("Request contains an invalid argument."),
            401 => google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
            403 => google_error(403, "PERMISSION_DENIED", "The caller does not have permission"),
            404 => not_found(),
            429 => exhausted(),
            503 => google_error(503, "UNAVAILABLE", "The service is currently unavailable."),
            504 => google_error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
            _ => google_error(status, "INTERNAL", "Internal error encountered."),
        }
    }
}

fn not_found() -> Response {
    google_error(404, "NOT_FOUND", "Requested entity was not found.")
}

/// `Authorization: Bearer <token>` naming a token issued here that has not expired.
fn authorized(state: &State, request: &Request) -> bool {
    let Some((scheme, token)) = request.header("Authorization").and_then(|v| v.split_once(' ')) else {
        return false;
    };
    let now = Instant::now();
    scheme.eq_ignore_ascii_case("Bearer") && state.tokens.iter().any(|t| t.value == token.trim() && now < t.expires)
}

/// The JWT-bearer grant: check the assertion as Google does, then issue a token.
fn grant(state: &mut State, request: &Request) -> Response {
    let form = form_pairs(&request.text());
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let grant_type = field("grant_type").unwrap_or_default();
    if grant_type != JWT_BEARER {
        return oauth_error("unsupported_grant_type", &format!("Invalid grant_type: {grant_type}"));
    }
    let Some(assertion) = field("assertion").filter(|a| !a.is_empty()) else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let bad_signature = || oauth_error("invalid_grant", "Invalid JWT Signature.");
    let Ok(header) = jsonwebtoken::decode_header(assertion) else { return bad_signature() };
    if header.kid.is_some_and(|kid| kid != key_id()) {
        return bad_signature();
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let key = DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes()).expect("the fixture's public key");
    let Ok(data) = jsonwebtoken::decode::<Value>(assertion, &key, &validation) else { return bad_signature() };
    let claims = data.claims;
    if claims["iss"].as_str() != Some(CLIENT_EMAIL) {
        return oauth_error("invalid_grant", "Invalid grant: account not found");
    }
    if claims["aud"].as_str() != Some(state.audience.as_str()) {
        return oauth_error("invalid_grant", "Invalid JWT: Failed audience check.");
    }
    let now = jiff::Timestamp::now().as_second();
    let short_lived = match (claims["iat"].as_i64(), claims["exp"].as_i64()) {
        (Some(iat), Some(exp)) => iat < exp && exp - iat <= 3600 && iat <= now + 60 && exp >= now - 60,
        _ => false,
    };
    if !short_lived {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    if !claims["scope"].as_str().unwrap_or_default().split_whitespace().any(|s| s == SCOPE) {
        return oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.");
    }
    let value = format!("ya29.c.{}{:032x}", state.tokens.len(), rand::random::<u128>());
    let expires = Instant::now() + Duration::from_secs(state.lifetime);
    state.tokens.push(Token { value: value.clone(), expires });
    Response::json(200, &json!({ "access_token": value, "expires_in": state.lifetime, "token_type": "Bearer" }))
}

/// What a valid request asked for.
struct Asked {
    metrics: Vec<String>,
    dimensions: Vec<String>,
    /// The values of EXACT filters, by field: what a dimension's cell shows.
    exact: Vec<(String, String)>,
    quota: bool,
}

/// `dateRanges` → `date_ranges`: the proto name Google's messages use.
fn snake(name: &str) -> String {
    name.chars().fold(String::new(), |mut out, c| {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        out
    })
}

/// `date_ranges` → `dateRanges`: proto JSON accepts either spelling.
fn camel(name: &str) -> String {
    let mut parts = name.split('_');
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts {
        let mut chars = part.chars();
        out.extend(chars.next().map(|c| c.to_ascii_uppercase()));
        out.push_str(chars.as_str());
    }
    out
}

/// A field by its JSON (camelCase) name or its proto (snake_case) one.
fn get<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| object.get(&snake(name)))
}

/// The message object at `at` (a proto path, "" for the request), refusing unknown fields.
fn object<'a>(value: &'a Value, at: &str, kind: &str, known: &[&str]) -> Result<&'a Map<String, Value>, String> {
    let Some(object) = value.as_object() else {
        if at.is_empty() {
            return Err("Invalid JSON payload received. Unknown name \"\": Root element must be a message.".to_string());
        }
        return Err(format!(
            "Invalid value at '{at}' (type.googleapis.com/google.analytics.data.v1beta.{kind}), {value}"
        ));
    };
    for key in object.keys() {
        if !known.contains(&camel(key).as_str()) {
            let at = if at.is_empty() { String::new() } else { format!(" at '{at}'") };
            return Err(format!("Invalid JSON payload received. Unknown name \"{key}\"{at}: Cannot find field."));
        }
    }
    Ok(object)
}

/// A repeated field (absent: empty), its items of message type `kind`.
fn list<'a>(object: &'a Map<String, Value>, name: &str, kind: &str) -> Result<&'a [Value], String> {
    match get(object, name) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(format!(
            "Invalid value at '{}' (type.googleapis.com/google.analytics.data.v1beta.{kind}), {other}",
            snake(name)
        )),
    }
}

/// Whether `name` is in the schema of this method.
fn known_dimension(name: &str, realtime: bool) -> bool {
    if realtime {
        REALTIME_DIMENSIONS.contains(&name) || name.starts_with("customUser:")
    } else {
        CORE_DIMENSIONS.contains(&name) || ["customEvent:", "customUser:"].iter().any(|p| name.starts_with(p))
    }
}

fn metric_type(name: &str, realtime: bool) -> Option<&'static str> {
    if realtime {
        REALTIME_METRICS.contains(&name).then_some("TYPE_INTEGER")
    } else {
        CORE_METRICS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }
}

fn not_valid(name: &str, what: &str, realtime: bool) -> String {
    let schema = if realtime { REALTIME_SCHEMA } else { CORE_SCHEMA };
    format!("Field {name} is not a valid {what}. For a list of valid dimensions and metrics, see {schema}")
}

/// The `name` of each `{"name": ...}` in `metrics` or `dimensions`.
fn names(request: &Map<String, Value>, field: &str, kind: &str, known: &[&str]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, item) in list(request, field, kind)?.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let item = object(item, &at, kind, known)?;
        match get(item, "name") {
            Some(Value::String(name)) if !name.is_empty() => out.push(name.clone()),
            _ => return Err(format!("{kind} name is required at '{at}'.")),
        }
    }
    Ok(out)
}

fn validate(body: &Value, realtime: bool) -> Result<Asked, String> {
    let known: &[&str] = if realtime {
        &[
            "dimensions",
            "metrics",
            "dimensionFilter",
            "metricFilter",
            "limit",
            "metricAggregations",
            "orderBys",
            "returnPropertyQuota",
            "minuteRanges",
        ]
    } else {
        &[
            "property",
            "dimensions",
            "metrics",
            "dateRanges",
            "dimensionFilter",
            "metricFilter",
            "offset",
            "limit",
            "metricAggregations",
            "orderBys",
            "currencyCode",
            "cohortSpec",
            "keepEmptyRows",
            "returnPropertyQuota",
            "comparisons",
        ]
    };
    let kind = if realtime { "RunRealtimeReportRequest" } else { "RunReportRequest" };
    let request = object(body, "", kind, known)?;
    let metrics = names(request, "metrics", "Metric", &["name", "expression", "invisible"])?;
    if metrics.is_empty() {
        return Err("Must specify at least one metric.".to_string());
    }
    if let Some(bad) = metrics.iter().find(|m| metric_type(m, realtime).is_none()) {
        return Err(not_valid(bad, "metric", realtime));
    }
    let dimensions = names(request, "dimensions", "Dimension", &["name", "dimensionExpression"])?;
    if let Some(bad) = dimensions.iter().find(|d| !known_dimension(d, realtime)) {
        return Err(not_valid(bad, "dimension", realtime));
    }
    let mut exact = Vec::new();
    if let Some(filter) = get(request, "dimensionFilter").filter(|f| !f.is_null()) {
        filter_expression(filter, "dimension_filter", realtime, &mut exact)?;
    }
    if realtime {
        minute_ranges(request)?;
    } else {
        date_ranges(request)?;
    }
    let quota = get(request, "returnPropertyQuota") == Some(&Value::Bool(true));
    Ok(Asked { metrics, dimensions, exact, quota })
}

/// A FilterExpression: one of `andGroup`, `orGroup`, `notExpression` or `filter`, recursively.
fn filter_expression(value: &Value, at: &str, realtime: bool, exact: &mut Vec<(String, String)>) -> Result<(), String> {
    let kinds = ["andGroup", "orGroup", "notExpression", "filter"];
    let expression = object(value, at, "FilterExpression", &kinds)?;
    if expression.len() != 1 {
        return Err(format!(
            "A FilterExpression at '{at}' must set exactly one of andGroup, orGroup, notExpression, filter."
        ));
    }
    let (key, inner) = expression.iter().next().unwrap();
    let field = camel(key);
    let at = format!("{at}.{}", snake(&field));
    match field.as_str() {
        "andGroup" | "orGroup" => {
            let group = object(inner, &at, "FilterExpressionList", &["expressions"])?;
            for (i, item) in list(group, "expressions", "FilterExpression")?.iter().enumerate() {
                filter_expression(item, &format!("{at}.expressions[{i}]"), realtime, exact)?;
            }
            Ok(())
        }
        "notExpression" => filter_expression(inner, &at, realtime, exact),
        _ => filter(inner, &at, realtime, exact),
    }
}

fn filter(value: &Value, at: &str, realtime: bool, exact: &mut Vec<(String, String)>) -> Result<(), String> {
    let kinds = ["stringFilter", "inListFilter", "numericFilter", "betweenFilter", "emptyFilter"];
    let known = ["fieldName", "stringFilter", "inListFilter", "numericFilter", "betweenFilter", "emptyFilter"];
    let filter = object(value, at, "Filter", &known)?;
    let Some(Value::String(field)) = get(filter, "fieldName") else {
        return Err(format!("A Filter at '{at}' must have a fieldName."));
    };
    if !known_dimension(field, realtime) {
        return Err(not_valid(field, "dimension", realtime));
    }
    let set: Vec<&str> = kinds.iter().copied().filter(|k| get(filter, k).is_some()).collect();
    if set.len() != 1 {
        return Err(format!(
            "The filter for {field} must set exactly one of stringFilter, inListFilter, numericFilter, betweenFilter, emptyFilter."
        ));
    }
    let Some(string) = get(filter, "stringFilter") else { return Ok(()) };
    let at = format!("{at}.string_filter");
    let string = object(string, &at, "Filter.StringFilter", &["matchType", "value", "caseSensitive"])?;
    let match_type = match get(string, "matchType") {
        None => "EXACT",
        Some(Value::String(m)) if MATCH_TYPES.contains(&m.as_str()) => m.as_str(),
        Some(other) => {
            return Err(format!(
                "Invalid value at '{at}.match_type' (type.googleapis.com/google.analytics.data.v1beta.Filter.StringFilter.MatchType), {other}"
            ));
        }
    };
    let value = match get(string, "value") {
        Some(Value::String(v)) => v,
        None => "",
        Some(other) => return Err(format!("Invalid value at '{at}.value' (TYPE_STRING), {other}")),
    };
    if let Some(other) = get(string, "caseSensitive").filter(|c| !c.is_boolean()) {
        return Err(format!("Invalid value at '{at}.case_sensitive' (TYPE_BOOL), {other}"));
    }
    if match_type == "EXACT" {
        exact.push((field.clone(), value.to_string()));
    }
    Ok(())
}

/// An int32 as proto JSON takes it: a whole number or a string of one.
fn int(value: Option<&Value>, at: &str, default: i64) -> Result<i64, String> {
    let parsed = match value {
        None | Some(Value::Null) => Some(default),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    parsed.ok_or_else(|| format!("Invalid value at '{at}' (TYPE_INT32), {}", value.unwrap()))
}

fn minute_ranges(request: &Map<String, Value>) -> Result<(), String> {
    for (i, range) in list(request, "minuteRanges", "MinuteRange")?.iter().enumerate() {
        let at = format!("minute_ranges[{i}]");
        let range = object(range, &at, "MinuteRange", &["name", "startMinutesAgo", "endMinutesAgo"])?;
        let start = int(get(range, "startMinutesAgo"), &format!("{at}.start_minutes_ago"), 29)?;
        let end = int(get(range, "endMinutesAgo"), &format!("{at}.end_minutes_ago"), 0)?;
        if start < 0 || end < 0 {
            return Err(format!(
                "Invalid minute range in {at}: startMinutesAgo and endMinutesAgo must not be negative."
            ));
        }
        if start < end {
            return Err(format!(
                "Invalid minute range in {at}: startMinutesAgo ({start}) must be greater than or equal to endMinutesAgo ({end})."
            ));
        }
        if start > 29 {
            return Err(format!(
                "Invalid minute range in {at}: minute ranges can request at most the last 30 minutes of event data for standard properties (startMinutesAgo at most 29, not {start})."
            ));
        }
    }
    Ok(())
}

/// `YYYY-MM-DD`, `today`, `yesterday` or `NdaysAgo`, as a date.
fn date(text: &str) -> Option<jiff::civil::Date> {
    let digits = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    let ago = match text {
        "today" => Some("0"),
        "yesterday" => Some("1"),
        _ => text.strip_suffix("daysAgo").filter(|n| digits(n)),
    };
    if let Some(days) = ago {
        let days = jiff::Span::new().try_days(days.parse::<i64>().ok()?).ok()?;
        return jiff::ZonedDateTime::now().date().checked_sub(days).ok();
    }
    let b = text.as_bytes();
    let numeric = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !numeric(0..4) || !numeric(5..7) || !numeric(8..10) {
        return None;
    }
    jiff::civil::Date::new(text[0..4].parse().ok()?, text[5..7].parse().ok()?, text[8..10].parse().ok()?).ok()
}

fn date_ranges(request: &Map<String, Value>) -> Result<(), String> {
    let ranges = list(request, "dateRanges", "DateRange")?;
    if ranges.is_empty() {
        return Err("Must specify at least one date range in dateRanges.".to_string());
    }
    for (i, range) in ranges.iter().enumerate() {
        let at = format!("date_ranges[{i}]");
        let range = object(range, &at, "DateRange", &["name", "startDate", "endDate"])?;
        let mut bounds = Vec::new();
        for name in ["startDate", "endDate"] {
            let text = get(range, name).and_then(Value::as_str).unwrap_or_default();
            let Some(day) = date(text) else {
                return Err(format!(
                    "Invalid {name} \"{text}\" in dateRanges[{i}]. Dates must be YYYY-MM-DD, NdaysAgo, yesterday, or today."
                ));
            };
            bounds.push(day);
        }
        if bounds[0] > bounds[1] {
            return Err(format!("Invalid date range in dateRanges[{i}]: startDate must be on or before endDate."));
        }
    }
    Ok(())
}

/// A metric's value as GA4 prints it: integers without a decimal point.
fn print(value: f64, kind: &str) -> String {
    if kind == "TYPE_INTEGER" { format!("{}", value.round() as i64) } else { format!("{value}") }
}

fn answer(state: &State, asked: &Asked, realtime: bool) -> Value {
    let values = if realtime { &state.realtime } else { &state.report };
    let types: Vec<&str> = asked.metrics.iter().map(|m| metric_type(m, realtime).unwrap_or("TYPE_INTEGER")).collect();
    let mut answer = Map::new();
    let dimension_headers: Vec<Value> = asked.dimensions.iter().map(|d| json!({ "name": d })).collect();
    let metric_headers: Vec<Value> =
        asked.metrics.iter().zip(&types).map(|(m, t)| json!({ "name": m, "type": t })).collect();
    answer.insert("dimensionHeaders".into(), dimension_headers.into());
    answer.insert("metricHeaders".into(), metric_headers.into());
    match values.as_deref() {
        Some(values) if !values.is_empty() => {
            let cells: Vec<Value> = types
                .iter()
                .enumerate()
                .map(|(i, kind)| json!({ "value": print(values[i.min(values.len() - 1)], kind) }))
                .collect();
            let dimension_values: Vec<Value> = asked
                .dimensions
                .iter()
                .map(|d| {
                    let value = asked.exact.iter().find(|(f, _)| f == d).map_or("(not set)", |(_, v)| v.as_str());
                    json!({ "value": value })
                })
                .collect();
            answer.insert("rows".into(), json!([{ "dimensionValues": dimension_values, "metricValues": cells }]));
            answer.insert("rowCount".into(), 1.into());
        }
        _ => {
            answer.insert("rowCount".into(), 0.into());
        }
    }
    if !realtime {
        let mut metadata = json!({ "currencyCode": "USD", "timeZone": "America/New_York" });
        if state.thresholded {
            metadata["subjectToThresholding"] = true.into();
        }
        answer.insert("metadata".into(), metadata);
    }
    if asked.quota {
        let status = |remaining: u64| json!({ "consumed": COST, "remaining": remaining });
        answer.insert(
            "propertyQuota".into(),
            json!({
                "tokensPerDay": status(state.day_remaining),
                "tokensPerHour": status(state.hour_remaining),
                "concurrentRequests": { "consumed": 0, "remaining": 10 },
                "serverErrorsPerProjectPerHour": { "consumed": 0, "remaining": 10 },
                "potentiallyThresholdedRequestsPerHour": { "consumed": 0, "remaining": 120 },
                "tokensPerProjectPerHour": status(state.hour_remaining),
            }),
        );
    }
    let kind = if realtime { "analyticsData#runRealtimeReport" } else { "analyticsData#runReport" };
    answer.insert("kind".into(), kind.into());
    Value::Object(answer)
}

impl Ga4 {
    pub fn start() -> Ga4 {
        let state = Arc::new(Mutex::new(State {
            audience: String::new(),
            realtime: None,
            report: None,
            thresholded: false,
            lifetime: 3599,
            tokens: Vec::new(),
            hour_remaining: HOUR_TOKENS,
            day_remaining: DAY_TOKENS,
            exhausted: 0,
        }));
        let server = Server::start(Arc::new(Api(Arc::clone(&state))), "");
        state.lock().unwrap().audience = format!("{}/token", server.url());
        Ga4 { server, state }
    }

    /// Write a service-account key file (the JSON Google issues) into `dir`, whose token_uri
    /// is this emulator's /token, and return its path.
    pub fn key_file(&self, dir: &Path) -> PathBuf {
        let id = key_id();
        let key = json!({
            "type": "service_account",
            "project_id": "va-gov-analytics",
            "private_key_id": id,
            "private_key": PRIVATE_PEM,
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("{}/token", self.url()),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                CLIENT_EMAIL.replace('@', "%40")
            ),
            "universe_domain": "googleapis.com",
        });
        let path = dir.join(format!("va-gov-analytics-{}.json", &id[..12]));
        std::fs::write(&path, serde_json::to_string_pretty(&key).unwrap()).expect("write the key file");
        path
    }

    /// What runRealtimeReport answers: one value per metric asked for, as a single row (no
    /// dimensions asked); None = no rows at all (rowCount 0, as GA4 answers when nothing matched).
    pub fn set_realtime(&self, values: Option<Vec<f64>>) {
        self.state.lock().unwrap().realtime = values;
    }

    /// Same for runReport; `thresholded` sets metadata.subjectToThresholding.
    pub fn set_report(&self, values: Option<Vec<f64>>, thresholded: bool) {
        let mut state = self.state.lock().unwrap();
        (state.report, state.thresholded) = (values, thresholded);
    }

    /// Tokens issued from now on live this many seconds (expires_in); default 3599.
    pub fn token_lifetime(&self, seconds: u64) {
        self.state.lock().unwrap().lifetime = seconds;
    }

    /// Every token issued so far stops being accepted (401 UNAUTHENTICATED), as an expired one.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for token in &mut self.state.lock().unwrap().tokens {
            token.expires = token.expires.min(now);
        }
    }

    /// tokensPerHour remaining out of 40000 (and tokensPerDay: remaining out of 200000 scaled
    /// the same way): sets how much quota propertyQuota reports.
    pub fn set_quota_remaining(&self, hour_remaining: u64) {
        let mut state = self.state.lock().unwrap();
        state.hour_remaining = hour_remaining;
        state.day_remaining = hour_remaining.saturating_mul(DAY_TOKENS / HOUR_TOKENS);
    }

    /// The next `times` Data API calls answer 429 RESOURCE_EXHAUSTED.
    pub fn exhaust(&self, times: u32) {
        self.state.lock().unwrap().exhausted = times;
    }

    /// How many tokens were issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.lock().unwrap().tokens.len()
    }
}

impl Deref for Ga4 {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}
