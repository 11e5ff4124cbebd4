//! Bad input is exit 2 with a short message, never a crash: durations within ranges, echoed
//! values cut, one percent syntax, runbook names, CI input names and BOMs (validate's speed
//! is measured in scripts/bench, not asserted here).

use crate::support::Env;

/// A workspace whose runbooks folder holds only `runbooks` (the shipped ones are removed).
fn workspace(runbooks: &[(&str, &str)]) -> Env {
    let env = Env::new();
    for name in ["critical", "high", "low"] {
        std::fs::remove_file(env.path(&format!("runbooks/{name}.yaml"))).unwrap();
    }
    for (name, text) in runbooks {
        env.write(&format!("runbooks/{name}.yaml"), text);
    }
    env
}

const MANUAL: &str = "version: 1\ntitle: T\nsteps:\n  - id: a\n    name: A\n    manual: { instructions: go }\n";

/// `file:line:column` of the first `needle` in `text`, as validate prints it.
fn at(file: &str, text: &str, needle: &str) -> String {
    let offset = text.find(needle).unwrap_or_else(|| panic!("{needle} not in {text}"));
    let line = text[..offset].matches('\n').count() + 1;
    let column = offset - text[..offset].rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("{file}:{line}:{column}")
}

#[test]
fn regression_a_timeout_of_500000000000y_passed_validate_and_panicked_once_the_step_was_confirmed() {
    let huge = MANUAL.replace("    manual:", "    timeout: 500000000000y\n    manual:");
    let env = workspace(&[("huge", &huge)]);
    let out = env.run(&["validate"]);
    out.code(2);
    let expected = format!(
        "{}: steps[0].timeout: `500000000000y` is out of range: a step's timeout is from 1s to 7days",
        at("huge.yaml", &huge, "500000000000y")
    );
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    let out = env.run(&["run", "huge", "--yes"]);
    out.code(2);
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
}

#[test]
fn regression_zero_and_endless_durations_were_accepted() {
    let zero = MANUAL.replace("    manual:", "    timeout: 0\n    manual:");
    let week = "version: 1\ntitle: T\nsteps:\n  - id: d\n    name: D\n    ci: { pipeline: deploy.yml, ref: main, timeout: 8days }\n";
    let env = workspace(&[("zero", &zero), ("week", week)]);
    let out = env.run(&["validate", "runbooks/zero.yaml", "runbooks/week.yaml"]);
    out.code(2);
    for expected in [
        format!("{}: steps[0].timeout: `0` is out of range", at("runbooks/zero.yaml", &zero, "0\n")),
        format!("{}: steps[0].ci.timeout: `8days` is out of range", at("runbooks/week.yaml", week, "8days")),
    ] {
        assert!(out.stderr.contains(&expected), "{expected}\n{}", out.stderr);
    }
    let config = env.read("rollout.yaml");
    for (setting, value) in [("timeout", "0s"), ("connect_timeout", "500000000000y"), ("timeout", "11m")] {
        let text = format!("{config}http:\n  {setting}: {value}\n");
        env.write("rollout.yaml", &text);
        let out = env.run(&["validate"]);
        out.code(2);
        let expected = format!(
            "{}: http.{setting}: `{value}` is out of range: an HTTP timeout is from 1s to 10m",
            at("rollout.yaml", &text, &format!("{value}\n"))
        );
        assert!(out.stderr.contains(&expected), "{expected}\n{}", out.stderr);
    }
}

#[test]
fn regression_a_2_mb_value_gave_a_2_mb_error_line() {
    let env = workspace(&[("deploy", MANUAL)]);
    env.write("big.yaml", &format!("version: {}\ntitle: T\nsteps: []\n", "9x".repeat(1_000_000)));
    let out = env.run(&["validate", "big.yaml"]);
    out.code(2);
    assert!(out.stderr.contains("… (2000000 characters)"), "{}", &out.stderr[..out.stderr.len().min(300)]);
    assert!(out.stderr.len() < 500, "{} bytes of error", out.stderr.len());

    let out = env.run(&["run", "deploy", "--var", &format!("{}=1", "k".repeat(50_000))]);
    out.code(2);
    assert!(out.stderr.len() < 500, "{} bytes of error", out.stderr.len());
}

