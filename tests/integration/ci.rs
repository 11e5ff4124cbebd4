//! The ci step against GitHub, GitLab, Jenkins and Buildkite emulators: trigger, find the run,
//! wait for its verdict with backoff, needs-a-human, timeouts, Ctrl-C, and read-only previews.

use std::ops::Deref;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::buildkite::Buildkite;
use crate::support::github::{GitHub, Mode, Outcome, gaps};
use crate::support::gitlab::{GitLab, Source};
use crate::support::http_server::{Fault, Server};
use crate::support::jenkins::{Jenkins, QueueEnd};
use crate::support::{Env, Outcome as Ran};

pub(crate) const TOKEN: &str = "ci-secret-7d41c2e9";
const SHA: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// A workspace whose `ci` section is `ci`, with a one-step `deploy` runbook.
pub(crate) fn workspace(ci: &str, step: &str) -> Env {
    let env = Env::new();
    env.write("rollout.yaml", &format!("version: 1\nci: {ci}\nhttp: {{ timeout: 2s, retries: 2, max_wait: 5s }}\n"));
    env.write(
        "runbooks/deploy.yaml",
        &format!("version: 1\ntitle: Deploy\nsteps:\n  - id: deploy\n    name: Deploy the fix\n    ci: {step}\n"),
    );
    env
}

fn run(env: &Env, args: &[&str]) -> Ran {
    env.run_with(args, &[("CI_TOKEN", TOKEN)])
}

fn outputs(out: &Ran) -> Value {
    out.events().into_iter().find(|e| e["event"] == "step_succeeded").map(|e| e["outputs"].clone()).unwrap_or_default()
}

fn github(step: &str) -> (GitHub, Env) {
    let server = GitHub::start(TOKEN);
    server.add_branch("va/vets-website", "main", SHA);
    server.add_workflow("va/vets-website", "deploy.yml");
    let env = workspace(
        &format!("{{ provider: github, repo: va/vets-website, token_env: CI_TOKEN, url: \"{}\" }}", server.url()),
        step,
    );
    (server, env)
}

const GITHUB_STEP: &str = "{ pipeline: deploy.yml, ref: main, inputs: { reason: incident }, timeout: 30s }";

#[test]
fn github_dispatch_asks_for_the_run_and_waits_for_its_verdict() {
    let (server, env) = github(GITHUB_STEP);
    server.script(Outcome::Success, 2);
    let out = run(&env, &["--json", "run", "deploy", "--yes"]);
    out.code(0);
    let runs = server.runs();
    assert_eq!(runs.len(), 1, "triggered once");
    let ran = &runs[0];
    assert_eq!((ran.git_ref.as_str(), ran.return_run_details), ("main", true));
    assert_eq!(ran.inputs, serde_json::json!({ "reason": "incident" }));
    assert_eq!(ran.api_version.as_deref(), Some("2022-11-28"));
    let html = format!("https://github.com/va/vets-website/actions/runs/{}", ran.id);
    let triggered = out.events().into_iter().find(|e| e["event"] == "step_triggered").expect("a step_triggered event");
    assert_eq!(
        (triggered["pipeline_run"].as_str(), triggered["url"].as_str()),
        (Some(ran.id.to_string().as_str()), Some(html.as_str()))
    );
    let outputs = outputs(&out);
    assert_eq!(outputs["run_id"], ran.id.to_string());
    assert_eq!(outputs["url"], html);
    assert_eq!(outputs["conclusion"], "success");
    assert_eq!(outputs["commit"], ran.head_sha);
    let polls: Vec<_> =
        server.requests().into_iter().filter(|r| r.path.ends_with(&format!("/actions/runs/{}", ran.id))).collect();
    assert_eq!(polls.len(), 3);
    assert!(
        polls[0].header("if-none-match").is_none() && polls[1].header("if-none-match").is_some(),
        "later polls are conditional"
    );
    assert!(polls.iter().all(|p| p.header("accept") == Some("application/vnd.github+json")));
}

