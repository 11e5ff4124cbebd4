//! Production is never changed in a way the operator did not see: every gate and rule is read
//! and counted as on, every flag preview says fewer / more / same / unknown users, directions
//! hold, and the state written is the state read right before the write.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::background::PATIENCE;
use crate::support::flipper::{Flipper, Gates};
use crate::support::http_server::{Fault, Server};
use crate::support::launchdarkly::LaunchDarkly;
use crate::support::{Env, FLAG, Outcome};

const FLIPPER_TOKEN: &str = "flipper-secret-77aa01";
const LD_TOKEN: &str = "api-ld-secret-9c1d00";

/// One-step runbooks `off`, `on`, `share` (percent from `--var`), and `down` / `up` with a
/// direction, against the given flags section, with both services' tokens set.
fn workspace(flags: &str) -> Env {
    let runbook = |name: &str, change: &str| {
        format!(
            "version: 1\ntitle: {name}\ninputs:\n  percent: {{ type: percent, default: 5 }}\nsteps:\n  - id: {name}\n    name: Set the flag\n    flag: {{ name: {FLAG}, {change} }}\n"
        )
    };
    Env::workspace(&format!("version: 1\nflags: {flags}\nhttp: {{ timeout: 2s, retries: 1 }}\n"))
        .runbook("off", &runbook("off", "state: off"))
        .runbook("on", &runbook("on", "state: on"))
        .runbook("share", &runbook("share", "percent: \"{{ inputs.percent }}\""))
        .runbook("down", &runbook("down", "percent: \"{{ inputs.percent }}\", direction: down"))
        .runbook("up", &runbook("up", "percent: \"{{ inputs.percent }}\", direction: up"))
        .var("FLIPPER_TOKEN", FLIPPER_TOKEN)
        .var("LD_TOKEN", LD_TOKEN)
}

fn flipper(gates: Gates) -> (Flipper, Env) {
    let server = Flipper::start(FLIPPER_TOKEN);
    server.set(FLAG, gates);
    let env = workspace(&format!("{{ provider: flipper, url: \"{}\", token_env: FLIPPER_TOKEN }}", server.url()));
    (server, env)
}

fn writes(server: &Server) -> Vec<String> {
    server.requests().into_iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.path)).collect()
}

fn gate_path(gate: &str) -> String {
    format!("/flipper/api/features/{FLAG}/{gate}")
}

