//! Prompts, exit codes and interruption of a walk.
//!
//! Every child process here is waited for with a deadline, so a prompt that never returns
//! fails its test instead of hanging the suite.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use serde_json::Value;

use crate::support::background::{Background, PATIENCE};
use crate::support::{Env, FLAG, Outcome};

/// The four choices of every prompt, as printed without color.
const CHOICES: &str = "[y]es / [s]kip / [a]bort / [d]etails";

/// Two steps: turn the flag off, then a manual step.
const OFF_RUNBOOK: &str = "\
version: 1
title: Turn the toggle off
steps:
  - id: disable
    name: Disable the feature toggle for all users
    flag: { name: travel_pay_claim_status, state: off }
  - id: debug
    name: Start debugging
    manual: { instructions: Open the dashboards and find the cause. }
";

/// An optional flag step, then a manual step.
const OPTIONAL_RUNBOOK: &str = "\
version: 1
title: Maybe reduce, then debug
steps:
  - id: reduce
    name: Reduce availability to half of the users
    optional: true
    flag: { name: travel_pay_claim_status, state: on, percent: 50 }
  - id: debug
    name: Start debugging
    manual: { instructions: Open the dashboards and find the cause. }
";

/// A CI step whose failure does not stop the run, then a flag step.
const CONTINUE_RUNBOOK: &str = "\
version: 1
title: Smoke test, then turn the toggle off
steps:
  - id: smoke
    name: Run the smoke tests
    on_failure: continue
    ci: { pipeline: smoke.yml, ref: main }
  - id: disable
    name: Disable the feature toggle for all users
    flag: { name: travel_pay_claim_status, state: off }
";

/// A CI step that is retried after a pause.
const RETRY_RUNBOOK: &str = "\
version: 1
title: Deploy, with retries
steps:
  - id: deploy-fix
    name: Test and deploy the fix through CI/CD
    retries: 2
    ci: { pipeline: deploy.yml, ref: main }
";

/// A deploy script that prints a line and fails.
const FAILING_DEPLOY: &str = "\
#!/bin/sh
echo \"$ROLLOUT_PIPELINE: 2 tests failed on $ROLLOUT_REF\"
exit 3
";

const CRITICAL: [&str; 3] = ["incident", "--severity", "critical"];

fn args<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

// ---------------------------------------------------------------------------------------------
// Processes with deadlines

/// `env.answer`, with a deadline: `input` on stdin (then closed), the interactive hook set.
fn answer(env: &Env, args: &[&str], input: &str) -> Outcome {
    let mut run = Background::interactive(env, args);
    run.send(input);
    run.close_stdin();
    run.finish(PATIENCE)
}

/// `env.run`, with a deadline: stdin closed and no hook, so not a terminal.
fn run(env: &Env, args: &[&str]) -> Outcome {
    let mut run = Background::spawn(env.command(args));
    run.close_stdin();
    run.finish(PATIENCE)
}

// ---------------------------------------------------------------------------------------------
// Journals

