//! Mitigation first: a runbook's leading steps that only reduce exposure run while the rest of
//! the preflight goes on; a later step that cannot succeed stops the run before it.

use std::time::{Duration, Instant};

use crate::support::background::{Background, PATIENCE};
use crate::support::flipper::{Flipper, Gates};
use crate::support::github::{GitHub, Outcome};
use crate::support::http_server::{Fault, Gate};
use crate::support::{Env, FLAG, Outcome as Ran};

const TOKEN: &str = "ci-secret-3b8e61";
const FLIPPER_TOKEN: &str = "flipper-secret-5d0c27";
const SHA: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// Flags in the sandbox's flagd file, the pipeline on a GitHub emulator, and a runbook that turns
/// the flag off (`direction: down`) and then deploys; `extra` goes at the runbook's top.
fn workspace(extra: &str) -> (GitHub, Env) {
    let server = GitHub::start(TOKEN);
    server.add_branch("va/vets-website", "main", SHA);
    server.add_workflow("va/vets-website", "deploy.yml");
    let env = Env::new();
    env.write(
        "rollout.yaml",
        &format!(
            "version: 1\nflags: {{ provider: flagd, path: flags.json }}\nci: {{ provider: github, repo: va/vets-website, token_env: CI_TOKEN, url: \"{}\" }}\n",
            server.url()
        ),
    );
    env.write(
        "runbooks/mitigate.yaml",
        &format!(
            "version: 1\ntitle: Mitigate\n{extra}steps:\n  - id: disable\n    name: Turn it off\n    flag: {{ name: {FLAG}, state: off, direction: down }}\n  - id: deploy\n    name: Deploy the fix\n    ci: {{ pipeline: deploy.yml, ref: main, timeout: 1m }}\n"
        ),
    );
    let env = env.var("CI_TOKEN", TOKEN);
    (server, env)
}

fn flag_is_off(env: &Env) -> bool {
    env.flag()["defaultVariant"] == "off"
}

