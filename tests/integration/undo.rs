//! `rollout undo RUN`: a run's changes put back exactly, newest first, each previewed and
//! confirmed; flags through every provider's own representation, reverts reapplied like git;
//! steps that cannot be taken back skipped with their reasons; drift refused unless forced.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::flipper::{Flipper, Gates};
use crate::support::{Env, FLAG, Outcome, git};
use crate::unleash::Unleash;

const FLIPPER_TOKEN: &str = "flipper-secret-undo-4d1e";
const CRITICAL: [&str; 4] = ["incident", "--severity", "critical", "--yes"];

/// A one-step runbook `name` that sets `flag` as `change` says (e.g. `state: off`).
fn flag_runbook(name: &str, flag: &str, change: &str) -> String {
    format!(
        "version: 1\ntitle: {name}\nsteps:\n  - id: {name}\n    name: Set the flag\n    flag: {{ name: {flag}, {change} }}\n"
    )
}

/// The run id of the newest journal.
fn newest_run(env: &Env) -> String {
    env.journal()[0]["run_id"].as_str().expect("a run id").to_string()
}

/// Run `rollout ARGS` and return the outcome with the id of the run it journaled.
fn run(env: &Env, args: &[&str]) -> (Outcome, String) {
    let out = env.run(args);
    (out, newest_run(env))
}

