//! The journal and the state folder: what `rollout runs` reads, the lock, file modes, dry runs
//! that write nothing, rehearsals' journals, and `runs --json` / `list --json`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::background::{Background, PATIENCE};
use crate::support::{Env, Outcome, git};

/// The prompt's choices, as printed without color.
const CHOICES: &str = "[y]es / [s]kip / [a]bort / [d]etails";

/// The workspace with the shipped runbooks in the form every build reads (no `direction:`,
/// no `expect:`), so that these tests also run against older builds.
fn workspace() -> Env {
    let env = Env::new();
    for name in ["critical", "high"] {
        let text = env.read(&format!("runbooks/{name}.yaml"));
        env.write(
            &format!("runbooks/{name}.yaml"),
            &text.replace(", direction: down", "").replace(", direction: up", ""),
        );
    }
    std::fs::remove_file(env.path("runbooks/low.yaml")).unwrap();
    env
}

fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    files.sort();
    files
}

fn read_journal(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `rollout runs`, with a deadline: a journal that blocks the reader fails the test, not the suite.
fn runs(env: &Env, args: &[&str]) -> Outcome {
    let mut runs = Background::spawn(env.command(&[&["runs"], args].concat()));
    runs.close_stdin();
    runs.finish(PATIENCE)
}

/// A hash of every file under `dir`, by path.
fn hashes(root: &Path, dir: &Path, into: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hashes(root, &path, into);
        } else {
            let digest = Sha256::digest(std::fs::read(&path).unwrap());
            into.insert(path.strip_prefix(root).unwrap().display().to_string(), format!("{digest:x}"));
        }
    }
}

fn tree_hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    hashes(dir, dir, &mut all);
    all
}

/// A commit on the remote's main that the clone has not fetched.
fn advance_remote(env: &Env) -> String {
    let other = tempfile::tempdir().unwrap();
    let work = other.path().join("work");
    git(other.path(), &["clone", "--quiet", env.sandbox.remote().to_str().unwrap(), "work"]);
    std::fs::write(work.join("CHANGELOG.md"), "Unrelated change on main\n").unwrap();
    git(&work, &["add", "CHANGELOG.md"]);
    git(&work, &["commit", "--quiet", "-m", "Add a changelog"]);
    git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
    git(&work, &["rev-parse", "HEAD"])
}

// ---------------------------------------------------------------------------------------------
// What `rollout runs` reads

