//! Whole-output snapshots of the main screens: the plan, a prompt, the end-of-run summary and
//! the errors, with run ids, paths, commits, durations, ports, pids and user@host redacted.

use crate::support::background::{Background, PATIENCE};
use crate::support::{Env, Outcome};

const CRITICAL: [&str; 3] = ["incident", "--severity", "critical"];

/// Patterns that change from run to run, each with what it is shown as.
const REDACTIONS: [(&str, &str); 11] = [
    (r"\d{8}T\d{6}Z-[a-z0-9-]+-[0-9a-f]{4}", "[RUN_ID]"),
    (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[TIMESTAMP]"),
    (r"\brun \d+\b", "run [CI_RUN]"),
    (r"/tmp/[^\s'`\x22)]*", "[TMP]"),
    (r"\b[0-9a-f]{40}\b", "[COMMIT]"),
    (r"\b[0-9a-f]{7}\b", "[SHORT_COMMIT]"),
    (r"\b\d+ ms\b", "[DURATION]"),
    (r"\b\d+\.\d s\b", "[DURATION]"),
    (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
    (r"\bpid \d+", "pid [PID]"),
    (r"\b[A-Za-z0-9._-]+@[A-Za-z0-9._-]+\b", "[USER@HOST]"),
];

/// The exit code and both streams, as one text.
fn screen(out: &Outcome) -> String {
    format!("exit code {}\n--- stdout\n{}\n--- stderr\n{}", out.code, out.stdout, out.stderr)
}

/// Snapshot `out` under `name` with every run-dependent part redacted.
fn assert_screen(name: &str, out: &Outcome) {
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in REDACTIONS {
        settings.add_filter(pattern, replacement);
    }
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, screen(out)));
}

#[test]
fn the_plan_of_a_dry_run() {
    let env = Env::new();
    let commit = format!("commit={}", env.sandbox.offending);
    let out = env.run(&["incident", "--severity", "high", "--var", &commit, "--dry-run"]);
    out.code(0);
    assert_screen("plan", &out);
}

#[test]
fn the_first_prompt_answered_abort() {
    let env = Env::new();
    let out = env.answer(&CRITICAL, "a\n");
    out.code(4);
    assert_screen("prompt", &out);
}

#[test]
fn the_summary_at_the_end_of_a_run() {
    let env = Env::new();
    let out = env.run(&[&CRITICAL[..], &["--yes"]].concat());
    out.code(0);
    assert_screen("summary", &out);
}

#[test]
fn an_unknown_feature_flag() {
    let env = Env::new();
    let out = env.run(&[&CRITICAL[..], &["--var", "flag=no_such_flag", "--yes"]].concat());
    out.code(3);
    assert_screen("error_unknown_feature_flag", &out);
}

#[test]
fn an_unknown_command_line_flag() {
    let env = Env::new();
    let out = env.run(&[&CRITICAL[..], &["--bogus"]].concat());
    out.code(2);
    assert_screen("error_usage", &out);
}

#[test]
fn a_runbook_typo() {
    let env = Env::new();
    let good = env.read("runbooks/low.yaml");
    env.write("runbooks/typo.yaml", &good.replacen("    name: Prioritize", "    nmae: Prioritize", 1));
    let out = env.run(&["validate", "runbooks/typo.yaml"]);
    out.code(2);
    assert_screen("error_runbook_typo", &out);
}

#[test]
fn a_lock_held_by_another_run() {
    let env = Env::new();
    let mut first = Background::interactive(&env, &CRITICAL);
    first.wait_for_stderr("[y]es / [s]kip / [a]bort / [d]etails");
    let second = env.run(&[&CRITICAL[..], &["--yes"]].concat());
    second.code(5);
    first.close_stdin();
    first.finish(PATIENCE).code(4);
    assert_screen("error_lock_held", &second);
}
