//! Nothing left behind: no temp file, no child process, no file descriptor that grows with
//! the steps, and no lock that stops the next run, after runs that succeed, fail, are
//! interrupted or killed (Linux's /proc is how the tests look; the product does not use it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::Env;
use crate::support::background::Background;

const CRITICAL: [&str; 4] = ["incident", "--severity", "critical", "--yes"];

/// A workspace whose runs keep their temp files in a folder of their own.
fn workspace() -> (Env, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    (Env::new().var("TMPDIR", tmp.path().to_str().unwrap()), tmp)
}

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
}

/// Processes (but this test's own) whose working directory is inside `dir`.
fn processes_in(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if pid == std::process::id() {
            continue;
        }
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!("{pid}: {}", String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

fn wait_for_deploy(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_in(env.dir()).iter().any(|p| p.contains("deploy.sh")) {
        assert!(Instant::now() < deadline, "the deploy never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn runs_that_succeed_fail_or_are_interrupted_leave_no_temp_file_child_or_lock() {
    let (env, tmp) = workspace();
    env.run(&CRITICAL).code(0);
    assert_eq!(leftovers(tmp.path()), Vec::<PathBuf>::new(), "after a run that succeeded");

    // A deploy that fails.
    env.write("deploy.sh", "echo failing; exit 1\n");
    env.sandbox.write_flags(&[crate::support::FLAG.to_string()]).unwrap();
    env.run(&CRITICAL).code(1);
    assert_eq!(leftovers(tmp.path()), Vec::<PathBuf>::new(), "after a run that failed");

    // Ctrl-C while the deploy runs: the deploy is stopped with the run.
    env.write("deploy.sh", "sleep 30\n");
    env.sandbox.write_flags(&[crate::support::FLAG.to_string()]).unwrap();
    let running = Background::spawn({
        let mut command = env.command(&CRITICAL);
        command.stdin(Stdio::null());
        command
    });
    wait_for_deploy(&env);
    running.interrupt();
    running.finish(Duration::from_secs(30)).code(130);
    assert_eq!(leftovers(tmp.path()), Vec::<PathBuf>::new(), "after a run that was interrupted");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_in(env.dir()).is_empty() {
        assert!(Instant::now() < deadline, "left running: {:?}", processes_in(env.dir()));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its lock is free: the next run is not refused.
    env.write("deploy.sh", "exit 0\n");
    env.sandbox.write_flags(&[crate::support::FLAG.to_string()]).unwrap();
    env.run(&CRITICAL).code(0);
    let lock = std::fs::read_dir(env.state_dir().join("locks")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read_to_string(lock).unwrap(), "", "a finished run empties its lock");
}

#[test]
fn a_killed_run_leaves_no_temp_file_and_its_lock_is_taken_over() {
    let (env, tmp) = workspace();
    env.write("deploy.sh", "sleep 2\n");
    let running = Background::spawn({
        let mut command = env.command(&CRITICAL);
        command.stdin(Stdio::null());
        command
    });
    wait_for_deploy(&env);
    running.kill_hard();
    assert_eq!(leftovers(tmp.path()), Vec::<PathBuf>::new(), "after a run that was killed");
    env.write("deploy.sh", "exit 0\n");
    env.sandbox.write_flags(&[crate::support::FLAG.to_string()]).unwrap();
    let next = env.run(&CRITICAL);
    next.code(0);
    assert!(next.stderr.contains("took over the lock left by run "), "{}", next.stderr);
}

/// The open file descriptors of process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn file_descriptors_do_not_grow_with_the_steps() {
    let mut runbook = String::from("version: 1\ntitle: Many\nsteps:\n");
    for i in 0..30 {
        runbook.push_str(&format!("  - id: s{i}\n    name: Step {i}\n    manual: {{ instructions: go }}\n"));
    }
    let (env, _tmp) = workspace();
    let env = env.runbook("many", &runbook);
    let mut run = Background::interactive(&env, &["run", "many"]);
    let pid = run.pid().as_raw() as u32;
    let mut counts = Vec::new();
    for i in 0..30 {
        run.wait_for_stderr(&format!("Step {}/30 · s{i}", i + 1));
        let asked = run.stderr().matches("[y]es / [s]kip / [a]bort").count();
        let deadline = Instant::now() + Duration::from_secs(30);
        while run.stderr().matches("[y]es / [s]kip / [a]bort").count() < asked.max(i + 1) {
            assert!(Instant::now() < deadline, "no prompt for step {i}");
            std::thread::sleep(Duration::from_millis(10));
        }
        counts.push(descriptors(pid));
        run.send("y\n");
    }
    run.finish(Duration::from_secs(30)).code(0);
    assert!(counts[0] > 0, "{counts:?}");
    assert_eq!(counts[5], counts[29], "descriptors at steps 6 and 30: {counts:?}");
}