#[test]
fn the_flag_goes_off_while_the_rest_of_the_preflight_is_still_waiting() {
    let (server, env) = workspace("");
    server.script(Outcome::Success, 0);
    // The pipeline's check (GitHub's workflow) hangs until the test lets it through.
    let gate = Gate::default();
    server.fail_path("/repos/va/vets-website/actions/workflows/deploy.yml", Fault::Hold(gate.clone()));
    let mut command = env.command(&["run", "mitigate", "--yes"]);
    command.env("CI_TOKEN", TOKEN);
    let run = Background::spawn(command);
    let deadline = Instant::now() + PATIENCE;
    while !flag_is_off(&env) {
        assert!(Instant::now() < deadline, "the flag was not turned off while the check waited\n{}", run.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.runs().len(), 0, "nothing is triggered before the whole preflight is done");
    assert!(run.stderr().contains("preflight: 1 of 2 steps checked, the rest in the background"), "{}", run.stderr());
    gate.open();
    let out = run.finish(PATIENCE);
    out.code(0);
    assert!(out.stderr.contains("preflight: 1 more step checked"), "{}", out.stderr);
    assert_eq!(server.runs().len(), 1, "then the deploy ran, once");
}

#[test]
fn a_later_step_that_cannot_succeed_stops_the_run_before_it_and_the_mitigation_stays() {
    let (server, env) = workspace("");
    server.fail_path("/repos/va/vets-website/actions/workflows/deploy.yml", Fault::Status(404));
    let out = env.run(&["run", "mitigate", "--yes"]);
    out.code(3);
    assert!(flag_is_off(&env), "the mitigation was applied, and stays");
    assert!(out.stderr.contains("workflow deploy.yml does not exist"), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "Preflight failed: 1 of the 1 other steps cannot succeed; stopped before them, what was already done stays: disable"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(server.non_get_count(), 0, "nothing was triggered");
    let journal = env.journal();
    let events: Vec<(&str, &str)> = journal
        .iter()
        .filter(|e| e["event"] == "step_succeeded" || e["event"] == "step_failed")
        .map(|e| (e["event"].as_str().unwrap(), e["step"].as_str().unwrap()))
        .collect();
    assert_eq!(events, [("step_succeeded", "disable"), ("step_failed", "deploy")]);
    assert_eq!(journal.last().unwrap()["status"], "preflight_failed");
}

#[test]
fn all_first_checks_every_step_before_any_runs() {
    let (server, env) = workspace("preflight: all-first\n");
    server.fail_path("/repos/va/vets-website/actions/workflows/deploy.yml", Fault::Status(404));
    let flags = env.read("flags.json");
    let out = env.run(&["run", "mitigate", "--yes"]);
    out.code(3);
    assert!(
        out.stderr.contains("Preflight failed: 1 of 2 steps cannot succeed; nothing was changed."),
        "{}",
        out.stderr
    );
    assert_eq!(env.read("flags.json"), flags, "nothing was written");
}

#[test]
fn a_mitigation_that_cannot_be_checked_runs_nothing_and_every_step_is_reported() {
    let (server, env) = workspace("");
    server.fail_path("/repos/va/vets-website/actions/workflows/deploy.yml", Fault::Status(404));
    env.write("runbooks/mitigate.yaml", &env.read("runbooks/mitigate.yaml").replace(FLAG, "no_such_flag"));
    let out = env.run(&["run", "mitigate", "--yes"]);
    out.code(3);
    assert!(
        out.stderr.contains("Preflight failed: 2 of 2 steps cannot succeed; nothing was changed."),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("workflow deploy.yml does not exist"), "the rest was checked too: {}", out.stderr);
}

#[test]
fn a_dry_run_shows_the_whole_plan_first() {
    let (_server, env) = workspace("");
    let out = env.run(&["run", "mitigate", "--dry-run"]);
    out.code(0);
    assert!(out.stderr.contains("Dry run passed: 2 steps checked"), "{}", out.stderr);
    assert!(!out.stderr.contains("in the background"), "{}", out.stderr);
}

#[test]
fn an_abort_at_the_mitigation_prompt_ends_at_once_whatever_the_background_is_doing() {
    let (server, env) = workspace("");
    let gate = Gate::default();
    server.fail_path("/repos/va/vets-website/actions/workflows/deploy.yml", Fault::Hold(gate.clone()));
    let mut command = env.command(&["run", "mitigate"]);
    command.env("CI_TOKEN", TOKEN).env("ROLLOUT_FORCE_INTERACTIVE", "1");
    let mut run = Background::spawn(command);
    run.wait_for_stderr("Apply?");
    run.send("a\n");
    // The held check answers only after a minute: the run must not wait for it.
    let out = run.finish(Duration::from_secs(10));
    out.code(4);
    assert_eq!(env.journal().last().unwrap()["status"], "aborted");
    gate.open();
}

#[test]
fn ctrl_c_while_the_rest_is_still_checked_ends_the_run_and_says_the_mitigation_stays() {
    let (server, env) = workspace("");
    let gate = Gate::default();
    server.fail_path("/repos/va/vets-website/actions/workflows/deploy.yml", Fault::Hold(gate.clone()));
    let mut command = env.command(&["run", "mitigate", "--yes"]);
    command.env("CI_TOKEN", TOKEN);
    let mut run = Background::spawn(command);
    run.wait_for_stderr("waiting for the preflight of the other steps");
    assert!(flag_is_off(&env), "the mitigation was applied first");
    run.interrupt();
    let out = run.finish(Duration::from_secs(10));
    out.code(130);
    assert!(out.stderr.contains("interrupted while the other steps were being checked"), "{}", out.stderr);
    assert!(out.stderr.contains("disable  flag"), "the summary shows what was done: {}", out.stderr);
    assert_eq!(env.journal().last().unwrap()["status"], "interrupted");
    assert_eq!(server.runs().len(), 0, "nothing was triggered");
    gate.open();
}

#[test]
fn a_git_token_not_set_is_refused_before_anything_and_its_value_is_never_shown() {
    let env = Env::new();
    env.write("rollout.yaml", &env.read("rollout.yaml").replace("git: {", "git: { token_env: NO_SUCH_TOKEN_FOR_GIT,"));
    let flags = env.read("flags.json");
    let commit = env.sandbox.offending.to_string();
    let out = env.run(&["incident", "--severity", "high", "--yes", "--var", &format!("commit={commit}")]);
    out.code(2);
    assert!(out.stderr.contains("NO_SUCH_TOKEN_FOR_GIT is not set"), "{}", out.stderr);
    assert_eq!(env.read("flags.json"), flags, "nothing was changed");
    // Set, it is a secret from the start: an input holding it is scrubbed in the header and the
    // journal, although git itself is read only in the background.
    let secret = "gittoken-5b1c0e7d9a";
    let out = env.run_with(
        &[
            "incident",
            "--severity",
            "high",
            "--yes",
            "--var",
            &format!("commit={commit}"),
            "--var",
            &format!("fix_ref={secret}"),
        ],
        &[("NO_SUCH_TOKEN_FOR_GIT", secret)],
    );
    assert!(!out.stderr.contains(secret), "{}", out.stderr);
    assert!(!env.journal_text().contains(secret), "the journal never holds it");
}

#[test]
fn a_clone_the_background_cannot_open_stops_the_run_there_and_says_what_stays() {
    let env = Env::new();
    std::fs::rename(env.path("app"), env.path("app.gone")).unwrap();
    let commit = env.sandbox.offending.to_string();
    let out = env.run(&["incident", "--severity", "high", "--yes", "--var", &format!("commit={commit}")]);
    out.code(3);
    assert!(out.stderr.contains("what was already done stays: reduce"), "{}", out.stderr);
    assert_eq!(env.flag()["targeting"]["fractional"][0][1], 50, "the mitigation stays: {}", env.flag());
    let journal = env.journal();
    assert!(journal.iter().any(|e| e["event"] == "step_failed" && e["step"] == "revert"), "{journal:?}");
    assert_eq!(journal.last().unwrap()["status"], "preflight_failed");
}

#[test]
fn a_skipped_mitigation_has_the_rest_checked_again_from_the_live_state() {
    let env = Env::new();
    env.write(
        "runbooks/skip.yaml",
        &format!(
            "version: 1\ntitle: Skip\nsteps:\n  - id: off\n    name: Turn it off\n    optional: true\n    flag: {{ name: {FLAG}, state: off, direction: down }}\n  - id: look\n    name: Look\n    manual: {{ instructions: Look }}\n  - id: still-on\n    name: It is still on\n    flag: {{ name: {FLAG}, expect: on }}\n"
        ),
    );
    let out = env.answer(&["run", "skip"], "s\ny\n");
    out.code(0);
    assert!(
        !out.stderr.contains("but this step expects it on"),
        "judged as if the skipped step had run: {}",
        out.stderr
    );
    assert!(out.stderr.contains("as expected (only read, never written)"), "{}", out.stderr);
}

/// Flags on a Flipper emulator (its requests are seen) and the pipeline on GitHub's, both
/// tokens set, and a runbook `mitigate` that turns the flag off (`direction: down`), deploys,
/// then runs `more` (further steps, as YAML).
fn flipper_and_github(more: &str) -> (Flipper, GitHub, Env) {
    let flipper = Flipper::start(FLIPPER_TOKEN);
    flipper.set(FLAG, Gates::on());
    let github = GitHub::start(TOKEN);
    github.add_branch("va/vets-website", "main", SHA);
    github.add_workflow("va/vets-website", "deploy.yml");
    github.script(Outcome::Success, 0);
    let env = Env::new();
    env.write(
        "rollout.yaml",
        &format!(
            "version: 1\nflags: {{ provider: flipper, url: \"{}\", token_env: FLIPPER_TOKEN }}\nci: {{ provider: github, repo: va/vets-website, token_env: CI_TOKEN, url: \"{}\" }}\n",
            flipper.url(),
            github.url()
        ),
    );
    env.write(
        "runbooks/mitigate.yaml",
        &format!(
            "version: 1\ntitle: Mitigate\nsteps:\n  - id: disable\n    name: Turn it off\n    flag: {{ name: {FLAG}, state: off, direction: down }}\n  - id: deploy\n    name: Deploy the fix\n    ci: {{ pipeline: deploy.yml, ref: main, timeout: 1m }}\n{more}"
        ),
    );
    let env = env.var("CI_TOKEN", TOKEN).var("FLIPPER_TOKEN", FLIPPER_TOKEN);
    (flipper, github, env)
}

/// [`flipper_and_github`] with a banner taken down last. The deploy's check hangs until the
/// banner's read arrives: `args` returns once the run did.
fn checked_side_by_side(args: &[&str]) -> (Ran, Flipper, GitHub) {
    let (flipper, github, env) =
        flipper_and_github("  - id: banner\n    name: Take the banner down\n    flag: { name: banner, state: off }\n");
    flipper.set("banner", Gates::on());
    let gate = Gate::default();
    github.fail_path("/repos/va/vets-website/actions/workflows/deploy.yml", Fault::Hold(gate.clone()));
    let mut command = env.command(args);
    command.env("CI_TOKEN", TOKEN).env("FLIPPER_TOKEN", FLIPPER_TOKEN);
    let run = Background::spawn(command);
    let banner_read = || flipper.requests().iter().any(|r| r.method == "GET" && r.path.ends_with("/features/banner"));
    let deadline = Instant::now() + PATIENCE;
    while !banner_read() {
        assert!(
            Instant::now() < deadline,
            "the banner was not checked while the deploy's check waited\n{}",
            run.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    gate.open();
    (run.finish(PATIENCE), flipper, github)
}

#[test]
fn the_other_steps_of_different_services_are_checked_side_by_side() {
    let (out, flipper, github) = checked_side_by_side(&["run", "mitigate", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("preflight: 2 more steps checked"), "{}", out.stderr);
    // In the runbook's order all the same: the deploy ran before the banner came down.
    let preflight = &out.stderr[out.stderr.find("preflight of the other steps:").expect("the rest's plan")..];
    assert!(preflight.find("2/3 deploy:").unwrap() < preflight.find("3/3 banner:").unwrap(), "{preflight}");
    assert_eq!(github.runs().len(), 1);
    assert_eq!(flipper.gates("banner").map(|g| g.boolean), Some(false));
}

#[test]
fn a_plan_checked_all_first_checks_each_services_steps_side_by_side_too() {
    let (out, flipper, github) = checked_side_by_side(&["run", "mitigate", "--dry-run"]);
    out.code(0);
    let plan: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("  ") && l.contains("/3 ")).collect();
    assert!(
        plan[0].contains("1/3 disable:") && plan[1].contains("2/3 deploy:") && plan[2].contains("3/3 banner:"),
        "{plan:?}"
    );
    assert!(out.stderr.contains("Dry run passed: 3 steps checked"), "{}", out.stderr);
    assert_eq!((flipper.non_get_count(), github.non_get_count()), (0, 0));
}

#[test]
fn a_fetch_the_run_did_not_wait_for_leaves_no_temp_folder_behind() {
    let env = Env::new();
    // The clone's remote answers its first listing only once the test lets it.
    let gate = Gate::default();
    let remote = GitHub::start(TOKEN);
    remote.fail_path("/app.git/info/refs", Fault::Hold(gate.clone()));
    crate::support::git(&env.path("app"), &["remote", "set-url", "origin", &format!("{}/app.git", remote.url())]);
    let temp = tempfile::tempdir().unwrap();
    let stores = || {
        std::fs::read_dir(temp.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("rollout-fetch-"))
            .count()
    };
    let commit = env.sandbox.offending.to_string();
    let mut command = env.command(&["incident", "--severity", "high", "--var", &format!("commit={commit}")]);
    command.env("TMPDIR", temp.path()).env("ROLLOUT_FORCE_INTERACTIVE", "1");
    let mut run = Background::spawn(command);
    run.wait_for_stderr("Apply?");
    let deadline = Instant::now() + PATIENCE;
    while stores() == 0 {
        assert!(Instant::now() < deadline, "the background made no fetch store\n{}", run.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Aborted while the background still waits for the remote: the run ends without it.
    run.send("a\n");
    let out = run.finish(Duration::from_secs(10));
    out.code(4);
    assert_eq!(stores(), 0, "a fetch store was left in {}", temp.path().display());
    gate.open();
}

#[test]
fn under_yes_the_background_checks_begin_once_the_first_mitigation_write_is_out() {
    let (flipper, github, env) = flipper_and_github("");
    // The flag's write is held: nothing else competes with it, so the pipeline is not read yet.
    let gate = Gate::default();
    flipper.fail_path(&format!("/features/{FLAG}/boolean"), Fault::Hold(gate.clone()));
    let mut command = env.command(&["run", "mitigate", "--yes"]);
    command.env("CI_TOKEN", TOKEN).env("FLIPPER_TOKEN", FLIPPER_TOKEN);
    let run = Background::spawn(command);
    let deadline = Instant::now() + PATIENCE;
    while flipper.non_get_count() == 0 {
        assert!(Instant::now() < deadline, "the flag was never written\n{}", run.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(github.requests().len(), 0, "the pipeline was read while the mitigation's write was out");
    gate.open();
    let out = run.finish(PATIENCE);
    out.code(0);
    assert_eq!(github.runs().len(), 1);
}
