//! Hostile and leaky edges: secrets in every form they take, userinfo in URLs, answers that
//! flood or never end, terminal escapes from services and CI logs, and the CI log's own order.

use std::sync::Arc;

use serde_json::json;

use crate::support::flipper::{Flipper, Gates};
use crate::support::http_server::{Fault, Handler, Request, Response, Server};
use crate::support::{Env, FLAG, Outcome};

/// A service that gives every request the same answer.
struct Answers(Response);

impl Handler for Answers {
    fn handle(&self, _request: &Request) -> Response {
        self.0.clone()
    }

    fn error(&self, status: u16, _retry_after: Option<u64>) -> Response {
        Response::json(status, &json!({ "message": "injected" }))
    }
}

/// A workspace whose flags live at `url` (Flipper's API) and a runbook `off` that turns the flag off.
fn flags_at(url: &str) -> Env {
    let env = Env::new();
    env.write(
        "rollout.yaml",
        &format!(
            "version: 1\nflags: {{ provider: flipper, url: \"{url}\", token_env: FLIPPER_TOKEN }}\nhttp: {{ timeout: 1s, connect_timeout: 1s, retries: 1, max_wait: 3s }}\n"
        ),
    );
    env.write(
        "runbooks/off.yaml",
        &format!("version: 1\ntitle: Off\nsteps:\n  - id: off\n    name: Turn it off\n    flag: {{ name: {FLAG}, state: off }}\n"),
    );
    env
}

/// A Flipper-shaped service that answers every request with `answer`.
fn answering(answer: Response) -> (Server, Env) {
    let server = Server::start(Arc::new(Answers(answer)), "/flipper/api");
    let env = flags_at(&server.url());
    (server, env)
}

fn off(env: &Env, token: &str) -> Outcome {
    env.run_with(&["--json", "run", "off", "--yes"], &[("FLIPPER_TOKEN", token)])
}

/// Nothing the run printed, emitted or journaled (if it got as far as a journal) holds `fragment`.
#[track_caller]
fn nowhere(env: &Env, out: &Outcome, fragment: &str) {
    let journal = if env.state_dir().join("runs").exists() { env.journal_text() } else { String::new() };
    for (place, text) in [("stdout", &out.stdout), ("stderr", &out.stderr), ("the journal", &journal)] {
        assert!(!text.contains(fragment), "{fragment:?} in {place}:\n{text}");
    }
}

#[test]
fn regression_a_secret_with_quotes_and_backslashes_survived_json_escaping() {
    let token = r#"sek"rit\TOK-4f2a9c"#;
    let said = format!("the token {token} is not valid");
    let (_server, env) = answering(Response::json(401, &json!({ "message": said })));
    let out = off(&env, token);
    assert!(out.stderr.contains("the token *** is not valid"), "{}", out.stderr);
    assert!(env.journal_text().contains("the token *** is not valid"), "{}", env.journal_text());
    nowhere(&env, &out, "TOK-4f2a9c");
}

#[test]
fn regression_a_body_cut_for_a_malformed_json_message_showed_a_token_prefix() {
    let token = "flipper-secret-0b7c9e1d2f3a4b5c";
    let body = format!("{{\"note\": \"{}\", \"echo\": \"{token}", "x".repeat(38));
    assert_eq!(body.find(token), Some(60), "the 80-character cut falls inside the token");
    let json = vec![("Content-Type".to_string(), "application/json".to_string())];
    let (_server, env) = answering(Response { status: 200, headers: json, body: body.into_bytes() });
    let out = off(&env, token);
    assert!(out.stderr.contains("malformed JSON"), "{}", out.stderr);
    nowhere(&env, &out, "flipper-secret");
}

#[test]
fn regression_a_token_as_the_user_name_of_the_remote_url_was_shown() {
    let env = Env::new();
    let token = "ghp_leak0123456789abcdef";
    let url = format!("https://{token}@127.0.0.1:9/o/r.git");
    crate::support::git(&env.sandbox.app(), &["remote", "set-url", "origin", &url]);
    let revert = format!("revert: {{ commit: \"{}\", push: true }}", env.sandbox.offending);
    env.write(
        "runbooks/revert.yaml",
        &format!("version: 1\ntitle: Revert\nsteps:\n  - id: revert\n    name: Revert\n    {revert}\n"),
    );
    let out = env.run(&["--json", "run", "revert", "--dry-run"]);
    assert!(out.stderr.contains("https://***@127.0.0.1:9/o/r.git"), "{}", out.stderr);
    nowhere(&env, &out, "ghp_leak");
}

