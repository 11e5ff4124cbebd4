//! Output never stops a rollback: a closed or failing stderr, a reader that went away and a
//! lost terminal end the output, never the run, and the journal still gets every event.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::Env;
use crate::support::background::PATIENCE;

fn wait(child: &mut Child) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            return status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        }
        assert!(started.elapsed() < PATIENCE, "rollout did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn last_event(env: &Env) -> serde_json::Value {
    env.journal().pop().expect("a journal event")
}

fn assert_flag_at_five_percent(env: &Env) {
    let flag = env.flag();
    assert_eq!(flag["targeting"]["fractional"], serde_json::json!([["on", 5], ["off", 95]]), "{flag}");
}

#[test]
fn an_incident_with_stderr_closed_after_its_first_line_runs_to_its_end() {
    let env = Env::new();
    let mut command = env.command(&["incident", "--severity", "critical", "--yes"]);
    // The deploy outlasts the reader, so every later line meets a closed pipe.
    command.env("ROLLOUT_REHEARSAL_DEPLOY_SECONDS", "1").stdin(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("Runbook critical"), "{first}");
    // The reader is dropped here: stderr is a pipe nobody reads.
    let code = wait(&mut child);
    assert_eq!(code, 0, "the run went on to its end");
    let finished = last_event(&env);
    assert_eq!((finished["event"].as_str(), finished["status"].as_str()), (Some("run_finished"), Some("succeeded")));
    assert_flag_at_five_percent(&env);
}

#[test]
fn a_full_stderr_never_stops_a_rollback() {
    let env = Env::new();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let mut command = env.command(&["incident", "--severity", "critical", "--yes"]);
    command.stdin(Stdio::null()).stderr(full);
    let mut child = command.spawn().unwrap();
    assert_eq!(wait(&mut child), 0);
    assert_eq!(last_event(&env)["status"], "succeeded");
    assert_flag_at_five_percent(&env);
}

#[test]
fn a_prompt_nobody_can_see_stops_the_run_at_that_step_unchanged() {
    let env = Env::new();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let mut command = env.command(&["incident", "--severity", "critical"]);
    command.env("ROLLOUT_FORCE_INTERACTIVE", "1").stdin(Stdio::piped()).stderr(full);
    let mut child = command.spawn().unwrap();
    assert_eq!(wait(&mut child), 130);
    let journal = env.journal();
    let failed = journal.iter().find(|e| e["event"] == "step_failed").unwrap();
    assert!(failed["error"].as_str().unwrap().contains("at the prompt, which nobody can see"), "{failed}");
    assert_eq!(last_event(&env)["status"], "interrupted");
    assert_eq!(env.flag()["defaultVariant"], "on", "nothing was changed");
}

#[test]
fn a_lost_terminal_during_a_deploy_is_an_interruption_journaled_to_its_end() {
    let env = Env::new();
    let mut command = env.command(&["--json", "incident", "--severity", "critical", "--yes"]);
    command
        .env("ROLLOUT_REHEARSAL_DEPLOY_SECONDS", "30")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut events = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = events.next() {
        if line.contains("\"step_triggered\"") {
            break;
        }
    }
    // The terminal goes: its reader is gone and the session sends SIGHUP, twice as shells do.
    drop(child.stderr.take());
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    kill(pid, Signal::SIGHUP).unwrap();
    assert_eq!(wait(&mut child), 130);
    let journal = env.journal();
    let failed = journal.iter().find(|e| e["event"] == "step_failed").unwrap();
    assert_eq!(failed["step"], "deploy-fix");
    assert!(failed["error"].as_str().unwrap().contains("the terminal was lost (SIGHUP)"), "{failed}");
    assert_eq!(last_event(&env)["status"], "interrupted");
    let rest: Vec<String> = events.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("\"run_finished\"")), "the JSON events go on to the end: {rest:?}");
}

#[test]
fn validate_into_a_closed_pipe_exits_quietly() {
    let env = Env::new();
    let mut command = env.command(&["validate"]);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    assert_eq!(wait(&mut child), 0, "no crash, no abort: the reader went away");
}
