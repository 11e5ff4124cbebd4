//! The ci step against a real Buildbot (started by scripts/services on 127.0.0.1): force
//! schedulers over JSON-RPC, build requests to builds, verdicts, timeouts and unknown schedulers.

use serde_json::Value;

use crate::support::{Env, Outcome};

const NEEDS: &str = "needs buildbot: run scripts/test";

fn url() -> String {
    std::env::var("BUILDBOT_URL").unwrap_or_else(|_| panic!("BUILDBOT_URL is not set: {NEEDS}"))
}

/// A workspace whose runbook forces `scheduler` with the build outcome the test wants.
fn workspace(scheduler: &str, outcome: &str, timeout: &str) -> Env {
    let env = Env::new();
    env.write("rollout.yaml", &format!("version: 1\nci: {{ provider: buildbot, url: \"{}\" }}\n", url()));
    env.write(
        "runbooks/deploy.yaml",
        &format!(
            "version: 1\ntitle: Deploy\nsteps:\n  - id: deploy\n    name: Deploy\n    ci: {{ pipeline: {scheduler}, ref: main, inputs: {{ outcome: {outcome}, seconds: \"30\" }}, timeout: {timeout} }}\n"
        ),
    );
    env
}

fn get(path: &str) -> Value {
    let text = reqwest::blocking::get(format!("{}{path}", url())).unwrap().text().unwrap();
    serde_json::from_str(&text).unwrap()
}

fn outputs(out: &Outcome) -> Value {
    out.events().into_iter().find(|e| e["event"] == "step_succeeded").map(|e| e["outputs"].clone()).unwrap_or_default()
}

#[test]
#[ignore = "needs buildbot: run scripts/test"]
fn buildbot_builds_pass_warn_and_fail_as_buildbot_decides() {
    let env = workspace("deploy", "pass", "60s");
    let out = env.run(&["--json", "run", "deploy", "--yes"]);
    out.code(0);
    let outputs = outputs(&out);
    assert_eq!(outputs["conclusion"], "success");
    let request = outputs["run_id"].as_str().unwrap().to_string();
    let builds = get(&format!("/api/v2/builds?buildrequestid={request}&property=rollout_run&property=branch"));
    let build = &builds["builds"][0];
    let run_id = env.journal()[0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(build["properties"]["rollout_run"][0], run_id.as_str(), "Buildbot got the run's id");
    assert_eq!(build["properties"]["branch"][0], "main");
    assert_eq!(outputs["url"], format!("{}/#/builders/{}/builds/{}", url(), build["builderid"], build["number"]));

    let env = workspace("deploy", "warn", "60s");
    let out = env.run(&["--json", "run", "deploy", "--yes"]);
    out.code(0);
    assert_eq!(self::outputs(&out)["conclusion"], "warnings");

    let env = workspace("deploy", "fail", "60s");
    let out = env.run(&["run", "deploy", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("ended: failure"), "{}", out.stderr);
    assert!(out.stderr.contains("failed outcome (failure)"), "Buildbot's own words: {}", out.stderr);
}

#[test]
#[ignore = "needs buildbot: run scripts/test"]
fn buildbot_a_slow_build_times_out_and_is_left_running() {
    let env = workspace("verify", "slow", "3s");
    let out = env.run(&["--json", "run", "deploy", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("did not finish within 3s"), "{}", out.stderr);
    assert!(out.stderr.contains("rollout never cancels a remote run"), "{}", out.stderr);
    let triggered = out.events().into_iter().find(|e| e["event"] == "step_triggered").expect("the run was journaled");
    let request = triggered["pipeline_run"].as_str().unwrap();
    let builds = get(&format!("/api/v2/builds?buildrequestid={request}"));
    let build = &builds["builds"][0];
    assert_eq!(build["complete"], false, "the build goes on: {build}");
    // Free the single worker for other tests.
    let stop = serde_json::json!({ "jsonrpc": "2.0", "method": "stop", "id": 1, "params": { "reason": "test over" } });
    reqwest::blocking::Client::new()
        .post(format!("{}/api/v2/builds/{}", url(), build["buildid"]))
        .json(&stop)
        .send()
        .unwrap();
}

#[test]
#[ignore = "needs buildbot: run scripts/test"]
fn buildbot_an_unknown_scheduler_fails_preflight() {
    let env = workspace("nope", "pass", "60s");
    for mode in ["--dry-run", "--yes"] {
        let out = env.run(&["run", "deploy", mode]);
        out.code(3);
        assert!(out.stderr.contains(&format!("Buildbot has no force scheduler nope at {}", url())), "{}", out.stderr);
    }
}
