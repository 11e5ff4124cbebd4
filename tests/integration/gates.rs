//! Gate steps against the real Prometheus (started by scripts/services, scraping a metrics
//! endpoint each test serves and changes): verdicts, no data, asking, timeouts, resume, and
//! the staged rollout stopping at the stage whose gate fails.

use std::time::Duration;

use serde_json::Value;

use crate::support::exporter::{Exporter, Metrics, prometheus_url};
use crate::support::{Env, Outcome};

/// `env` with the metrics source `source` (its YAML) in its config, and a runbook `gate` of one
/// gate step on it with `fields` (YAML inside `gate:`).
pub fn with_gate(env: Env, source: &str, yaml: &str, fields: &str) -> Env {
    let config = env.read("rollout.yaml");
    env.write("rollout.yaml", &format!("{config}metrics:\n  {source}: {yaml}\n"));
    let fields: String = fields.lines().map(|l| format!("      {l}\n")).collect();
    env.runbook(
        "gate",
        &format!("version: 1\ntitle: Gate\nsteps:\n  - id: check\n    name: The metric holds\n    gate:\n      source: {source}\n{fields}"),
    )
}

/// A workspace whose gate reads the source `errors`, the real Prometheus.
fn gate_workspace(fields: &str) -> Env {
    with_gate(Env::new(), "errors", &format!("{{ provider: prometheus, url: \"{}\" }}", prometheus_url()), fields)
}