#[test]
fn runs_keeps_a_run_whose_journal_was_torn_inside_a_character() {
    let env = workspace();
    env.run(&["incident", "--severity", "critical", "--yes"]).code(0);
    let journal = env.newest_journal();
    let run_id = read_journal(&journal)[0]["run_id"].as_str().unwrap().to_string();
    // A crash while writing a line: it ends inside the two bytes of "é".
    let torn =
        format!(r#"{{"event":"step_failed","run_id":"{run_id}","ts":"2026-01-01T00:00:00Z","step":"x","error":"caf"#);
    let mut bytes = torn.into_bytes();
    bytes.push("é".as_bytes()[0]);
    let mut text = std::fs::read(&journal).unwrap();
    text.extend(bytes);
    std::fs::write(&journal, text).unwrap();

    let out = runs(&env, &[]);
    out.code(0);
    let row =
        out.stdout.lines().find(|l| l.starts_with(&run_id)).unwrap_or_else(|| panic!("{run_id} dropped: {out:?}"));
    assert!(row.contains("succeeded") && row.contains("4/4"), "{row}");
    assert!(out.stderr.contains("last line was cut short"), "{}", out.stderr);
}

#[test]
fn runs_skips_a_fifo_named_like_a_journal_instead_of_hanging() {
    let env = workspace();
    env.run(&["incident", "--severity", "critical", "--yes"]).code(0);
    let fifo = env.state_dir().join("runs/x.jsonl");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = runs(&env, &[]);
    out.code(0);
    assert!(out.stdout.lines().any(|l| l.contains("succeeded")), "{}", out.stdout);
    assert!(out.stderr.contains("x.jsonl is not a regular file: skipped"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// The lock

#[test]
fn a_refused_run_is_lock_refused_in_its_journal_and_in_runs_and_names_the_os_user() {
    // The harness clears the environment: $USER and $LOGNAME are unset in every run.
    let env = workspace();
    let mut first = Background::interactive(&env, &["incident", "--severity", "critical"]);
    first.wait_for_stderr(CHOICES);
    let second = env.run(&["incident", "--severity", "critical", "--yes"]);
    second.code(5);
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    assert!(second.stderr.contains(&format!("by {}@", user.trim())), "{}", second.stderr);

    let refused = env.newest_journal();
    let events = read_journal(&refused);
    let last = events.last().unwrap();
    assert_eq!(
        (&last["event"], &last["status"], &last["exit_code"]),
        (&"run_finished".into(), &"lock_refused".into(), &5.into())
    );
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/events.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(last), "{last}");
    let run_id = events[0]["run_id"].as_str().unwrap();
    let listed = runs(&env, &[]);
    let row = listed.stdout.lines().find(|l| l.starts_with(run_id)).unwrap();
    assert!(row.contains("lock_refused") && !row.contains("failed"), "{row}");

    first.close_stdin();
    first.finish(PATIENCE).code(4);
}

#[test]
fn two_configs_sharing_a_state_folder_do_not_lock_each_other_out() {
    let team = workspace();
    let other = workspace();
    let mut first = Background::interactive(&team, &["incident", "--severity", "critical"]);
    first.wait_for_stderr(CHOICES);
    let mut second = other.command(&["incident", "--severity", "critical", "--yes"]);
    second.env("ROLLOUT_STATE_DIR", team.state_dir()).stdin(std::process::Stdio::null());
    let second = second.output().unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", String::from_utf8_lossy(&second.stderr));
    first.close_stdin();
    first.finish(PATIENCE).code(4);
}

#[test]
fn a_lock_that_is_a_symlink_or_holds_something_else_is_left_untouched() {
    let env = workspace();
    env.run(&["incident", "--severity", "critical", "--yes"]).code(0);
    let [lock] = journals(&env.state_dir().join("locks")).try_into().unwrap();
    let victim = env.home.path().join("precious.txt");
    std::fs::write(&victim, "precious\n").unwrap();

    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let out = env.run(&["incident", "--severity", "critical", "--yes"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "the symlink's target was truncated");
    out.code(1);
    assert!(out.stderr.contains("is a symbolic link"), "{}", out.stderr);

    std::fs::remove_file(&lock).unwrap();
    std::fs::write(&lock, "precious\n").unwrap();
    let out = env.run(&["incident", "--severity", "critical", "--yes"]);
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "precious\n", "a file rollout did not write was truncated");
    out.code(1);
    assert!(out.stderr.contains("is not a rollout lock"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// File modes

#[test]
fn state_files_are_0600_and_folders_0700_whatever_the_umask() {
    let env = workspace();
    let inner = env.command(&["incident", "--severity", "critical", "--yes"]);
    let mut command = Command::new("sh");
    command.args(["-c", "umask 000 && exec \"$@\"", "sh"]).arg(inner.get_program()).args(inner.get_args());
    command.env_clear().current_dir(inner.get_current_dir().unwrap()).stdin(std::process::Stdio::null());
    for (key, value) in inner.get_envs() {
        command.env(key, value.unwrap());
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let state = env.state_dir();
    let [lock] = journals(&state.join("locks")).try_into().unwrap();
    let modes = [state.clone(), state.join("runs"), state.join("locks"), env.newest_journal(), lock]
        .into_iter()
        .map(|p| (p.strip_prefix(&state).unwrap().display().to_string(), format!("{:o}", mode(&p))))
        .collect::<Vec<_>>();
    let names: Vec<String> = modes.iter().map(|(name, _)| name.clone()).collect();
    let wanted = ["700", "700", "700", "600", "600"];
    assert_eq!(modes, names.into_iter().zip(wanted.map(String::from)).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// Dry runs write nothing

#[test]
fn a_dry_run_with_an_unwritable_state_folder_works_and_says_no_journal_was_written() {
    let env = workspace();
    // A folder that cannot be made, even by root: its parent is a file.
    std::fs::write(env.home.path().join("file"), "").unwrap();
    let state = env.home.path().join("file/state");
    let out = env.run_with(
        &["--json", "incident", "--severity", "critical", "--dry-run"],
        &[("ROLLOUT_STATE_DIR", state.to_str().unwrap())],
    );
    out.code(0);
    assert!(out.stderr.contains("no journal is written"), "{}", out.stderr);
    assert!(out.stderr.contains("Dry run passed"), "{}", out.stderr);
    let events = out.events();
    assert_eq!(events.last().unwrap()["status"], "succeeded", "{events:#?}");
}

#[test]
fn a_dry_run_that_must_fetch_writes_nothing_into_the_clone() {
    let env = workspace();
    let ahead = advance_remote(&env);
    let git_dir = env.sandbox.app().join(".git");
    let before = tree_hashes(&git_dir);
    let commit = format!("commit={}", env.sandbox.offending);
    let out = env.run(&["incident", "--severity", "high", "--dry-run", "--var", &commit]);
    out.code(0);
    let preview = env.journal().into_iter().find(|e| e["event"] == "step_preview" && e["step"] == "revert").unwrap();
    assert_eq!(preview["before"]["commit"], ahead.as_str(), "the preview is not onto the remote's new tip");
    let after = tree_hashes(&git_dir);
    let written: Vec<&String> =
        after.iter().filter(|(path, hash)| before.get(*path) != Some(hash)).map(|(p, _)| p).collect();
    let removed: Vec<&String> = before.keys().filter(|path| !after.contains_key(*path)).collect();
    assert_eq!((written, removed), (vec![], vec![]), "the dry run changed the clone's .git");
}

#[test]
fn a_real_run_keeps_what_its_preview_fetched_aside_and_pushes_onto_it() {
    let env = workspace();
    let ahead = advance_remote(&env);
    let in_pack = |app: &Path| {
        let counts = git(app, &["count-objects", "-v"]);
        counts.lines().find_map(|l| l.strip_prefix("in-pack: ")).unwrap().parse::<usize>().unwrap()
    };
    let packed = in_pack(&env.sandbox.app());
    let commit = format!("commit={}", env.sandbox.offending);
    let out = env.run(&["incident", "--severity", "high", "--yes", "--var", &commit]);
    out.code(0);
    let remote = env.sandbox.remote();
    assert_eq!(git(&remote, &["rev-parse", "main~1"]), ahead);
    let pushed = git(&remote, &["rev-parse", "main"]);
    let app = env.sandbox.app();
    git(&app, &["cat-file", "-e", &format!("{pushed}^{{commit}}")]);
    git(&app, &["fsck", "--connectivity-only", "--no-dangling"]);
    // Only what the clone lacked came: the new commit, its tree and its file.
    assert_eq!(in_pack(&app) - packed, 3);
}

// ---------------------------------------------------------------------------------------------
// Rehearsals

#[test]
fn rehearse_journals_into_the_state_folder_and_runs_lists_it_as_a_rehearsal() {
    let env = workspace();
    let out = env.run(&["rehearse", "--severity", "critical", "--yes"]);
    out.code(0);
    let rehearsals = env.state_dir().join("rehearsals");
    let [journal] =
        journals(&rehearsals.join("runs")).try_into().unwrap_or_else(|j: Vec<PathBuf>| panic!("{j:?}\n{}", out.stderr));
    assert!(out.stderr.contains(&journal.display().to_string()), "{}", out.stderr);
    assert_eq!(read_journal(&journal).last().unwrap()["status"], "succeeded");
    assert_eq!(journals(&rehearsals.join("locks")), Vec::<PathBuf>::new(), "the sandbox's lock stayed behind");
    let listed = runs(&env, &["--json"]);
    let rows: Vec<Value> = listed.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((&rows[0]["rehearsal"], &rows[0]["status"]), (&true.into(), &"succeeded".into()));
}

// ---------------------------------------------------------------------------------------------
// --json

#[test]
fn runs_json_is_one_object_per_run() {
    let env = workspace();
    env.run(&["incident", "--severity", "critical", "--yes"]).code(0);
    env.run(&["incident", "--severity", "critical", "--dry-run"]).code(0);
    let out = runs(&env, &["--json"]);
    out.code(0);
    assert_eq!(out.stdout.lines().count(), 1, "the dry run is hidden without --all: {}", out.stdout);
    let out = runs(&env, &["--json", "--all"]);
    out.code(0);
    let rows: Vec<Value> =
        out.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    assert_eq!(rows.len(), 2, "{}", out.stdout);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    let wanted = [
        "run_id",
        "runbook",
        "rehearsal",
        "dry_run",
        "started",
        "status",
        "exit_code",
        "steps_done",
        "steps_total",
        "journal",
        "purpose",
        "who",
        "finished",
        "duration_ms",
        "state",
        "step_reached",
        "time_to_mitigate_ms",
    ];
    assert_eq!(keys, wanted);
    let shown: Vec<(&Value, &Value, &Value, &Value)> =
        rows.iter().map(|r| (&r["runbook"], &r["dry_run"], &r["status"], &r["steps_done"])).collect();
    assert_eq!(
        shown,
        [
            (&"critical".into(), &false.into(), &"succeeded".into(), &4.into()),
            (&"critical".into(), &true.into(), &"succeeded".into(), &0.into())
        ]
    );
}

#[test]
fn list_json_is_one_object_per_runbook() {
    let env = workspace();
    let out = env.run(&["list", "--json"]);
    out.code(0);
    let books: Vec<Value> =
        out.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    let names: Vec<&str> = books.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["critical", "high"]);
    let high = &books[1];
    assert_eq!((&high["severity"], &high["shipped"]), (&"high".into(), &false.into()));
    let commit = high["inputs"].as_array().unwrap().iter().find(|i| i["name"] == "commit").unwrap();
    assert_eq!(
        (&commit["type"], &commit["required"], &commit["default"]),
        (&"commit".into(), &true.into(), &Value::Null)
    );
    let steps: Vec<(&str, &str)> = high["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("reduce", "flag"),
            ("revert", "revert"),
            ("deploy-revert", "ci"),
            ("prioritize", "manual"),
            ("deploy-fix", "ci")
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The journal read back

#[test]
fn every_prefix_of_a_real_journal_folds_and_the_whole_gives_the_tally_the_run_printed() {
    use rollout::{RunState, journal};
    let env = workspace();
    let out = env.run(&["incident", "--severity", "critical", "--yes"]);
    out.code(0);
    let read = journal::read(&env.newest_journal()).unwrap();
    assert_eq!(read.warnings, Vec::<String>::new());
    for end in 0..read.records.len() {
        let _ = RunState::fold(&read.records[..end]);
    }
    let state = RunState::fold(&read.records).unwrap();
    let ids = ["disable", "debug", "deploy-fix", "reenable"];
    let printed = format!("Run succeeded: {} (", state.tally(&ids));
    assert!(out.stderr.contains(&printed), "{printed}\n{}", out.stderr);
    for line in state.summary(&ids).unwrap() {
        assert!(out.stderr.contains(&line), "{line}\n{}", out.stderr);
    }
}

#[test]
fn run_started_records_what_a_later_run_needs_to_take_it_up_again() {
    let env = workspace();
    env.run(&["incident", "--severity", "critical", "--yes", "--from", "debug"]).code(0);
    let started = read_journal(&env.newest_journal()).remove(0);
    let runbook = std::fs::canonicalize(env.path("runbooks/critical.yaml")).unwrap();
    assert_eq!(started["runbook_path"], runbook.display().to_string());
    let digest = format!("{:x}", Sha256::digest(std::fs::read(&runbook).unwrap()));
    assert_eq!(started["runbook_sha256"], digest);
    let config = std::fs::read(env.path("rollout.yaml")).unwrap();
    assert_eq!(started["config_sha256"], format!("{:x}", Sha256::digest(config)));
    assert_eq!(started["from"], "debug");
    assert_eq!(started["version"], env!("CARGO_PKG_VERSION"));
    assert!(started["user"].as_str().is_some_and(|u| !u.is_empty()) && started["host"].is_string(), "{started}");
}
