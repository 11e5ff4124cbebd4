//! The flagd flag file as production: the file flagd watches is the one written (through a
//! symlink too), concurrent runs lose no update, only the changed flag's entry changes, and
//! preflight refuses a file that is ambiguous or that cannot be written.

use std::ops::Range;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Barrier;

use rollout::FlagdConfig;
use rollout::FlagdFile;
use rollout::Precondition;
use rollout::{FlagService, FlagTarget};
use serde_json::value::RawValue;

use crate::support::{Env, FLAG, Outcome, bin};

fn service(dir: &Path, path: &str) -> FlagdFile {
    FlagdFile::new(&FlagdConfig { path: path.into() }, dir)
}

fn off() -> FlagTarget {
    FlagTarget::new(false, None)
}

fn toggle_file(names: &[&str]) -> String {
    let flags: Vec<String> = names
        .iter()
        .map(|n| format!("    \"{n}\": {{ \"state\": \"ENABLED\", \"variants\": {{ \"on\": true, \"off\": false }}, \"defaultVariant\": \"on\" }}"))
        .collect();
    format!("{{\n  \"flags\": {{\n{}\n  }}\n}}\n", flags.join(",\n"))
}

#[test]
fn a_symlinked_flag_file_writes_the_link_target_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("live")).unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("live/flags.json"), toggle_file(&[FLAG])).unwrap();
    std::os::unix::fs::symlink("../live/flags.json", dir.path().join("config/flags.json")).unwrap();
    let flags = service(dir.path(), "config/flags.json");

    flags.write(FLAG, off(), "test").unwrap();

    let link = dir.path().join("config/flags.json");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still a link");
    let watched: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("live/flags.json")).unwrap()).unwrap();
    assert_eq!(watched["flags"][FLAG]["defaultVariant"], "off", "the file flagd watches says off");
    assert_eq!(flags.read(FLAG).unwrap().summary(), "off");
    let left_in_link_folder: Vec<_> =
        std::fs::read_dir(dir.path().join("config")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left_in_link_folder, ["flags.json"], "temp and lock files live next to the target");
}

/// 200 pairs of writers, each pair turning off two different flags of one file at once: a pair
/// where a flag is still on afterwards lost an update.
#[test]
fn concurrent_writers_on_different_flags_of_one_file_lose_no_update() {
    const PAIRS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    let flags = service(dir.path(), "flags.json");
    let mut lost = 0;
    for _ in 0..PAIRS {
        std::fs::write(&file, toggle_file(&["a", "b"])).unwrap();
        let barrier = Barrier::new(2);
        std::thread::scope(|scope| {
            for name in ["a", "b"] {
                let (flags, barrier) = (&flags, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    flags.write(name, off(), "test").unwrap();
                });
            }
        });
        if ["a", "b"].iter().any(|name| flags.read(name).unwrap().is_on()) {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "{lost} of {PAIRS} concurrent pairs lost an update");
}

/// The byte range of `flags.<name>`'s value in `text`.
fn entry_span(text: &str, name: &str) -> Range<usize> {
    #[derive(serde::Deserialize)]
    struct Top<'a> {
        #[serde(borrow)]
        flags: &'a RawValue,
    }
    let top: Top = serde_json::from_str(text).unwrap();
    let flags: indexmap::IndexMap<String, &RawValue> = serde_json::from_str(top.flags.get()).unwrap();
    let raw = flags[name].get();
    let start = raw.as_ptr() as usize - text.as_ptr() as usize;
    start..start + raw.len()
}

