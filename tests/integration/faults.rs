//! The fault matrix: each fault of the proxy, and the service down, on the requests that read
//! and act (Flipper, GitHub, the real Unleash, Buildbot, git over HTTP, a webhook and the real
//! Prometheus): exit codes, what the service counted, and `resume` finishing the run exactly once.

use super::gates::with_gate;
use crate::support::buildkite::Buildkite;
use crate::support::exporter::{Exporter, Metrics, prometheus_url};
use crate::support::fault_proxy::{Fault, FaultProxy};
use crate::support::flipper::{Flipper, Gates};
use crate::support::git_remote::{GitHttp, set_origin};
use crate::support::github::{GitHub, Outcome as RunOutcome};
use crate::support::gitlab::GitLab;
use crate::support::http_server::Server;
use crate::support::jenkins::{Jenkins, QueueEnd};
use crate::support::launchdarkly::LaunchDarkly;
use crate::support::{Env, FLAG, Outcome, git};

pub(super) const HTTP: &str = "http: { timeout: 2s, connect_timeout: 1s, retries: 2, max_wait: 2s }\n";
pub(super) const FLIPPER_TOKEN: &str = "flipper-token-0123456789";
pub(super) const GITHUB_TOKEN: &str = "ghp_faults_0123456789abcdef";

/// What one cell of the matrix saw.
struct Cell {
    exit: i32,
    resumed: Option<i32>,
    /// Requests that could change something, as the service counted them.
    writes: usize,
    /// The run's outcome once done: the flag off, or one pipeline run.
    done: bool,
    /// What the resume (or the run) said last.
    said: String,
}

/// A run of `runbook`, then a resume (faults gone) if it did not succeed.
pub(super) fn run_then_resume(
    env: &Env,
    proxy: &FaultProxy,
    runbook: &str,
    vars: &[(&str, &str)],
) -> (Outcome, Option<Outcome>) {
    let first = env.run_with(&["run", runbook, "--yes"], vars);
    assert_eq!(proxy.clear(), 0, "the fault met the request it was for");
    proxy.set_down(false);
    if first.code == 0 {
        return (first, None);
    }
    let run = env.journal()[0]["run_id"].as_str().unwrap().to_string();
    let resumed = env.run_with(&["resume", &run, "--yes"], vars);
    (first, Some(resumed))
}

/// A workspace whose rollout.yaml is `section` (its top-level lines) with the test's HTTP
/// settings, and whose runbook `act` has `steps` (the YAML list's items).
fn act_workspace(section: &str, steps: &str) -> Env {
    let env = Env::new();
    env.write("rollout.yaml", &format!("version: 1\n{section}\n{HTTP}"));
    env.runbook("act", &format!("version: 1\ntitle: Act\nsteps:\n{steps}"))
}

/// `fault` on the next request whose line contains `pattern`, or (no fault) the service down.
fn inject_or_down(proxy: &FaultProxy, pattern: &str, fault: Option<Fault>) {
    match fault {
        Some(fault) => proxy.inject(pattern, fault),
        None => proxy.set_down(true),
    }
}

/// The Flipper emulator behind a proxy with `flags` on for everyone, and the runbook `act` of
/// `steps` (the YAML list's items).
pub(super) fn flipper_behind_proxy(flags: &[&str], steps: &str) -> (Flipper, FaultProxy, Env) {
    let server = Flipper::start(FLIPPER_TOKEN);
    for flag in flags {
        server.set(flag, Gates { boolean: true, ..Gates::default() });
    }
    let proxy = FaultProxy::start(&server.url());
    let flipper =
        format!("flags: {{ provider: flipper, url: \"{}\", token_env: FLIPPER_TOKEN }}", proxy.url(&server.url()));
    let env = act_workspace(&flipper, steps);
    (server, proxy, env)
}

