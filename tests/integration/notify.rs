//! The notify step against a local Slack-compatible webhook: the message and the run's
//! progress are posted; a failure warns unless the step is required; the URL never shows.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::Env;
use crate::support::background::Background;
use crate::support::http_server::{Fault, Gate, Handler, Request, Response, Server};

/// Slack's incoming webhook: `POST {"text": ...}` answered `ok`.
pub struct Slack;

impl Handler for Slack {
    fn handle(&self, request: &Request) -> Response {
        match (request.method.as_str(), request.json()) {
            ("POST", Some(body)) if body["text"].is_string() => Response::text(200, "ok"),
            ("POST", _) => Response::text(400, "invalid_payload"),
            _ => Response::text(405, "method_not_allowed"),
        }
    }

    fn error(&self, status: u16, _retry_after: Option<u64>) -> Response {
        Response::text(status, "internal_error")
    }
}

pub const SECRET_PATH: &str = "/services/T000/B000/XXXXsecretXXXX";

fn workspace(required: bool) -> (Server, Env, String) {
    let server = Server::start(Arc::new(Slack), "");
    let env = Env::new();
    let config = env.read("rollout.yaml");
    env.write(
        "rollout.yaml",
        &format!("{config}notify: {{ webhook_env: INCIDENT_WEBHOOK }}\nhttp: {{ retries: 1, max_wait: 2s }}\n"),
    );
    env.write(
        "runbooks/tell.yaml",
        &format!("version: 1\ntitle: Tell\nsteps:\n  - id: off\n    name: Off\n    flag: {{ name: travel_pay_claim_status, state: off }}\n  - id: tell\n    name: Tell the channel\n    notify: {{ message: \"Toggle is off\", required: {required} }}\n  - id: after\n    name: After\n    manual: {{ instructions: done }}\n"),
    );
    let url = format!("{}{SECRET_PATH}", server.url());
    (server, env, url)
}

#[test]
fn the_message_and_the_progress_are_posted() {
    let (server, env, url) = workspace(false);
    let out = env.run_with(&["run", "tell", "--yes"], &[("INCIDENT_WEBHOOK", &url)]);
    out.code(0);
    let posts: Vec<Request> = server.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].path, SECRET_PATH);
    let text = posts[0].json().unwrap()["text"].as_str().unwrap().to_string();
    let run_id = env.journal()[0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(text, format!("Toggle is off\nrollout tell (run {run_id}): 1 of 3 steps done (off)"));
    assert!(out.stderr.contains("post to the webhook in INCIDENT_WEBHOOK: Toggle is off"), "{}", out.stderr);
    assert!(!out.stderr.contains("XXXXsecretXXXX"), "{}", out.stderr);
}

#[test]
fn a_failed_notification_warns_and_the_run_goes_on() {
    // A 4xx: the webhook refused it. A 5xx: it may have been posted all the same.
    for (status, warned, delivered) in
        [(404, "was not delivered", "false"), (500, "may not have been delivered", "unknown")]
    {
        let (server, env, url) = workspace(false);
        server.fail_path(SECRET_PATH, Fault::Status(status));
        let out = env.run_with(&["--json", "run", "tell", "--yes"], &[("INCIDENT_WEBHOOK", &url)]);
        out.code(0);
        assert!(out.stderr.contains(&format!("warning: the notification {warned}")), "{status}: {}", out.stderr);
        let tell = out.events().into_iter().find(|e| e["event"] == "step_succeeded" && e["step"] == "tell").unwrap();
        assert_eq!(tell["outputs"]["delivered"], delivered, "{status}");
        assert_eq!(server.count("POST"), 1, "{status}: posted again");
        for text in [&out.stdout, &out.stderr, &env.journal_text()] {
            assert!(!text.contains("XXXXsecretXXXX"), "the webhook URL leaked: {text}");
        }
    }
}

#[test]
fn a_required_notification_that_fails_fails_the_step() {
    let (server, env, url) = workspace(true);
    server.fail_path(SECRET_PATH, Fault::Status(500));
    let out = env.run_with(&["run", "tell", "--yes"], &[("INCIDENT_WEBHOOK", &url)]);
    out.code(1);
    assert!(out.stderr.contains("the notification to the webhook in INCIDENT_WEBHOOK failed"), "{}", out.stderr);
    assert!(out.stderr.contains("the message may have been received, so it is not posted again"), "{}", out.stderr);
    assert!(!out.stderr.contains("XXXXsecretXXXX"), "{}", out.stderr);
    let last = env.journal().pop().unwrap();
    assert_eq!((last["status"].as_str(), last["exit_code"].as_i64()), (Some("failed"), Some(1)));
}