/// A flag file laid out with this indent unit and line ending; `t` has its own key order, a
/// big integer and `1E2` among fields rollout does not touch, and so has the flag after it.
fn laid_out(unit: &str, nl: &str, trailing_newline: bool) -> String {
    let i = |depth: usize| unit.repeat(depth);
    let lines = [
        "{".to_string(),
        format!("{}\"$schema\": \"https://flagd.dev/schema/v0/flags.json\",", i(1)),
        format!("{}\"flags\": {{", i(1)),
        format!(
            "{}\"before\": {{\"state\":\"ENABLED\",\"variants\":{{\"on\":true,\"off\":false}},\"defaultVariant\":\"on\",\"metadata\":{{\"n\":1E2}}}},",
            i(2)
        ),
        format!("{}\"{FLAG}\": {{", i(2)),
        format!("{}\"defaultVariant\": \"on\",", i(3)),
        format!("{}\"variants\": {{ \"on\": true, \"off\": false }},", i(3)),
        format!("{}\"metadata\": {{", i(3)),
        format!("{}\"ticket\": 12345678901234567890123,", i(4)),
        format!("{}\"weight\": 1E2", i(4)),
        format!("{}}},", i(3)),
        format!("{}\"state\": \"ENABLED\"", i(3)),
        format!("{}}},", i(2)),
        format!("{}\"after\": {{", i(2)),
        format!("{}\"state\": \"ENABLED\",", i(3)),
        format!("{}\"variants\": {{ \"on\": true, \"off\": false }},", i(3)),
        format!("{}\"defaultVariant\": \"off\",", i(3)),
        format!("{}\"metadata\": {{ \"big\": 98765432109876543210987, \"e\": 1E2, \"f\": 1.50 }}", i(3)),
        format!("{}}}", i(2)),
        format!("{}}}", i(1)),
        "}".to_string(),
    ];
    let mut text = lines.join(nl);
    if trailing_newline {
        text.push_str(nl);
    }
    text
}

#[track_caller]
fn assert_only_the_entry_changed(old: &str, new: &str, name: &str) {
    let (was, now) = (entry_span(old, name), entry_span(new, name));
    assert_eq!(old[..was.start], new[..now.start], "bytes before the entry changed");
    assert_eq!(old[was.end..], new[now.end..], "bytes after the entry changed");
}

#[test]
fn a_write_changes_only_that_flags_entry_in_any_layout() {
    for (unit, nl, trailing) in
        [("\t", "\r\n", true), ("    ", "\n", false), ("  ", "\n", true), ("   ", "\r\n", false), ("\t", "\n", false)]
    {
        let case = format!("indent {unit:?}, line ending {nl:?}, trailing newline {trailing}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flags.json");
        std::fs::write(&file, laid_out(unit, nl, trailing)).unwrap();
        let flags = service(dir.path(), "flags.json");
        for (target, shown) in [
            (FlagTarget::new(false, None), "off"),
            (FlagTarget::new(true, Some("5".parse().unwrap())), "on, 5%"),
            (FlagTarget::new(true, Some("2.5".parse().unwrap())), "on, 2.5%"),
            (FlagTarget::new(true, None), "on, 100%"),
        ] {
            let old = std::fs::read_to_string(&file).unwrap();
            flags.write(FLAG, target, "test").unwrap();
            let new = std::fs::read_to_string(&file).unwrap();
            assert_eq!(flags.read(FLAG).unwrap().summary(), shown, "{case}");
            assert_only_the_entry_changed(&old, &new, FLAG);
            let entry = &new[entry_span(&new, FLAG)];
            let entry_indent = unit.repeat(2);
            for line in entry.split(nl).skip(1) {
                assert!(line.starts_with(&entry_indent), "{case}: line {line:?} of\n{entry}");
                assert!(!line.contains('\r') && !line.contains('\n'), "{case}: mixed line endings in\n{entry:?}");
            }
            for kept in ["12345678901234567890123", "1E2", "{ \"on\": true, \"off\": false }"] {
                assert!(entry.contains(kept), "{case}: {kept} kept as written in\n{entry}");
            }
            let keys: Vec<String> = serde_json::from_str::<indexmap::IndexMap<String, serde_json::Value>>(entry)
                .unwrap()
                .into_keys()
                .filter(|k| k != "targeting")
                .collect();
            assert_eq!(keys, ["defaultVariant", "variants", "metadata", "state"], "{case}: key order kept");
        }
    }
}