/// The GitHub emulator behind a proxy with `workflows` on `va/vets-website` (each run
/// succeeds), and the runbook `act` of `steps`.
pub(super) fn github_behind_proxy(workflows: &[&str], steps: &str) -> (GitHub, FaultProxy, Env) {
    let server = GitHub::start(GITHUB_TOKEN);
    server.add_branch("va/vets-website", "main", "3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c2e4b6d8f0a");
    for workflow in workflows {
        server.add_workflow("va/vets-website", workflow);
    }
    server.script(RunOutcome::Success, 1);
    let proxy = FaultProxy::start(&server.url());
    let github = format!(
        "ci: {{ provider: github, repo: va/vets-website, token_env: CI_TOKEN, url: \"{}\" }}",
        proxy.url(&server.url())
    );
    let env = act_workspace(&github, steps);
    (server, proxy, env)
}

/// The sandbox's remote served over git over HTTP behind a proxy, and the runbook `act` that
/// reverts the offending commit: the workspace, the proxy, and the repository's name.
pub(super) fn git_behind_proxy(http: &GitHttp) -> (Env, FaultProxy, String) {
    let env = Env::new();
    let (name, url) = http.serve(&env, None);
    let proxy = FaultProxy::start(&http.url);
    set_origin(&env.sandbox.app(), &proxy.url(&url));
    let line = "git: { repo: app, remote: origin, branch: main }";
    let config = env.read("rollout.yaml");
    assert!(config.contains(line), "the sandbox config changed shape:\n{config}");
    let ours =
        format!("git: {{ repo: app, remote: origin, branch: main, token_env: GIT_TOKEN, username: {} }}", http.user);
    env.write("rollout.yaml", &format!("{}{HTTP}", config.replace(line, &ours)));
    env.write(
        "runbooks/act.yaml",
        &format!(
            "version: 1\ntitle: Revert\nsteps:\n  - id: revert\n    name: Revert\n    revert: {{ commit: \"{}\" }}\n",
            env.sandbox.offending
        ),
    );
    (env, proxy, name)
}

/// A gate on the real Prometheus behind a proxy, in the runbook `gate`: the value of the series
/// labelled `test` (1.5, which passes `below: 5`) for 2 samples a second apart.
pub(super) fn gate_behind_proxy(test: &str) -> (FaultProxy, Env) {
    let proxy = FaultProxy::start(&prometheus_url());
    let env = Env::new();
    let config = env.read("rollout.yaml");
    env.write("rollout.yaml", &format!("{config}{HTTP}"));
    let source = format!("{{ provider: prometheus, url: \"{}\" }}", proxy.url(&prometheus_url()));
    let fields = format!(
        "query: 'max(gate_value{{test=\"{test}\"}})'\nbelow: 5\ncount: 2\ninterval: 1s\nno_data: fail\ntimeout: 60s\n"
    );
    (proxy, with_gate(env, "errors", &source, &fields))
}

/// The samples the gate journaled, each checked to be the value Prometheus holds, and whether
/// the gate passed.
pub(super) fn gate_samples(env: &Env) -> (usize, bool) {
    let journal = env.journal();
    let samples: Vec<_> = journal.iter().filter(|e| e["event"] == "step_sampled").collect();
    assert!(samples.iter().all(|s| s["value"] == 1.5), "a sample is not what Prometheus holds: {samples:?}");
    let passed = journal.iter().any(|e| e["event"] == "step_succeeded" && e["outputs"]["verdict"] == "pass");
    (samples.len(), passed)
}

/// A flag step with `fault` on the first request whose line contains `pattern` (the write, or
/// the read before it).
fn flag_cell(fault: Option<Fault>, pattern: &str) -> Cell {
    let (server, proxy, env) = flipper_behind_proxy(
        &[FLAG],
        &format!("  - id: off\n    name: Off\n    flag: {{ name: {FLAG}, state: off }}\n"),
    );
    inject_or_down(&proxy, pattern, fault);
    let (first, resumed) = run_then_resume(&env, &proxy, "act", &[("FLIPPER_TOKEN", FLIPPER_TOKEN)]);
    let done = server.gates(FLAG).is_some_and(|g| !g.boolean);
    // The journal says what the service shows: the step done exactly when the flag is off.
    let journaled = env.journal().iter().any(|e| e["event"] == "step_succeeded" && e["step"] == "off");
    assert_eq!(journaled, done, "the journal and Flipper disagree under {fault:?}");
    let said = resumed.as_ref().map_or_else(|| first.stderr.clone(), |r| r.stderr.clone());
    Cell { exit: first.code, resumed: resumed.map(|r| r.code), writes: server.non_get_count(), done, said }
}