#[test]
fn regression_a_runbook_symlinked_to_another_file_printed_that_whole_file() {
    let env = workspace(&[("deploy", MANUAL)]);
    std::fs::write(env.path("passwd"), "root:x:0:0:root:/root:/bin/bash\n".repeat(200)).unwrap();
    std::os::unix::fs::symlink(env.path("passwd"), env.path("runbooks/users.yaml")).unwrap();
    let out = env.run(&["validate"]);
    out.code(2);
    assert!(
        out.stderr.contains("users.yaml:1:1: invalid type: string \"root:x:0:0:root:/root:/bin/bash root"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(" (6399 characters)\", expected struct Runbook"), "{}", out.stderr);
    assert!(out.stderr.len() < 500, "{} bytes of error", out.stderr.len());
}

#[test]
fn regression_yaml_read_0x10_as_16_percent_where_var_refused_it() {
    let runbook = "version: 1\ntitle: T\ninputs:\n  share: { type: percent, default: 0x10 }\n  count: { type: integer, default: 0o17 }\nsteps:\n  - id: hex\n    name: H\n    flag: { name: f, percent: 0x10 }\n  - id: exp\n    name: E\n    flag: { name: f, percent: 1e1 }\n  - id: twice\n    name: T\n    flag: { name: f, percent: 5%% }\n  - id: fine\n    name: F\n    flag: { name: f, percent: 2.5 }\n";
    let env = workspace(&[("odd", runbook)]);
    let out = env.run(&["validate", "runbooks/odd.yaml"]);
    out.code(2);
    for expected in [
        "inputs.share.default: default does not match type percent: `0x10` is not a percentage",
        "inputs.count.default: default does not match type integer: `0o17` is not an integer",
        "steps[0].flag.percent: `0x10` is not a percentage",
        "steps[1].flag.percent: `1e1` is not a percentage",
        "steps[2].flag.percent: `5%%` is not a percentage",
    ] {
        assert!(out.stderr.contains(expected), "{expected}\n{}", out.stderr);
    }
    assert!(out.stderr.contains("5 problems found"), "{}", out.stderr);

    let plain = "version: 1\ntitle: T\ninputs:\n  share: { type: percent, default: 5 }\nsteps:\n  - id: a\n    name: A\n    manual: { instructions: \"{{ inputs.share }}\" }\n";
    env.write("runbooks/plain.yaml", plain);
    for value in ["0x10", "1e1", "5%%"] {
        let out = env.run(&["run", "plain", "--yes", "--var", &format!("share={value}")]);
        out.code(2);
        assert!(out.stderr.contains(&format!("`{value}` is not a percentage")), "{}", out.stderr);
    }
}

#[test]
fn regression_run_loaded_runbooks_from_outside_the_runbooks_folder() {
    let env = workspace(&[("deploy", MANUAL)]);
    env.write("outside.yaml", MANUAL);
    let absolute = env.path("outside");
    for name in ["../outside", absolute.to_str().unwrap()] {
        let out = env.run(&["run", name, "--yes"]);
        out.code(2);
        assert!(out.stderr.contains(&format!("`{name}` is not a runbook name")), "{}", out.stderr);
        assert!(out.stderr.contains("runbooks there: deploy"), "{}", out.stderr);
    }
    assert!(!env.state_dir().join("runs").exists(), "nothing ran");
}

#[test]
fn regression_a_240_character_runbook_name_failed_with_enametoolong() {
    let name = "r".repeat(240);
    let env = workspace(&[(&name, MANUAL)]);
    let too_long = "is too long: a runbook name is at most 100 bytes";
    let out = env.run(&["run", &name, "--yes"]);
    out.code(2);
    assert!(out.stderr.contains(too_long), "{}", out.stderr);
    let out = env.run(&["validate"]);
    out.code(2);
    assert!(out.stderr.contains(too_long), "{}", out.stderr);
    let out = env.run(&["run", &"q".repeat(240), "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("no runbook named qqqq"), "{}", out.stderr);
}

#[test]
fn regression_ci_inputs_a_dash_b_and_a_underscore_b_were_both_rollout_input_a_b() {
    let runbook = "version: 1\ntitle: T\nsteps:\n  - id: d\n    name: D\n    ci: { pipeline: deploy.yml, ref: main, inputs: { a-b: one, a_b: two, \"a=b\": three } }\n";
    let env = workspace(&[("deploy", runbook)]);
    let out = env.run(&["validate"]);
    out.code(2);
    let collision = format!(
        "{}: steps[0].ci.inputs.a_b: `a_b` and `a-b` would both be ROLLOUT_INPUT_A_B for a command pipeline",
        at("deploy.yaml", runbook, "a_b")
    );
    assert!(out.stderr.contains(&collision), "{collision}\n{}", out.stderr);
    assert!(out.stderr.contains("steps[0].ci.inputs.a=b: a ci input's name is letters, digits"), "{}", out.stderr);
}

#[test]
fn regression_a_newline_in_a_string_input_printed_fake_lines_into_rollout_ref() {
    let runbook = "version: 1\ntitle: T\ninputs:\n  ref: { default: main }\nsteps:\n  - id: d\n    name: D\n    ci: { pipeline: deploy.yml, ref: \"{{ inputs.ref }}\" }\n";
    let env = workspace(&[("deploy", runbook)]);
    let out = env.run(&["run", "deploy", "--yes", "--var", "ref=main\ndeploy.yml: deployed evil"]);
    out.code(2);
    assert!(
        out.stderr.contains("input `ref` (string, from --var): it has a control character (U+000A, character 5)"),
        "{}",
        out.stderr
    );
    assert!(!env.path("deployments.log").exists(), "nothing was deployed");

    let escape = runbook.replace("default: main", "default: \"main\\e[2K\"");
    env.write("runbooks/deploy.yaml", &escape);
    let out = env.run(&["validate"]);
    out.code(2);
    let expected = format!(
        "{}: inputs.ref.default: default does not match type string: it has a control character (U+001B",
        at("deploy.yaml", &escape, "\"main")
    );
    assert!(out.stderr.contains(&expected), "{expected}\n{}", out.stderr);
}

#[test]
fn regression_a_byte_order_mark_made_a_runbook_miss_its_title() {
    let env = workspace(&[("bom", &format!("\u{feff}{MANUAL}"))]);
    env.write("rollout.yaml", &format!("\u{feff}{}", env.read("rollout.yaml")));
    env.run(&["validate"]).code(0);
    env.run(&["run", "bom", "--yes"]).code(0);
}

#[test]
fn regression_two_runbooks_with_one_severity_passed_validate_and_failed_incident() {
    let high = MANUAL.replace("title: T", "severity: high\ntitle: T");
    let env = workspace(&[("high", &high), ("high-copy", &high), ("low", &high.replace("high", "low"))]);
    let out = env.run(&["validate"]);
    out.code(2);
    let clash: Vec<&str> = out.stderr.lines().filter(|l| l.contains("is also the severity of")).collect();
    assert_eq!(clash.len(), 1, "{}", out.stderr);
    assert!(clash[0].contains("high.yaml") && clash[0].contains("high-copy.yaml"), "{}", out.stderr);
    assert!(clash[0].contains(":2:11: severity: high is also the severity of"), "{}", out.stderr);
}
