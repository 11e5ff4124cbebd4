//! The contract of DESIGN.md: exit codes for bad input, validation messages with
//! locations, the JSON event stream, completions and the man page.

use serde::Deserialize;

use crate::support::{Env, FLAG};

/// The events exactly as DESIGN.md lists them: any extra field is a failure.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
#[allow(dead_code)]
enum Event {
    RunStarted {
        run_id: String,
        ts: String,
        runbook: String,
        severity: Option<String>,
        dry_run: bool,
        inputs: std::collections::BTreeMap<String, String>,
        runbook_path: String,
        runbook_sha256: String,
        config_path: String,
        config_sha256: Option<String>,
        user: String,
        host: String,
        version: String,
        from: Option<String>,
        runbook_text: String,
        config_text: String,
    },
    StepStarted {
        run_id: String,
        ts: String,
        step: String,
        index: usize,
        total: usize,
        kind: String,
    },
    StepPreview {
        run_id: String,
        ts: String,
        step: String,
        before: serde_json::Value,
        after: serde_json::Value,
        #[serde(default)]
        reach: Option<String>,
    },
    StepConfirmed {
        run_id: String,
        ts: String,
        step: String,
        by: By,
    },
    StepSkipped {
        run_id: String,
        ts: String,
        step: String,
        by: By,
        #[serde(default)]
        reason: Option<String>,
    },
    StepTriggered {
        run_id: String,
        ts: String,
        step: String,
        pipeline_run: String,
        url: String,
    },
    StepSucceeded {
        run_id: String,
        ts: String,
        step: String,
        outputs: std::collections::BTreeMap<String, String>,
        duration_ms: u64,
        #[serde(default)]
        outcome: Option<String>,
    },
    StepFailed {
        run_id: String,
        ts: String,
        step: String,
        error: String,
        #[serde(default)]
        unanswered: bool,
    },
    RunFinished {
        run_id: String,
        ts: String,
        status: Status,
        exit_code: i32,
    },
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum By {
    Operator,
    YesFlag,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Status {
    Succeeded,
    Failed,
    Aborted,
    Interrupted,
    PreflightFailed,
}

pub fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/events.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).expect("a valid JSON Schema")
}

#[test]
fn json_events_match_the_contract_the_schema_and_the_journal() {
    let env = Env::new();
    let out = env.run(&["--json", "incident", "--severity", "critical", "--yes"]);
    out.code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let events: Vec<Event> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    let validator = schema();
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{line}: {errors:?}");
        assert!(value["ts"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok(), "{line}");
    }
    assert!(matches!(&events[0], Event::RunStarted { runbook, severity: Some(s), dry_run: false, inputs, .. }
        if runbook == "critical" && s == "critical" && inputs["reenable"] == "5" && inputs["flag"] == FLAG));
    assert!(matches!(events.last().unwrap(), Event::RunFinished { status: Status::Succeeded, exit_code: 0, .. }));
    let confirmed = events.iter().filter(|e| matches!(e, Event::StepConfirmed { by: By::YesFlag, .. })).count();
    assert_eq!(confirmed, 4);
    let Some(Event::StepPreview { before, after, .. }) =
        events.iter().find(|e| matches!(e, Event::StepPreview { step, .. } if step == "disable"))
    else {
        panic!("no preview of disable")
    };
    assert_eq!(before["summary"], "on, 100%");
    assert_eq!(before["state"]["raw"]["defaultVariant"], "on", "the full before-state is recorded");
    assert_eq!(after["summary"], "off");
    let journal: Vec<String> =
        std::fs::read_to_string(env.newest_journal()).unwrap().lines().map(String::from).collect();
    assert_eq!(journal, lines, "the journal holds exactly the events printed");
    assert!(out.stderr.contains("Run succeeded"), "human text stays on stderr: {}", out.stderr);
}

