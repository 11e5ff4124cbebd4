//! A local emulator of Datadog's metrics query API v2 (`POST /api/v2/query/timeseries`): the
//! two keys, the timeseries answer with null points, errors, and rate limits with their headers.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::http_server::{Handler, Request, Response, Server};

pub const API_KEY: &str = "dd-api-0123456789abcdef";
pub const APP_KEY: &str = "dd-app-fedcba9876543210";

/// What the next queries answer.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// One list of points per series (`values`); empty: no series.
    pub values: Vec<Vec<Option<f64>>>,
}

struct State {
    series: Series,
    /// Queries left in the rate-limit window, and the seconds to its reset.
    remaining: u64,
    reset: u64,
    /// The next answers are 429 this many times.
    limited: u32,
    /// A real fixed window instead: its start, its limit and its length.
    window: Option<(std::time::Instant, u64, std::time::Duration)>,
    /// How many queries were answered 429 for being over the window's limit.
    over: u32,
}

/// The running emulator; derefs to its [`Server`] for faults and recorded requests.
///
/// What it serves (Datadog's API reference, "Metrics: Query timeseries data across multiple
/// products", and "Rate limits"). `url()` stands for `https://api.<site>`.
/// - `DD-API-KEY` and `DD-APPLICATION-KEY` headers; either missing or wrong → 403
///   `{"errors":["Forbidden"]}`.
/// - `POST /api/v2/query/timeseries` `{"data":{"type":"timeseries_request","attributes":{"from":ms,
///   "to":ms,"queries":[{"data_source":"metrics","query":"...","name":"a"}],"formulas":[{"formula":"a"}]}}}`
///   → 200 `{"data":{"type":"timeseries_response","attributes":{"times":[ms...],"values":[[f64|null...]],
///   "series":[{"group_tags":[],"query_index":0,"unit":null}]}}}`. A body without `queries` or a
///   query that is empty → 400 `{"errors":["..."]}`.
/// - Every answer has `X-RateLimit-Limit`, `-Period`, `-Remaining`, `-Reset` (seconds to the
///   window's end) and `-Name`; over the limit → 429 `{"errors":["Too many requests"]}` with them.
pub struct Datadog {
    server: Server,
    state: Arc<Mutex<State>>,
}

struct Api(Arc<Mutex<State>>);

const LIMIT: u64 = 100;

fn limited(response: Response, remaining: u64, reset: u64) -> Response {
    response
        .with_header("X-RateLimit-Limit", &LIMIT.to_string())
        .with_header("X-RateLimit-Period", "60")
        .with_header("X-RateLimit-Remaining", &remaining.to_string())
        .with_header("X-RateLimit-Reset", &reset.to_string())
        .with_header("X-RateLimit-Name", "query_timeseries")
}

impl Handler for Api {
    fn handle(&self, request: &Request) -> Response {
        let mut state = self.0.lock().unwrap();
        if request.header("DD-API-KEY") != Some(API_KEY) || request.header("DD-APPLICATION-KEY") != Some(APP_KEY) {
            return Response::json(403, &json!({ "errors": ["Forbidden"] }));
        }
        if request.method != "POST" || request.path != "/api/v2/query/timeseries" {
            return Response::json(404, &json!({ "errors": ["Not found"] }));
        }
        if state.limited > 0 {
            state.limited -= 1;
            let reset = state.reset;
            return limited(Response::json(429, &json!({ "errors": ["Too many requests"] })), 0, reset);
        }
        if let Some((mut start, limit, period)) = state.window {
            // Datadog counts queries per fixed window and gives its reset in whole seconds.
            if start.elapsed() >= period {
                start += period * (start.elapsed().as_secs_f64() / period.as_secs_f64()) as u32;
                (state.window, state.remaining) = (Some((start, limit, period)), limit);
            }
            state.reset = (period - start.elapsed()).as_secs();
            if state.remaining == 0 {
                state.over += 1;
                let reset = state.reset;
                return limited(Response::json(429, &json!({ "errors": ["Too many requests"] })), 0, reset);
            }
        }
        let body = request.json().unwrap_or_default();
        let query = body["data"]["attributes"]["queries"][0]["query"].as_str().unwrap_or_default();
        if query.is_empty() || !body["data"]["attributes"]["from"].is_i64() {
            return Response::json(400, &json!({ "errors": ["Error parsing query: unable to parse"] }));
        }
        let to = body["data"]["attributes"]["to"].as_i64().unwrap_or_default();
        state.remaining = state.remaining.saturating_sub(1);
        let points = state.series.values.first().map_or(0, Vec::len) as i64;
        let times: Vec<i64> = (0..points).map(|i| to - (points - 1 - i) * 10_000).collect();
        let series: Vec<Value> =
            state.series.values.iter().map(|_| json!({ "group_tags": [], "query_index": 0, "unit": null })).collect();
        let answer = json!({
            "data": {
                "type": "timeseries_response",
                "attributes": { "times": times, "values": state.series.values, "series": series }
            }
        });
        limited(Response::json(200, &answer), state.remaining, state.reset)
    }

    fn error(&self, status: u16, _retry_after: Option<u64>) -> Response {
        Response::json(status, &json!({ "errors": ["Internal Server Error"] }))
    }
}

impl Datadog {
    pub fn start(series: Series) -> Datadog {
        let state =
            Arc::new(Mutex::new(State { series, remaining: LIMIT, reset: 60, limited: 0, window: None, over: 0 }));
        Datadog { server: Server::start(Arc::new(Api(Arc::clone(&state))), ""), state }
    }

    /// Allow `limit` queries per fixed window of `period` from now on, as Datadog counts them.
    pub fn rate_window(&self, limit: u64, period: std::time::Duration) {
        let mut state = self.state.lock().unwrap();
        (state.window, state.remaining) = (Some((std::time::Instant::now(), limit, period)), limit);
    }

    /// How many queries were refused for being over the window's limit.
    pub fn over_the_limit(&self) -> u32 {
        self.state.lock().unwrap().over
    }

    /// Answer the next `times` queries with 429, the window resetting in `reset` seconds.
    pub fn rate_limit(&self, times: u32, reset: u64) {
        let mut state = self.state.lock().unwrap();
        (state.limited, state.reset) = (times, reset);
    }
}

impl Deref for Datadog {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}
