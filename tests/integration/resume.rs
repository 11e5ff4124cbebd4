//! `rollout resume` after kill -9 (in a flag write, between steps, waiting on a pipeline), the
//! re-check of done steps and its drift, changed files, torn journals, and the lock a crash leaves.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::background::{Background, PATIENCE};
use crate::support::flipper::{Flipper, Gates};
use crate::support::github::{GitHub, Outcome as RunOutcome};
use crate::support::http_server::Fault;
use crate::support::{Env, FLAG};

const FLIPPER_TOKEN: &str = "flipper-secret-5a1e";
const CI_TOKEN: &str = "ci-secret-90b2e4";
const SHA: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// Off, a manual check, then back on for 5%: the shape of an incident runbook, on Flipper.
const INCIDENT: &str = "version: 1\ntitle: Incident\nsteps:\n  - id: disable\n    name: Turn it off\n    flag: { name: travel_pay_claim_status, state: off, direction: down }\n  - id: check\n    name: Check the dashboards\n    manual: { instructions: Look at the error rate }\n  - id: reenable\n    name: Back on for a few\n    flag: { name: travel_pay_claim_status, state: on, percent: 5, direction: up }\n";

fn flipper() -> (Flipper, Env) {
    let server = Flipper::start(FLIPPER_TOKEN);
    server.set(FLAG, Gates::on());
    let env = Env::workspace(&format!(
        "version: 1\nflags: {{ provider: flipper, url: \"{}\", token_env: FLIPPER_TOKEN }}\nhttp: {{ timeout: 10s, retries: 0 }}\n",
        server.url()
    ))
    .runbook("incident", INCIDENT)
    .var("FLIPPER_TOKEN", FLIPPER_TOKEN);
    (server, env)
}

/// The one run's id, from its journal.
fn run_id(env: &Env) -> String {
    env.journal()[0]["run_id"].as_str().unwrap().to_string()
}

fn events_named<'a>(journal: &'a [Value], name: &str) -> Vec<&'a Value> {
    journal.iter().filter(|e| e["event"] == name).collect()
}