#[test]
fn validate_accepts_the_shipped_runbooks_and_the_example_config() {
    let env = Env::new();
    env.run(&["validate"]).code(0);
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = env.run(&[
        "validate",
        &format!("{repo}/runbooks/critical.yaml"),
        &format!("{repo}/runbooks/high.yaml"),
        &format!("{repo}/runbooks/low.yaml"),
        &format!("{repo}/examples/rollout.yaml"),
    ]);
    out.code(0);
    assert_eq!(out.stderr.matches("ok ").count(), 4, "{}", out.stderr);
}

#[test]
fn validate_names_file_line_and_column_of_every_problem() {
    let env = Env::new();
    env.write(
        "runbooks/bad.yaml",
        "version: 1\ntitle: Bad\ninputs:\n  flag: { default: x }\n  pct: { type: percent, default: 500 }\nsteps:\n  - id: off\n    name: Off\n    flag: { name: \"{{ inputs.flg }}\", state: of }\n  - id: deploy\n    name: Deploy\n    ci: { pipeline: deploy.yml, ref: \"{{ steps.nope.commit }}\" }\n",
    );
    let out = env.run(&["validate", "runbooks/bad.yaml"]);
    out.code(2);
    let expected = [
        "runbooks/bad.yaml:5:34: inputs.pct.default: default does not match type percent: `500` is outside 0–100: a percentage of users is at most 100",
        "runbooks/bad.yaml:9:19: steps[0].flag.name: unknown template name `inputs.flg`: its inputs are flag, pct",
        "runbooks/bad.yaml:9:46: steps[0].flag.state: `of` is not a flag state: use on or off",
        "runbooks/bad.yaml:12:38: steps[1].ci.ref: unknown template name `steps.nope.commit`: no step has id `nope`",
    ];
    for line in expected {
        assert!(out.stderr.contains(line), "missing {line:?} in\n{}", out.stderr);
    }
    assert!(out.stderr.contains("4 problems found"), "{}", out.stderr);
}

#[test]
fn an_unknown_key_is_an_error_at_its_line_and_column() {
    let env = Env::new();
    env.write(
        "runbooks/typo.yaml",
        "version: 1\ntitle: Typo\nsteps:\n  - id: off\n    name: Off\n    flag: { name: f, state: off, percnt: 5 }\n",
    );
    let out = env.run(&["validate", "runbooks/typo.yaml"]);
    out.code(2);
    assert!(
        out.stderr.contains(
            "runbooks/typo.yaml:6:34: steps[0].flag: unknown field `percnt`, expected one of `name`, `state`, `percent`"
        ),
        "{}",
        out.stderr
    );
    let out = env.run(&["incident", "--severity", "critical", "--yes"]);
    out.code(0);
    env.write("rollout.yaml", "version: 1\nflags: { provider: flagd, path: flags.json, colour: red }\n");
    let out = env.run(&["validate"]);
    out.code(2);
    assert!(out.stderr.contains("rollout.yaml:2:45: flags: unknown field `colour`"), "{}", out.stderr);
}