/// `rollout run gate --yes`, started and left running.
fn start_gate(env: &Env) -> std::process::Child {
    let mut command = env.command(&["run", "gate", "--yes"]);
    command.stdin(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap()
}

fn samples(env: &Env) -> Vec<Value> {
    env.journal().into_iter().filter(|e| e["event"] == "step_sampled").collect()
}

fn value_of(test: &str) -> String {
    format!("query: 'max(gate_value{{test=\"{test}\"}})'")
}

fn with_value(test: &str, value: f64) -> Exporter {
    let exporter = Exporter::start(test, Metrics { value: Some(value), ..Metrics::default() });
    exporter.wait_for(&format!("gate_value{{test=\"{test}\"}}"));
    exporter
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn a_value_that_holds_for_its_count_passes_and_every_sample_is_journaled() {
    let test = "gate-pass";
    let _exporter = with_value(test, 1.5);
    let env = gate_workspace(&format!("{}\nbelow: 5\ncount: 3\ninterval: 1s\nno_data: fail\n", value_of(test)));
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(0);
    assert!(
        out.stderr.contains("1.5 (passes now); it must stay below 5 for 3 samples in a row, fails otherwise"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("passed at 1.5 after 3 samples"), "{}", out.stderr);
    let sampled = samples(&env);
    assert_eq!(sampled.len(), 3, "{sampled:?}");
    for sample in &sampled {
        assert_eq!(sample["value"], 1.5);
        assert_eq!(sample["judged"], "pass");
        assert_eq!(sample["query"], format!("max(gate_value{{test=\"{test}\"}})"));
    }
    let done = env.journal().into_iter().find(|e| e["event"] == "step_succeeded").unwrap();
    assert_eq!(done["outputs"], serde_json::json!({ "value": "1.5", "verdict": "pass", "samples": "3" }));
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn a_value_over_the_threshold_fails_the_gate_with_its_figures_and_exit_1() {
    let test = "gate-fail";
    let _exporter = with_value(test, 42.0);
    let env = gate_workspace(&format!("{}\nbelow: 5\nfor: 10s\ninterval: 1s\nno_data: fail\n", value_of(test)));
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(1);
    assert!(
        out.stderr.contains(
            "the gate failed: 1 failed sample (limit 0); the last: 42 (query: max(gate_value{test=\"gate-fail\"}))"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(samples(&env).len(), 1);
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn no_data_follows_the_gates_policy_and_is_never_zero() {
    let test = "gate-nodata";
    // No series at all for this test's label: an empty result.
    let missing = format!("query: 'max(gate_value{{test=\"{test}-missing\"}})'\nbelow: 5\ncount: 2\ninterval: 1s\n");
    let env = gate_workspace(&format!("{missing}no_data: fail\n"));
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("no data (the query returned no series)"), "{}", out.stderr);
    assert_eq!(samples(&env)[0]["value"], Value::Null);
    assert_eq!(samples(&env)[0]["judged"], "no_data");

    let env = gate_workspace(&format!("{missing}no_data: pass\n"));
    env.run(&["run", "gate", "--yes"]).code(0);
    assert_eq!(samples(&env).len(), 2);

    let env = gate_workspace(&format!("{missing}no_data: ask\n"));
    let out = env.answer(&["run", "gate"], "y\nf\n");
    out.code(1);
    assert!(out.stderr.contains("Judge it: [p]ass / [f]ail / [w]ait"), "{}", out.stderr);
    assert!(
        out.stderr.contains("the operator judged no data: no data (the query returned no series) a failure"),
        "{}",
        out.stderr
    );
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("under --yes nobody can judge it"), "{}", out.stderr);
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn nan_from_prometheus_is_no_data() {
    let test = "gate-nan";
    let exporter = Exporter::start(test, Metrics { value: Some(f64::NAN), ..Metrics::default() });
    exporter.wait_for(&format!("gate_value{{test=\"{test}\"}}"));
    let env = gate_workspace(&format!("{}\nbelow: 5\ncount: 1\ninterval: 1s\nno_data: fail\n", value_of(test)));
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("no data (NaN)"), "{}", out.stderr);
    assert_eq!(samples(&env)[0]["no_data"], "NaN");
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn a_gate_that_recovers_within_its_failure_limit_passes_once_it_held_for_its_span() {
    let test = "gate-recover";
    let exporter = with_value(test, 9.0);
    let env = gate_workspace(&format!(
        "{}\nbelow: 5\nfor: 2s\ninterval: 1s\nfailure_limit: 3\nno_data: fail\ntimeout: 60s\n",
        value_of(test)
    ));
    let child = start_gate(&env);
    std::thread::sleep(Duration::from_millis(1500));
    exporter.set(|m| m.value = Some(1.0));
    let out = Outcome::from(child.wait_with_output().unwrap());
    out.code(0);
    let judged: Vec<String> = samples(&env).iter().map(|s| s["judged"].as_str().unwrap().to_string()).collect();
    assert_eq!(judged.first().map(String::as_str), Some("fail"), "{judged:?}");
    assert!(judged.iter().filter(|j| *j == "pass").count() >= 3, "{judged:?}");
    assert!(out.stderr.contains("failed sample 1: 9 (1 of 3 tolerated)"), "{}", out.stderr);
    // The timeline tells the gate's figures from the journaled samples.
    let run = env.journal()[0]["run_id"].as_str().unwrap().to_string();
    let timeline = env.run(&["timeline", &run]);
    timeline.code(0);
    let row = timeline
        .stdout
        .lines()
        .find(|l| l.starts_with("| check |") && l.contains(" / "))
        .unwrap_or_else(|| panic!("{}", timeline.stdout));
    assert!(timeline.stdout.contains("## Gates"), "{}", timeline.stdout);
    assert!(row.contains(&format!("| {run} | done | {} |", judged.len())), "{row}");
    assert!(row.contains("| 1 / 9 / 1 |"), "{row}");
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn an_inconclusive_value_is_asked_about_and_fails_under_yes() {
    let test = "gate-between";
    let _exporter = with_value(test, 10.0);
    let env = gate_workspace(&format!(
        "{}\nbelow: 5\nfail_above: 20\ncount: 2\ninterval: 1s\nno_data: fail\n",
        value_of(test)
    ));
    let out = env.answer(&["run", "gate"], "y\np\n");
    out.code(0);
    assert!(out.stderr.contains("10 is inconclusive: it must stay below 5 for 2 samples in a row, fails above 20; in between is inconclusive"), "{}", out.stderr);
    assert!(out.stderr.contains("passed at 10 after 1 samples, judged by the operator"), "{}", out.stderr);
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(1);
    assert!(
        out.stderr.contains("inconclusive") && out.stderr.contains("under --yes nobody can judge it"),
        "{}",
        out.stderr
    );
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn a_gate_that_never_holds_long_enough_times_out_and_fails() {
    let test = "gate-timeout";
    let _exporter = with_value(test, 1.0);
    let env =
        gate_workspace(&format!("{}\nbelow: 5\nfor: 1h\ninterval: 1s\ntimeout: 3s\nno_data: fail\n", value_of(test)));
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("the gate failed: it did not hold within 3s"), "{}", out.stderr);
    assert!(samples(&env).len() >= 3, "{:?}", samples(&env));
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn a_query_prometheus_refuses_is_shown_with_its_message_and_the_query() {
    let env = gate_workspace("query: 'sum(rate(x[5m])'\nbelow: 5\ncount: 1\nno_data: fail\n");
    let out = env.run(&["run", "gate", "--yes"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("Prometheus refused the query `sum(rate(x[5m])` (400 bad_data)"), "{}", out.stderr);
    assert!(out.stderr.contains("parse error"), "{}", out.stderr);
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn real_promql_over_a_request_counter_judges_the_error_count() {
    let test = "gate-promql";
    let exporter = Exporter::start(test, Metrics { requests: vec![(200, 100), (500, 0)], ..Metrics::default() });
    let query = format!("sum(increase(http_requests_total{{test=\"{test}\",code!~\"200|201\"}}[$window]))");
    exporter.wait_for(&format!("http_requests_total{{test=\"{test}\",code=\"500\"}}"));
    std::thread::sleep(Duration::from_secs(2));
    let env =
        gate_workspace(&format!("query: '{query}'\nwindow: 5s\nbelow: 5\ncount: 2\ninterval: 1s\nno_data: fail\n"));
    env.run(&["run", "gate", "--yes"]).code(0);
    assert_eq!(samples(&env)[0]["query"], query.replace("$window", "5s"));
    exporter.set(|m| m.requests = vec![(200, 100), (500, 60)]);
    exporter.wait_for(&format!("http_requests_total{{test=\"{test}\",code=\"500\"}} == 60"));
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("the gate failed"), "{}", out.stderr);
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn an_interrupted_gate_is_resumed_with_its_window_started_again() {
    let test = "gate-resume";
    let _exporter = with_value(test, 1.0);
    let env = gate_workspace(&format!("{}\nbelow: 5\ncount: 3\ninterval: 1s\nno_data: fail\n", value_of(test)));
    let child = start_gate(&env);
    std::thread::sleep(Duration::from_millis(1500));
    nix_interrupt(child.id());
    let out = Outcome::from(child.wait_with_output().unwrap());
    out.code(130);
    let run = env.journal()[0]["run_id"].as_str().unwrap().to_string();
    let taken = samples(&env).len();
    assert!((1..3).contains(&taken), "{taken}");
    let resumed = env.run(&["resume", &run, "--yes"]);
    resumed.code(0);
    assert!(resumed.stderr.contains(&format!("this gate took {taken} sample")), "{}", resumed.stderr);
    assert!(resumed.stderr.contains("its window starts again"), "{}", resumed.stderr);
    assert!(resumed.stderr.contains("passed at 1 after 3 samples"), "{}", resumed.stderr);
}

fn nix_interrupt(pid: u32) {
    std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn the_staged_rollout_stops_at_the_stage_whose_gate_fails_and_names_the_rollback() {
    let test = "gate-staged";
    let exporter = Exporter::start(test, Metrics { requests: vec![(200, 100), (500, 0)], ..Metrics::default() });
    let env = gate_workspace("query: x\nbelow: 1\ncount: 1\nno_data: fail\n");
    // The feature starts off: each stage turns it on for more users.
    env.write("flags.json", &env.read("flags.json").replace(r#""defaultVariant": "on""#, r#""defaultVariant": "off""#));
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks/staged-rollout.yaml")).unwrap();
    // The shipped runbook with seconds for its minutes, and no manual steps to confirm.
    let quick = shipped
        .replace("for: 10m", "for: 1s")
        .replace("interval: 30s", "interval: 1s")
        .replace("window: 10m", "window: 5s")
        .replace("window: 5m", "window: 5s");
    env.write("runbooks/staged-rollout.yaml", &quick);
    let errors = format!(
        "sum(increase(http_requests_total{{test=\"{test}\",code!~\"200|201\"}}[$window])) or (0 * sum(increase(http_requests_total{{test=\"{test}\"}}[$window])))"
    );
    let latency = format!("max(gate_value{{test=\"{test}\"}}) or vector(0.1)");
    let vars =
        [format!("errors_query={errors}"), format!("latency_query={latency}"), "flag=travel_pay_claim_status".into()];
    let args = ["run", "staged-rollout", "--yes", "--var", &vars[0], "--var", &vars[1], "--var", &vars[2]];
    exporter.wait_for(&format!("http_requests_total{{test=\"{test}\",code=\"500\"}}"));
    std::thread::sleep(Duration::from_secs(2));
    // Errors appear once the second stage is on: its gate fails.
    let runs = env.state_dir().join("runs");
    let watcher = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let journals = std::fs::read_dir(&runs).into_iter().flatten().flatten();
            if journals.map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).any(|text| {
                text.lines().any(|l| l.contains(r#""event":"step_succeeded""#) && l.contains(r#""step":"stage-2""#))
            }) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let child =
        env.command(&args).stdin(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    if watcher.join().unwrap() {
        exporter.set(|m| m.requests = vec![(200, 100), (500, 80)]);
    }
    let out = Outcome::from(child.wait_with_output().unwrap());
    out.code(1);
    assert!(out.stderr.contains("stage-2-errors"), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "next: roll back: rollout incident --severity high --var flag=travel_pay_claim_status --var commit=..."
        ),
        "{}",
        out.stderr
    );
    let failed = env.journal().into_iter().find(|e| e["event"] == "step_failed").unwrap();
    assert_eq!(failed["step"], "stage-2-errors");
    assert!(failed["next"].as_str().unwrap().starts_with("rollout incident --severity high"), "{failed}");
    let done: Vec<String> = env
        .journal()
        .iter()
        .filter(|e| e["event"] == "step_succeeded")
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect();
    assert!(done.contains(&"stage-1-errors".to_string()) && done.contains(&"stage-2".to_string()), "{done:?}");
}

/// A workspace whose source `apm` is the Datadog emulator, with one gate on it.
fn datadog_workspace(datadog: &crate::support::datadog::Datadog, fields: &str) -> Env {
    use crate::support::datadog::{API_KEY, APP_KEY};
    let env = Env::new().var("DD_API_KEY", API_KEY).var("DD_APP_KEY", APP_KEY);
    let yaml = format!(
        "{{ provider: datadog, url: \"{}\", api_key_env: DD_API_KEY, app_key_env: DD_APP_KEY }}",
        datadog.url()
    );
    let query = "query: 'sum:trace.http.request.errors{service:vets-api}.as_count()'";
    with_gate(env, "apm", &yaml, &format!("{query}\n{fields}"))
}

#[test]
fn datadog_gates_read_the_last_non_null_point_and_null_only_is_no_data() {
    use crate::support::datadog::{API_KEY, APP_KEY, Datadog, Series};
    let datadog = Datadog::start(Series { values: vec![vec![Some(3.0), Some(2.0), None]] });
    let env = datadog_workspace(&datadog, "below: 5\ncount: 2\ninterval: 1s\nwindow: 10m\nno_data: fail\n");
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("passed at 2 after 2 samples"), "{}", out.stderr);
    let queries: Vec<_> = datadog.requests().into_iter().filter(|r| r.path == "/api/v2/query/timeseries").collect();
    assert_eq!(queries.len(), 3, "the preview's read and two samples");
    let body = queries[0].json().unwrap();
    let attributes = &body["data"]["attributes"];
    assert_eq!(attributes["to"].as_i64().unwrap() - attributes["from"].as_i64().unwrap(), 600_000);
    assert_eq!(attributes["queries"][0]["data_source"], "metrics");
    assert_eq!(queries[0].header("DD-API-KEY"), Some(API_KEY));
    assert_eq!(queries[0].header("DD-APPLICATION-KEY"), Some(APP_KEY));
    assert!(!out.stderr.contains(APP_KEY) && !env.journal_text().contains(APP_KEY), "the keys are never shown");

    let nulls = Datadog::start(Series { values: vec![vec![None, None]] });
    let env = datadog_workspace(&nulls, "below: 5\ncount: 1\ninterval: 1s\nno_data: fail\n");
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("no data (only null points in the window)"), "{}", out.stderr);
}

#[test]
fn datadog_samples_keep_within_its_rate_limit_from_the_first_one_after_the_preview() {
    use crate::support::datadog::{Datadog, Series};
    let datadog = Datadog::start(Series { values: vec![vec![Some(1.0)]] });
    datadog.rate_window(2, Duration::from_secs(3));
    let env = datadog_workspace(&datadog, "below: 5\ncount: 3\ninterval: 1s\nno_data: fail\ntimeout: 60s\n");
    env.run(&["run", "gate", "--yes"]).code(0);
    assert_eq!(datadog.requests().len(), 4, "the preview's read and three samples");
    assert_eq!(datadog.over_the_limit(), 0, "no query went over the limit, so none was refused");
}

#[test]
fn a_datadog_429_is_waited_out_by_its_reset_header_and_a_refused_key_names_the_variable() {
    use crate::support::datadog::{Datadog, Series};
    let datadog = Datadog::start(Series { values: vec![vec![Some(1.0)]] });
    datadog.rate_limit(1, 1);
    let env = datadog_workspace(&datadog, "below: 5\ncount: 1\ninterval: 1s\nno_data: fail\n");
    let out = env.run(&["run", "gate", "--yes"]);
    out.code(0);
    let statuses = datadog.requests().len();
    assert_eq!(statuses, 3, "a 429, its retry after the reset, and the sample");

    let env =
        datadog_workspace(&datadog, "below: 5\ncount: 1\ninterval: 1s\nno_data: fail\n").var("DD_APP_KEY", "wrong-key");
    let out = env.run(&["run", "gate", "--yes"]);
    assert_ne!(out.code, 0);
    out.code(3);
    assert!(out.stderr.contains("403 Forbidden: Forbidden; check DD_API_KEY and DD_APP_KEY"), "{}", out.stderr);
    assert!(!out.stderr.contains("wrong-key"), "{}", out.stderr);
}