/// The journal of run `id`, parsed.
fn journal_of(env: &Env, id: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(env.state_dir().join("runs").join(format!("{id}.jsonl"))).expect("journal");
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The ids of every journaled run.
fn run_ids(env: &Env) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(env.state_dir().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

fn bytes(env: &Env, relative: &str) -> Vec<u8> {
    std::fs::read(env.path(relative)).unwrap()
}

#[track_caller]
fn assert_bytes(env: &Env, relative: &str, expected: &[u8], why: &str) {
    let now = bytes(env, relative);
    assert!(
        now == expected,
        "{why}\n--- expected\n{}\n--- found\n{}",
        String::from_utf8_lossy(expected),
        String::from_utf8_lossy(&now)
    );
}

#[track_caller]
fn assert_has(out: &Outcome, text: &str) {
    assert!(out.stderr.contains(text), "stderr lacks {text:?}\n--- stderr\n{}\n--- stdout\n{}", out.stderr, out.stdout);
}

/// The flag file with the toggle's entry set to this targeting (default off).
fn flagd_share(env: &Env, percent: u32) {
    let mut document: Value = serde_json::from_str(&env.read("flags.json")).unwrap();
    document["flags"][FLAG]["defaultVariant"] = json!("off");
    document["flags"][FLAG]["targeting"] = json!({ "fractional": [["on", percent], ["off", 100 - percent]] });
    env.write("flags.json", &(serde_json::to_string_pretty(&document).unwrap() + "\n"));
}

// ---------------------------------------------------------------------------------------------
// flagd

#[test]
fn undoing_the_critical_runbook_puts_the_flagd_file_back_byte_for_byte() {
    let env = Env::new();
    let original = bytes(&env, "flags.json");
    let (out, run_id) = run(&env, &CRITICAL);
    out.code(0);
    assert_ne!(bytes(&env, "flags.json"), original, "the run changed the flag");
    assert_eq!(env.flag()["targeting"]["fractional"], json!([["on", 5], ["off", 95]]));

    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(0);
    // Both flag steps are taken back at once, to the state the first found.
    assert_has(&out, &format!("on, 5% -> on, 100%, as run {run_id} found it"));
    assert_has(&out, "undo-disable · skipped (flag travel_pay_claim_status is put back");
    assert_bytes(&env, "flags.json", &original, "the flag file is back byte for byte");
}

/// A flag file laid out oddly (tabs, CRLF, one-line members, a big integer and `1E2`, no
/// trailing newline), whose toggle is on through targeting rules rollout cannot model, laid
/// out as `targeting` (its lines, tab-indented at the member's depth).
fn odd_flag_file(targeting: &[&str]) -> String {
    let mut lines = vec![
        "{".to_string(),
        "\t\"$schema\": \"https://flagd.dev/schema/v0/flags.json\",".to_string(),
        "\t\"flags\": {".to_string(),
        "\t\t\"other\": {\"state\":\"ENABLED\",\"variants\":{\"on\":true,\"off\":false},\"defaultVariant\":\"on\",\"metadata\":{\"n\":1E2}},".to_string(),
        format!("\t\t\"{FLAG}\": {{"),
        "\t\t\t\"variants\": { \"on\": true, \"off\": false },".to_string(),
        "\t\t\t\"state\": \"ENABLED\",".to_string(),
        "\t\t\t\"defaultVariant\": \"off\",".to_string(),
        "\t\t\t\"metadata\": { \"ticket\": 12345678901234567890123, \"weight\": 1E2 },".to_string(),
    ];
    lines.push(format!("\t\t\t\"targeting\": {}", targeting[0]));
    lines.extend(targeting[1..].iter().map(|l| format!("\t\t\t{l}")));
    lines.extend(["\t\t}", "\t}", "}"].map(String::from));
    lines.join("\r\n")
}

/// `if` rules with a fractional split inside, each value on its own line.
const TARGETING_EXPANDED: [&str; 28] = [
    "{",
    "\t\"if\": [",
    "\t\t{",
    "\t\t\t\"ends_with\": [",
    "\t\t\t\t{",
    "\t\t\t\t\t\"var\": \"email\"",
    "\t\t\t\t},",
    "\t\t\t\t\"@va.gov\"",
    "\t\t\t]",
    "\t\t},",
    "\t\t\"on\",",
    "\t\t{",
    "\t\t\t\"fractional\": [",
    "\t\t\t\t{",
    "\t\t\t\t\t\"var\": \"userId\"",
    "\t\t\t\t},",
    "\t\t\t\t[",
    "\t\t\t\t\t\"on\",",
    "\t\t\t\t\t10",
    "\t\t\t\t],",
    "\t\t\t\t[",
    "\t\t\t\t\t\"off\",",
    "\t\t\t\t\t90",
    "\t\t\t\t]",
    "\t\t\t]",
    "\t\t}",
    "\t]",
    "}",
];

/// The same rules, written compactly by hand.
const TARGETING_COMPACT: [&str; 7] = [
    "{",
    "\t\"if\": [",
    "\t\t{ \"ends_with\": [{ \"var\": \"email\" }, \"@va.gov\"] },",
    "\t\t\"on\",",
    "\t\t{ \"fractional\": [{ \"var\": \"userId\" }, [\"on\", 10], [\"off\", 90]] }",
    "\t]",
    "}",
];

/// Write `text` as the flag file, run `off` (which clears the rules), undo it; the file after.
fn off_and_undo(text: &str) -> String {
    let env = Env::new().runbook("off", &flag_runbook("off", FLAG, "state: off"));
    env.write("flags.json", text);
    let (out, run_id) = run(&env, &["run", "off", "--yes"]);
    out.code(0);
    assert_eq!(env.flag().get("targeting"), None, "the run cleared the rules");
    assert_ne!(env.read("flags.json"), text);

    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(0);
    assert_has(&out, &format!("as run {run_id} found it"));
    env.read("flags.json")
}

#[test]
fn undo_puts_back_flagd_targeting_rollout_cannot_model_in_an_odd_layout_byte_for_byte() {
    let original = odd_flag_file(&TARGETING_EXPANDED);
    let now = off_and_undo(&original);
    assert!(now == original, "the odd file is back byte for byte\n--- expected\n{original}\n--- found\n{now}");
}

/// The members the run left alone keep their bytes; the rules it cleared come back as the
/// same JSON, but laid out one value a line: the journal keeps the entry's JSON, not its text,
/// so flagd's restore writes the cleared member anew (see the report: a gap in
/// src/flags/flagd.rs, not in undo).
#[test]
fn undo_puts_back_compact_flagd_targeting_byte_for_byte() {
    // The run removes the rules; the journal keeps the entry's text as it was read, and undo
    // writes that text back, not the rules laid out anew.
    let original = odd_flag_file(&TARGETING_COMPACT);
    let now = off_and_undo(&original);
    assert_eq!(now, original, "the file is back byte for byte");
}

// ---------------------------------------------------------------------------------------------
// Flipper

#[test]
fn undo_puts_every_flipper_gate_back() {
    let server = Flipper::start(FLIPPER_TOKEN);
    server.register_group("admins");
    server.register_group("beta");
    let recorded = Gates {
        actors: ["User;1", "User;42"].map(String::from).into(),
        groups: ["admins", "beta"].map(String::from).into(),
        percentage_of_actors: Some("33.333".into()),
        percentage_of_time: Some("5".into()),
        ..Gates::default()
    };
    server.set(FLAG, recorded.clone());
    let env = Env::workspace(&format!(
        "version: 1\nflags: {{ provider: flipper, url: \"{}\", token_env: FLIPPER_TOKEN }}\nhttp: {{ timeout: 2s, retries: 1 }}\n",
        server.url()
    ))
    .runbook("off", &flag_runbook("off", FLAG, "state: off"))
    .var("FLIPPER_TOKEN", FLIPPER_TOKEN);

    let (out, run_id) = run(&env, &["run", "off", "--yes"]);
    out.code(0);
    let off = server.gates(FLAG).unwrap();
    assert_eq!(off.state(), "off", "{off:?}");
    assert!(off.actors.is_empty() && off.groups.is_empty(), "the run cleared them: {off:?}");

    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(0);
    assert_has(&out, &format!("as run {run_id} found it"));
    assert_eq!(server.gates(FLAG).unwrap(), recorded, "every gate is back");
}

// ---------------------------------------------------------------------------------------------
// Unleash (the real one)

#[test]
#[ignore = "needs unleash: run scripts/test"]
fn undo_puts_an_unleash_strategy_with_constraints_back_field_by_field() {
    let unleash = Unleash::from_env();
    let constraints = json!([{ "contextName": "userId", "operator": "IN", "values": ["1", "42"], "caseInsensitive": false, "inverted": false }]);
    for (label, runbook, vars) in [("off", "off", vec![]), ("lower", "share", vec!["--var", "percent=5"])] {
        let name = unleash.feature(&format!("undo_{label}"), "40", constraints.clone());
        let env = unleash.workspace();
        let before = unleash.read(&name);
        let flag = format!("flag={name}");
        let mut args = vec!["run", runbook, "--yes", "--var", &flag];
        args.extend(vars.iter().copied());
        let out = unleash.run(&env, &args);
        out.code(0);
        let run_id = newest_run(&env);
        let during = unleash.read(&name);
        assert_ne!(
            (during["enabled"].clone(), during["strategies"].clone()),
            (before["enabled"].clone(), before["strategies"].clone()),
            "{label}: the run changed it"
        );

        let out = unleash.run(&env, &["undo", &run_id, "--yes"]);
        out.code(0);
        assert_has(&out, &format!("as run {run_id} found it"));
        let after = unleash.read(&name);
        assert_eq!(after["enabled"], before["enabled"], "{label}: enabled");
        let strategies = |state: &Value| state["strategies"].as_array().unwrap().clone();
        assert_eq!(strategies(&after).len(), strategies(&before).len(), "{label}: {after}");
        for field in ["name", "parameters", "constraints", "segments", "variants", "disabled"] {
            assert_eq!(strategies(&after)[0][field], strategies(&before)[0][field], "{label}: {field}");
        }

        let events = unleash.events(&name);
        let out = unleash.run(&env, &["undo", &run_id, "--yes"]);
        out.code(0);
        assert_has(&out, "nothing to change");
        assert_eq!(unleash.events(&name), events, "{label}: a second undo writes nothing to Unleash");
    }
}

// ---------------------------------------------------------------------------------------------
// Reverts

/// `git revert --no-edit COMMIT` in a fresh clone of the remote: its message bytes and tree.
fn git_revert_message(env: &Env, commit: &str) -> Vec<u8> {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path().join("work");
    git(scratch.path(), &["clone", "-q", &env.sandbox.remote().display().to_string(), "work"]);
    git(&work, &["-c", "revert.reference=false", "revert", "--no-edit", commit]);
    raw_message(&work, "HEAD")
}

/// A commit's message as stored (after the headers' blank line).
fn raw_message(repo: &Path, rev: &str) -> Vec<u8> {
    let raw = crate::support::git_output(repo, &["cat-file", "commit", rev]).stdout;
    let split = raw.windows(2).position(|w| w == b"\n\n").expect("headers end");
    raw[split + 2..].to_vec()
}

fn count(repo: &Path, rev: &str) -> usize {
    git(repo, &["rev-list", "--count", rev]).parse().unwrap()
}

#[test]
fn undo_reapplies_a_pushed_revert_like_git_revert_of_the_revert() {
    let env = Env::new().runbook(
        "revert",
        "version: 1\ntitle: Revert\ninputs:\n  commit: { type: commit }\nsteps:\n  - id: revert\n    name: Revert the commit\n    revert: { commit: \"{{ inputs.commit }}\", push: true }\n",
    );
    let remote = env.sandbox.remote();
    let tree_before = git(&remote, &["rev-parse", "main^{tree}"]);
    let offending = env.sandbox.offending.to_string();
    let (out, run_id) = run(&env, &["run", "revert", "--yes", "--var", &format!("commit={offending}")]);
    out.code(0);
    let revert = git(&remote, &["rev-parse", "main"]);
    assert_ne!(git(&remote, &["rev-parse", "main^{tree}"]), tree_before, "the run reverted");
    let commits = count(&remote, "main");
    let by_git = git_revert_message(&env, &revert);

    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(0);
    assert_eq!(count(&remote, "main"), commits + 1, "exactly one new commit on the remote");
    let reapply = git(&remote, &["rev-parse", "main"]);
    assert_eq!(git(&remote, &["rev-parse", "main^"]), revert, "it goes on top of the revert");
    let message = raw_message(&remote, &reapply);
    let expected = format!("Reapply \"{}\"\n\nThis reverts commit {revert}.\n", rollout::OFFENDING_SUBJECT);
    assert_eq!(String::from_utf8_lossy(&message), expected, "git >= 2.43's message");
    if crate::revert::system_git_writes_reapply() {
        assert_eq!(String::from_utf8_lossy(&message), String::from_utf8_lossy(&by_git), "as the installed git writes");
    }
    assert_eq!(git(&remote, &["rev-parse", "main^{tree}"]), tree_before, "the tree from before the revert");

    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(0);
    assert_has(&out, "already reverted by");
    assert_eq!(git(&remote, &["rev-parse", "main"]), reapply, "a second undo reapplies nothing:\n{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// Drift, skipped steps, twice, interactive

#[test]
fn a_flag_changed_since_the_run_is_refused_unless_forced() {
    let env = Env::new();
    let original = bytes(&env, "flags.json");
    let (out, run_id) = run(&env, &CRITICAL);
    out.code(0);
    flagd_share(&env, 50);
    let moved = bytes(&env, "flags.json");
    let runs = run_ids(&env).len();

    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(3);
    assert_has(&out, &format!("is now on, 50%, not on, 5% as run {run_id} left it"));
    assert_bytes(&env, "flags.json", &moved, "a refused undo changes nothing");
    assert!(run_ids(&env).len() <= runs + 1, "at most a preflight-failed journal");

    let out = env.run(&["undo", &run_id, "--yes", "--force"]);
    out.code(0);
    assert_has(&out, &format!("on, 50% -> on, 100%, as run {run_id} found it"));
    assert_bytes(&env, "flags.json", &original, "forced, it is put back as the run found it");
}

#[test]
fn steps_undo_cannot_take_back_are_skipped_with_their_reasons_and_journaled() {
    let env = Env::new();
    let (out, run_id) = run(&env, &CRITICAL);
    out.code(0);
    let ci_run = journal_of(&env, &run_id)
        .iter()
        .find(|e| e["event"] == "step_succeeded" && e["step"] == "deploy-fix")
        .and_then(|e| e["outputs"]["run_id"].as_str().map(str::to_string))
        .expect("the deploy's run id");
    assert!(!ci_run.is_empty());

    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(0);
    assert_has(&out, &format!("a pipeline run cannot be taken back (run {ci_run}"));
    assert_has(&out, "a manual step was done by hand");
    let undo_id = newest_run(&env);
    assert_ne!(undo_id, run_id, "the undo is a run of its own");
    let journal = journal_of(&env, &undo_id);
    assert_eq!(journal[0]["event"], "run_started");
    assert_eq!(journal[0]["purpose"], json!({ "kind": "undo", "run": run_id }));
    let skipped = |step: &str| {
        journal
            .iter()
            .find(|e| e["event"] == "step_skipped" && e["step"] == step)
            .unwrap_or_else(|| panic!("no step_skipped for {step}: {journal:#?}"))
            .clone()
    };
    let ci = skipped("undo-deploy-fix");
    assert_eq!(ci["by"], "rollout");
    assert!(ci["reason"].as_str().unwrap().contains(&format!("run {ci_run}")), "{ci}");
    let manual = skipped("undo-debug");
    assert_eq!(manual["by"], "rollout");
    assert!(manual["reason"].as_str().unwrap().contains("manual step"), "{manual}");
    let merged = skipped("undo-disable");
    assert_eq!(merged["by"], "rollout");
    assert!(merged["reason"].as_str().unwrap().contains("by undo-reenable"), "{merged}");
    assert!(
        journal.iter().any(|e| e["event"] == "step_succeeded" && e["step"] == "undo-reenable"),
        "the flag step was put back: {journal:#?}"
    );

    let out = env.run(&["runs"]);
    out.code(0);
    assert!(out.stdout.contains(&undo_id) || out.stderr.contains(&undo_id), "runs lists the undo:\n{}", out.stdout);
}

#[test]
fn undoing_twice_finds_nothing_to_change_and_writes_nothing() {
    let env = Env::new();
    let original = bytes(&env, "flags.json");
    let (out, run_id) = run(&env, &CRITICAL);
    out.code(0);
    env.run(&["undo", &run_id, "--yes"]).code(0);
    assert_bytes(&env, "flags.json", &original, "the first undo put it back");
    let inode = std::fs::metadata(env.path("flags.json")).unwrap().ino();
    let remote_tip = git(&env.sandbox.remote(), &["rev-parse", "main"]);

    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(0);
    assert_has(&out, "nothing to change");
    assert_bytes(&env, "flags.json", &original, "the second undo changes nothing");
    assert_eq!(std::fs::metadata(env.path("flags.json")).unwrap().ino(), inode, "the file was not rewritten");
    assert_eq!(git(&env.sandbox.remote(), &["rev-parse", "main"]), remote_tip);
    let journal = env.journal();
    assert!(
        journal.iter().all(|e| !(e["event"] == "step_succeeded" && e["outputs"]["changed"] == "true")),
        "no step of the second undo changed anything: {journal:#?}"
    );
}

#[test]
fn skipping_an_undo_prompt_leaves_that_flag_as_it_is() {
    let other = "claim_export";
    let env = Env::new().runbook(
        "both",
        &format!(
            "version: 1\ntitle: both\nsteps:\n  - id: first\n    name: First off\n    flag: {{ name: {FLAG}, state: off }}\n  - id: second\n    name: Second off\n    flag: {{ name: {other}, state: off }}\n"
        ),
    );
    env.sandbox.write_flags(&[FLAG.to_string(), other.to_string()]).unwrap();
    let original: Value = serde_json::from_str(&env.read("flags.json")).unwrap();
    let (out, run_id) = run(&env, &["run", "both", "--yes"]);
    out.code(0);
    let ran: Value = serde_json::from_str(&env.read("flags.json")).unwrap();
    assert_eq!(ran["flags"][other]["defaultVariant"], "off");

    // Newest first: the second flag is asked about first and skipped, then the first put back.
    let out = env.answer(&["undo", &run_id], "s\ny\n");
    out.code(0);
    assert_has(&out, "Put it back?");
    let now: Value = serde_json::from_str(&env.read("flags.json")).unwrap();
    assert_eq!(now["flags"][other], ran["flags"][other], "the skipped flag stays as the run left it");
    assert_eq!(now["flags"][FLAG], original["flags"][FLAG], "the confirmed one is put back");
    let journal = env.journal();
    assert!(
        journal.iter().any(|e| e["event"] == "step_skipped" && e["step"] == "undo-second" && e["by"] == "operator"),
        "{journal:#?}"
    );
}

#[test]
fn reverts_not_pushed_or_pushed_to_their_own_branch_are_skipped_naming_why() {
    let runbook = |extra: &str| {
        format!(
            "version: 1\ntitle: Revert\ninputs:\n  commit: {{ type: commit }}\nsteps:\n  - id: revert\n    name: Revert the commit\n    revert: {{ commit: \"{{{{ inputs.commit }}}}\"{extra} }}\n"
        )
    };
    for (extra, says) in [
        (", push: false", "was not pushed: it is in the clone only"),
        (", push: true, branch: revert-offending", "pushed to its own branch revert-offending"),
    ] {
        let env = Env::new().runbook("revert", &runbook(extra));
        let commit = format!("commit={}", env.sandbox.offending);
        let (out, run_id) = run(&env, &["run", "revert", "--yes", "--var", &commit]);
        out.code(0);
        let fingerprint = env.fingerprint();
        let out = env.run(&["undo", &run_id, "--yes"]);
        out.code(0);
        assert_has(&out, says);
        assert_eq!(env.fingerprint(), fingerprint, "{extra}: nothing changed");
        let journal = env.journal();
        let skipped = journal.iter().find(|e| e["event"] == "step_skipped" && e["step"] == "undo-revert");
        let skipped = skipped.unwrap_or_else(|| panic!("{journal:#?}"));
        assert_eq!(skipped["by"], "rollout");
        assert!(skipped["reason"].as_str().unwrap().contains(says), "{skipped}");
    }
}

#[test]
fn an_undo_can_itself_be_undone() {
    let env = Env::new();
    let (out, run_id) = run(&env, &CRITICAL);
    out.code(0);
    let after_run = bytes(&env, "flags.json");
    let (out, undo_id) = run(&env, &["undo", &run_id, "--yes"]);
    out.code(0);
    assert_ne!(bytes(&env, "flags.json"), after_run);

    let out = env.run(&["undo", &undo_id, "--yes"]);
    out.code(0);
    assert_has(&out, &format!("on, 100% -> on, 5%, as run {undo_id} found it"));
    assert_bytes(&env, "flags.json", &after_run, "the flag is as the first run left it");
    assert_eq!(env.journal()[0]["purpose"], json!({ "kind": "undo", "run": undo_id }));
}

/// The critical runbook changes one flag in two steps: one prompt puts it back, and skipping it
/// leaves the flag as the run left it (no second put-back that then finds it "changed").
#[test]
fn skipping_the_one_prompt_for_a_flag_two_steps_changed_leaves_it_as_the_run_left_it() {
    let env = Env::new();
    let (out, run_id) = run(&env, &CRITICAL);
    out.code(0);
    let after_run = bytes(&env, "flags.json");
    let out = env.answer(&["undo", &run_id], "s\n");
    out.code(0);
    assert_eq!(out.stderr.matches("Put it back?").count(), 1, "{}", out.stderr);
    assert_bytes(&env, "flags.json", &after_run, "the skipped flag stays on 5%");
}

// ---------------------------------------------------------------------------------------------
// LaunchDarkly (emulator)

#[test]
fn undo_puts_a_launchdarkly_fallthrough_rollout_and_switch_back() {
    use crate::support::launchdarkly::{EnvState, Fallthrough, LaunchDarkly};
    const LD_TOKEN: &str = "api-launchdarkly-undo-7c1d";
    let server = LaunchDarkly::start(LD_TOKEN);
    server.add_flag("va", FLAG, &["production", "staging"]);
    let recorded =
        EnvState { on: true, fallthrough: Fallthrough::Rollout(vec![(0, 33_333), (1, 66_667)]), off_variation: 1 };
    server.set_env("va", FLAG, "production", recorded.clone());
    let staging = server.env("va", FLAG, "staging");
    let env = Env::workspace(&format!(
        "version: 1\nflags: {{ provider: launchdarkly, url: \"{}\", project: va, environment: production, token_env: LD_TOKEN }}\n",
        server.url()
    ))
    .runbook("off", &flag_runbook("off", FLAG, "state: off"))
    .var("LD_TOKEN", LD_TOKEN);
    let (out, run_id) = run(&env, &["run", "off", "--yes"]);
    out.code(0);
    assert!(!server.env("va", FLAG, "production").unwrap().on, "the run turned it off");
    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(0);
    assert_eq!(
        server.env("va", FLAG, "production").unwrap(),
        recorded,
        "the fallthrough rollout and the switch are back"
    );
    assert_eq!(server.env("va", FLAG, "staging"), staging, "other environments are left alone");
}

// ---------------------------------------------------------------------------------------------
// What the journal cannot be trusted for

#[test]
fn a_flag_write_the_run_died_in_is_undone_too() {
    use crate::support::background::Background;
    use crate::support::http_server::Fault;
    let server = Flipper::start(FLIPPER_TOKEN);
    server.set(FLAG, Gates::on());
    server.fail_path(&format!("/features/{FLAG}/boolean"), Fault::Delay(std::time::Duration::from_millis(800)));
    let env = Env::workspace(&format!(
        "version: 1\nflags: {{ provider: flipper, url: \"{}\", token_env: FLIPPER_TOKEN }}\nhttp: {{ timeout: 10s, retries: 0 }}\n",
        server.url()
    ))
    .runbook("off", &flag_runbook("off", FLAG, "state: off"))
    .var("FLIPPER_TOKEN", FLIPPER_TOKEN);
    let mut run = Background::spawn(env.command(&["run", "off", "--yes"]));
    run.wait_for_stderr("Apply? yes");
    while server.count("DELETE") == 0 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    run.kill_hard();
    while server.gates(FLAG).unwrap().boolean {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let run_id = newest_run(&env);
    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(0);
    assert!(server.gates(FLAG).unwrap().boolean, "the write the run died in was put back: {}", out.stderr);
}

#[test]
fn undo_refuses_a_config_changed_since_the_run_unless_forced() {
    let env = Env::new();
    let (out, run_id) = run(&env, &CRITICAL);
    out.code(0);
    let after = bytes(&env, "flags.json");
    std::fs::copy(env.path("flags.json"), env.path("flags2.json")).unwrap();
    env.write("rollout.yaml", &env.read("rollout.yaml").replace("path: flags.json", "path: flags2.json"));
    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(2);
    assert_has(&out, "the config");
    assert_has(&out, "changed since run");
    assert_has(&out, "+flags: { provider: flagd, path: flags2.json }");
    assert_bytes(&env, "flags.json", &after, "nothing was put back");
    assert_bytes(&env, "flags2.json", &after, "nothing was written to the new file either");
    env.run(&["undo", &run_id, "--yes", "--force"]).code(0);
}

#[test]
fn a_journal_naming_a_step_that_is_no_step_id_is_refused_without_a_crash() {
    let env = Env::new();
    let (out, run_id) = run(&env, &CRITICAL);
    out.code(0);
    let path = env.state_dir().join("runs").join(format!("{run_id}.jsonl"));
    let evil = "debug\\n    name: a\\n    manual: {instructions: b}\\n  - id: evil\\n    name: evil\\n    ci: { pipeline: deploy.yml, ref: main }\\n  - id: z";
    let text = std::fs::read_to_string(&path).unwrap().replace("\"step\":\"debug\"", &format!("\"step\":\"{evil}\""));
    std::fs::write(&path, text).unwrap();
    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(2);
    assert_has(&out, "which is no step id");
    assert!(!out.stderr.contains("critical.yaml:"), "the runbook file is not blamed: {}", out.stderr);
}

#[test]
fn a_journaled_state_whose_representation_reads_otherwise_is_not_put_back() {
    let env = Env::new();
    let (out, run_id) = run(&env, &CRITICAL);
    out.code(0);
    let after = bytes(&env, "flags.json");
    // The journal says the run found the flag on for 5%, but the entry it keeps says 100%.
    let path = env.state_dir().join("runs").join(format!("{run_id}.jsonl"));
    let text: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| {
            if line.contains("\"step_preview\"") && line.contains("\"step\":\"disable\"") {
                line.replacen("\"summary\":\"on, 100%\"", "\"summary\":\"on, 5%\"", 1).replacen(
                    "\"share\":100.0",
                    "\"share\":5.0",
                    1,
                )
            } else {
                line.to_string()
            }
        })
        .map(|line| line + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
    let out = env.run(&["undo", &run_id, "--yes"]);
    out.code(3);
    assert_has(&out, "but the state it keeps for it reads as on, 100%: not put back");
    assert_bytes(&env, "flags.json", &after, "nothing was written");
}