fn journals(env: &Env) -> Vec<PathBuf> {
    match std::fs::read_dir(env.state_dir().join("runs")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The events of a journal; a line still being written is left out.
fn read_journal(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Poll the only journal until one of its events satisfies `wanted`; returns the journal's path.
fn wait_for_event(env: &Env, what: &str, wanted: impl Fn(&Value) -> bool) -> PathBuf {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let [journal] = journals(env).as_slice()
            && read_journal(journal).iter().any(&wanted)
        {
            return journal.clone();
        }
        assert!(Instant::now() < deadline, "no {what} in the journal in time: {:?}", journals(env));
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is(event: &Value, kind: &str, step: &str) -> bool {
    event["event"] == kind && event["step"] == step
}

/// A journal as one line per event, with what matters to these tests.
fn trace(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let kind = e["event"].as_str().unwrap_or("?");
            let step = e["step"].as_str().unwrap_or_default();
            match kind {
                "run_started" => kind.to_string(),
                "step_confirmed" | "step_skipped" => format!("{kind} {step} by {}", e["by"].as_str().unwrap_or("?")),
                "run_finished" => format!("{kind} {} {}", e["status"].as_str().unwrap_or("?"), e["exit_code"]),
                _ => format!("{kind} {step}"),
            }
        })
        .collect()
}

/// The error of the step_failed event for `step`.
fn failure(events: &[Value], step: &str) -> String {
    let event = events.iter().find(|e| is(e, "step_failed", step));
    event.unwrap_or_else(|| panic!("no step_failed for {step}: {:#?}", trace(events)))["error"]
        .as_str()
        .unwrap()
        .to_string()
}

fn assert_stderr_has(out: &Outcome, text: &str) {
    assert!(out.stderr.contains(text), "stderr lacks {text:?}\n--- stderr\n{}", out.stderr);
}

fn assert_flag_untouched(env: &Env) {
    let flag = env.flag();
    assert_eq!(flag["defaultVariant"], "on", "{flag}");
    assert!(flag.get("targeting").is_none(), "{flag}");
}

fn assert_flag_off(env: &Env) {
    let flag = env.flag();
    assert_eq!(flag["defaultVariant"], "off", "{flag}");
    assert_eq!(flag["state"], "ENABLED", "{flag}");
    assert!(flag.get("targeting").is_none(), "{flag}");
}

/// Processes whose environment carries this run's id: the CI command and its children.
fn processes_of_run(run_id: &str) -> Vec<u32> {
    let marker = format!("ROLLOUT_RUN_ID={run_id}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // A process that ended (or a zombie) has no readable environment.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|var| var == marker.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Answers through the interactive hook

#[test]
fn yes_applies_the_step() {
    let env = Env::new();
    env.write("runbooks/off.yaml", OFF_RUNBOOK);
    let out = answer(&env, &["run", "off"], "y\ny\n");
    out.code(0);
    assert_stderr_has(&out, &format!("flag {FLAG} (flagd flags.json): on, 100% -> off"));
    assert_stderr_has(&out, "Run succeeded");
    assert_flag_off(&env);
    assert_eq!(
        trace(&env.journal()),
        [
            "run_started",
            "step_started disable",
            "step_preview disable",
            "step_confirmed disable by operator",
            "step_succeeded disable",
            "step_started debug",
            "step_preview debug",
            "step_confirmed debug by operator",
            "step_succeeded debug",
            "run_finished succeeded 0",
        ]
    );
}

#[test]
fn skip_records_the_operator_and_changes_nothing() {
    let env = Env::new();
    env.write("runbooks/off.yaml", OFF_RUNBOOK);
    let out = answer(&env, &["run", "off"], "s\ny\n");
    out.code(0);
    assert_stderr_has(&out, "skipped");
    assert_flag_untouched(&env);
    assert_eq!(
        trace(&env.journal()),
        [
            "run_started",
            "step_started disable",
            "step_preview disable",
            "step_skipped disable by operator",
            "step_started debug",
            "step_preview debug",
            "step_confirmed debug by operator",
            "step_succeeded debug",
            "run_finished succeeded 0",
        ]
    );
}

#[test]
fn abort_stops_the_run_with_exit_4() {
    let env = Env::new();
    let out = answer(&env, &CRITICAL, "y\na\n");
    out.code(4);
    assert_stderr_has(&out, "Run aborted by the operator");
    assert_flag_off(&env);
    let journal = env.journal();
    assert_eq!(
        trace(&journal),
        [
            "run_started",
            "step_started disable",
            "step_preview disable",
            "step_confirmed disable by operator",
            "step_succeeded disable",
            "step_started debug",
            "step_preview debug",
            "run_finished aborted 4",
        ]
    );
    assert!(!env.path("deployments.log").exists(), "the deploy ran after the abort");
}

#[test]
fn details_are_printed_then_the_prompt_comes_back() {
    let env = Env::new();
    env.write("runbooks/off.yaml", OFF_RUNBOOK);
    let out = answer(&env, &["run", "off"], "d\ny\ny\n");
    out.code(0);
    let details = format!("{FLAG} as flagd flags.json reports it now:");
    let shown = out.stderr.find(&details).unwrap_or_else(|| panic!("no details\n{}", out.stderr));
    assert!(out.stderr[shown..].contains(r#""defaultVariant": "on""#), "{}", out.stderr);
    // Asked for the flag step, details, asked again; then the manual step.
    assert_eq!(out.stderr.matches(CHOICES).count(), 3, "{}", out.stderr);
    assert!(out.stderr[shown..].contains(CHOICES), "no prompt after the details\n{}", out.stderr);
    assert_flag_off(&env);
    let journal = env.journal();
    assert!(journal.iter().any(|e| is(e, "step_confirmed", "disable") && e["by"] == "operator"));
    assert_eq!(trace(&journal).last().unwrap(), "run_finished succeeded 0");
}

#[test]
fn an_invalid_or_empty_answer_asks_again() {
    let env = Env::new();
    env.write("runbooks/off.yaml", OFF_RUNBOOK);
    let out = answer(&env, &["run", "off"], "maybe\n\ny\ny\n");
    out.code(0);
    assert_eq!(out.stderr.matches("Type y, s, a or d, then Enter.").count(), 2, "{}", out.stderr);
    assert_eq!(out.stderr.matches(CHOICES).count(), 4, "{}", out.stderr);
    assert_flag_off(&env);
    let journal = env.journal();
    assert!(journal.iter().any(|e| is(e, "step_confirmed", "disable") && e["by"] == "operator"));
    assert_eq!(trace(&journal).last().unwrap(), "run_finished succeeded 0");
}

#[test]
fn input_that_ends_at_a_prompt_aborts() {
    let env = Env::new();
    let out = answer(&env, &CRITICAL, "y\n");
    out.code(4);
    assert_stderr_has(&out, "stdin closed before an answer");
    assert_flag_off(&env);
    let journal = env.journal();
    let trace = trace(&journal);
    assert_eq!(&trace[trace.len() - 3..], ["step_started debug", "step_preview debug", "run_finished aborted 4"]);
    assert!(!journal.iter().any(|e| is(e, "step_started", "deploy-fix")));
}

#[test]
fn an_optional_step_is_skipped_by_an_empty_answer() {
    let env = Env::new();
    env.write("runbooks/optional.yaml", OPTIONAL_RUNBOOK);
    let out = answer(&env, &["run", "optional"], "\ny\n");
    out.code(0);
    assert_stderr_has(&out, "(Enter skips)");
    assert_flag_untouched(&env);
    assert_eq!(
        trace(&env.journal()),
        [
            "run_started",
            "step_started reduce",
            "step_preview reduce",
            "step_skipped reduce by operator",
            "step_started debug",
            "step_preview debug",
            "step_confirmed debug by operator",
            "step_succeeded debug",
            "run_finished succeeded 0",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// A real terminal

#[test]
fn a_terminal_session_answers_the_prompts() {
    let env = Env::new();
    env.write("runbooks/off.yaml", OFF_RUNBOOK);
    let mut session =
        rexpect::session::spawn_command(env.command(&["run", "off"]), Some(PATIENCE.as_millis() as u64)).unwrap();
    session.exp_string(&format!("flag {FLAG} (flagd flags.json): on, 100% -> off")).unwrap();
    session.exp_string(CHOICES).unwrap();
    session.send_line("y").unwrap();
    session.exp_string("Open the dashboards and find the cause.").unwrap();
    session.exp_string(CHOICES).unwrap();
    session.send_line("y").unwrap();
    session.exp_string("Run succeeded").unwrap();
    session.exp_eof().unwrap();
    assert_eq!(exit_code(&session), 0);
    assert_flag_off(&env);
    assert_eq!(trace(&env.journal()).last().unwrap(), "run_finished succeeded 0");
}

/// The exit code of a terminal session's process, once it has ended.
fn exit_code(session: &rexpect::session::PtySession) -> i32 {
    match session.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, code) => code,
        other => panic!("rollout did not exit normally: {other:?}"),
    }
}

#[test]
fn ctrl_c_at_a_terminal_prompt_exits_130() {
    let env = Env::new();
    let mut session =
        rexpect::session::spawn_command(env.command(&CRITICAL), Some(PATIENCE.as_millis() as u64)).unwrap();
    session.exp_string(CHOICES).unwrap();
    session.send_control('c').unwrap();
    session.exp_string("Run interrupted: 0 done, 0 skipped, 0 failed, 4 not run").unwrap();
    session.exp_eof().unwrap();
    assert_eq!(exit_code(&session), 130);
    let events = env.journal();
    assert!(failure(&events, "disable").contains("interrupted"));
    assert_eq!(trace(&events).last().unwrap(), "run_finished interrupted 130");
    assert_flag_untouched(&env);
}

#[test]
fn end_of_input_in_a_terminal_aborts() {
    let env = Env::new();
    let mut session =
        rexpect::session::spawn_command(env.command(&CRITICAL), Some(PATIENCE.as_millis() as u64)).unwrap();
    session.exp_string(CHOICES).unwrap();
    session.send_control('d').unwrap();
    session.exp_string("Run aborted").unwrap();
    session.exp_eof().unwrap();
    assert_eq!(exit_code(&session), 4);
    assert_eq!(trace(&env.journal()).last().unwrap(), "run_finished aborted 4");
    assert_flag_untouched(&env);
}

#[test]
fn ctrl_c_in_a_terminal_while_the_spinner_waits_for_a_deploy_exits_130() {
    let env = Env::new();
    let mut command = env.command(&args(&CRITICAL, &["--yes"]));
    command.env("ROLLOUT_REHEARSAL_DEPLOY_SECONDS", "30").env("TERM", "xterm");
    let mut session = rexpect::session::spawn_command(command, Some(PATIENCE.as_millis() as u64)).unwrap();
    session.exp_string("waiting for pipeline deploy.yml").unwrap();
    let journal = wait_for_event(&env, "step_confirmed of deploy-fix", |e| is(e, "step_confirmed", "deploy-fix"));
    let run_id = read_journal(&journal)[0]["run_id"].as_str().unwrap().to_string();
    wait_until("the deploy script started", PATIENCE, || !processes_of_run(&run_id).is_empty());
    session.send_control('c').unwrap();
    session.exp_string("Run interrupted").unwrap();
    session.exp_eof().unwrap();
    assert_eq!(exit_code(&session), 130);
    let events = read_journal(&journal);
    assert!(failure(&events, "deploy-fix").contains("interrupted"));
    assert_eq!(trace(&events).last().unwrap(), "run_finished interrupted 130");
    wait_until("the deploy script is gone", Duration::from_secs(3), || processes_of_run(&run_id).is_empty());
}

#[test]
fn a_dumb_terminal_still_says_what_it_waits_for() {
    // indicatif draws nothing when TERM is unset or dumb (Emacs shell, some IDE terminals);
    // the wait must be announced anyway.
    let env = Env::new();
    let mut command = env.command(&args(&CRITICAL, &["--yes", "--from", "deploy-fix"]));
    command.env("TERM", "dumb");
    let mut session = rexpect::session::spawn_command(command, Some(PATIENCE.as_millis() as u64)).unwrap();
    let before_result = session.exp_string("Step 4/4").unwrap();
    assert!(before_result.contains("waiting for pipeline deploy.yml"), "{before_result}");
    session.exp_eof().unwrap();
    assert_eq!(exit_code(&session), 0);
}

// ---------------------------------------------------------------------------------------------
// Without prompts

#[test]
fn no_terminal_and_no_yes_is_refused_at_once() {
    let env = Env::new();
    let started = Instant::now();
    let out = run(&env, &CRITICAL);
    out.code(2);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_stderr_has(&out, "not a terminal");
    assert_stderr_has(&out, "--yes");
    assert!(journals(&env).is_empty(), "a journal was written: {:?}", journals(&env));
    assert_flag_untouched(&env);
}

#[test]
fn yes_confirms_every_step_as_the_yes_flag() {
    let env = Env::new();
    let out = run(&env, &args(&CRITICAL, &["--yes"]));
    out.code(0);
    assert_stderr_has(&out, "yes (--yes)");
    assert_eq!(env.read("deployments.log"), "deploy.yml main\n");
    let flag = env.flag();
    assert_eq!(flag["targeting"]["fractional"], serde_json::json!([["on", 5], ["off", 95]]), "{flag}");
    let trace = trace(&env.journal());
    let confirmed: Vec<&String> = trace.iter().filter(|t| t.starts_with("step_confirmed")).collect();
    assert_eq!(
        confirmed,
        [
            "step_confirmed disable by yes-flag",
            "step_confirmed debug by yes-flag",
            "step_confirmed deploy-fix by yes-flag",
            "step_confirmed reenable by yes-flag",
        ]
    );
    assert!(!trace.iter().any(|t| t.starts_with("step_skipped")), "{trace:#?}");
    assert_eq!(trace.last().unwrap(), "run_finished succeeded 0");
}

// ---------------------------------------------------------------------------------------------
// Failures

#[test]
fn a_failing_step_ends_the_run_with_exit_1_and_its_output() {
    let env = Env::new();
    env.write("deploy.sh", FAILING_DEPLOY);
    let out = run(&env, &args(&CRITICAL, &["--yes"]));
    out.code(1);
    assert_stderr_has(&out, "deploy.yml: 2 tests failed on main");
    assert_stderr_has(&out, "exit code 3");
    assert_stderr_has(&out, "Run failed");
    let journal = env.journal();
    let error = failure(&journal, "deploy-fix");
    assert!(error.contains("deploy.yml: 2 tests failed on main") && error.contains("exit code 3"), "{error}");
    let trace = trace(&journal);
    assert_eq!(
        &trace[trace.len() - 6..],
        [
            "step_started deploy-fix",
            "step_preview deploy-fix",
            "step_confirmed deploy-fix by yes-flag",
            "step_triggered deploy-fix",
            "step_failed deploy-fix",
            "run_finished failed 1",
        ]
    );
    assert!(!journal.iter().any(|e| is(e, "step_started", "reenable")));
    assert_flag_off(&env);
}

#[test]
fn on_failure_continue_runs_the_next_step_but_still_exits_1() {
    let env = Env::new();
    env.write("deploy.sh", FAILING_DEPLOY);
    env.write("runbooks/smoke.yaml", CONTINUE_RUNBOOK);
    let out = run(&env, &["run", "smoke", "--yes"]);
    out.code(1);
    assert_stderr_has(&out, "smoke.yml: 2 tests failed on main");
    assert_stderr_has(&out, "continuing (on_failure: continue)");
    let journal = env.journal();
    assert!(failure(&journal, "smoke").contains("exit code 3"));
    assert_eq!(
        trace(&journal),
        [
            "run_started",
            "step_started smoke",
            "step_preview smoke",
            "step_confirmed smoke by yes-flag",
            "step_triggered smoke",
            "step_failed smoke",
            "step_started disable",
            "step_preview disable",
            "step_confirmed disable by yes-flag",
            "step_succeeded disable",
            "run_finished failed 1",
        ]
    );
    assert_flag_off(&env);
}

// ---------------------------------------------------------------------------------------------
// --from

#[test]
fn from_skips_the_earlier_steps_and_starts_at_the_named_one() {
    let env = Env::new();
    let out = run(&env, &args(&CRITICAL, &["--yes", "--from", "deploy-fix"]));
    out.code(0);
    assert_stderr_has(&out, "skipped (--from deploy-fix)");
    assert_eq!(env.read("deployments.log"), "deploy.yml main\n");
    // The flag was never turned off, and re-enabling is `direction: up`: it is not lowered.
    assert_stderr_has(&out, "on, 100%, already at or above on, 5%: not written (direction: up)");
    assert_flag_untouched(&env);
    let trace = trace(&env.journal());
    assert_eq!(
        &trace[..4],
        [
            "run_started",
            "step_skipped disable by operator",
            "step_skipped debug by operator",
            "step_started deploy-fix"
        ]
    );
    assert!(!trace.contains(&"step_started disable".to_string()), "{trace:#?}");
    assert!(!trace.contains(&"step_started debug".to_string()), "{trace:#?}");
    assert_eq!(trace.last().unwrap(), "run_finished succeeded 0");
}

#[test]
fn from_an_unknown_step_is_refused_with_the_known_ids() {
    let env = Env::new();
    let out = run(&env, &args(&CRITICAL, &["--yes", "--from", "deploy"]));
    out.code(2);
    assert_stderr_has(&out, "deploy");
    assert_stderr_has(&out, "disable, debug, deploy-fix, reenable");
    assert!(journals(&env).is_empty(), "a journal was written: {:?}", journals(&env));
    assert_flag_untouched(&env);
}

#[test]
fn from_past_a_step_whose_output_is_needed_is_refused_before_the_run() {
    // deploy-revert deploys {{ steps.revert.branch }}: starting after revert, it can never run.
    let env = Env::new();
    let before = env.fingerprint();
    let commit = format!("commit={}", env.sandbox.offending);
    let out = run(&env, &["incident", "--severity", "high", "--var", &commit, "--yes", "--from", "deploy-revert"]);
    out.code(2);
    assert_stderr_has(&out, "steps.revert.branch");
    assert!(journals(&env).is_empty(), "a journal was written: {:?}", journals(&env));
    assert_eq!(env.fingerprint(), before);
}

// ---------------------------------------------------------------------------------------------
// The lock

#[test]
fn a_second_run_of_a_locked_runbook_exits_5_naming_the_holder() {
    let env = Env::new();
    let mut first = Background::interactive(&env, &CRITICAL);
    first.wait_for_stderr(CHOICES);
    let first_journal = wait_for_event(&env, "step_preview of disable", |e| is(e, "step_preview", "disable"));
    let first_run_id = read_journal(&first_journal)[0]["run_id"].as_str().unwrap().to_string();

    let second = run(&env, &args(&CRITICAL, &["--yes"]));
    second.code(5);
    assert_stderr_has(&second, "locked");
    assert_stderr_has(&second, &format!("run {first_run_id}"));
    assert_stderr_has(&second, &format!("pid {}", first.pid()));
    // Whether a refused run leaves a journal is not the contract; if it does, it changed nothing.
    for journal in journals(&env).into_iter().filter(|p| *p != first_journal) {
        let trace = trace(&read_journal(&journal));
        assert!(!trace.iter().any(|t| t.starts_with("step_")), "{trace:#?}");
        assert!(trace.last().is_some_and(|t| t.ends_with(" 5")), "{trace:#?}");
    }
    assert_flag_untouched(&env);

    // The first run still holds its prompt; closing its stdin ends it as an abort.
    first.close_stdin();
    let first = first.finish(PATIENCE);
    first.code(4);
    assert_eq!(trace(&read_journal(&first_journal)).last().unwrap(), "run_finished aborted 4");
    // Its lock went with it.
    run(&env, &args(&CRITICAL, &["--yes"])).code(0);
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C

#[test]
fn ctrl_c_during_a_deploy_stops_it_and_exits_130() {
    let env = Env::new();
    let mut command = env.command(&args(&CRITICAL, &["--yes"]));
    command.env("ROLLOUT_REHEARSAL_DEPLOY_SECONDS", "30");
    let mut walk = Background::spawn(command);
    walk.close_stdin();
    let journal = wait_for_event(&env, "step_confirmed of deploy-fix", |e| is(e, "step_confirmed", "deploy-fix"));
    let run_id = read_journal(&journal)[0]["run_id"].as_str().unwrap().to_string();
    wait_until("the deploy script started", PATIENCE, || !processes_of_run(&run_id).is_empty());

    walk.interrupt();
    let interrupted = Instant::now();
    let out = walk.finish(Duration::from_secs(10));
    out.code(130);
    assert!(interrupted.elapsed() < Duration::from_secs(5), "exit took {:?}", interrupted.elapsed());
    assert_stderr_has(&out, "Run interrupted");

    let events = read_journal(&journal);
    let error = failure(&events, "deploy-fix");
    assert!(error.contains("interrupted"), "{error}");
    let trace = trace(&events);
    assert_eq!(&trace[trace.len() - 2..], ["step_failed deploy-fix", "run_finished interrupted 130"]);
    assert!(!events.iter().any(|e| is(e, "step_started", "reenable")));
    wait_until("the deploy script is gone", Duration::from_secs(3), || processes_of_run(&run_id).is_empty());
    assert!(!env.path("deployments.log").exists(), "the deploy finished anyway");
    assert_flag_off(&env);
}

#[test]
fn ctrl_c_during_the_pause_before_a_retry_exits_130() {
    let env = Env::new();
    env.write("deploy.sh", FAILING_DEPLOY);
    env.write("runbooks/retry.yaml", RETRY_RUNBOOK);
    let mut walk = Background::spawn(env.command(&["run", "retry", "--yes"]));
    walk.close_stdin();
    walk.wait_for_stderr("retrying in");
    walk.interrupt();
    let out = walk.finish(Duration::from_secs(5));
    out.code(130);
    assert_stderr_has(&out, "attempt 1 failed");
    let events = env.journal();
    assert!(failure(&events, "deploy-fix").contains("interrupted"), "{:#?}", trace(&events));
    let trace = trace(&events);
    assert_eq!(&trace[trace.len() - 2..], ["step_failed deploy-fix", "run_finished interrupted 130"]);
}

#[test]
fn sigterm_at_a_prompt_ends_the_run_like_ctrl_c() {
    let env = Env::new();
    let mut walk = Background::interactive(&env, &CRITICAL);
    walk.wait_for_stderr(CHOICES);
    let journal = wait_for_event(&env, "step_preview of disable", |e| is(e, "step_preview", "disable"));
    kill(walk.pid(), Signal::SIGTERM).unwrap();
    let out = walk.finish(Duration::from_secs(5));
    out.code(130);
    assert_eq!(trace(&read_journal(&journal)).last().unwrap(), "run_finished interrupted 130");
    assert_flag_untouched(&env);
}

#[test]
fn ctrl_c_at_a_prompt_exits_130() {
    let env = Env::new();
    let mut walk = Background::interactive(&env, &CRITICAL);
    walk.wait_for_stderr(CHOICES);
    let journal = wait_for_event(&env, "step_preview of disable", |e| is(e, "step_preview", "disable"));

    walk.interrupt();
    let out = walk.finish(Duration::from_secs(5));
    out.code(130);
    assert_stderr_has(&out, "Run interrupted");
    let events = read_journal(&journal);
    assert!(failure(&events, "disable").contains("interrupted"));
    assert_eq!(
        trace(&events),
        [
            "run_started",
            "step_started disable",
            "step_preview disable",
            "step_failed disable",
            "run_finished interrupted 130",
        ]
    );
    assert_flag_untouched(&env);
}

#[test]
fn quiet_prompts_name_their_step_and_an_enter_skip_is_said() {
    let env = Env::new();
    env.write("runbooks/optional.yaml", OPTIONAL_RUNBOOK);
    let out = answer(&env, &["-q", "run", "optional"], "\na\n");
    out.code(4);
    assert_stderr_has(&out, "Step 1/2 reduce (Reduce availability to half of the users): Apply?");
    assert_stderr_has(&out, "  – skipped");
    assert_stderr_has(&out, "Step 2/2 debug (Start debugging): Done?");
}
