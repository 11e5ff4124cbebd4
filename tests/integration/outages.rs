//! A service going down in the middle of a run, once a given request was answered, and coming
//! back: within the run's retries, or only for `resume`; what the service counted each time.

use super::faults::{
    FLIPPER_TOKEN, GITHUB_TOKEN, flipper_behind_proxy, gate_behind_proxy, gate_samples, git_behind_proxy,
    github_behind_proxy, run_then_resume,
};
use crate::support::exporter::{Exporter, Metrics};
use crate::support::fault_proxy::FaultProxy;
use crate::support::git_remote::GitHttp;
use crate::support::{FLAG, Outcome, git};

/// How long an outage lasts: a number of connections reset (back within the run's retries:
/// `http.retries` is 2), or until the run has stopped (back for the resume).
const OUTAGES: [(&str, Option<usize>); 2] = [("back after 2 connections", Some(2)), ("back for the resume", None)];

/// What one outage ended with: exit codes, and what the service counted.
struct Ended {
    exit: i32,
    resumed: Option<i32>,
    counted: usize,
    /// Connections that met the service down.
    refused: usize,
}

impl Ended {
    fn new(first: &Outcome, resumed: &Option<Outcome>, counted: usize, proxy: &FaultProxy) -> Ended {
        Ended { exit: first.code, resumed: resumed.as_ref().map(|r| r.code), counted, refused: proxy.refused() }
    }

    fn shown(&self) -> String {
        let resumed = self.resumed.map_or_else(|| "-".to_string(), |code| code.to_string());
        format!("{}, {resumed}, {} ({} refused)", self.exit, self.counted, self.refused)
    }
}

const SECOND: &str = "claims_banner";

/// Two flag steps on Flipper; down once the first flag's write is answered (its read-back
/// meets the outage). Counted: Flipper's writes; both flags must end off, each journaled.
fn flags(outage: Option<usize>) -> Ended {
    let (server, proxy, env) = flipper_behind_proxy(
        &[FLAG, SECOND],
        &format!(
            "  - id: first\n    name: First\n    flag: {{ name: {FLAG}, state: off }}\n  - id: second\n    name: Second\n    flag: {{ name: {SECOND}, state: off }}\n"
        ),
    );
    proxy.down_after(&format!("features/{FLAG}/boolean"), outage);
    let (first, resumed) = run_then_resume(&env, &proxy, "act", &[("FLIPPER_TOKEN", FLIPPER_TOKEN)]);
    let said = resumed.as_ref().map_or(&first.stderr, |r| &r.stderr);
    for (flag, step) in [(FLAG, "first"), (SECOND, "second")] {
        assert!(server.gates(flag).is_some_and(|g| !g.boolean), "{flag} is not off: {said}");
        let journaled = env.journal().iter().any(|e| e["event"] == "step_succeeded" && e["step"] == step);
        assert!(journaled, "{step} is not journaled done: {said}");
    }
    Ended::new(&first, &resumed, server.non_get_count(), &proxy)
}

/// Two ci steps on GitHub; down once the first trigger is answered (finding and following its
/// run meet the outage). Counted: pipeline runs, never more than the two steps.
fn pipelines(outage: Option<usize>) -> Ended {
    let (server, proxy, env) = github_behind_proxy(
        &["deploy.yml", "smoke.yml"],
        "  - id: deploy\n    name: Deploy\n    ci: { pipeline: deploy.yml, ref: main, timeout: 60s }\n  - id: smoke\n    name: Smoke\n    ci: { pipeline: smoke.yml, ref: main, timeout: 60s }\n",
    );
    proxy.down_after("/dispatches", outage);
    let (first, resumed) = run_then_resume(&env, &proxy, "act", &[("CI_TOKEN", GITHUB_TOKEN)]);
    let said = resumed.as_ref().map_or(&first.stderr, |r| &r.stderr);
    let runs = server.runs().len();
    // A trigger that may have been received is never sent again: each pipeline has one run,
    // or its step is left to the operator, who skips it once they have looked.
    assert!(runs <= 2, "{runs} pipeline runs: {said}");
    assert!(runs == 2 || said.contains("not triggered again"), "{runs} pipeline runs: {said}");
    Ended::new(&first, &resumed, runs, &proxy)
}

/// A gate on the real Prometheus; down once the preview's query is answered (its first samples
/// meet the outage). Counted: the samples journaled, each the value Prometheus holds.
fn gate(outage: Option<usize>, test: &str) -> Ended {
    let (proxy, env) = gate_behind_proxy(test);
    proxy.down_after("POST /api/v1/query", outage);
    let (first, resumed) = run_then_resume(&env, &proxy, "gate", &[]);
    let said = resumed.as_ref().map_or(&first.stderr, |r| &r.stderr);
    let (samples, passed) = gate_samples(&env);
    assert!(passed, "the gate did not pass: {said}");
    Ended::new(&first, &resumed, samples, &proxy)
}