/// A ci step with `fault` on the first request whose line contains `pattern` (the trigger,
/// or the first poll of the run's status).
fn ci_cell(fault: Option<Fault>, pattern: &str) -> Cell {
    let (server, proxy, env) = github_behind_proxy(
        &["deploy.yml"],
        "  - id: deploy\n    name: Deploy\n    ci: { pipeline: deploy.yml, ref: main, timeout: 60s }\n",
    );
    inject_or_down(&proxy, pattern, fault);
    let (first, resumed) = run_then_resume(&env, &proxy, "act", &[("CI_TOKEN", GITHUB_TOKEN)]);
    let runs = server.runs().len();
    let resumed_code = resumed.as_ref().map(|r| r.code);
    let said = resumed.as_ref().map_or_else(|| first.stderr.clone(), |r| r.stderr.clone());
    // A trigger that may have been received is never sent again: such a run is followed, or
    // left to the operator, who skips the step once they have looked.
    let left_to_the_operator = runs == 0 && said.contains("not triggered again");
    Cell { exit: first.code, resumed: resumed_code, writes: runs, done: runs == 1 || left_to_the_operator, said }
}

#[test]
fn every_fault_on_the_acting_request_ends_retried_or_clearly_and_resume_acts_exactly_once() {
    let mut cases: Vec<(&str, Option<Fault>)> = Fault::ALL.iter().map(|f| (f.name(), Some(*f))).collect();
    cases.push(("service down", None));
    let mut table = vec![
        "| fault | flag read (Flipper): exit, resume's exit, writes | flag write (Flipper): the same | ci trigger (GitHub): exit, resume's exit, pipeline runs | ci status poll (GitHub): the same |".to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    for (name, fault) in cases {
        let flag = flag_cell(fault, "DELETE ");
        let read = flag_cell(fault, "GET ");
        let ci = ci_cell(fault, "/dispatches");
        let poll = ci_cell(fault, "GET /repos/va/vets-website/actions/runs/");
        let shown = |c: &Cell| {
            let resumed = c.resumed.map_or_else(|| "-".to_string(), |code| code.to_string());
            format!("{}, {resumed}, {}", c.exit, c.writes)
        };
        table.push(format!("| {name} | {} | {} | {} | {} |", shown(&read), shown(&flag), shown(&ci), shown(&poll)));
        assert_eq!(read.writes, 1, "read under {name}: {} writes", read.writes);
        // A poll only reads: whatever happens to one, the run it follows is never started again.
        assert_eq!(poll.writes, 1, "poll under {name}: {} pipeline runs", poll.writes);
        for (what, cell) in [("read", &read), ("flag", &flag), ("ci", &ci), ("poll", &poll)] {
            assert!([0, 1, 3].contains(&cell.exit), "{what} under {name}: exit {}", cell.exit);
            assert!(cell.done, "{what} under {name}: not done once the run and its resume ended: {}", cell.said);
        }
        // A flag write is idempotent: sent again only when its answer was lost.
        assert!(flag.writes <= 2, "flag under {name}: {} writes", flag.writes);
        assert_eq!(flag.resumed.unwrap_or(0), 0, "flag under {name}: the resume did not finish it");
        assert!(ci.writes <= 1, "ci under {name}: {} pipeline runs", ci.writes);
    }
    eprintln!("{}", table.join("\n"));
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/fault-matrix.md"), table.join("\n") + "\n").unwrap();
}

/// A ci step on another CI emulator behind the proxy, with `fault` on its first POST (the
/// trigger: the reads before it are GETs). `ci` is the `ci` section without its `url`, `step`
/// the step's `ci` mapping; `runs` counts the runs the emulator started. `behind` is told the
/// proxy's URL (a service that writes its own URL into its answers).
fn other_ci_cell(
    fault: Option<Fault>,
    url: &str,
    ci: &str,
    step: &str,
    runs: &dyn Fn() -> usize,
    behind: &dyn Fn(&str),
) -> Cell {
    let proxy = FaultProxy::start(url);
    behind(&proxy.url(url));
    let env = act_workspace(
        &format!("ci: {{ {ci}, url: \"{}\" }}", proxy.url(url)),
        &format!("  - id: deploy\n    name: Deploy\n    ci: {step}\n"),
    );
    inject_or_down(&proxy, "POST ", fault);
    let (first, resumed) = run_then_resume(&env, &proxy, "act", &[("CI_TOKEN", GITHUB_TOKEN)]);
    let runs = runs();
    let journaled = env.journal().iter().any(|e| e["event"] == "step_succeeded" && e["step"] == "deploy");
    let said = resumed.as_ref().map_or_else(|| first.stderr.clone(), |r| r.stderr.clone());
    assert!(!journaled || runs == 1, "journaled done with {runs} runs: {said}");
    // A trigger that may have been received (a run may exist, unnamed in the journal) is left
    // to the operator, who looks at the CI and skips the step.
    let left_to_the_operator = said.contains("it is not triggered again: skip this step once you have checked it");
    Cell {
        exit: first.code,
        resumed: resumed.map(|r| r.code),
        writes: runs,
        done: journaled || left_to_the_operator,
        said,
    }
}

/// A flag off on the LaunchDarkly emulator behind the proxy, with `fault` on its write (the
/// semantic patch). Counted: the writes LaunchDarkly received.
fn launchdarkly_cell(fault: Option<Fault>) -> Cell {
    let server = LaunchDarkly::start(GITHUB_TOKEN);
    server.add_flag("va", FLAG, &["production"]);
    let proxy = FaultProxy::start(&server.url());
    let env = act_workspace(
        &format!(
            "flags: {{ provider: launchdarkly, url: \"{}\", project: va, environment: production, token_env: LD_TOKEN }}",
            proxy.url(&server.url())
        ),
        &format!("  - id: off\n    name: Off\n    flag: {{ name: {FLAG}, state: off }}\n"),
    );
    inject_or_down(&proxy, "PATCH ", fault);
    let (first, resumed) = run_then_resume(&env, &proxy, "act", &[("LD_TOKEN", GITHUB_TOKEN)]);
    let off = server.env("va", FLAG, "production").is_some_and(|state| !state.on);
    let journaled = env.journal().iter().any(|e| e["event"] == "step_succeeded" && e["step"] == "off");
    assert_eq!(journaled, off, "the journal and LaunchDarkly disagree under {fault:?}");
    let said = resumed.as_ref().map_or_else(|| first.stderr.clone(), |r| r.stderr.clone());
    Cell { exit: first.code, resumed: resumed.map(|r| r.code), writes: server.count("PATCH"), done: off, said }
}

#[test]
fn every_fault_on_launchdarkly_gitlab_jenkins_and_buildkite_writes_a_flag_once_and_triggers_at_most_once() {
    let mut cases: Vec<(&str, Option<Fault>)> = Fault::ALL.iter().map(|f| (f.name(), Some(*f))).collect();
    cases.push(("service down", None));
    let mut table = vec![
        "| fault on the write or trigger | flag off (LaunchDarkly): exit, resume's exit, writes | ci (GitLab): exit, resume's exit, pipelines | ci (Jenkins): the same, builds | ci (Buildkite): the same, builds |".to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    for (name, fault) in cases {
        let flag = launchdarkly_cell(fault);
        let gitlab = GitLab::start(GITHUB_TOKEN);
        gitlab.add_project("va/vets-website", 42);
        gitlab.add_branch("va/vets-website", "main", "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
        gitlab.script(RunOutcome::Success, 1);
        let on_gitlab = other_ci_cell(
            fault,
            &gitlab.url(),
            "provider: gitlab, repo: va/vets-website, token_env: CI_TOKEN",
            "{ pipeline: deploy, ref: main, timeout: 60s }",
            &|| gitlab.runs().len(),
            &|_| (),
        );
        let jenkins = Jenkins::start("deployer", GITHUB_TOKEN);
        jenkins.add_job("deploys/vets-website");
        jenkins.queue_script(1, QueueEnd::Starts);
        jenkins.script(RunOutcome::Success, 1);
        let on_jenkins = other_ci_cell(
            fault,
            &jenkins.url(),
            "provider: jenkins, username: deployer, token_env: CI_TOKEN",
            "{ pipeline: deploys/vets-website, ref: main, timeout: 60s }",
            &|| jenkins.runs().len(),
            &|url| jenkins.set_root_url(url),
        );
        let buildkite = Buildkite::start(GITHUB_TOKEN);
        buildkite.add_pipeline("va", "vets-website-deploy");
        buildkite.script(RunOutcome::Success, 1);
        let on_buildkite = other_ci_cell(
            fault,
            &buildkite.url(),
            "provider: buildkite, repo: va, token_env: CI_TOKEN",
            "{ pipeline: vets-website-deploy, ref: main, timeout: 60s }",
            &|| buildkite.runs().len(),
            &|_| (),
        );
        let shown = |c: &Cell| {
            let resumed = c.resumed.map_or_else(|| "-".to_string(), |code| code.to_string());
            format!("{}, {resumed}, {}", c.exit, c.writes)
        };
        table.push(format!(
            "| {name} | {} | {} | {} | {} |",
            shown(&flag),
            shown(&on_gitlab),
            shown(&on_jenkins),
            shown(&on_buildkite)
        ));
        for (what, cell) in
            [("launchdarkly", &flag), ("gitlab", &on_gitlab), ("jenkins", &on_jenkins), ("buildkite", &on_buildkite)]
        {
            assert!([0, 1, 3].contains(&cell.exit), "{what} under {name}: exit {}", cell.exit);
            assert!(cell.done, "{what} under {name}: not done once the run and its resume ended: {}", cell.said);
        }
        assert!(flag.writes <= 2, "launchdarkly under {name}: {} writes", flag.writes);
        assert_eq!(flag.resumed.unwrap_or(0), 0, "launchdarkly under {name}: the resume did not finish it");
        for (what, cell) in [("gitlab", &on_gitlab), ("jenkins", &on_jenkins), ("buildkite", &on_buildkite)] {
            assert!(cell.writes <= 1, "{what} under {name}: {} runs", cell.writes);
        }
    }
    eprintln!("{}", table.join("\n"));
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/fault-matrix-others.md"), table.join("\n") + "\n")
        .unwrap();
}

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn the_real_unleash_behind_the_proxy_ends_every_fault_with_the_flag_off_once() {
    let unleash = super::unleash::Unleash::from_env();
    let mut table = vec![
        "| fault on the write | flag off (Unleash): exit, resume's exit, changes Unleash logged |".to_string(),
        "|---|---|".to_string(),
    ];
    let mut cases: Vec<(&str, Option<Fault>)> = Fault::ALL.iter().map(|f| (f.name(), Some(*f))).collect();
    cases.push(("service down", None));
    for (name, fault) in cases {
        let flag = unleash.feature("faults", "100", serde_json::json!([]));
        let proxy = FaultProxy::start(&unleash.url);
        let env = unleash.workspace();
        let config = env.read("rollout.yaml").replace(&unleash.url, &proxy.url(&unleash.url));
        env.write("rollout.yaml", &format!("{config}{HTTP}"));
        let before = unleash.events(&flag);
        inject_or_down(&proxy, "/off", fault);
        let args = ["run", "off", "--yes", "--var", &format!("flag={flag}")];
        let first = unleash.run(&env, &args);
        assert_eq!(proxy.clear(), 0, "{name}: the fault met the write");
        proxy.set_down(false);
        let resumed = (first.code != 0).then(|| {
            let run = env.journal()[0]["run_id"].as_str().unwrap().to_string();
            unleash.run(&env, &["resume", &run, "--yes"])
        });
        let off = unleash.read(&flag)["enabled"] == false;
        let changes = unleash.events(&flag) - before;
        let journaled = env.journal().iter().any(|e| e["event"] == "step_succeeded" && e["step"] == "off");
        assert!(off && journaled, "{name}: off {off}, journaled {journaled}: {}", first.stderr);
        assert!([0, 1, 3].contains(&first.code), "{name}: exit {}", first.code);
        assert_eq!(resumed.as_ref().map_or(0, |r| r.code), 0, "{name}: the resume did not finish it");
        assert!(changes <= 2, "{name}: {changes} changes");
        let resumed = resumed.map_or_else(|| "-".to_string(), |r| r.code.to_string());
        table.push(format!("| {name} | {}, {resumed}, {changes} |", first.code));
    }
    eprintln!("{}", table.join("\n"));
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/fault-matrix-unleash.md"), table.join("\n") + "\n")
        .unwrap();
}

#[test]
#[ignore = "needs buildbot: run scripts/test"]
fn the_real_buildbot_behind_the_proxy_never_gets_a_trigger_twice() {
    let buildbot = std::env::var("BUILDBOT_URL").expect("BUILDBOT_URL: run scripts/test");
    let builds_of = |run: &str| -> usize {
        let text =
            reqwest::blocking::get(format!("{buildbot}/api/v2/builds?property=rollout_run")).unwrap().text().unwrap();
        let builds: serde_json::Value = serde_json::from_str(&text).unwrap();
        builds["builds"].as_array().unwrap().iter().filter(|b| b["properties"]["rollout_run"][0] == run).count()
    };
    let mut table = vec![
        "| fault on the trigger | ci (Buildbot): exit, resume's exit, builds |".to_string(),
        "|---|---|".to_string(),
    ];
    let mut cases: Vec<(&str, Option<Fault>)> = Fault::ALL.iter().map(|f| (f.name(), Some(*f))).collect();
    cases.push(("service down", None));
    for (name, fault) in cases {
        let proxy = FaultProxy::start(&buildbot);
        let env = act_workspace(
            &format!("ci: {{ provider: buildbot, url: \"{}\" }}", proxy.url(&buildbot)),
            "  - id: deploy\n    name: Deploy\n    ci: { pipeline: deploy, ref: main, inputs: { outcome: pass, seconds: \"1\" }, timeout: 60s }\n",
        );
        inject_or_down(&proxy, "forceschedulers", fault);
        let (first, resumed) = run_then_resume(&env, &proxy, "act", &[]);
        let run = env.journal()[0]["run_id"].as_str().unwrap().to_string();
        let builds = builds_of(&run);
        let said = resumed.as_ref().map_or_else(|| first.stderr.clone(), |r| r.stderr.clone());
        assert!(builds <= 1, "{name}: {builds} builds");
        assert!(builds == 1 || said.contains("not triggered again"), "{name}: {builds} builds: {said}");
        assert!([0, 1, 3].contains(&first.code), "{name}: exit {}", first.code);
        let resumed = resumed.map_or_else(|| "-".to_string(), |r| r.code.to_string());
        table.push(format!("| {name} | {}, {resumed}, {builds} |", first.code));
    }
    eprintln!("{}", table.join("\n"));
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/fault-matrix-buildbot.md"), table.join("\n") + "\n")
        .unwrap();
}

/// A revert step over HTTP through the proxy, with `fault` on the first request whose line
/// contains `pattern` (the listing of the branches before the revert, or the push). Counted: the reverts the
/// remote's branch holds past the tip it started at.
fn git_cell(http: &GitHttp, fault: Option<Fault>, pattern: &str) -> Cell {
    let (env, proxy, name) = git_behind_proxy(http);
    inject_or_down(&proxy, &pattern.replace("NAME", &name), fault);
    let (first, resumed) = run_then_resume(&env, &proxy, "act", &[("GIT_TOKEN", &http.token)]);
    let bare = http.root.join(format!("{name}.git"));
    let reverts: usize = git(&bare, &["rev-list", "--count", &format!("{}..main", env.sandbox.tip)]).parse().unwrap();
    let done = reverts == 1 && git(&bare, &["log", "-1", "--format=%s", "main"]).starts_with("Revert ");
    let journaled = env.journal().iter().any(|e| e["event"] == "step_succeeded" && e["step"] == "revert");
    assert_eq!(journaled, done, "the journal and the remote disagree under {fault:?}: {}", first.stderr);
    if fault == Some(Fault::Stalled) {
        // libgit2 gives up after `http.timeout` (2 s) of silence, long before the proxy closes
        // the stalled connection (60 s).
        assert!(first.stderr.contains("timed out"), "a stalled git server held the step: {}", first.stderr);
    }
    let said = resumed.as_ref().map_or_else(|| first.stderr.clone(), |r| r.stderr.clone());
    Cell { exit: first.code, resumed: resumed.map(|r| r.code), writes: reverts, done, said }
}

#[test]
#[ignore = "needs git-http: run scripts/test"]
fn git_over_http_behind_the_proxy_ends_every_fault_with_one_revert_on_the_branch() {
    let http = GitHttp::from_env();
    let mut table = vec![
        "| fault | listing (git over HTTP): exit, resume's exit, reverts on main | push (git over HTTP): the same |"
            .to_string(),
        "|---|---|---|".to_string(),
    ];
    let mut cases: Vec<(&str, Option<Fault>)> = Fault::ALL.iter().map(|f| (f.name(), Some(*f))).collect();
    cases.push(("service down", None));
    for (name, fault) in cases {
        let fetch = git_cell(&http, fault, "GET /NAME.git/info/refs?service=git-upload-pack");
        let push = git_cell(&http, fault, "POST /NAME.git/git-receive-pack");
        let shown = |c: &Cell| {
            let resumed = c.resumed.map_or_else(|| "-".to_string(), |code| code.to_string());
            format!("{}, {resumed}, {}", c.exit, c.writes)
        };
        table.push(format!("| {name} | {} | {} |", shown(&fetch), shown(&push)));
        for (what, cell) in [("listing", &fetch), ("push", &push)] {
            assert!([0, 1, 3].contains(&cell.exit), "{what} under {name}: exit {}: {}", cell.exit, cell.said);
            assert!(
                cell.done,
                "{what} under {name}: no revert on main once the run and its resume ended: {}",
                cell.said
            );
            assert_eq!(
                cell.resumed.unwrap_or(0),
                0,
                "{what} under {name}: the resume did not finish it: {}",
                cell.said
            );
        }
    }
    eprintln!("{}", table.join("\n"));
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/fault-matrix-git.md"), table.join("\n") + "\n")
        .unwrap();
}

/// A required notify step through the proxy, with `fault` on its post. Counted: the posts the
/// webhook received.
fn notify_cell(fault: Option<Fault>) -> Cell {
    use super::notify::{SECRET_PATH, Slack};
    let server = Server::start(std::sync::Arc::new(Slack), "");
    let proxy = FaultProxy::start(&server.url());
    let env = act_workspace(
        "notify: { webhook_env: INCIDENT_WEBHOOK }",
        "  - id: tell\n    name: Tell\n    notify: { message: \"The toggle is off\", required: true }\n",
    );
    inject_or_down(&proxy, "POST ", fault);
    let url = format!("{}{SECRET_PATH}", proxy.url(&server.url()));
    let (first, resumed) = run_then_resume(&env, &proxy, "act", &[("INCIDENT_WEBHOOK", &url)]);
    let posts = server.count("POST");
    let journaled = env.journal().iter().any(|e| e["event"] == "step_succeeded" && e["step"] == "tell");
    let said = resumed.as_ref().map_or_else(|| first.stderr.clone(), |r| r.stderr.clone());
    // A post that may have been received is never sent again: left to the operator, who skips
    // the step once they have looked at the channel.
    let left_to_the_operator = said.contains("it is not posted again");
    let done = (journaled && posts == 1) || left_to_the_operator;
    Cell { exit: first.code, resumed: resumed.map(|r| r.code), writes: posts, done, said }
}

#[test]
fn a_notification_under_every_fault_is_posted_at_most_once() {
    let mut table = vec![
        "| fault on the post | notify, required (webhook): exit, resume's exit, posts received |".to_string(),
        "|---|---|".to_string(),
    ];
    let mut cases: Vec<(&str, Option<Fault>)> = Fault::ALL.iter().map(|f| (f.name(), Some(*f))).collect();
    cases.push(("service down", None));
    for (name, fault) in cases {
        let cell = notify_cell(fault);
        assert!([0, 1].contains(&cell.exit), "{name}: exit {}: {}", cell.exit, cell.said);
        assert!(cell.writes <= 1, "{name}: {} posts", cell.writes);
        assert!(cell.done, "{name}: neither posted nor left to the operator: {}", cell.said);
        assert!(!cell.said.contains("XXXXsecretXXXX"), "{name}: the webhook URL leaked: {}", cell.said);
        let resumed = cell.resumed.map_or_else(|| "-".to_string(), |code| code.to_string());
        table.push(format!("| {name} | {}, {resumed}, {} |", cell.exit, cell.writes));
    }
    eprintln!("{}", table.join("\n"));
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/fault-matrix-notify.md"), table.join("\n") + "\n")
        .unwrap();
}

/// A gate step on the real Prometheus through the proxy (the value 1.5, which passes `below:
/// 5`), with `fault` on the query of its first sample (the preview's query before it goes
/// through). Counted: the samples journaled, each checked against the value Prometheus holds.
fn gate_cell(fault: Option<Fault>, test: &str) -> Cell {
    let (proxy, env) = gate_behind_proxy(test);
    match fault {
        Some(fault) => {
            proxy.inject("POST /api/v1/query", Fault::Latency(std::time::Duration::ZERO));
            proxy.inject("POST /api/v1/query", fault);
        }
        None => proxy.set_down(true),
    }
    let (first, resumed) = run_then_resume(&env, &proxy, "gate", &[]);
    let (samples, done) = gate_samples(&env);
    let said = resumed.as_ref().map_or_else(|| first.stderr.clone(), |r| r.stderr.clone());
    Cell { exit: first.code, resumed: resumed.map(|r| r.code), writes: samples, done, said }
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn a_gate_on_the_real_prometheus_behind_the_proxy_passes_on_what_prometheus_holds_under_every_fault() {
    let test = "faults-gate";
    let exporter = Exporter::start(test, Metrics { value: Some(1.5), ..Metrics::default() });
    exporter.wait_for(&format!("gate_value{{test=\"{test}\"}}"));
    let mut table = vec![
        "| fault on the first sample | gate (Prometheus): exit, resume's exit, samples journaled |".to_string(),
        "|---|---|".to_string(),
    ];
    let mut cases: Vec<(&str, Option<Fault>)> = Fault::ALL.iter().map(|f| (f.name(), Some(*f))).collect();
    cases.push(("service down", None));
    for (name, fault) in cases {
        let cell = gate_cell(fault, test);
        assert!([0, 1].contains(&cell.exit), "{name}: exit {}: {}", cell.exit, cell.said);
        assert!(cell.done, "{name}: the gate did not pass once the run and its resume ended: {}", cell.said);
        assert_eq!(cell.resumed.unwrap_or(0), 0, "{name}: the resume did not finish it: {}", cell.said);
        let resumed = cell.resumed.map_or_else(|| "-".to_string(), |code| code.to_string());
        table.push(format!("| {name} | {}, {resumed}, {} |", cell.exit, cell.writes));
    }
    eprintln!("{}", table.join("\n"));
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/fault-matrix-gate.md"), table.join("\n") + "\n")
        .unwrap();
}
