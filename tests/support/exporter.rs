//! A metrics endpoint a test serves and changes, scraped by the real Prometheus that
//! scripts/services starts (listed in its targets folder, labelled `test="<name>"`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http_server::{Handler, Request, Response, Server};

pub const NEEDS: &str = "needs prometheus: run scripts/test";

/// What the endpoint reports now.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// `gate_value`: a gauge the test sets; None leaves it out, `f64::NAN` is reported as NaN.
    pub value: Option<f64>,
    /// `http_requests_total{code}`: requests so far by status code.
    pub requests: Vec<(u16, u64)>,
}

struct Endpoint(Arc<Mutex<Metrics>>);

impl Handler for Endpoint {
    fn handle(&self, _request: &Request) -> Response {
        let metrics = self.0.lock().unwrap().clone();
        let mut text = String::new();
        if let Some(value) = metrics.value {
            let shown = if value.is_nan() { "NaN".to_string() } else { value.to_string() };
            text.push_str(&format!("# TYPE gate_value gauge\ngate_value {shown}\n"));
        }
        if !metrics.requests.is_empty() {
            text.push_str("# TYPE http_requests_total counter\n");
            for (code, count) in &metrics.requests {
                text.push_str(&format!("http_requests_total{{code=\"{code}\"}} {count}\n"));
            }
        }
        Response::text(200, &text)
    }

    fn error(&self, status: u16, _retry_after: Option<u64>) -> Response {
        Response::text(status, "error")
    }
}

/// The endpoint, listed for Prometheus while it lives.
pub struct Exporter {
    _server: Server,
    metrics: Arc<Mutex<Metrics>>,
    target: PathBuf,
}

pub fn prometheus_url() -> String {
    std::env::var("PROMETHEUS_URL").unwrap_or_else(|_| panic!("PROMETHEUS_URL is not set: {NEEDS}"))
}

impl Exporter {
    /// Serve `metrics` as test `test` and wait until Prometheus has scraped it.
    pub fn start(test: &str, metrics: Metrics) -> Exporter {
        let targets = std::env::var("PROMETHEUS_TARGETS").unwrap_or_else(|_| panic!("PROMETHEUS_TARGETS: {NEEDS}"));
        let shared = Arc::new(Mutex::new(metrics));
        let server = Server::start(Arc::new(Endpoint(Arc::clone(&shared))), "");
        let address = server.url().trim_start_matches("http://").to_string();
        let target = PathBuf::from(targets).join(format!("{test}.json"));
        let listed = serde_json::json!([{ "targets": [address], "labels": { "test": test } }]);
        std::fs::write(&target, listed.to_string()).unwrap();
        let exporter = Exporter { _server: server, metrics: shared, target };
        exporter.wait_for(&format!("up{{test=\"{test}\"}} == 1"));
        exporter
    }

    pub fn set(&self, change: impl FnOnce(&mut Metrics)) {
        change(&mut self.metrics.lock().unwrap());
    }

    /// Wait (at most 30 s) until `query` has a result: what was set has been scraped.
    pub fn wait_for(&self, query: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer: serde_json::Value = reqwest::blocking::Client::new()
                .post(format!("{}/api/v1/query", prometheus_url()))
                .form(&[("query", query)])
                .send()
                .and_then(|r| r.json())
                .unwrap_or_default();
            if answer["data"]["result"].as_array().is_some_and(|r| !r.is_empty()) {
                return;
            }
            assert!(Instant::now() < deadline, "Prometheus never had a result for {query}: {answer}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.target);
    }
}