#[test]
fn the_new_entry_is_indented_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(&file, laid_out("    ", "\n", true)).unwrap();
    let flags = service(dir.path(), "flags.json");
    flags.write(FLAG, FlagTarget::new(true, Some("5".parse().unwrap())), "test").unwrap();
    let new = std::fs::read_to_string(&file).unwrap();
    let expected = [
        "{",
        "            \"defaultVariant\": \"off\",",
        "            \"variants\": { \"on\": true, \"off\": false },",
        "            \"metadata\": {",
        "                \"ticket\": 12345678901234567890123,",
        "                \"weight\": 1E2",
        "            },",
        "            \"state\": \"ENABLED\",",
        "            \"targeting\": {",
        "                \"fractional\": [",
        "                    [",
        "                        \"on\",",
        "                        5",
        "                    ],",
        "                    [",
        "                        \"off\",",
        "                        95",
        "                    ]",
        "                ]",
        "            }",
        "        }",
    ]
    .join("\n");
    assert_eq!(&new[entry_span(&new, FLAG)], expected);
}

#[test]
fn a_one_line_entry_stays_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    let old = laid_out("  ", "\n", true);
    std::fs::write(&file, &old).unwrap();
    let flags = service(dir.path(), "flags.json");
    flags.write("before", off(), "test").unwrap();
    let new = std::fs::read_to_string(&file).unwrap();
    assert_only_the_entry_changed(&old, &new, "before");
    assert_eq!(
        &new[entry_span(&new, "before")],
        "{\"state\":\"ENABLED\",\"variants\":{\"on\":true,\"off\":false},\"defaultVariant\":\"off\",\"metadata\":{\"n\":1E2}}"
    );
}

#[test]
fn duplicate_keys_anywhere_are_refused_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    let flags = service(dir.path(), "flags.json");
    let same = "{ \"state\": \"ENABLED\", \"variants\": { \"on\": true, \"off\": false }, \"defaultVariant\": \"on\" }";
    for (text, key) in [
        (format!("{{ \"flags\": {{ \"{FLAG}\": {same}, \"{FLAG}\": {same} }} }}"), format!("flags.{FLAG}")),
        (
            format!(
                "{{ \"flags\": {{ \"{FLAG}\": {same}, \"other\": {{ \"defaultVariant\": \"on\", \"variants\": {{ \"on\": true, \"off\": false }}, \"defaultVariant\": \"off\" }} }} }}"
            ),
            "flags.other.defaultVariant".to_string(),
        ),
        (
            format!("{{ \"flags\": {{ \"{FLAG}\": {same} }}, \"metadata\": {{ \"a\": [{{ \"x\": 1, \"x\": 2 }}] }} }}"),
            "metadata.a[0].x".to_string(),
        ),
    ] {
        std::fs::write(&file, &text).unwrap();
        let errors = [flags.read(FLAG).unwrap_err(), flags.write(FLAG, off(), "test").unwrap_err()];
        for error in errors {
            assert!(Precondition::is_in(&error), "{error:#}");
            let message = format!("{error:#}");
            assert!(
                message.contains(&format!("`{key}`")) && message.contains(&file.display().to_string()),
                "{message}"
            );
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "nothing written");
    }
}

/// A workspace whose flag file is `flagdir/flags.json`, so that its folder can be made read-only
/// without touching the rest of the workspace.
fn workspace_with_flag_folder() -> Env {
    let env = Env::new();
    std::fs::create_dir(env.path("flagdir")).unwrap();
    std::fs::rename(env.path("flags.json"), env.path("flagdir/flags.json")).unwrap();
    let config = env.read("rollout.yaml").replace("path: flags.json", "path: flagdir/flags.json");
    assert!(config.contains("flagdir/flags.json"), "{config}");
    env.write("rollout.yaml", &config);
    env
}

