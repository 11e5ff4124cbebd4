//! The flag step against Flipper and LaunchDarkly emulators: live previews, writes only when
//! needed, read-back, and the HTTP client's behaviour when the service is slow, down or refusing.

use std::time::{Duration, Instant};

use crate::support::flipper::{Flipper, Gates};
use crate::support::http_server::{Fault, Server};
use crate::support::launchdarkly::{EnvState, Fallthrough, LaunchDarkly};
use crate::support::{Env, FLAG};

const FLIPPER_TOKEN: &str = "flipper-secret-0b7c9e";
const LD_TOKEN: &str = "api-ld-secret-51f2aa";

/// One-step runbooks that set the flag from `--var`s; fast HTTP settings for the tests; no
/// tokens.
fn tokenless_workspace(flags: &str) -> Env {
    let runbook = |name: &str, change: &str| {
        format!(
            "version: 1\ntitle: {name}\ninputs:\n  flag: {{ default: {FLAG} }}\n  percent: {{ type: percent, default: 5 }}\nsteps:\n  - id: {name}\n    name: Set the flag\n    flag: {{ name: \"{{{{ inputs.flag }}}}\", {change} }}\n"
        )
    };
    Env::workspace(&format!(
        "version: 1\nflags: {flags}\nhttp: {{ timeout: 1s, connect_timeout: 1s, retries: 2, max_wait: 5s }}\n"
    ))
    .runbook("off", &runbook("off", "state: off"))
    .runbook("on", &runbook("on", "state: on"))
    .runbook("share", &runbook("share", "state: on, percent: \"{{ inputs.percent }}\""))
}

/// The same, with both services' tokens set for every run.
fn workspace(flags: &str) -> Env {
    tokenless_workspace(flags).var("FLIPPER_TOKEN", FLIPPER_TOKEN).var("LD_TOKEN", LD_TOKEN)
}

fn flipper() -> (Flipper, Env) {
    let server = Flipper::start(FLIPPER_TOKEN);
    server.set(FLAG, Gates { boolean: true, ..Gates::default() });
    let env = workspace(&format!("{{ provider: flipper, url: \"{}\", token_env: FLIPPER_TOKEN }}", server.url()));
    (server, env)
}

fn launchdarkly() -> (LaunchDarkly, Env) {
    let server = LaunchDarkly::start(LD_TOKEN);
    server.add_flag("va", FLAG, &["production", "staging"]);
    let env = workspace(&format!(
        "{{ provider: launchdarkly, url: \"{}\", project: va, environment: production, token_env: LD_TOKEN }}",
        server.url()
    ));
    (server, env)
}

fn non_get_paths(server: &Server) -> Vec<String> {
    server.requests().into_iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.path)).collect()
}