#[test]
fn regression_a_url_that_does_not_parse_was_shown_with_its_password() {
    let env = flags_at("https://deploy:hunter2-secret@flags example.gov/api");
    let out = off(&env, "flipper-token-value");
    assert!(out.stderr.contains("https://***@flags example.gov/api` is not a URL"), "{}", out.stderr);
    nowhere(&env, &out, "hunter2");
}

#[test]
fn regression_a_huge_answer_was_buffered_whole() {
    let server = Flipper::start("flipper-token-value");
    server.set(FLAG, Gates { boolean: true, ..Gates::default() });
    let env = flags_at(&server.url());
    server.fault(Fault::HugeBody(64 * 1024 * 1024));
    let out = off(&env, "flipper-token-value");
    assert!(out.stderr.contains("with 200 OK and a body over 4 MiB, the most rollout reads"), "{}", out.stderr);
    assert!(server.gates(FLAG).unwrap().boolean, "nothing was changed");
}

#[test]
fn regression_an_answer_that_never_ends_was_reported_as_malformed_json() {
    let server = Flipper::start("flipper-token-value");
    server.fail_path(&format!("/features/{FLAG}"), Fault::EndlessBody);
    let env = flags_at(&server.url());
    let out = off(&env, "flipper-token-value");
    assert!(out.stderr.contains("the answer (200 OK) did not finish within the 1 s timeout"), "{}", out.stderr);
    assert!(!out.stderr.contains("malformed JSON"), "{}", out.stderr);
}

#[test]
fn regression_terminal_escapes_in_a_service_message_drew_a_fake_success() {
    let said = "\x1b[2K\r✓ Run succeeded \u{202e}";
    let (_server, env) = answering(Response::json(500, &json!({ "message": said })));
    let out = off(&env, "flipper-token-value");
    assert!(!out.stderr.contains('\x1b') && !out.stderr.contains('\r'), "{:?}", out.stderr);
    assert!(out.stderr.contains(r"\u{1b}[2K\u{d}✓ Run succeeded \u{202e}"), "{}", out.stderr);
    assert!(!env.journal_text().contains("\\u001b"), "{}", env.journal_text());
}

/// The sandbox with a one-step deploy runbook whose ci command is `script` (run by sh).
fn deploying(script: &str) -> Env {
    let env = Env::new();
    env.write("deploy.sh", script);
    env.write(
        "runbooks/deploy.yaml",
        "version: 1\ntitle: Deploy\nsteps:\n  - id: deploy\n    name: Deploy\n    ci: { pipeline: deploy, ref: main }\n",
    );
    env
}

#[test]
fn regression_terminal_escapes_in_a_ci_log_tail_were_printed_raw() {
    let env = deploying("printf 'deploying\\n\\033[2K\\r\\342\\234\\223 Run succeeded\\n'; exit 1\n");
    let out = env.run(&["run", "deploy", "--yes"]);
    out.code(1);
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
    assert!(out.stderr.contains(r"| \u{1b}[2K\u{d}✓ Run succeeded"), "{}", out.stderr);
}

#[test]
fn regression_the_log_tail_mixed_up_stdout_and_stderr() {
    // perl's syswrite is one write(2) each, quicker than two pipes' readers can take turns.
    let env =
        deploying("exec perl -e 'for (0..1999) { syswrite STDOUT, \"out$_\\n\"; syswrite STDERR, \"err$_\\n\" }'\n");
    env.run(&["run", "deploy", "--yes"]).code(0);
    let journal = env.journal();
    let done = journal.iter().find(|e| e["event"] == "step_succeeded").expect("step_succeeded");
    let expected: Vec<String> = (1990..2000).flat_map(|i| [format!("out{i}"), format!("err{i}")]).collect();
    assert_eq!(done["outputs"]["log_tail"], expected.join("\n"));
}

#[test]
fn regression_the_ci_preview_said_command_runs_command() {
    let env = deploying("exit 0\n");
    let out = env.answer(&["run", "deploy"], "d\na\n");
    assert!(
        out.stderr.contains("command `sh deploy.sh` runs with ROLLOUT_PIPELINE=deploy ROLLOUT_REF=main"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("runs `sh deploy.sh`"), "{}", out.stderr);
}