/// Run the binary like `Env::run`, inside `wrapper` (which ends by running its arguments).
fn run_wrapped(env: &Env, wrapper: &[&str], args: &[&str]) -> Outcome {
    let inner = env.command(args);
    let mut command = Command::new(wrapper[0]);
    command.args(&wrapper[1..]).arg(bin()).args(inner.get_args()).env_clear().current_dir(env.dir());
    for (key, value) in inner.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    let output = command.stdin(Stdio::null()).output().expect("run rollout");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Each incident runbook that changes the flag, through `run`: preflight fails with exit 3,
/// naming the folder, and nothing is pushed, deployed or written.
fn assert_refused_in_preflight(env: &Env, run: impl Fn(&[&str]) -> Outcome, says: &str) {
    let before = env.fingerprint();
    let commit = format!("commit={}", env.sandbox.offending);
    for args in [
        vec!["incident", "--severity", "critical", "--yes"],
        vec!["incident", "--severity", "high", "--yes", "--var", &commit],
    ] {
        let out = run(&args);
        out.code(3);
        let folder = env.dir().join("flagdir").canonicalize().unwrap();
        assert!(out.stderr.contains(&folder.display().to_string()) && out.stderr.contains(says), "{}", out.stderr);
        assert_eq!(env.fingerprint(), before, "nothing pushed, deployed or written: {:?}", args);
    }
    let left: Vec<_> = std::fs::read_dir(env.path("flagdir")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["flags.json"], "preflight leaves nothing in the flag folder");
}

/// As root, permission bits do not stop writes, so a read-only bind mount (in a private mount
/// namespace, via `unshare -m`) stands for a read-only folder.
#[test]
fn a_flag_folder_on_a_read_only_mount_fails_preflight_and_changes_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root for a read-only bind mount (the mode-bits test covers non-root)");
        return;
    }
    if !Command::new("unshare").args(["-m", "true"]).status().is_ok_and(|s| s.success()) {
        eprintln!("skipped: `unshare -m` is not available here (no CAP_SYS_ADMIN?)");
        return;
    }
    let env = workspace_with_flag_folder();
    let folder = env.path("flagdir").display().to_string();
    let script = "mount --bind \"$0\" \"$0\" && mount -o remount,bind,ro \"$0\" && exec \"$@\"";
    let wrapper = ["unshare", "-m", "sh", "-c", script, folder.as_str()];
    assert_refused_in_preflight(&env, |args| run_wrapped(&env, &wrapper, args), "read-only file system");
}

/// A folder with mode 0555, for a user the mode applies to: run as `nobody` when root.
#[test]
fn a_flag_folder_without_write_permission_fails_preflight_and_changes_nothing() {
    let env = workspace_with_flag_folder();
    let root = is_root();
    if root && !Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: as root the mode bits do not apply, and setpriv is not here to drop to nobody");
        return;
    }
    std::fs::set_permissions(env.path("flagdir"), std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    // The workspace is nobody's while the run lasts, and root's again for the test's own git reads.
    let own = |owner: &str| {
        for dir in [env.dir(), env.home.path()] {
            assert!(Command::new("chown").args(["-R", owner]).arg(dir).status().unwrap().success());
        }
    };
    let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    let run = |args: &[&str]| {
        if !root {
            return env.run(args);
        }
        own("65534:65534");
        let out = run_wrapped(&env, &nobody, args);
        own("0:0");
        out
    };
    assert_refused_in_preflight(&env, run, "give this user write access");
}

#[test]
fn a_flag_file_with_duplicate_keys_fails_preflight() {
    let env = Env::new();
    let text = env.read("flags.json").replacen(
        "\"defaultVariant\": \"on\"",
        "\"defaultVariant\": \"on\", \"defaultVariant\": \"off\"",
        1,
    );
    env.write("flags.json", &text);
    let out = env.run(&["incident", "--severity", "critical", "--dry-run"]);
    out.code(3);
    assert!(out.stderr.contains(&format!("`flags.{FLAG}.defaultVariant`")), "{}", out.stderr);
    assert_eq!(env.read("flags.json"), text);
}