#[test]
fn flipper_off_share_and_on_use_the_boolean_and_percentage_gates() {
    let (server, env) = flipper();
    server.expect("POST", &format!("/features/{FLAG}/percentage_of_actors"));
    let out = env.run(&["run", "off", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains(&format!("flag {FLAG} (Flipper {}): on, 100% -> off", server.url())), "{}", out.stderr);
    assert_eq!(server.gates(FLAG).unwrap().state(), "off");
    assert_eq!(non_get_paths(&server), [format!("DELETE /flipper/api/features/{FLAG}/boolean")]);

    server.clear_requests();
    env.run(&["run", "share", "--yes", "--var", "percent=5"]).code(0);
    let gates = server.gates(FLAG).unwrap();
    assert_eq!((gates.boolean, gates.percentage_of_actors.as_deref()), (false, Some("5")));
    assert_eq!(non_get_paths(&server), [format!("POST /flipper/api/features/{FLAG}/percentage_of_actors")]);
    let post = server.requests().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(post.text(), "percentage=5");
    assert_eq!(post.header("authorization"), Some(format!("Bearer {FLIPPER_TOKEN}").as_str()));

    env.run(&["run", "on", "--yes"]).code(0);
    assert!(server.gates(FLAG).unwrap().boolean);
}

#[test]
fn flipper_lowering_from_everyone_turns_the_boolean_gate_off_before_setting_the_share() {
    let (server, env) = flipper();
    let out = env.run(&["run", "share", "--yes", "--var", "percent=2.5"]);
    out.code(0);
    assert!(out.stderr.contains("on, 100% -> on, 2.5%"), "{}", out.stderr);
    assert_eq!(
        non_get_paths(&server),
        [
            format!("DELETE /flipper/api/features/{FLAG}/boolean"),
            format!("POST /flipper/api/features/{FLAG}/percentage_of_actors")
        ]
    );
    assert_eq!(server.gates(FLAG).unwrap().state(), "conditional");
}

#[test]
fn flipper_records_every_gate_before_clearing_them() {
    let (server, env) = flipper();
    let mut gates = Gates { boolean: false, percentage_of_actors: Some("25".into()), ..Gates::default() };
    gates.actors.insert("User;42".into());
    server.set(FLAG, gates);
    let out = env.run(&["--json", "run", "off", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("on, 25% + actors (1: User;42) -> off"), "{}", out.stderr);
    let preview = out.events().into_iter().find(|e| e["event"] == "step_preview").unwrap();
    let raw = preview["before"]["state"]["raw"]["gates"].as_array().unwrap().clone();
    let gate = |key: &str| raw.iter().find(|g| g["key"] == key).unwrap()["value"].clone();
    assert_eq!(gate("percentage_of_actors"), "25");
    assert_eq!(gate("actors"), serde_json::json!(["User;42"]));
}

#[test]
fn launchdarkly_uses_semantic_patches_with_a_comment_naming_the_run() {
    let (server, env) = launchdarkly();
    server.expect("PATCH", &format!("/api/v2/flags/va/{FLAG}"));
    let out = env.run(&["run", "share", "--yes", "--var", "percent=5"]);
    out.code(0);
    assert!(out.stderr.contains("LaunchDarkly va/production): on, 100% -> on, 5%"), "{}", out.stderr);
    let on_id = server.variation_id("va", FLAG, 0);
    let off_id = server.variation_id("va", FLAG, 1);
    assert_eq!(
        server.env("va", FLAG, "production").unwrap().fallthrough,
        Fallthrough::Rollout(vec![(0, 5000), (1, 95000)])
    );
    assert_eq!(
        server.env("va", FLAG, "staging").unwrap().fallthrough,
        Fallthrough::Variation(0),
        "other environments untouched"
    );
    let patch = server.requests().into_iter().find(|r| r.method == "PATCH").unwrap();
    assert_eq!(patch.header("content-type"), Some("application/json; domain-model=launchdarkly.semanticpatch"));
    assert_eq!(patch.header("authorization"), Some(LD_TOKEN));
    let body = patch.json().unwrap();
    let run_id = env.journal()[0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(body["comment"], format!("rollout run {run_id}"));
    assert_eq!(body["environmentKey"], "production");
    assert_eq!(body["instructions"][1]["rolloutWeights"][&on_id], 5000);
    assert_eq!(body["instructions"][1]["rolloutWeights"][&off_id], 95000);

    env.run(&["run", "off", "--yes"]).code(0);
    assert!(!server.env("va", FLAG, "production").unwrap().on);
    let out = env.run(&["run", "on", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("off -> on, 100%"), "{}", out.stderr);
    let state = server.env("va", FLAG, "production").unwrap();
    assert_eq!((state.on, state.fallthrough), (true, Fallthrough::Variation(0)));
}

#[test]
fn a_flag_already_in_the_target_state_gets_no_write() {
    let (flipper, env) = flipper();
    let out = env.run(&["run", "on", "--yes"]);
    out.code(0);
    assert!(out.stderr.contains("already on, 100%, nothing to change"), "{}", out.stderr);
    assert_eq!(flipper.non_get_count(), 0);

    let (ld, env) = launchdarkly();
    ld.set_env(
        "va",
        FLAG,
        "production",
        EnvState { on: true, fallthrough: Fallthrough::Rollout(vec![(0, 5000), (1, 95000)]), off_variation: 1 },
    );
    let out = env.run(&["run", "share", "--yes", "--var", "percent=5"]);
    out.code(0);
    assert!(out.stderr.contains("already on, 5%, nothing to change"), "{}", out.stderr);
    assert_eq!(ld.non_get_count(), 0);
}

#[test]
fn an_unknown_flag_fails_preflight_and_the_dry_run_sends_only_gets() {
    let (flipper, env) = flipper();
    for mode in ["--yes", "--dry-run"] {
        let out = env.run(&["run", "off", mode, "--var", "flag=nope"]);
        out.code(3);
        assert!(
            out.stderr
                .contains(&format!("flag nope does not exist in Flipper at {} (Feature not found.)", flipper.url())),
            "{}",
            out.stderr
        );
    }
    let (ld, env) = launchdarkly();
    let out = env.run(&["run", "off", "--dry-run", "--var", "flag=nope"]);
    out.code(3);
    assert!(
        out.stderr.contains("flag nope was not found in LaunchDarkly project va: Invalid resource identifier"),
        "{}",
        out.stderr
    );
    let out = env.run(&["run", "share", "--dry-run"]);
    out.code(0);
    assert!(out.stderr.contains("on, 100% -> on, 5%"), "{}", out.stderr);
    assert_eq!(flipper.non_get_count() + ld.non_get_count(), 0, "a dry run sends only GET requests");
}

#[test]
fn a_wrong_token_names_its_variable_and_never_shows_the_token() {
    for (token_var, wrong) in [("FLIPPER_TOKEN", "wrong-flipper-token-123"), ("LD_TOKEN", "wrong-ld-token-456")] {
        let (_flipper, flipper_env) = flipper();
        let (_ld, ld_env) = launchdarkly();
        let env = if token_var == "FLIPPER_TOKEN" { flipper_env } else { ld_env };
        let out = env.run_with(&["--json", "run", "off", "--yes"], &[(token_var, wrong)]);
        out.code(3);
        assert!(out.stderr.contains("401 Unauthorized"), "{}", out.stderr);
        assert!(out.stderr.contains(&format!("check {token_var}: the token it holds was refused")), "{}", out.stderr);
        for text in [&out.stdout, &out.stderr, &env.journal_text()] {
            assert!(!text.contains(wrong), "the token leaked: {text}");
        }
    }
}

#[test]
fn a_missing_token_variable_is_refused_before_the_run() {
    let server = Flipper::start(FLIPPER_TOKEN);
    let env =
        tokenless_workspace(&format!("{{ provider: flipper, url: \"{}\", token_env: FLIPPER_TOKEN }}", server.url()));
    let out = env.run(&["run", "off", "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("FLIPPER_TOKEN is not set"), "{}", out.stderr);
}

/// Both emulated services, each with its workspace, the flag on for everyone.
fn both() -> Vec<(Box<dyn std::ops::Deref<Target = Server>>, Env)> {
    let (flipper, flipper_env) = flipper();
    let (ld, ld_env) = launchdarkly();
    vec![(Box::new(flipper), flipper_env), (Box::new(ld), ld_env)]
}

/// The path of the flag's read for either service (the one GET both make first).
fn read_path(server: &Server) -> String {
    let url = server.url();
    if url.ends_with("/flipper/api") { format!("/features/{FLAG}") } else { format!("/api/v2/flags/va/{FLAG}") }
}

#[test]
fn a_server_that_is_down_gets_bounded_retries_then_exit_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for (flags, service, path) in [
        (
            format!("{{ provider: flipper, url: \"http://127.0.0.1:{port}/flipper/api\", token_env: FLIPPER_TOKEN }}"),
            "Flipper",
            format!("/flipper/api/features/{FLAG}"),
        ),
        (
            format!(
                "{{ provider: launchdarkly, url: \"http://127.0.0.1:{port}\", project: va, environment: production, token_env: LD_TOKEN }}"
            ),
            "LaunchDarkly",
            format!("/api/v2/flags/va/{FLAG}"),
        ),
        (
            format!(
                "{{ provider: unleash, url: \"http://127.0.0.1:{port}\", environment: production, token_env: LD_TOKEN }}"
            ),
            "Unleash",
            format!("/api/admin/projects/default/features/{FLAG}/environments/production"),
        ),
    ] {
        let env = workspace(&flags);
        let started = Instant::now();
        let out = env.run(&["run", "off", "--yes"]);
        out.code(1);
        assert!(
            out.stderr.contains(&format!("{service} did not answer GET http://127.0.0.1:{port}{path} after 3 tries")),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
        assert!(out.stderr.contains("Preflight could not check every step; nothing was changed."), "{}", out.stderr);
        assert!(started.elapsed() < Duration::from_secs(10), "retries are bounded: {:?}", started.elapsed());
    }
}

#[test]
fn a_500_is_retried_and_the_step_succeeds() {
    for (server, env) in both() {
        server.fault(Fault::Status(500));
        server.fault(Fault::Status(503));
        env.run(&["run", "off", "--yes"]).code(0);
        let gets = server.requests().iter().filter(|r| r.method == "GET").count();
        assert!(gets >= 4, "two failed reads, the preview, the read-back: {gets}");
        let out = env.run(&["run", "off", "--yes"]);
        assert!(out.stderr.contains("already off, nothing to change"), "the write took: {}", out.stderr);
    }
}

#[test]
fn a_429_with_retry_after_is_waited_for() {
    for (server, env) in both() {
        server.fault(Fault::RateLimited { retry_after: 1 });
        let started = Instant::now();
        env.run(&["run", "off", "--yes"]).code(0);
        assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
        let ids_read = usize::from(!server.url().ends_with("/flipper/api"));
        assert_eq!(
            server.count("GET"),
            3 + ids_read,
            "the rate-limited read, its retry, the read-back (and LaunchDarkly's variation ids)"
        );
        assert_eq!(server.non_get_count(), 1, "one write");
    }
}

#[test]
fn a_429_asking_for_more_than_the_wait_budget_fails_at_once() {
    for (server, env) in both() {
        server.fault(Fault::RateLimited { retry_after: 120 });
        let started = Instant::now();
        let out = env.run(&["run", "off", "--yes"]);
        out.code(1);
        assert!(out.stderr.contains("429 Too Many Requests"), "{}", out.stderr);
        assert!(out.stderr.contains("asked to wait 120 s, past the 5 s wait budget"), "{}", out.stderr);
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert_eq!(server.non_get_count(), 0);
    }
}

#[test]
fn a_slow_server_times_out() {
    for (server, env) in both() {
        server.fail_path(&read_path(&server), Fault::Delay(Duration::from_secs(3)));
        let started = Instant::now();
        let out = env.run(&["run", "off", "--yes"]);
        out.code(1);
        assert!(out.stderr.contains("no answer within the 1 s timeout"), "{}", out.stderr);
        assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
        assert_eq!(server.non_get_count(), 0);
    }
}

#[test]
fn malformed_json_is_a_clear_error() {
    for (server, env) in both() {
        server.fault(Fault::MalformedJson);
        let out = env.run(&["run", "off", "--yes"]);
        out.code(1);
        assert!(out.stderr.contains(" answered GET "), "{}", out.stderr);
        assert!(out.stderr.contains("with malformed JSON"), "{}", out.stderr);
        assert_eq!(server.non_get_count(), 0);
    }
}

#[test]
fn a_dropped_connection_is_retried() {
    for (server, env) in both() {
        server.fault(Fault::Close);
        env.run(&["run", "off", "--yes"]).code(0);
        assert!(server.count("GET") >= 3, "the dropped read was tried again");
    }
}

#[test]
fn plain_http_to_another_host_is_refused_unless_allowed() {
    let env = workspace("{ provider: flipper, url: \"http://flags.example.gov/api\", token_env: FLIPPER_TOKEN }");
    let out = env.run(&["run", "off", "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("uses plain http to a host that is not this machine"), "{}", out.stderr);
}

#[test]
fn a_retry_after_of_u64_max_is_refused_never_waited_for_or_overflowed() {
    let (server, env) = flipper();
    server.fault(Fault::RateLimited { retry_after: u64::MAX });
    let out = env.run(&["run", "off", "--yes"]);
    assert!(out.stderr.contains("past the"), "{}", out.stderr);
    assert!(!out.stderr.contains("crashed"), "{}", out.stderr);
    out.code(1);
}