#[test]
fn github_polls_steadily_while_its_answers_are_free() {
    let (server, env) = github(GITHUB_STEP);
    server.script(Outcome::Success, 3);
    run(&env, &["run", "deploy", "--yes"]).code(0);
    let gaps = gaps(&server.poll_times(server.runs()[0].id));
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    // Every 2.5 s: the end is seen within 3 s, at fewer than one request per 2 s.
    for gap in &gaps {
        assert!(*gap >= Duration::from_millis(2400) && *gap <= Duration::from_millis(3000), "{gaps:?}");
    }
    let conditional = server.requests().iter().filter(|r| r.header("if-none-match").is_some()).count();
    assert!(conditional >= 2, "the polls after the first are conditional: {conditional}");
}

#[test]
fn github_failures_and_cancellations_fail_the_step_naming_the_run() {
    for (outcome, word) in [
        (Outcome::Failure, "failure"),
        (Outcome::Cancelled, "cancelled"),
        (Outcome::Other("timed_out".into()), "timed_out"),
    ] {
        let (server, env) = github(GITHUB_STEP);
        server.script(outcome, 0);
        let out = run(&env, &["run", "deploy", "--yes"]);
        out.code(1);
        let id = server.runs()[0].id;
        assert!(
            out.stderr
                .contains(&format!("run {id} (https://github.com/va/vets-website/actions/runs/{id}) ended: {word}")),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn github_waiting_for_approval_needs_a_human_and_is_never_a_success() {
    let (server, env) = github("{ pipeline: deploy.yml, ref: main, timeout: 4s }");
    server.script(Outcome::NeedsHuman, 0);
    let out = run(&env, &["run", "deploy", "--yes"]);
    out.code(1);
    let id = server.runs()[0].id;
    assert!(out.stderr.contains("needs a human: waiting for a reviewer to approve the deployment"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("run {id} (https://github.com/va/vets-website/actions/runs/{id}) did not finish within 4s (it was waiting for a human")), "{}", out.stderr);
    assert!(out.stderr.contains("rollout never cancels a remote run"), "{}", out.stderr);
}

#[test]
fn github_without_run_details_finds_the_run_it_started() {
    for mode in [Mode::NoDetails, Mode::GhesOld, Mode::GhesOldBadRequest] {
        let (server, env) = github(GITHUB_STEP);
        server.set_mode(mode);
        server.script(Outcome::Success, 1);
        let out = run(&env, &["--json", "run", "deploy", "--yes"]);
        out.code(0);
        assert_eq!(server.runs().len(), 1, "{mode:?}: triggered once");
        assert_eq!(outputs(&out)["run_id"], server.runs()[0].id.to_string(), "{mode:?}");
        let listed =
            server.requests().into_iter().find(|r| r.path.ends_with("/workflows/deploy.yml/runs")).expect("a listing");
        assert_eq!(listed.query_param("event").as_deref(), Some("workflow_dispatch"));
        assert_eq!(listed.query_param("branch").as_deref(), Some("main"));
        assert!(listed.query_param("created").unwrap().starts_with(">="));
    }
}

#[test]
fn github_run_not_found_after_a_204_fails_without_triggering_again() {
    let (server, env) = github("{ pipeline: deploy.yml, ref: main, timeout: 6s }");
    server.set_mode(Mode::NoDetails);
    server.hide_new_runs();
    let out = run(&env, &["run", "deploy", "--yes"]);
    out.code(1);
    assert!(
        out.stderr.contains("workflow deploy.yml was dispatched on main, but no run of it created since"),
        "{}",
        out.stderr
    );
    let runs_page = format!("{}/va/vets-website/actions/workflows/deploy.yml", server.url());
    assert!(
        out.stderr.contains(&format!("look for it at {runs_page} (rollout does not trigger it again)")),
        "{}",
        out.stderr
    );
    assert_eq!(server.count("POST"), 1);
}

#[test]
fn github_a_429_with_retry_after_is_waited_for() {
    let (server, env) = github(GITHUB_STEP);
    server.fault(Fault::RateLimited { retry_after: 1 });
    let started = Instant::now();
    run(&env, &["run", "deploy", "--yes"]).code(0);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(server.runs().len(), 1);
}

#[test]
fn github_preview_checks_workflow_ref_and_sends_only_gets() {
    let (server, env) = github(GITHUB_STEP);
    let out = run(&env, &["run", "deploy", "--dry-run"]);
    out.code(0);
    assert!(
        out.stderr.contains(
            "pipeline deploy.yml on main (commit not known: git is not configured) via GitHub Actions va/vets-website, waits up to 30s"
        ),
        "{}",
        out.stderr
    );
    server.set_workflow_state("va/vets-website", "deploy.yml", "disabled_manually");
    let out = run(&env, &["run", "deploy", "--dry-run"]);
    out.code(3);
    assert!(
        out.stderr.contains("workflow deploy.yml in va/vets-website is disabled_manually: enable it first"),
        "{}",
        out.stderr
    );
    for (step, message) in [
        ("{ pipeline: nope.yml, ref: main }", "workflow nope.yml does not exist in va/vets-website"),
        ("{ pipeline: deploy.yml, ref: no-such-branch }", "ref no-such-branch does not exist in va/vets-website"),
    ] {
        let (server, env) = github(step);
        let out = run(&env, &["run", "deploy", "--yes"]);
        out.code(3);
        assert!(out.stderr.contains(message), "{}", out.stderr);
        assert_eq!(server.non_get_count(), 0);
    }
    assert_eq!(server.non_get_count(), 0);
}

#[test]
fn github_wrong_token_is_named_and_never_shown() {
    let (server, env) = github(GITHUB_STEP);
    let wrong = "ghp_wrongwrongwrong0000";
    let out = env.run_with(&["--json", "run", "deploy", "--yes"], &[("CI_TOKEN", wrong)]);
    out.code(3);
    assert!(out.stderr.contains("401 Unauthorized: Bad credentials; check CI_TOKEN"), "{}", out.stderr);
    for text in [&out.stdout, &out.stderr, &env.journal_text()] {
        assert!(!text.contains(wrong));
    }
    assert!(server.runs().is_empty());
}

#[test]
fn ctrl_c_while_waiting_keeps_the_run_id_and_never_cancels_the_run() {
    let (server, env) = github(GITHUB_STEP);
    server.script(Outcome::Never, 0);
    let mut child = env.command(&["run", "deploy", "--yes"]).env("CI_TOKEN", TOKEN).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.state_dir().join("runs").exists() || !env.journal_text().contains("step_triggered") {
        assert!(Instant::now() < deadline, "the run was never triggered");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let journal = env.journal();
    let id = server.runs()[0].id.to_string();
    assert!(journal.iter().any(|e| e["event"] == "step_triggered" && e["pipeline_run"] == id.as_str()));
    let failed = journal.iter().find(|e| e["event"] == "step_failed").unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains(&format!("interrupted while waiting for pipeline deploy.yml at ref main run {id}"))
    );
    assert_eq!(journal.last().unwrap()["status"], "interrupted");
    assert_eq!(server.non_get_count(), 1, "only the dispatch: the run was not cancelled");
}

pub(crate) fn gitlab(ci_extra: &str) -> (GitLab, Env) {
    let server = GitLab::start(TOKEN);
    server.add_project("va/vets-website", 42);
    server.add_branch("va/vets-website", "main", SHA);
    let env = workspace(
        &format!("{{ provider: gitlab, repo: va/vets-website, url: \"{}\"{ci_extra} }}", server.url()),
        "{ pipeline: deploy, ref: main, inputs: { REASON: incident }, timeout: 20s }",
    );
    (server, env)
}

#[test]
fn gitlab_pipeline_with_a_token_succeeds_with_variables() {
    let (server, env) = gitlab(", token_env: CI_TOKEN");
    server.script(Outcome::Success, 1);
    let out = run(&env, &["--json", "run", "deploy", "--yes"]);
    out.code(0);
    let pipeline = &server.runs()[0];
    assert_eq!(pipeline.source, Source::Api);
    assert_eq!(pipeline.git_ref, "main");
    assert!(pipeline.variables.contains(&("REASON".into(), "incident".into())));
    assert!(pipeline.variables.contains(&("ROLLOUT_PIPELINE".into(), "deploy".into())));
    let outputs = outputs(&out);
    assert_eq!(outputs["run_id"], pipeline.id.to_string());
    assert_eq!(outputs["commit"], SHA);
    assert_eq!(outputs["conclusion"], "success");
}

#[test]
fn gitlab_trigger_token_and_manual_jobs() {
    let (server, env) = gitlab(", token_env: CI_TOKEN");
    server.add_trigger_token("va/vets-website", "glptt-trigger-1234567");
    env.write("rollout.yaml", &env.read("rollout.yaml").replace("url:", "trigger_token_env: TRIGGER, url:"));
    server.script(Outcome::NeedsHuman, 0);
    env.write("runbooks/deploy.yaml", &env.read("runbooks/deploy.yaml").replace("timeout: 20s", "timeout: 3s"));
    let out = env.run_with(&["run", "deploy", "--yes"], &[("TRIGGER", "glptt-trigger-1234567"), ("CI_TOKEN", TOKEN)]);
    out.code(1);
    assert_eq!(server.runs()[0].source, Source::Trigger("glptt-trigger-1234567".into()));
    assert!(out.stderr.contains("needs a human: a manual job is waiting for someone to play it"), "{}", out.stderr);
    assert!(!out.stderr.contains("glptt-trigger-1234567"));
}

#[test]
fn gitlab_failed_pipeline_and_unknown_project() {
    let (server, env) = gitlab(", token_env: CI_TOKEN");
    server.script(Outcome::Failure, 0);
    let out = run(&env, &["run", "deploy", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("ended: failed"), "{}", out.stderr);
    env.write("rollout.yaml", &env.read("rollout.yaml").replace("va/vets-website", "va/nope"));
    let out = run(&env, &["run", "deploy", "--dry-run"]);
    out.code(3);
    assert!(out.stderr.contains("GitLab project va/nope does not exist"), "{}", out.stderr);
}

pub(crate) fn jenkins(server: &Jenkins, auth: &str) -> Env {
    server.add_job("deploys/vets-website");
    workspace(
        &format!("{{ provider: jenkins, url: \"{}\", username: deployer, {auth} }}", server.url()),
        "{ pipeline: deploys/vets-website, ref: main, inputs: { REASON: incident }, timeout: 20s }",
    )
}

#[test]
fn jenkins_queue_item_becomes_a_build_and_its_number_is_the_run_id() {
    let server = Jenkins::start("deployer", TOKEN);
    let env = jenkins(&server, "token_env: CI_TOKEN");
    server.queue_script(1, QueueEnd::Starts);
    server.script(Outcome::Success, 1);
    let out = run(&env, &["--json", "run", "deploy", "--yes"]);
    out.code(0);
    let build = &server.runs()[0];
    assert_eq!(build.job, "deploys/vets-website");
    assert!(
        build.params.contains(&("ROLLOUT_REF".into(), "main".into()))
            && build.params.contains(&("REASON".into(), "incident".into()))
    );
    let outputs = outputs(&out);
    assert_eq!(outputs["run_id"], build.number.unwrap().to_string());
    assert!(
        outputs["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/job/deploys/job/vets-website/{}/", build.number.unwrap())),
        "{outputs}"
    );
}

#[test]
fn jenkins_a_trigger_merged_into_a_queued_item_303_is_followed_too() {
    let server = Jenkins::start("deployer", TOKEN);
    let env = jenkins(&server, "token_env: CI_TOKEN");
    env.write("runbooks/first.yaml", &env.read("runbooks/deploy.yaml").replace("timeout: 20s", "timeout: 2s"));
    server.queue_script(4, QueueEnd::Starts);
    server.script(Outcome::Success, 0);
    let out = run(&env, &["run", "first", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("did not finish within 2s"), "{}", out.stderr);
    server.merge_next_trigger();
    run(&env, &["run", "deploy", "--yes"]).code(0);
    let runs = server.runs();
    assert_eq!(runs.len(), 1, "the second trigger was merged into the queued item");
    assert_eq!(runs[0].merged, 1);
}

#[test]
fn jenkins_with_a_password_fetches_a_crumb() {
    let server = Jenkins::with_password("deployer", "hunter2-password");
    let env = jenkins(&server, "password_env: JENKINS_PASSWORD");
    server.queue_script(0, QueueEnd::Starts);
    server.script(Outcome::Success, 0);
    let out = env.run_with(&["run", "deploy", "--yes"], &[("JENKINS_PASSWORD", "hunter2-password")]);
    out.code(0);
    assert!(server.requests().iter().any(|r| r.path == "/crumbIssuer/api/json"));
    let post = server.requests().into_iter().find(|r| r.method == "POST").unwrap();
    assert!(
        post.header("jenkins-crumb").is_some() && post.header("cookie").is_some_and(|c| c.starts_with("JSESSIONID"))
    );
}

#[test]
fn jenkins_cancelled_in_the_queue_and_failed_builds() {
    let server = Jenkins::start("deployer", TOKEN);
    let env = jenkins(&server, "token_env: CI_TOKEN");
    server.queue_script(0, QueueEnd::Cancelled);
    let out = run(&env, &["run", "deploy", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("ended: cancelled in the queue"), "{}", out.stderr);
    server.queue_script(0, QueueEnd::Starts);
    server.script(Outcome::Other("UNSTABLE".into()), 0);
    let out = run(&env, &["run", "deploy", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("ended: unstable"), "{}", out.stderr);
}

#[test]
fn buildkite_build_succeeds_and_blocked_needs_a_human() {
    let server = Buildkite::start(TOKEN);
    server.add_pipeline("va", "vets-website-deploy");
    let env = workspace(
        &format!("{{ provider: buildkite, repo: va, token_env: CI_TOKEN, url: \"{}\" }}", server.url()),
        "{ pipeline: vets-website-deploy, ref: main, timeout: 4s }",
    );
    server.script(Outcome::Success, 1);
    let out = run(&env, &["--json", "run", "deploy", "--yes"]);
    out.code(0);
    let build = &server.runs()[0];
    assert_eq!((build.branch.as_str(), build.commit.as_str()), ("main", "HEAD"));
    assert_eq!(outputs(&out)["url"], format!("https://buildkite.com/va/vets-website-deploy/builds/{}", build.number));
    server.script(Outcome::NeedsHuman, 0);
    let out = run(&env, &["run", "deploy", "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("needs a human: the build is blocked until someone unblocks it"), "{}", out.stderr);
}

#[test]
fn buildkite_polling_stays_within_the_rate_limit() {
    let server = Buildkite::start(TOKEN);
    server.add_pipeline("va", "deploy");
    server.set_rate_limits(200, 8);
    let env = workspace(
        &format!("{{ provider: buildkite, repo: va, token_env: CI_TOKEN, url: \"{}\" }}", server.url()),
        "{ pipeline: deploy, ref: main, timeout: 60s }",
    );
    server.script_for(Outcome::Success, Duration::from_secs(6));
    let out = run(&env, &["run", "deploy", "--yes"]);
    out.code(0);
    assert!(server.requests().len() <= 8, "{} requests for a limit of 8 a minute", server.requests().len());
}

// ---------------------------------------------------------------------------------------------
// Exactly one trigger per step: retries never re-send one that may have been received

/// `retries: 2` on the workspace's deploy step.
fn with_retries(env: &Env) {
    env.write("runbooks/deploy.yaml", &env.read("runbooks/deploy.yaml").replace("    ci:", "    retries: 2\n    ci:"));
}

/// No answer within `http.timeout` (2 s), a 502, and a 200 of an unexpected shape.
fn uncertain_triggers() -> [Fault; 3] {
    [Fault::Delay(Duration::from_secs(3)), Fault::Status(502), Fault::Status(200)]
}

/// With `retries: 2`, the trigger request (a POST to `path`) times out, gets a 502, or gets a
/// 200 that does not say which run it started: each is sent once; the step fails (exit 1)
/// naming where to look, and the 200 is journaled as a run triggered with an unknown id.
/// `start` sets up a fresh emulator and workspace, and says where the runs are shown.
fn assert_triggered_once<S: Deref<Target = Server>>(provider: &str, path: &str, start: impl Fn() -> (S, Env, String)) {
    let mut sent = Vec::new();
    let mut runs = Vec::new();
    for fault in uncertain_triggers() {
        let (server, env, look_at) = start();
        with_retries(&env);
        server.fail_path(path, fault.clone());
        let out = run(&env, &["--json", "run", "deploy", "--yes"]);
        sent.push(server.requests().iter().filter(|r| r.method == "POST" && r.path == path).count());
        runs.push((fault, out, look_at));
    }
    assert_eq!(sent, [1, 1, 1], "{provider}: trigger requests sent after a timeout, a 502 and an unexpected 200");
    for (fault, out, look_at) in runs {
        out.code(1);
        assert!(!out.stderr.contains("attempt 1 failed"), "{provider} {fault:?}: retried\n{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("look at {look_at}"))
                || out.stderr.contains(&format!("look for it at {look_at}")),
            "{provider} {fault:?}: where to look\n{}",
            out.stderr
        );
        let triggered: Vec<Value> = out.events().into_iter().filter(|e| e["event"] == "step_triggered").collect();
        if fault == Fault::Status(200) {
            assert_eq!(triggered.len(), 1, "{provider}: the accepted trigger is journaled");
            assert_eq!(
                (triggered[0]["pipeline_run"].as_str(), triggered[0]["url"].as_str()),
                (Some("unknown"), Some(look_at.as_str()))
            );
            assert!(
                out.stderr.contains("the pipeline was probably triggered, but which run it started is not known"),
                "{}",
                out.stderr
            );
        } else {
            assert!(triggered.is_empty(), "{provider} {fault:?}: no run id to journal: {triggered:?}");
            assert!(out.stderr.contains("the trigger may have started a run"), "{provider} {fault:?}\n{}", out.stderr);
        }
    }
}

#[test]
fn github_a_dispatch_that_may_have_been_received_is_never_sent_again() {
    assert_triggered_once("github", "/repos/va/vets-website/actions/workflows/deploy.yml/dispatches", || {
        let (server, env) = github(GITHUB_STEP);
        let look_at = format!("{}/va/vets-website/actions/workflows/deploy.yml", server.url());
        (server, env, look_at)
    });
}

#[test]
fn gitlab_a_pipeline_that_may_have_been_created_is_never_created_again() {
    assert_triggered_once("gitlab", "/api/v4/projects/va%2Fvets-website/pipeline", || {
        let (server, env) = gitlab(", token_env: CI_TOKEN");
        let look_at = format!("{}/va/vets-website/-/pipelines", server.url());
        (server, env, look_at)
    });
}

#[test]
fn jenkins_a_build_that_may_have_been_queued_is_never_queued_again() {
    assert_triggered_once("jenkins", "/job/deploys/job/vets-website/buildWithParameters", || {
        let server = Jenkins::start("deployer", TOKEN);
        let env = jenkins(&server, "token_env: CI_TOKEN");
        let look_at = format!("{}/job/deploys/job/vets-website/", server.url());
        (server, env, look_at)
    });
}

#[test]
fn buildkite_a_build_that_may_have_been_created_is_never_created_again() {
    assert_triggered_once("buildkite", "/v2/organizations/va/pipelines/vets-website-deploy/builds", || {
        let server = Buildkite::start(TOKEN);
        server.add_pipeline("va", "vets-website-deploy");
        let env = workspace(
            &format!("{{ provider: buildkite, repo: va, token_env: CI_TOKEN, url: \"{}\" }}", server.url()),
            "{ pipeline: vets-website-deploy, ref: main, timeout: 20s }",
        );
        (server, env, "https://buildkite.com/va/vets-website-deploy/builds".to_string())
    });
}

#[test]
fn a_refused_trigger_may_be_tried_again() {
    let (server, env) = github(GITHUB_STEP);
    with_retries(&env);
    let path = "/repos/va/vets-website/actions/workflows/deploy.yml/dispatches";
    server.fail_path(path, Fault::Status(422));
    let out = run(&env, &["run", "deploy", "--yes"]);
    out.code(1);
    let sent = server.requests().iter().filter(|r| r.method == "POST" && r.path == path).count();
    assert_eq!(sent, 3, "a 422 started nothing, so retries: 2 sends it three times\n{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// Preflight of the command provider: the program and its script, as they will be run

/// The sandbox (git configured) with `command` as its ci command and a deploy runbook.
fn command_workspace(command: &str) -> Env {
    let env = Env::new();
    let config = env.read("rollout.yaml");
    env.write("rollout.yaml", &config.replace("command: [sh, deploy.sh]", &format!("command: {command}")));
    env.write(
        "runbooks/deploy.yaml",
        "version: 1\ntitle: Deploy\nsteps:\n  - id: deploy\n    name: Deploy\n    ci: { pipeline: deploy, ref: main, timeout: 45m }\n",
    );
    env
}

#[test]
fn command_preflight_finds_the_program_and_its_script_as_they_will_be_run() {
    for (command, message) in [
        ("[no-such-deploy-tool]", "the ci command `no-such-deploy-tool` is not found on PATH"),
        ("[sh, deplyo.sh]", "the ci command's script deplyo.sh is not in"),
        ("[bash, -x, scripts/deploy.sh]", "the ci command's script scripts/deploy.sh is not in"),
        ("[./deploy.sh]", "deploy.sh is not executable: chmod +x it, or run it through its interpreter"),
    ] {
        let env = command_workspace(command);
        for mode in ["--dry-run", "--yes"] {
            let out = env.run(&["run", "deploy", mode]);
            out.code(3);
            assert!(out.stderr.contains(message), "{command} {mode}: {}", out.stderr);
        }
        assert!(!env.path("deployments.log").exists(), "{command}: nothing ran");
    }
    // Code, not a file, follows `-c`; a script that is there passes.
    for command in ["[sh, -c, \"sh deploy.sh\"]", "[sh, deploy.sh]"] {
        command_workspace(command).run(&["run", "deploy", "--dry-run"]).code(0);
    }
}

#[test]
fn jenkins_a_disabled_job_fails_preflight_and_is_never_triggered() {
    let server = Jenkins::start("deployer", TOKEN);
    let env = jenkins(&server, "token_env: CI_TOKEN");
    server.disable_job("deploys/vets-website");
    for mode in ["--dry-run", "--yes"] {
        let out = run(&env, &["run", "deploy", mode]);
        out.code(3);
        assert!(
            out.stderr
                .contains("Jenkins job deploys/vets-website is disabled (buildable: false): enable it in Jenkins"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(server.non_get_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// What the operator sees: the commit and the wait before, the run and its commit after

#[test]
fn the_preview_names_the_refs_commit_and_the_wait_and_the_outcome_names_the_run() {
    let env = command_workspace("[sh, deploy.sh]");
    let main = crate::support::git(&env.sandbox.remote(), &["rev-parse", "main"]);
    let out = env.run(&["run", "deploy", "--dry-run"]);
    out.code(0);
    let preview = format!("pipeline deploy on main (at {}) via command `sh deploy.sh`, waits up to 45m", &main[..7]);
    assert!(out.stderr.contains(&preview), "{}", out.stderr);
    let out = env.run(&["--json", "run", "deploy", "--yes"]);
    out.code(0);
    let run_id = outputs(&out)["run_id"].as_str().unwrap().to_string();
    assert!(out.stderr.contains(&format!("✓ run {run_id} succeeded at {} (", &main[..7])), "{}", out.stderr);
}