/// A revert over git over HTTP; down once the listing of the branches is answered (the fetch
/// meets the outage). Counted: the reverts on the remote's `main`.
fn revert(http: &GitHttp, outage: Option<usize>) -> Ended {
    let (env, proxy, name) = git_behind_proxy(http);
    proxy.down_after(&format!("GET /{name}.git/info/refs?service=git-upload-pack"), outage);
    let (first, resumed) = run_then_resume(&env, &proxy, "act", &[("GIT_TOKEN", &http.token)]);
    let said = resumed.as_ref().map_or(&first.stderr, |r| &r.stderr);
    let bare = http.root.join(format!("{name}.git"));
    let reverts: usize = git(&bare, &["rev-list", "--count", &format!("{}..main", env.sandbox.tip)]).parse().unwrap();
    let journaled = env.journal().iter().any(|e| e["event"] == "step_succeeded" && e["step"] == "revert");
    assert!(reverts == 1 && journaled, "{reverts} reverts, journaled {journaled}: {said}");
    Ended::new(&first, &resumed, reverts, &proxy)
}

fn table(header: &str, rows: Vec<String>, file: &str) {
    let mut table = vec![header.to_string(), "|---|---|---|".to_string()];
    table.extend(rows);
    eprintln!("{}", table.join("\n"));
    std::fs::write(format!("{}/target/{file}", env!("CARGO_MANIFEST_DIR")), table.join("\n") + "\n").unwrap();
}

const HEADER: &str = "| service, steps: down once this is answered | back after 2 connections: exit, resume's exit, counted (connections refused) | back for the resume: the same |";

/// Every outage met the run: a short one `short` connections (2 when the service's client
/// retries, 1 for libgit2, which does not), a long one at least 1.
fn met(cells: &[Ended], what: &str, short: usize) {
    assert_eq!(cells[0].refused, short, "{what}: the short outage did not meet the run as it should");
    assert!(cells[1].refused >= 1, "{what}: the long outage did not meet the run");
}

#[test]
fn flipper_and_github_down_in_the_middle_of_a_run_end_with_each_change_made_once() {
    let flags: Vec<Ended> = OUTAGES.iter().map(|(_, outage)| flags(*outage)).collect();
    let pipelines: Vec<Ended> = OUTAGES.iter().map(|(_, outage)| pipelines(*outage)).collect();
    for (what, ended) in [("flags", &flags), ("pipelines", &pipelines)] {
        for (cell, (outage, _)) in ended.iter().zip(OUTAGES) {
            assert!([0, 1].contains(&cell.exit), "{what}, {outage}: exit {}", cell.exit);
        }
    }
    met(&flags, "flags", 2);
    met(&pipelines, "pipelines", 2);
    // Back within the retries: the run rides the outage out.
    assert_eq!(flags[0].exit, 0, "flags, back after 2 connections");
    assert_eq!(flags[1].resumed, Some(0), "flags, back for the resume");
    table(
        HEADER,
        vec![
            format!(
                "| Flipper, two flags off: the first write (flag writes) | {} | {} |",
                flags[0].shown(),
                flags[1].shown()
            ),
            format!(
                "| GitHub, two pipelines: the first trigger (pipeline runs) | {} | {} |",
                pipelines[0].shown(),
                pipelines[1].shown()
            ),
        ],
        "fault-matrix-outages.md",
    );
}

#[test]
#[ignore = "needs prometheus and git-http: run scripts/test"]
fn prometheus_and_git_down_in_the_middle_of_a_run_end_with_the_gate_passed_and_one_revert() {
    let test = "outages-gate";
    let exporter = Exporter::start(test, Metrics { value: Some(1.5), ..Metrics::default() });
    exporter.wait_for(&format!("gate_value{{test=\"{test}\"}}"));
    let gates: Vec<Ended> = OUTAGES.iter().map(|(_, outage)| gate(*outage, test)).collect();
    let http = GitHttp::from_env();
    let reverts: Vec<Ended> = OUTAGES.iter().map(|(_, outage)| revert(&http, *outage)).collect();
    met(&gates, "gate", 2);
    met(&reverts, "revert", 1);
    assert_eq!(gates[0].exit, 0, "gate, back after 2 connections");
    assert_eq!(gates[1].resumed, Some(0), "gate, back for the resume");
    for cell in &reverts {
        assert_eq!(cell.resumed.unwrap_or(0), 0, "the resume did not finish the revert");
    }
    table(
        HEADER,
        vec![
            format!(
                "| Prometheus, a gate: the preview's query (samples journaled) | {} | {} |",
                gates[0].shown(),
                gates[1].shown()
            ),
            format!(
                "| git over HTTP, a revert: the listing of the branches (reverts on main) | {} | {} |",
                reverts[0].shown(),
                reverts[1].shown()
            ),
        ],
        "fault-matrix-outages-services.md",
    );
}
