//! Regression tests, each named after the bug it keeps away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::github::{GitHub, Outcome};
use crate::support::http_server::{Fault, Handler, Request, Response, Server};
use crate::support::{Env, FLAG};

#[test]
fn regression_percent_zero_failed_to_verify_after_turning_the_flag_off() {
    let env = Env::new();
    let out = env.run(&["rehearse", "--severity", "high", "--yes", "--var", "reduce_to=0"]);
    out.code(0);
    assert!(out.stderr.contains(&format!("flag {FLAG}: on, 100% -> off")), "{}", out.stderr);
}

#[test]
fn regression_a_non_ascii_ref_crashed_the_rehearsal_summary() {
    let env = Env::new();
    let out = env.run(&["rehearse", "--severity", "critical", "--yes", "--var", "fix_ref=fix/ééé"]);
    out.code(0);
    assert!(out.stderr.contains("pipeline deploy.yml (step deploy-fix): success at fix/ééé"), "{}", out.stderr);
}

#[test]
fn regression_a_background_child_holding_the_output_made_a_command_pipeline_wait_for_it() {
    let env = Env::new();
    env.write("deploy.sh", "sleep 20 &\necho started\n");
    let started = Instant::now();
    let out = env.run(&["incident", "--severity", "critical", "--yes"]);
    out.code(0);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "waited {:?} for a child that was never the pipeline",
        started.elapsed()
    );
}

#[test]
fn regression_step_retries_triggered_a_second_pipeline_run_after_a_timeout() {
    let server = GitHub::start("t0ken-regression");
    server.add_branch("va/app", "main", "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
    server.add_workflow("va/app", "deploy.yml");
    server.script(Outcome::Never, 0);
    let env = Env::new();
    env.write(
        "rollout.yaml",
        &format!("version: 1\nci: {{ provider: github, repo: va/app, token_env: T, url: \"{}\" }}\n", server.url()),
    );
    env.write(
        "runbooks/deploy.yaml",
        "version: 1\ntitle: Deploy\nsteps:\n  - id: deploy\n    name: Deploy\n    retries: 2\n    ci: { pipeline: deploy.yml, ref: main, timeout: 2s }\n",
    );
    let out = env.run_with(&["run", "deploy", "--yes"], &[("T", "t0ken-regression")]);
    out.code(1);
    assert!(out.stderr.contains("did not finish within 2s"), "{}", out.stderr);
    assert_eq!(server.runs().len(), 1, "the run still going was not triggered again");
}

struct Failing;

impl Handler for Failing {
    fn handle(&self, _request: &Request) -> Response {
        Response::text(200, "ok")
    }
    fn error(&self, status: u16, _retry_after: Option<u64>) -> Response {
        Response::text(status, "no")
    }
}

#[test]
fn regression_a_webhook_url_with_a_trailing_slash_leaked_into_errors() {
    let server = Server::start(Arc::new(Failing), "");
    server.fail_path("/services/T0/B0/SECRETsecret/", Fault::Status(500));
    server.fail_path("/services/T0/B0/SECRETsecret", Fault::Status(500));
    let env = Env::new();
    env.write("rollout.yaml", &format!("{}notify: {{ webhook_env: HOOK }}\n", env.read("rollout.yaml")));
    env.write(
        "runbooks/tell.yaml",
        "version: 1\ntitle: Tell\nsteps:\n  - id: tell\n    name: Tell\n    notify: { message: hi, required: true }\n",
    );
    let url = format!("{}/services/T0/B0/SECRETsecret/", server.url());
    let out = env.run_with(&["--json", "run", "tell", "--yes"], &[("HOOK", &url)]);
    out.code(1);
    for text in [&out.stdout, &out.stderr, &env.journal_text()] {
        assert!(!text.contains("SECRETsecret"), "the webhook URL leaked: {text}");
    }
}

#[test]
fn regression_one_cut_short_journal_line_hid_the_whole_run() {
    let env = Env::new();
    env.run(&["incident", "--severity", "low", "--yes"]).code(0);
    let journal = env.newest_journal();
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str("{\"event\":\"step_sta");
    std::fs::write(&journal, text).unwrap();
    let out = env.run(&["runs"]);
    out.code(0);
    assert!(out.stdout.contains("low") && out.stdout.contains("succeeded"), "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("not a readable journal"), "{}", out.stderr);
}