#[test]
fn a_wrong_type_is_an_error_with_its_location() {
    let env = Env::new();
    env.write("runbooks/types.yaml", "version: 1\ntitle: Types\nsteps:\n  - id: off\n    name: Off\n    retries: many\n    manual: { instructions: x }\n");
    let out = env.run(&["validate", "runbooks/types.yaml"]);
    out.code(2);
    assert!(
        out.stderr.contains("runbooks/types.yaml:6:14: steps[0].retries: invalid type: string \"many\", expected u32"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_missing_config_is_exit_2_with_a_way_forward() {
    let env = Env::new();
    std::fs::remove_file(env.path("rollout.yaml")).unwrap();
    let out = env.run(&["incident", "--severity", "critical", "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("error: no rollout.yaml in"), "{}", out.stderr);
    assert!(out.stderr.contains("hint: pass -C"), "{}", out.stderr);
    let out = env.run(&["-C", "elsewhere.yaml", "incident", "--severity", "critical", "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("elsewhere.yaml does not exist"), "{}", out.stderr);
}

#[test]
fn a_missing_variable_is_exit_2_naming_it() {
    let env = Env::new();
    let out = env.run(&["incident", "--severity", "high", "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("missing variable: runbook high needs commit and has no default"), "{}", out.stderr);
    assert!(out.stderr.contains("hint: pass --var commit=..."), "{}", out.stderr);
    assert!(!env.state_dir().join("runs").exists(), "refused before the run started: no journal");
}

#[test]
fn a_bad_variable_value_or_name_is_exit_2() {
    let env = Env::new();
    let out = env.run(&["incident", "--severity", "critical", "--yes", "--var", "reenable=150"]);
    out.code(2);
    assert!(out.stderr.contains("input `reenable` (percent, from --var): `150` is outside 0–100"), "{}", out.stderr);
    let out = env.run(&["incident", "--severity", "critical", "--yes", "--var", "colour=red"]);
    out.code(2);
    assert!(out.stderr.contains("runbook critical has no input `colour`"), "{}", out.stderr);
    assert!(out.stderr.contains("takes: flag, reenable, fix_ref"), "{}", out.stderr);
    assert_eq!(env.flag()["defaultVariant"], "on", "nothing changed");
}

#[test]
fn an_unknown_flag_is_a_preflight_failure_even_in_a_dry_run() {
    let env = Env::new();
    for extra in [&["--dry-run"][..], &["--yes"][..]] {
        let mut args = vec!["incident", "--severity", "critical", "--var", "flag=no_such_flag"];
        args.extend_from_slice(extra);
        let out = env.run(&args);
        out.code(3);
        assert!(
            out.stderr.contains(&format!("flag no_such_flag is not in {}", env.path("flags.json").display())),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(&format!("(it has {FLAG})")), "{}", out.stderr);
        assert!(
            out.stderr.contains("Preflight failed: 2 of 4 steps cannot succeed; nothing was changed."),
            "{}",
            out.stderr
        );
        let last = env.journal().pop().unwrap();
        assert_eq!((last["status"].as_str(), last["exit_code"].as_i64()), (Some("preflight_failed"), Some(3)));
    }
    assert_eq!(env.flag()["defaultVariant"], "on");
}

#[test]
fn an_unreadable_flag_file_is_a_preflight_failure() {
    let env = Env::new();
    std::fs::write(env.path("flags.json"), "{ \"flags\": ").unwrap();
    let out = env.run(&["incident", "--severity", "critical", "--yes"]);
    out.code(3);
    assert!(out.stderr.contains("is not valid JSON"), "{}", out.stderr);
    std::fs::remove_file(env.path("flags.json")).unwrap();
    let out = env.run(&["incident", "--severity", "critical", "--yes"]);
    out.code(3);
    assert!(out.stderr.contains("cannot read the flag file"), "{}", out.stderr);
    assert!(out.stderr.contains("check flags.path in rollout.yaml"), "{}", out.stderr);
}

#[test]
fn a_flag_already_in_the_target_state_is_not_written() {
    let env = Env::new();
    let path = env.path("flags.json");
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    env.write(
        "runbooks/on.yaml",
        &format!(
            "version: 1\ntitle: On\nsteps:\n  - id: keep-on\n    name: On\n    flag: {{ name: {FLAG}, state: on }}\n"
        ),
    );
    let out = env.run(&["run", "on", "--yes"]);
    out.code(0);
    assert!(
        out.stderr.contains(&format!("flag {FLAG} (flagd flags.json): already on, 100%, nothing to change")),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), before, "the flag file was not rewritten");
    let keep_on = env.journal().into_iter().find(|e| e["event"] == "step_succeeded" && e["step"] == "keep-on").unwrap();
    assert_eq!(keep_on["outputs"]["changed"], "false");
}

#[test]
fn a_usage_error_is_exit_2() {
    let env = Env::new();
    env.run(&["incident", "--severity", "urgent"]).code(2);
    env.run(&["incident"]).code(2);
    env.run(&["frobnicate"]).code(2);
    let out = env.run(&["run", "staged-rollout", "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("no runbook named staged-rollout"), "{}", out.stderr);
    assert!(out.stderr.contains("runbooks there: critical, high, low"), "{}", out.stderr);
}

#[test]
fn completions_and_the_man_page_render() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = env.run(&["completions", shell]);
        out.code(0);
        assert!(out.stdout.contains("rehearse"), "{shell}");
    }
    let out = env.run(&["man"]);
    out.code(0);
    assert!(
        out.stdout.starts_with(".ie \\n(.g .ds Aq") || out.stdout.contains(".TH rollout"),
        "{}",
        &out.stdout[..200.min(out.stdout.len())]
    );
    // Every step kind, the gate among them, in the man page and at the end of --help.
    let help = env.run(&["--help"]);
    for kind in ["flag", "revert", "ci", "gate", "manual", "notify"] {
        assert!(out.stdout.contains(&format!(".TP\n\\fB{kind}\\fR\n")), "man lacks the {kind} step");
        assert!(help.stdout.contains(&format!("\n  {kind}\n      ")), "--help lacks the {kind} step");
    }
    assert!(out.stdout.contains("sample a metric (Prometheus, Datadog)"), "man lacks what a gate does");
}

#[test]
fn list_shows_runbooks_inputs_and_steps() {
    let env = Env::new();
    let out = env.run(&["list"]);
    out.code(0);
    for needle in [
        "critical [severity critical]: Critical-severity rollback",
        "reenable  percent",
        "(required)",
        "1. disable",
        "revert",
        "(optional)",
    ] {
        assert!(out.stdout.contains(needle), "missing {needle:?} in\n{}", out.stdout);
    }
}

#[test]
fn help_man_page_and_readme_list_the_same_exit_codes_environment_and_files() {
    let env = Env::new();
    let help = env.run(&["--help"]);
    help.code(0);
    let man = env.run(&["man"]);
    man.code(0);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let roff = |text: &str| text.replace('-', "\\-");
    for code in rollout::ExitCode::ALL {
        let (number, meaning) = (code.code(), code.meaning());
        assert!(help.stdout.contains(&format!("{number:<4} {meaning}")), "--help lacks exit {number}");
        assert!(man.stdout.contains(&format!(".TP\n{number}\n{}\n", roff(meaning))), "man lacks exit {number}");
        assert!(readme.contains(&format!("| {number} | {meaning} |")), "README lacks exit {number}");
    }
    for (name, meaning) in rollout::ENVIRONMENT.iter().chain(rollout::FILES) {
        assert!(help.stdout.contains(&format!("  {name}\n      {meaning}\n")), "--help lacks {name}");
        assert!(man.stdout.contains(&roff(meaning)), "man lacks {name}");
        assert!(readme.contains(&format!("| {name} | {meaning} |")), "README lacks {name}");
    }
}

#[test]
fn validate_json_is_one_object_per_problem() {
    let env = Env::new();
    env.write("runbooks/typo.yaml", "version: 1\ntitle: t\nsteps:\n  - id: a\n    name: n\n    flag: { name: f, percnt: 5 }\n  - id: a\n    name: n\n    manual: { instructions: x }\n");
    let out = env.run(&["--json", "validate"]);
    out.code(2);
    let problems: Vec<serde_json::Value> =
        out.stdout.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert!(!problems.is_empty(), "{problems:#?}");
    for problem in &problems {
        assert!(problem["file"].as_str().unwrap().ends_with("typo.yaml"), "{problem}");
        assert!(problem["line"].as_u64().unwrap() >= 1 && problem["column"].as_u64().unwrap() >= 1, "{problem}");
        assert!(problem["message"].is_string(), "{problem}");
    }
    let clean = Env::new();
    let ok = clean.run(&["--json", "validate"]);
    ok.code(0);
    assert_eq!(ok.stdout, "", "no problems, no objects");
}