#[test]
fn a_dry_run_posts_nothing_and_a_missing_webhook_variable_is_refused() {
    let (server, env, url) = workspace(false);
    env.run_with(&["run", "tell", "--dry-run"], &[("INCIDENT_WEBHOOK", &url)]).code(0);
    assert_eq!(server.non_get_count(), 0);
    let out = env.run(&["run", "tell", "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("INCIDENT_WEBHOOK is not set"), "{}", out.stderr);
}

/// `rollout run tell --yes` in the background, once the webhook has the post.
fn running_until_posted(server: &Server, env: &Env, url: &str) -> Background {
    let mut command = env.command(&["run", "tell", "--yes"]);
    command.env("INCIDENT_WEBHOOK", url).stdin(Stdio::null());
    let running = Background::spawn(command);
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.count("POST") == 0 {
        assert!(Instant::now() < deadline, "the post never came: {}", running.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    running
}

#[test]
fn a_required_notification_whose_answer_is_too_big_to_read_is_not_posted_again() {
    // The webhook answered, so the message arrived: the resume must not post it a second time.
    let (server, env, url) = workspace(true);
    server.fail_path(SECRET_PATH, Fault::HugeBody(5 * 1024 * 1024));
    let out = env.run_with(&["run", "tell", "--yes"], &[("INCIDENT_WEBHOOK", &url)]);
    out.code(1);
    let run_id = env.journal()[0]["run_id"].as_str().unwrap().to_string();
    let resumed = env.run_with(&["resume", &run_id, "--yes"], &[("INCIDENT_WEBHOOK", &url)]);
    resumed.code(1);
    assert!(
        resumed.stderr.contains("may have been posted to the webhook in INCIDENT_WEBHOOK, so it is not posted again: skip this step once you have checked the channel"),
        "{}",
        resumed.stderr
    );
    assert_eq!(server.count("POST"), 1, "posted again");
    assert!(out.stderr.contains("the request was received, so it was not sent again"), "{}", out.stderr);
}

/// A run of `tell` killed while the webhook holds its post (which it has received): its id.
fn killed_while_posting(server: &Server, env: &Env, url: &str) -> String {
    let gate = Gate::default();
    server.fail_path(SECRET_PATH, Fault::Hold(gate.clone()));
    running_until_posted(server, env, url).kill_hard();
    gate.open();
    env.journal()[0]["run_id"].as_str().unwrap().to_string()
}

#[test]
fn a_run_killed_while_posting_is_resumed_without_posting_again() {
    let (server, env, url) = workspace(false);
    let run_id = killed_while_posting(&server, &env, &url);
    let resumed = env.run_with(&["--json", "resume", &run_id, "--yes"], &[("INCIDENT_WEBHOOK", &url)]);
    resumed.code(0);
    assert!(
        resumed.stderr.contains("so it is not posted again; the run goes on (delivered: unknown)"),
        "{}",
        resumed.stderr
    );
    assert!(!resumed.stderr.contains("skip this step"), "the run goes on by itself: {}", resumed.stderr);
    let tell = resumed.events().into_iter().find(|e| e["event"] == "step_succeeded" && e["step"] == "tell").unwrap();
    assert_eq!(tell["outputs"]["delivered"], "unknown");
    assert_eq!(server.count("POST"), 1, "posted again");
}

#[test]
fn undo_of_a_run_killed_while_posting_says_a_message_cannot_be_taken_back() {
    let (server, env, url) = workspace(false);
    let run_id = killed_while_posting(&server, &env, &url);
    let undo = env.run_with(&["undo", &run_id, "--yes"], &[("INCIDENT_WEBHOOK", &url)]);
    undo.code(0);
    assert!(
        undo.stderr.contains("its message may have been posted, and a message sent cannot be taken back"),
        "{}",
        undo.stderr
    );
    assert_eq!(server.count("POST"), 1, "undo posted");
}

#[test]
fn ctrl_c_while_a_required_post_waits_out_a_429_is_an_interruption() {
    let (server, env, url) = workspace(true);
    let config = env.read("rollout.yaml").replace("max_wait: 2s", "max_wait: 60s");
    env.write("rollout.yaml", &config);
    server.fail_path(SECRET_PATH, Fault::RateLimited { retry_after: 30 });
    let running = running_until_posted(&server, &env, &url);
    std::thread::sleep(Duration::from_millis(300));
    running.interrupt();
    let out = running.finish(Duration::from_secs(20));
    out.code(130);
    assert!(out.stderr.contains("interrupted while waiting to retry POST"), "{}", out.stderr);
    assert!(!out.stderr.contains("XXXXsecretXXXX"), "{}", out.stderr);
    assert_eq!(server.count("POST"), 1);
}