fn reach_of(out: &Outcome) -> Vec<String> {
    out.events()
        .into_iter()
        .filter(|e| e["event"] == "step_preview")
        .map(|e| e["reach"].as_str().unwrap_or("none").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Reads are fail-safe

#[test]
fn a_flipper_feature_on_only_through_its_expression_is_on_and_is_turned_off() {
    let expression = serde_json::json!({ "Equal": [{ "Property": ["plan"] }, "basic"] });
    let (server, env) = flipper(Gates { expression: Some(expression), ..Gates::default() });
    let out = env.run(&["--json", "run", "off", "--yes"]);
    out.code(0);
    assert!(
        out.stderr
            .contains(r#"on for some: expression {"Equal":[{"Property":["plan"]},"basic"]} -> off  [▼ fewer users]"#),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(r#"this write clears expression {"Equal":[{"Property":["plan"]},"basic"]}: rollout cannot put them back by re-enabling"#),
        "{}",
        out.stderr
    );
    assert_eq!(writes(&server), [format!("DELETE {}", gate_path("boolean"))]);
    assert_eq!(server.gates(FLAG).unwrap().state(), "off");
    assert_eq!(reach_of(&out), ["fewer"]);
}

#[test]
fn a_flipper_percentage_with_three_decimals_is_read_exactly() {
    let (server, env) = flipper(Gates::percentage_of_actors("33.333"));
    let out = env.run(&["run", "off", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("on, 33.333% -> off"), "{}", out.stderr);
    assert_eq!(writes(&server), [format!("DELETE {}", gate_path("boolean"))]);

    server.set(FLAG, Gates::percentage_of_actors("33.333"));
    server.clear_requests();
    let out = env.run(&["run", "share", "--yes", "--var", "percent=33.33"]);
    out.code(0);
    assert!(out.stderr.contains("on, 33.333% -> on, 33.33%  [▼ fewer users]"), "{}", out.stderr);
    assert_eq!(
        server.gates(FLAG).unwrap().percentage_of_actors.as_deref(),
        Some("33.33"),
        "writes keep the runbook's value"
    );
}

#[test]
fn the_flipper_preview_lists_every_gate_and_names_what_the_write_clears() {
    let mut gates = Gates::on();
    gates.actors = set(&["User;1", "User;2", "User;3", "User;4"]);
    gates.groups = set(&["beta"]);
    gates.percentage_of_time = Some("10".into());
    let (server, env) = flipper(gates);
    let out = env.run(&["run", "share", "--yes", "--var", "percent=5"]);
    out.code(0);
    let shown = "on, 100% + actors (4: User;1, User;2, User;3, …); percentage of time 10%; groups (beta)";
    assert!(out.stderr.contains(&format!("{shown} -> on, 5%  [▼ fewer users]")), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "this write clears actors (4: User;1, User;2, User;3, …); percentage of time 10%; groups (beta): rollout cannot put them back"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        writes(&server),
        [format!("DELETE {}", gate_path("boolean")), format!("POST {}", gate_path("percentage_of_actors"))]
    );
}

#[test]
fn a_flipper_share_step_keeps_other_gates_verifies_and_a_rerun_writes_nothing() {
    let mut gates = Gates::with_groups(&["beta"]);
    gates.actors = set(&["User;42"]);
    let (server, env) = flipper(gates);
    let out = env.run(&["run", "share", "--yes", "--var", "percent=5"]);
    out.code(0);
    assert!(
        out.stderr.contains("on for some: actors (1: User;42); groups (beta) -> on, 5% + actors (1: User;42); groups (beta)  [▲ MORE users]"),
        "{}",
        out.stderr
    );
    assert_eq!(
        writes(&server),
        [format!("POST {}", gate_path("percentage_of_actors"))],
        "no DELETE: the boolean gate was not set"
    );
    let after = server.gates(FLAG).unwrap();
    assert_eq!((after.actors, after.groups), (set(&["User;42"]), set(&["beta"])));

    server.clear_requests();
    let again = env.run(&["run", "share", "--yes", "--var", "percent=5"]);
    again.code(0);
    assert!(
        again.stderr.contains("already on, 5% + actors (1: User;42); groups (beta), nothing to change"),
        "{}",
        again.stderr
    );
    assert_eq!(writes(&server), Vec::<String>::new());
}

#[test]
fn bodiless_flipper_writes_carry_a_zero_content_length() {
    let (server, env) = flipper(Gates::on());
    server.expect("DELETE", &format!("/features/{FLAG}/boolean"));
    env.run(&["run", "off", "--yes"]).code(0);
    let delete = server.requests().into_iter().find(|r| r.method == "DELETE").unwrap();
    assert_eq!(delete.header("content-length"), Some("0"));
}

#[test]
fn launchdarkly_rules_and_a_true_off_variation_count_as_on() {
    let server = LaunchDarkly::start(LD_TOKEN);
    server.add_flag("va", FLAG, &["production"]);
    let mut state = server.env("va", FLAG, "production").unwrap();
    state.off_variation = 0;
    server.set_env("va", FLAG, "production", state);
    let env = workspace(&format!(
        "{{ provider: launchdarkly, url: \"{}\", project: va, environment: production, token_env: LD_TOKEN }}",
        server.url()
    ));
    let out = env.run(&["run", "off", "--yes"]);
    out.code(3);
    assert!(
        out.stderr.contains("turning it off would still leave it on for some: the off variation serves true"),
        "{}",
        out.stderr
    );
    assert_eq!(writes(&server), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Directions and reach (flagd)

/// The flag file with the toggle's default off and this targeting.
fn flagd_targeting(env: &Env, targeting: serde_json::Value) {
    let flags = serde_json::json!({ "flags": { FLAG: {
        "state": "ENABLED", "variants": { "on": true, "off": false }, "defaultVariant": "off",
        "targeting": targeting } } });
    env.write("flags.json", &serde_json::to_string_pretty(&flags).unwrap());
}

fn flagd_share(env: &Env, percent: u32) {
    flagd_targeting(env, serde_json::json!({ "fractional": [["on", percent], ["off", 100 - percent]] }));
}

#[test]
fn a_down_step_never_raises_a_flag_already_below_its_target() {
    let env = Env::new();
    flagd_share(&env, 5);
    let before = env.read("flags.json");
    let out = env.run(&["--json", "incident", "--severity", "high", "--yes", "--var", "commit=HEAD"]);
    assert!(
        out.stderr.contains("on, 5%, already at or below on, 50%: not written (direction: down)"),
        "{}",
        out.stderr
    );
    assert_eq!(env.read("flags.json"), before, "the flag file is untouched");
    assert_eq!(reach_of(&out)[0], "same");
}

#[test]
fn an_up_step_never_lowers_and_reach_is_marked_in_prompt_plan_and_event() {
    let env = workspace("{ provider: flagd, path: flags.json }");
    flagd_share(&env, 50);
    let out = env.run(&["--json", "run", "up", "--yes", "--var", "percent=5"]);
    out.code(0);
    assert!(out.stderr.contains("on, 50%, already at or above on, 5%: not written (direction: up)"), "{}", out.stderr);
    let dry = env.run(&["--json", "run", "share", "--dry-run", "--var", "percent=5"]);
    dry.code(0);
    assert!(dry.stderr.contains("1/1 share: flag"), "{}", dry.stderr);
    assert!(dry.stderr.contains("on, 50% -> on, 5%  [▼ fewer users]"), "{}", dry.stderr);
    assert_eq!(reach_of(&dry), ["fewer"]);
    let raise = env.run(&["--json", "run", "share", "--yes", "--var", "percent=80"]);
    assert!(raise.stderr.contains("on, 50% -> on, 80%  [▲ MORE users]"), "{}", raise.stderr);
    assert_eq!(reach_of(&raise), ["more"]);
}

#[test]
fn a_direction_with_targeting_rollout_cannot_compare_fails_preflight_naming_it() {
    let env = workspace("{ provider: flagd, path: flags.json }");
    flagd_targeting(&env, serde_json::json!({ "if": [{ "in": ["@va.gov", { "var": "email" }] }, "on", "off"] }));
    let before = env.read("flags.json");
    let out = env.run(&["run", "down", "--yes", "--var", "percent=5"]);
    out.code(3);
    assert!(
        out.stderr
            .contains(r#"on for some: targeting {"if":[{"in":["@va.gov",{"var":"email"}]},"on","off"]} -> on, 5%"#),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("cannot tell whether this gives the feature to more users or fewer"), "{}", out.stderr);
    assert_eq!(env.read("flags.json"), before);
    let without = env.run(&["run", "share", "--yes", "--var", "percent=5"]);
    without.code(0);
    assert!(without.stderr.contains("[? an unknown share of users]"), "{}", without.stderr);
}

#[test]
fn the_low_runbook_only_reads_the_toggle_and_fails_when_it_is_off() {
    let env = Env::new();
    flagd_share(&env, 50);
    let before = env.read("flags.json");
    let out = env.run(&["incident", "--severity", "low", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("on, 50%, as expected (only read, never written)"), "{}", out.stderr);
    assert_eq!(env.read("flags.json"), before);

    flagd_share(&env, 0);
    let off = env.run(&["incident", "--severity", "low", "--yes"]);
    off.code(3);
    assert!(off.stderr.contains("is off, but this step expects it on for someone"), "{}", off.stderr);
}

#[test]
fn the_shipped_critical_runbook_disables_down_and_reenables_up() {
    let env = Env::new();
    let out = env.run(&["--json", "incident", "--severity", "critical", "--yes"]);
    out.code(0);
    assert_eq!(reach_of(&out), ["fewer", "none", "none", "more"], "only flag steps have a reach");
}

// ---------------------------------------------------------------------------------------------
// The state confirmed is the state changed

/// Turn the flag to `percent` in the flag file while rollout waits at its prompt.
fn moved_while_waiting(runbook: &str, percent: u32, answers: &[&str]) -> (Env, rexpect::session::PtySession) {
    let env = workspace("{ provider: flagd, path: flags.json }");
    flagd_share(&env, 50);
    let mut session = rexpect::session::spawn_command(
        env.command(&["run", runbook, "--var", "percent=20"]),
        Some(PATIENCE.as_millis() as u64),
    )
    .unwrap();
    session.exp_string("Apply?").unwrap();
    flagd_share(&env, percent);
    for answer in answers {
        session.send_line(answer).unwrap();
    }
    (env, session)
}

#[test]
fn a_flag_changed_at_the_prompt_is_shown_again_and_asked_again() {
    let (env, mut session) = moved_while_waiting("down", 80, &["y"]);
    session.exp_string("it changed since it was shown; read again just now:").unwrap();
    session.exp_string("on, 80% -> on, 20%").unwrap();
    session.exp_string("Apply?").unwrap();
    session.send_line("y").unwrap();
    session.exp_string("Run succeeded").unwrap();
    session.exp_eof().unwrap();
    let journal = env.journal();
    let befores: Vec<&str> = journal
        .iter()
        .filter(|e| e["event"] == "step_preview")
        .map(|e| e["before"]["summary"].as_str().unwrap())
        .collect();
    assert_eq!(befores, ["on, 50%", "on, 80%"], "the journal's before is the state read right before the write");
    let flag = env.flag();
    assert_eq!(flag["targeting"]["fractional"][0][1], 20);
}

// ---------------------------------------------------------------------------------------------
// The screen says where and what

#[test]
fn the_header_plan_and_summary_say_where_and_what() {
    let env = Env::new();
    let commit = env.sandbox.offending.to_string();
    let flags = env.read("flags.json");
    let out = env.answer(&["incident", "--severity", "high", "--var", &format!("commit={commit}")], "y\na\n");
    out.code(4);
    let config = std::fs::canonicalize(env.path("rollout.yaml")).unwrap();
    let remote = std::fs::canonicalize(env.sandbox.remote()).unwrap();
    for line in [
        format!("  config  {}", config.display()),
        format!("  flags   flagd file {}", env.path("flags.json").display()),
        format!("  git     remote origin {}", remote.display()),
        "  revert  step revert: the revert is pushed onto origin/main".to_string(),
    ] {
        assert!(out.stderr.contains(&line), "no {line:?} in\n{}", out.stderr);
    }
    // The mitigation (reduce, direction: down) is planned and asked first; the rest of the plan
    // was checked meanwhile and is shown before the next step.
    let first_prompt = out.stderr.find("Apply?").unwrap();
    let at = |text: &str| out.stderr.find(text).unwrap_or_else(|| panic!("no {text:?} in\n{}", out.stderr));
    assert!(at("1/5 reduce: flag") < first_prompt);
    assert!(at("preflight: 1 of 5 steps checked, the rest in the background") < first_prompt);
    let second = at("Step 2/5");
    for step in ["2/5 revert: revert", "3/5 deploy-revert: checked when it runs", "5/5 deploy-fix: pipeline"] {
        assert!(at(step) > first_prompt && at(step) < second, "{step:?} is shown before step 2 runs");
    }
    assert!(out.stderr.contains("preflight: 3 more steps checked, 1 checked when they run"), "{}", out.stderr);
    // Git is set up (and shown) only once the mitigation is done: its TLS set-up alone would
    // delay the first write by tens of milliseconds.
    assert!(at("  git     checked in the background") < first_prompt, "{}", out.stderr);
    assert!(at("  git     remote origin") > first_prompt, "{}", out.stderr);

    env.write("flags.json", &flags);
    let out = env.run(&["incident", "--severity", "high", "--yes", "--var", &format!("commit={commit}")]);
    out.code(0);
    assert!(
        out.stderr.contains("  ✓ done, as the operator confirmed\n"),
        "a manual step has no duration: {}",
        out.stderr
    );
    let summary = &out.stderr[out.stderr.find("Summary\n").expect("a summary")..];
    let tip = crate::support::git(&env.sandbox.remote(), &["rev-parse", "--short=7", "main"]);
    for line in [
        format!("  reduce         flag {FLAG}: on, 100% -> on, 50% (read back)"),
        format!("  revert         pushed {tip} onto origin/main"),
        "  prioritize     done, as the operator confirmed".to_string(),
    ] {
        assert!(summary.contains(&line), "no {line:?} in\n{summary}");
    }
}

#[test]
fn under_yes_the_write_follows_the_previews_own_read_with_no_second_one() {
    let (server, env) = flipper(Gates::on());
    let out = env.run(&["run", "off", "--yes"]);
    out.code(0);
    // One read (the preview), the write, one read back: nobody looked at a prompt in between,
    // so a second read before the write would only repeat the first.
    let requests: Vec<String> = server.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let feature = format!("/flipper/api/features/{FLAG}");
    assert_eq!(requests, [format!("GET {feature}"), format!("DELETE {feature}/boolean"), format!("GET {feature}")]);
    assert!(!out.stderr.contains("it changed since it was shown"), "{}", out.stderr);
}

#[test]
fn under_yes_a_flag_read_a_while_ago_that_moved_against_the_direction_fails_unwritten() {
    let (server, env) = flipper(Gates::on());
    // The whole plan is checked first, and the second step's check takes half a second: by the
    // time the first step writes, its preflight read is old, and someone lowered the flag to 3%.
    server.set("other_flag", Gates::on());
    server.fail_path("/features/other_flag", Fault::Delay(Duration::from_millis(500)));
    server.change_after_reads(FLAG, 1, Gates::percentage_of_actors("3"));
    let two = |change: &str| {
        format!(
            "version: 1\ntitle: Two\npreflight: all-first\ninputs:\n  percent: {{ type: percent, default: 5 }}\nsteps:\n  - id: lower\n    name: Lower the flag\n    flag: {{ name: {FLAG}, {change} }}\n  - id: other\n    name: Another flag off\n    flag: {{ name: other_flag, state: off }}\n"
        )
    };
    let env = env.runbook("two", &two("percent: \"{{ inputs.percent }}\", direction: down"));
    let out = env.run(&["--json", "run", "two", "--yes", "--var", "percent=50"]);
    out.code(1);
    assert!(out.stderr.contains("it changed since it was shown; read again just now:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("on, 3%, already at or below on, 50%: not written (direction: down)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("not written: it moved past the step's direction since it was confirmed"),
        "{}",
        out.stderr
    );
    assert_eq!(writes(&server), Vec::<String>::new());
    assert_eq!(server.gates(FLAG).unwrap().percentage_of_actors.as_deref(), Some("3"));

    // Without a direction the new state is shown and the confirmed target written from it.
    server.set(FLAG, Gates::on());
    server.change_after_reads(FLAG, 1, Gates::percentage_of_actors("3"));
    let env = env.runbook("two", &two("percent: \"{{ inputs.percent }}\""));
    let out = env.run(&["--json", "run", "two", "--yes", "--var", "percent=50"]);
    out.code(0);
    let befores: Vec<String> = out
        .events()
        .into_iter()
        .filter(|e| e["event"] == "step_preview" && e["step"] == "lower")
        .map(|e| e["before"]["summary"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(befores, ["on, 100%", "on, 3%"]);
    let reach: Vec<String> = out
        .events()
        .iter()
        .filter(|e| e["event"] == "step_preview" && e["step"] == "lower")
        .map(|e| e["reach"].as_str().unwrap_or("none").to_string())
        .collect();
    assert_eq!(reach, ["fewer", "more"]);
}
