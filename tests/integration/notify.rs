//! The notify step against a local Slack-compatible webhook: the message and the run's
//! progress are posted; a failure warns unless the step is required; the URL never shows.

use std::sync::Arc;

use crate::support::Env;
use crate::support::http_server::{Fault, Handler, Request, Response, Server};

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