/// How many times the journal says `step` succeeded.
fn successes(journal: &[Value], step: &str) -> usize {
    journal.iter().filter(|e| e["event"] == "step_succeeded" && e["step"] == step).count()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start the incident interactively and kill -9 it once the `check` step is asking.
fn crash_between_steps(env: &Env) -> String {
    let mut run = Background::interactive(env, &["run", "incident"]);
    run.wait_for_stderr("Apply?");
    run.send("y\n");
    run.wait_for_stderr("Done?");
    run.kill_hard();
    run_id(env)
}

#[test]
fn killed_in_a_flag_write_the_resume_finishes_the_run_once() {
    let (server, env) = flipper();
    // The write that turns the feature off (Flipper deletes the boolean gate) hangs for a while.
    server.fail_path(&format!("/features/{FLAG}/boolean"), Fault::Delay(Duration::from_secs(2)));
    let mut run = Background::spawn(env.command(&["run", "incident", "--yes"]));
    wait_until("the write", || server.count("DELETE") == 1);
    run.wait_for_stderr("Apply? yes");
    run.kill_hard();
    let id = run_id(&env);
    let journal = env.journal();
    assert!(events_named(&journal, "step_confirmed").len() == 1 && successes(&journal, "disable") == 0);
    // The write was received: it lands after rollout is gone.
    wait_until("the write to land", || !server.gates(FLAG).unwrap().boolean);

    let out = env.run(&["resume", &id, "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("already off, nothing to change"), "{}", out.stderr);
    assert_eq!(server.count("DELETE"), 1, "the flag was not written again");
    let journal = env.journal();
    for step in ["disable", "check", "reenable"] {
        assert_eq!(successes(&journal, step), 1, "{step} once in the journal");
    }
    assert!(journal.iter().all(|e| e["run_id"] == id.as_str()), "one run, one journal");
    assert_eq!(events_named(&journal, "run_resumed").len(), 1);
    assert_eq!(journal.last().unwrap()["status"], "succeeded");
    assert_eq!(server.gates(FLAG).unwrap().percentage_of_actors.as_deref(), Some("5"));
}

#[test]
fn killed_between_steps_the_resume_rechecks_the_done_one_and_goes_on_at_the_next() {
    let (server, env) = flipper();
    let id = crash_between_steps(&env);
    let writes = server.non_get_count();
    let out = env.run(&["resume", &id, "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("at step 2/3 check"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("✓ disable  flag {FLAG} (")), "{}", out.stderr);
    assert!(out.stderr.contains("): off, as the run left it"), "{}", out.stderr);
    assert!(out.stderr.contains("took over the lock left by run"), "the dead run's lock: {}", out.stderr);
    let journal = env.journal();
    assert_eq!(successes(&journal, "disable"), 1, "the done step is not run again");
    assert_eq!(successes(&journal, "check"), 1);
    assert_eq!(successes(&journal, "reenable"), 1);
    let taken = events_named(&journal, "lock_taken_over");
    assert_eq!(taken.len(), 1);
    assert!(taken[0]["holder"].as_str().unwrap().contains(&id));
    // Only the re-enable wrote anything (one percentage gate).
    assert_eq!(server.non_get_count(), writes + 1, "{:?}", server.requests());
}

#[test]
fn drift_since_the_crash_is_shown_and_stops_a_resume_with_yes_until_asked_or_forced() {
    let (server, env) = flipper();
    let id = crash_between_steps(&env);
    // Someone turns the feature back on while rollout is down.
    server.set(FLAG, Gates::on());
    let before = env.journal_text();
    let out = env.run(&["resume", &id, "--yes"]);
    out.code(3);
    assert!(out.stderr.contains("is now on, 100%; the run left it off"), "{}", out.stderr);
    assert!(out.stderr.contains("1 done step no longer holds: not resumed"), "{}", out.stderr);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(env.journal_text(), before, "a refused resume writes nothing");
    assert!(server.gates(FLAG).unwrap().boolean, "nothing was written");

    // Asked, the operator says no: nothing happens.
    let out = env.answer(&["resume", &id], "a\n");
    out.code(4);
    assert!(out.stderr.contains("Go on from step 2/3 check anyway?"), "{}", out.stderr);
    assert_eq!(env.journal_text(), before);

    // Asked, the operator goes on: the drift is journaled with the resume.
    let out = env.answer(&["resume", &id], "y\ny\ny\n");
    out.code(0);
    let journal = env.journal();
    let resumed = events_named(&journal, "run_resumed");
    assert_eq!(resumed.len(), 1);
    let drift = resumed[0]["drift"][0].as_str().unwrap();
    assert!(drift.starts_with("disable: ") && drift.contains("is now on, 100%"), "{drift}");
    assert_eq!(resumed[0]["forced"], false);
}

#[test]
fn a_changed_runbook_is_shown_and_refused_unless_forced() {
    let (_server, env) = flipper();
    let id = crash_between_steps(&env);
    env.write("runbooks/incident.yaml", &INCIDENT.replace("percent: 5", "percent: 10"));
    let out = env.run(&["resume", &id, "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("the runbook") && out.stderr.contains("changed since run"), "{}", out.stderr);
    assert!(out.stderr.contains("-    flag: { name: travel_pay_claim_status, state: on, percent: 5"), "{}", out.stderr);
    assert!(
        out.stderr.contains("+    flag: { name: travel_pay_claim_status, state: on, percent: 10"),
        "{}",
        out.stderr
    );
    let out = env.run(&["resume", &id, "--yes", "--force"]);
    out.code(0);
    let journal = env.journal();
    assert_eq!(events_named(&journal, "run_resumed")[0]["forced"], true);
}

#[test]
fn a_torn_last_line_is_skipped_and_the_resume_writes_whole_lines_after_it() {
    let (_server, env) = flipper();
    let id = crash_between_steps(&env);
    let path = env.state_dir().join("runs").join(format!("{id}.jsonl"));
    let mut text = std::fs::read(&path).unwrap();
    text.extend_from_slice("{\"event\":\"step_started\",\"run_id\":\"é".as_bytes().split_last().unwrap().1);
    std::fs::write(&path, &text).unwrap();
    let out = env.run(&["resume", &id, "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("its last line was cut short"), "{}", out.stderr);
    let lines: Vec<String> =
        String::from_utf8_lossy(&std::fs::read(&path).unwrap()).lines().map(String::from).collect();
    let torn = lines.iter().filter(|l| serde_json::from_str::<Value>(l).is_err()).count();
    assert_eq!(torn, 1, "only the torn line is not JSON");
    assert!(serde_json::from_str::<Value>(lines.last().unwrap()).unwrap()["status"] == "succeeded");
    // The story still reads, in order.
    env.run(&["runs", &id]).code(0);
}

#[test]
fn a_run_still_going_is_neither_resumed_nor_unlocked() {
    let (_server, env) = flipper();
    let mut run = Background::interactive(&env, &["run", "incident"]);
    run.wait_for_stderr("Apply?");
    let id = run_id(&env);
    let before = env.journal_text();
    let out = env.run(&["resume", &id, "--yes"]);
    out.code(5);
    assert!(out.stderr.contains(&format!("run {id} is still going")), "{}", out.stderr);
    let out = env.run(&["unlock", "incident", "--yes"]);
    out.code(5);
    assert!(out.stderr.contains(&format!("runbook incident is locked by run {id}")), "{}", out.stderr);
    assert_eq!(env.journal_text(), before, "the live run's journal is not touched");
    run.kill_hard();
}

#[test]
fn nothing_to_resume_in_a_run_that_succeeded_or_one_that_is_not_there() {
    let (_server, env) = flipper();
    env.run(&["run", "incident", "--yes"]).code(0);
    let id = run_id(&env);
    let out = env.run(&["resume", &id]);
    out.code(2);
    assert!(out.stderr.contains("succeeded: there is nothing to resume"), "{}", out.stderr);
    let out = env.run(&["resume", "20990101T000000Z-nope-0000"]);
    out.code(2);
    assert!(out.stderr.contains("no run 20990101T000000Z-nope-0000"), "{}", out.stderr);
}

#[test]
fn unlock_asks_for_the_runbooks_name_and_journals_whom_it_removed() {
    let (_server, env) = flipper();
    let id = crash_between_steps(&env);
    let locks = env.state_dir().join("locks");
    let lock = std::fs::read_dir(&locks).unwrap().next().unwrap().unwrap().path();
    assert!(std::fs::read_to_string(&lock).unwrap().contains(&id), "the crash left its holder");

    let out = env.answer(&["unlock", "incident"], "critical\n");
    out.code(4);
    assert!(out.stderr.contains("Type incident to go on"), "{}", out.stderr);
    assert!(out.stderr.contains("not removed") && lock.exists(), "{}", out.stderr);

    let out = env.answer(&["unlock", "incident"], "incident\n");
    out.code(0);
    assert!(out.stderr.contains("left behind: no process holds it"), "{}", out.stderr);
    assert!(!lock.exists(), "removed");
    let newest = env.newest_journal();
    let unlock: Vec<Value> =
        std::fs::read_to_string(newest).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(unlock[0]["purpose"]["kind"], "unlock");
    assert_eq!(unlock[1]["event"], "lock_broken");
    assert!(unlock[1]["holder"].as_str().unwrap().contains(&id));

    let out = env.run(&["unlock", "incident", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("is not locked"), "{}", out.stderr);
    // The crashed run is taken up again under a fresh lock.
    env.run(&["resume", &id, "--yes"]).code(0);
}

fn github() -> (GitHub, Env) {
    let server = GitHub::start(CI_TOKEN);
    server.add_branch("va/vets-website", "main", SHA);
    server.add_workflow("va/vets-website", "deploy.yml");
    let env = Env::workspace(&format!(
        "version: 1\nci: {{ provider: github, repo: va/vets-website, token_env: CI_TOKEN, url: \"{}\" }}\nhttp: {{ timeout: 2s, retries: 1 }}\n",
        server.url()
    ))
    .runbook(
        "deploy",
        "version: 1\ntitle: Deploy\nsteps:\n  - id: deploy\n    name: Deploy the fix\n    ci: { pipeline: deploy.yml, ref: main, timeout: 5m }\n  - id: after\n    name: Tell the team\n    manual: { instructions: Say it is deployed }\n",
    )
    .var("CI_TOKEN", CI_TOKEN);
    (server, env)
}

/// A run of the `deploy` runbook on the GitHub emulator, killed -9 while it waits on the run it
/// triggered (which never ends until told to); the run's id.
fn crash_waiting_on_github() -> (GitHub, Env, String) {
    let (server, env) = github();
    server.script(RunOutcome::Never, 0);
    let mut run = Background::spawn(env.command(&["run", "deploy", "--yes"]));
    wait_until("the trigger to be journaled", || {
        env.state_dir().join("runs").exists() && env.journal_text().contains("step_triggered")
    });
    run.wait_for_stderr("waiting for");
    run.kill_hard();
    let id = run_id(&env);
    (server, env, id)
}

#[test]
fn killed_while_waiting_on_github_the_resume_follows_the_same_run_and_never_dispatches_again() {
    let (server, env, id) = crash_waiting_on_github();
    let triggered = env.journal().into_iter().find(|e| e["event"] == "step_triggered").unwrap();
    server.finish_runs(RunOutcome::Success);

    let out = env.run(&["--json", "resume", &id, "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("triggered before the run stopped"), "{}", out.stderr);
    assert_eq!(server.runs().len(), 1, "dispatched once, in all");
    assert_eq!(server.count("POST"), 1, "one dispatch request");
    let journal = env.journal();
    assert_eq!(events_named(&journal, "step_triggered").len(), 1, "the resume triggered nothing");
    let done = journal.iter().find(|e| e["event"] == "step_succeeded" && e["step"] == "deploy").unwrap();
    assert_eq!(done["outputs"]["run_id"], triggered["pipeline_run"]);
    assert_eq!(done["outputs"]["conclusion"], "success");
    assert_eq!(successes(&journal, "after"), 1);
}

#[test]
fn a_pipeline_that_failed_before_the_crash_is_triggered_anew_only_once_confirmed() {
    let (server, env) = github();
    server.script(RunOutcome::Failure, 0);
    env.run(&["run", "deploy", "--yes"]).code(1);
    let id = run_id(&env);
    server.script(RunOutcome::Success, 0);
    let out = env.run(&["resume", &id, "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("Resuming run") && out.stderr.contains("at step 1/2 deploy"), "{}", out.stderr);
    assert_eq!(server.runs().len(), 2, "the failed run ended: a new one was asked for");
}

#[test]
fn killed_while_the_command_pipeline_runs_the_resume_says_what_is_known_and_triggers_nothing() {
    let env = Env::new();
    let mut command = env.command(&["incident", "--severity", "critical", "--yes"]);
    command.env("ROLLOUT_REHEARSAL_DEPLOY_SECONDS", "1");
    let mut run = Background::spawn(command);
    run.wait_for_stderr("waiting for pipeline");
    run.kill_hard();
    let id = run_id(&env);
    std::thread::sleep(Duration::from_millis(1500));
    let deployed = env.read("deployments.log");
    let out = env.run(&["resume", &id, "--yes"]);
    out.code(1);
    assert!(out.stderr.contains("was not started by this rollout process"), "{}", out.stderr);
    assert!(
        out.stderr.contains("it is not triggered again: skip this step once you have checked it"),
        "{}",
        out.stderr
    );
    assert_eq!(env.read("deployments.log"), deployed, "the deploy script did not run again");
    // Skipping it at the prompt takes the run on.
    let out = env.answer(&["resume", &id], "s\ny\n");
    out.code(0);
    assert_eq!(env.read("deployments.log"), deployed);
}

#[test]
#[ignore = "needs buildbot: run scripts/test"]
fn killed_while_waiting_on_buildbot_the_resume_follows_the_same_build() {
    let url = std::env::var("BUILDBOT_URL").expect("BUILDBOT_URL: run scripts/test");
    let env = Env::workspace(&format!("version: 1\nci: {{ provider: buildbot, url: \"{url}\" }}\n")).runbook(
        "deploy",
        "version: 1\ntitle: Deploy\nsteps:\n  - id: deploy\n    name: Deploy\n    ci: { pipeline: deploy, ref: main, inputs: { outcome: slow, seconds: \"4\" }, timeout: 2m }\n",
    );
    let mut run = Background::spawn(env.command(&["run", "deploy", "--yes"]));
    run.wait_for_stderr("waiting for");
    run.kill_hard();
    let id = run_id(&env);
    let out = env.run(&["--json", "resume", &id, "--yes"]);
    out.code(0);
    let get = |path: &str| -> Value {
        serde_json::from_str(&reqwest::blocking::get(format!("{url}{path}")).unwrap().text().unwrap()).unwrap()
    };
    let builds = get("/api/v2/builds?property=rollout_run");
    let ours: Vec<&Value> = builds["builds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["properties"]["rollout_run"][0] == id.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "one build for the run: {ours:?}");
    assert_eq!(ours[0]["results"], 0, "it succeeded");
    let journal = env.journal();
    assert_eq!(events_named(&journal, "step_triggered").len(), 1);
    assert_eq!(successes(&journal, "deploy"), 1);
}

#[test]
fn killed_while_deploying_a_pushed_revert_the_resume_never_reverts_again() {
    let env = Env::new();
    let commit = env.sandbox.offending.to_string();
    let remote = env.sandbox.remote();
    let count = || crate::support::git(&remote, &["rev-list", "--count", "main"]).trim().to_string();
    let before = count();
    let mut command = env.command(&["incident", "--severity", "high", "--yes", "--var", &format!("commit={commit}")]);
    command.env("ROLLOUT_REHEARSAL_DEPLOY_SECONDS", "3");
    let mut run = Background::spawn(command);
    run.wait_for_stderr("waiting for pipeline");
    run.kill_hard();
    let id = run_id(&env);
    let after_revert = count();
    assert_eq!(after_revert.parse::<u32>().unwrap(), before.parse::<u32>().unwrap() + 1, "one revert pushed");
    let tip = crate::support::git(&remote, &["rev-parse", "main"]);
    // The deploy's process died with rollout: skip it once checked, and go on.
    let out = env.answer(&["resume", &id], "s\ny\ny\n");
    out.code(0);
    assert!(out.stderr.contains("revert") && out.stderr.contains("is on origin/main"), "{}", out.stderr);
    assert_eq!(count(), after_revert, "the revert was not made again");
    assert_eq!(crate::support::git(&remote, &["rev-parse", "main"]), tip);
    let journal = env.journal();
    assert_eq!(successes(&journal, "revert"), 1);
    assert_eq!(events_named(&journal, "step_triggered").iter().filter(|e| e["step"] == "deploy-revert").count(), 1);
}

/// Kill -9 `env`'s one-step `deploy` run while it waits on its pipeline, then resume it: the
/// run and journal ids of the triggered run, and how the resume ended.
fn crash_waiting_then_resume(env: &Env) -> (String, crate::support::Outcome) {
    let mut command = env.command(&["run", "deploy", "--yes"]);
    command.env("CI_TOKEN", crate::ci::TOKEN);
    let mut run = Background::spawn(command);
    run.wait_for_stderr("waiting for");
    run.kill_hard();
    let id = run_id(env);
    // Whether it triggered anything is counted on the service (a Jenkins build is journaled a
    // second time once known, by its own URL: no trigger).
    let out = env.run_with(&["resume", &id, "--yes"], &[("CI_TOKEN", crate::ci::TOKEN)]);
    assert_eq!(successes(&env.journal(), "deploy"), 1);
    (id, out)
}

#[test]
fn killed_while_waiting_on_gitlab_jenkins_or_buildkite_the_resume_follows_the_same_run() {
    let (gitlab, env) = crate::ci::gitlab(", token_env: CI_TOKEN");
    gitlab.script(RunOutcome::Success, 2);
    crash_waiting_then_resume(&env).1.code(0);
    assert_eq!(gitlab.runs().len(), 1, "one GitLab pipeline");

    let jenkins = crate::support::jenkins::Jenkins::start("deployer", crate::ci::TOKEN);
    let env = crate::ci::jenkins(&jenkins, "token_env: CI_TOKEN");
    jenkins.script(RunOutcome::Success, 2);
    crash_waiting_then_resume(&env).1.code(0);
    assert_eq!(jenkins.runs().len(), 1, "one Jenkins build");

    let buildkite = crate::support::buildkite::Buildkite::start(crate::ci::TOKEN);
    buildkite.add_pipeline("va", "vets-website-deploy");
    let env = crate::ci::workspace(
        &format!("{{ provider: buildkite, repo: va, token_env: CI_TOKEN, url: \"{}\" }}", buildkite.url()),
        "{ pipeline: vets-website-deploy, ref: main, timeout: 30s }",
    );
    buildkite.script(RunOutcome::Success, 2);
    crash_waiting_then_resume(&env).1.code(0);
    assert_eq!(buildkite.runs().len(), 1, "one Buildkite build");
}

#[test]
fn a_lock_left_by_a_dead_run_whose_pid_now_names_a_live_process_is_still_left_behind() {
    let (_server, env) = flipper();
    let id = crash_between_steps(&env);
    let locks = env.state_dir().join("locks");
    let lock = std::fs::read_dir(&locks).unwrap().next().unwrap().unwrap().path();
    // After a reboot the dead run's pid belongs to someone else: here, this test process.
    let text = std::fs::read_to_string(&lock).unwrap();
    let mut holder: Value = serde_json::from_str(&text).unwrap();
    holder["pid"] = std::process::id().into();
    std::fs::write(&lock, holder.to_string()).unwrap();
    let out = env.run(&["runs"]);
    assert!(out.stdout.lines().any(|l| l.contains(&id) && l.contains("crashed")), "{}", out.stdout);
    env.run(&["resume", &id, "--yes"]).code(0);
}

#[test]
fn while_unlock_waits_for_the_name_no_run_can_take_the_lock() {
    let (_server, env) = flipper();
    crash_between_steps(&env);
    let mut unlock = Background::interactive(&env, &["unlock", "incident"]);
    unlock.wait_for_stderr("Type incident to go on");
    let out = env.run(&["run", "incident", "--yes"]);
    out.code(5);
    assert!(out.stderr.contains("is locked by run"), "{}", out.stderr);
    unlock.send("incident\n");
    unlock.finish(PATIENCE).code(0);
    env.run(&["run", "incident", "--yes"]).code(0);
}

/// The journal's lines, raw, and written back.
fn edit_journal(env: &Env, id: &str, edit: impl Fn(Vec<String>) -> Vec<String>) {
    let path = env.state_dir().join("runs").join(format!("{id}.jsonl"));
    let lines: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(String::from).collect();
    std::fs::write(&path, edit(lines).join("\n") + "\n").unwrap();
}

#[test]
fn a_confirmed_pipeline_whose_trigger_the_journal_lost_is_never_triggered_again() {
    for lose in ["drop the line", "mistype a field"] {
        let (server, env, id) = crash_waiting_on_github();
        edit_journal(&env, &id, |lines| {
            lines
                .into_iter()
                .filter_map(|l| match (l.contains("\"step_triggered\""), lose) {
                    (true, "drop the line") => None,
                    (true, _) => Some(l.replace("\"url\":\"", "\"url\":null,\"was\":\"")),
                    (false, _) => Some(l),
                })
                .collect()
        });
        server.finish_runs(RunOutcome::Success);
        let out = env.run(&["resume", &id, "--yes"]);
        out.code(1);
        assert!(out.stderr.contains("may have triggered a run of pipeline deploy.yml"), "{lose}: {}", out.stderr);
        assert_eq!(server.runs().len(), 1, "{lose}: dispatched once, in all");
        if lose == "mistype a field" {
            assert!(out.stderr.contains("is a `step_triggered` event that does not read"), "{}", out.stderr);
        }
    }
}

#[test]
fn a_run_started_from_a_later_step_is_resumed_from_there_never_before() {
    let env = Env::new();
    let flags = env.read("flags.json");
    std::fs::remove_file(env.path("flags.json")).unwrap();
    env.run(&["incident", "--severity", "critical", "--yes", "--from", "reenable"]).code(3);
    let id = run_id(&env);
    env.write("flags.json", &flags);
    let deployed = env.read("deployments.log");
    let out = env.run(&["resume", &id, "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("at step 4/4 reenable"), "{}", out.stderr);
    assert_eq!(env.read("deployments.log"), deployed, "the deploy before --from did not run");
    let journal = env.journal();
    for step in ["disable", "debug", "deploy-fix"] {
        assert_eq!(successes(&journal, step), 0, "{step} did not run");
        assert!(journal.iter().any(|e| e["event"] == "step_skipped" && e["step"] == step), "{step} is skipped");
    }
    assert_eq!(successes(&journal, "reenable"), 1);
}

#[test]
fn a_journal_holding_another_runs_records_is_not_resumed() {
    let (_server, env) = flipper();
    let id = crash_between_steps(&env);
    let runs = env.state_dir().join("runs");
    std::fs::copy(runs.join(format!("{id}.jsonl")), runs.join("20261202T000000Z-incident-copy.jsonl")).unwrap();
    let out = env.run(&["resume", "20261202T000000Z-incident-copy", "--yes"]);
    out.code(2);
    assert!(out.stderr.contains(&format!("holds records of run {id}")), "{}", out.stderr);
}

#[test]
fn a_secret_input_is_given_again_on_resume_and_the_step_gets_it() {
    let env = Env::new();
    env.write("record.sh", "#!/bin/sh\necho \"$ROLLOUT_INPUT_ARTIFACT\" >> inputs.log\n");
    env.write(
        "rollout.yaml",
        "version: 1\nflags: { provider: flagd, path: flags.json }\nci: { provider: command, command: [sh, record.sh] }\n",
    );
    env.write(
        "runbooks/inp.yaml",
        "version: 1\ntitle: Input\ninputs: { artifact: { description: artifact URL } }\nsteps:\n  - { id: first, name: First, manual: { instructions: go } }\n  - id: deploy\n    name: Deploy\n    ci: { pipeline: deploy.yml, inputs: { artifact: \"{{ inputs.artifact }}\" } }\n",
    );
    let url = "https://deploy:s3cr3tpass@artifacts.example/build.tgz";
    env.answer(&["run", "inp", "--var", &format!("artifact={url}")], "y\na\n").code(4);
    let id = run_id(&env);
    assert!(!env.journal_text().contains("s3cr3tpass"), "the secret is not journaled");
    let out = env.run(&["resume", &id, "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("input artifact held a secret, which the journal does not keep"), "{}", out.stderr);
    let out = env.run(&["resume", &id, "--yes", "--var", &format!("artifact={url}")]);
    out.code(0);
    assert_eq!(env.read("inputs.log").trim(), url, "the step got the value the operator gave");
}

#[test]
fn a_flag_a_later_step_changed_and_a_journaled_command_verdict_are_no_drift() {
    let env = Env::new();
    let critical = env.read("runbooks/critical.yaml");
    env.write(
        "runbooks/critical.yaml",
        &format!("{critical}  - id: announce\n    name: Announce it\n    manual: {{ instructions: Tell the team }}\n"),
    );
    env.answer(&["incident", "--severity", "critical"], "y\ny\ny\ny\na\n").code(4);
    let id = run_id(&env);
    let out = env.run(&["resume", &id, "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("was changed again by step reenable: checked there"), "{}", out.stderr);
    assert!(out.stderr.contains("success as journaled; it cannot be asked again"), "{}", out.stderr);
    assert!(!out.stderr.contains("no longer hold"), "{}", out.stderr);
}

#[test]
fn a_prefix_several_runs_share_is_refused_naming_them_in_order() {
    let (_server, env) = flipper();
    env.run(&["run", "incident", "--yes"]).code(0);
    env.run(&["run", "incident", "--yes"]).code(0);
    let out = env.run(&["resume", "2"]);
    out.code(2);
    let listed = out.stderr.split("2 runs start with `2`: ").nth(1).and_then(|rest| rest.split(';').next());
    let ids: Vec<&str> = listed.unwrap_or_else(|| panic!("{}", out.stderr)).split(", ").collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!((ids.len(), &ids), (2, &sorted), "{}", out.stderr);
    assert!(out.stderr.contains("give more of the id"), "{}", out.stderr);
}

#[test]
fn a_revert_reverted_or_gone_from_the_branch_since_the_crash_is_drift() {
    use crate::support::git;
    for change in ["revert the revert", "reset the branch"] {
        let env = Env::new();
        env.write(
            "runbooks/fix.yaml",
            "version: 1\ntitle: Revert\ninputs: { commit: { type: commit } }\nsteps:\n  - id: revert\n    name: Revert it\n    revert: { commit: \"{{ inputs.commit }}\" }\n  - id: check\n    name: Check\n    manual: { instructions: Look }\n",
        );
        let commit = env.sandbox.offending.to_string();
        env.answer(&["run", "fix", "--var", &format!("commit={commit}")], "y\na\n").code(4);
        let id = run_id(&env);
        let remote = env.sandbox.remote();
        let before = git(&remote, &["rev-parse", "main~1"]);
        let scratch = tempfile::tempdir().unwrap();
        let work = scratch.path().join("w");
        git(scratch.path(), &["clone", "-q", remote.to_str().unwrap(), "w"]);
        match change {
            "revert the revert" => {
                git(&work, &["-c", "user.name=Ann", "-c", "user.email=ann@example.org", "revert", "--no-edit", "HEAD"]);
                git(&work, &["push", "-q", "origin", "HEAD:main"]);
            }
            _ => {
                git(&work, &["push", "-q", "--force", "origin", &format!("{before}:main")]);
            }
        }
        let out = env.run(&["resume", &id, "--yes"]);
        out.code(3);
        let said = if change == "revert the revert" {
            "was itself reverted on origin/main by"
        } else {
            "is no longer on origin/main"
        };
        assert!(out.stderr.contains(said), "{change}: {}", out.stderr);
        assert!(out.stderr.contains("1 done step no longer holds"), "{change}: {}", out.stderr);
    }
}

#[test]
fn a_jenkins_build_is_followed_by_its_own_url_once_its_queue_item_is_gone() {
    let jenkins = crate::support::jenkins::Jenkins::start("deployer", crate::ci::TOKEN);
    let env = crate::ci::jenkins(&jenkins, "token_env: CI_TOKEN");
    jenkins.script(RunOutcome::Success, 3);
    let mut command = env.command(&["run", "deploy", "--yes"]);
    command.env("CI_TOKEN", crate::ci::TOKEN);
    let run = Background::spawn(command);
    wait_until("the build to be journaled", || {
        env.state_dir().join("runs").exists() && env.journal_text().matches("step_triggered").count() == 2
    });
    run.kill_hard();
    let id = run_id(&env);
    let journal = env.journal();
    let triggered = events_named(&journal, "step_triggered");
    assert!(triggered[0]["pipeline_run"].as_str().unwrap().contains("/queue/item/"), "{triggered:?}");
    assert!(triggered[1]["pipeline_run"].as_str().unwrap().contains("/job/"), "the build, once known: {triggered:?}");
    jenkins.forget_queue();
    let out = env.run_with(&["resume", &id, "--yes"], &[("CI_TOKEN", crate::ci::TOKEN)]);
    out.code(0);
    assert_eq!(jenkins.runs().len(), 1, "one build in all");
    assert_eq!(successes(&env.journal(), "deploy"), 1);
}
