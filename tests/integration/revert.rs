//! Reverts through git2 against `git revert`.
//!
//! Every revert here is made twice from the same remote tip: by `rollout run` (in memory,
//! committed and pushed through git2) and by `git revert --no-edit` in a fresh clone of the
//! remote. The messages must be byte-identical and the trees the same; commit ids differ only
//! because author, committer and time do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use rollout::OFFENDING_SUBJECT;
use tempfile::TempDir;

use crate::support::{Env, git};

/// A runbook named `name` with one revert step of the `commit` input; `extra` is appended to
/// the step's mapping (e.g. `, mainline: 1`).
fn write_runbook(env: &Env, name: &str, extra: &str) {
    env.write(
        &format!("runbooks/{name}.yaml"),
        &format!(
            "\
version: 1
title: Revert one commit
description: Revert the given commit onto the remote branch.
inputs:
  commit: {{ description: The commit to revert, type: commit }}
steps:
  - id: revert
    name: Revert the commit
    revert: {{ commit: \"{{{{ inputs.commit }}}}\", push: true{extra} }}
"
        ),
    );
}

/// `rollout run NAME --yes --var commit=COMMIT`.
fn run_revert(env: &Env, name: &str, commit: &str) -> crate::support::Outcome {
    env.run(&["run", name, "--yes", "--var", &format!("commit={commit}")])
}

/// git with nothing trimmed or decoded, and without failing on a non-zero exit.
fn git_raw(dir: &Path, args: &[&str]) -> Output {
    crate::support::git_output(dir, args)
}

/// A commit as stored: its message bytes (everything after the blank line that ends the
/// headers, as `git cat-file commit` prints it), its tree and its parents.
#[derive(Debug)]
struct Stored {
    message: Vec<u8>,
    tree: String,
    parents: Vec<String>,
}

fn stored(repo: &Path, rev: &str) -> Stored {
    let out = git_raw(repo, &["cat-file", "commit", rev]);
    assert!(out.status.success(), "git cat-file commit {rev}: {}", String::from_utf8_lossy(&out.stderr));
    let raw = out.stdout;
    let split = raw.windows(2).position(|w| w == b"\n\n").expect("a blank line after the headers");
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let field = |line: &str, key: &str| line.strip_prefix(key).map(str::to_string);
    Stored {
        message: raw[split + 2..].to_vec(),
        tree: headers.lines().find_map(|l| field(l, "tree ")).expect("a tree header"),
        parents: headers.lines().filter_map(|l| field(l, "parent ")).collect(),
    }
}

/// Message bytes shown exactly (non-ASCII and control bytes escaped), for comparison.
fn shown(bytes: &[u8]) -> Shown {
    Shown(bytes.escape_ascii().to_string())
}

/// Escaped bytes that a failed assertion prints as they are, not quoted a second time.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Shown(String);

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A throwaway clone of the sandbox remote, checked out at main.
struct Scratch {
    dir: TempDir,
    work: PathBuf,
}

impl Scratch {
    fn clone(env: &Env) -> Scratch {
        let dir = tempfile::tempdir().expect("scratch dir");
        git(dir.path(), &["clone", "-q", &env.sandbox.remote().to_string_lossy(), "work"]);
        let work = dir.path().join("work");
        Scratch { dir, work }
    }

    fn write(&self, relative: &str, text: &[u8]) {
        let path = self.work.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn git(&self, args: &[&str]) -> String {
        git(&self.work, args)
    }

    /// Commit everything with `message` kept byte for byte (no cleanup); returns the id.
    fn commit_verbatim(&self, message: &[u8], config: &[&str]) -> String {
        let file = self.dir.path().join("message");
        std::fs::write(&file, message).unwrap();
        self.git(&["add", "-A"]);
        let mut args: Vec<&str> = config.iter().flat_map(|c| ["-c", c]).collect();
        let file = file.to_string_lossy();
        args.extend(["commit", "-q", "--cleanup=verbatim", "-F", &file]);
        self.git(&args);
        self.git(&["rev-parse", "HEAD"])
    }

    fn push(&self) {
        self.git(&["push", "-q", "origin", "main"]);
    }
}

/// What `git revert --no-edit [-m N] COMMIT` makes on a fresh clone of the remote's main.
fn git_revert(env: &Env, commit: &str, mainline: Option<u32>) -> Stored {
    let scratch = Scratch::clone(env);
    let mut args = vec!["-c".to_string(), "revert.reference=false".to_string(), "revert".to_string()];
    if let Some(m) = mainline {
        args.extend(["-m".to_string(), m.to_string()]);
    }
    args.extend(["--no-edit".to_string(), commit.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    scratch.git(&args);
    stored(&scratch.work, "HEAD")
}

/// Revert `commit` both ways from the remote's current main; checks the rollout commit went
/// onto that tip and returns (rollout's, git's).
fn both_reverts(env: &Env, runbook: &str, commit: &str, mainline: Option<u32>) -> (Stored, Stored) {
    let remote = env.sandbox.remote();
    let tip = git(&remote, &["rev-parse", "main"]);
    let by_git = git_revert(env, commit, mainline);
    run_revert(env, runbook, commit).code(0);
    let by_rollout = stored(&remote, "main");
    assert_eq!(by_rollout.parents, vec![tip.clone()], "the revert goes on top of the remote's old tip");
    assert_eq!(by_git.parents, vec![tip], "git's revert goes on top of the same tip");
    (by_rollout, by_git)
}

#[track_caller]
fn assert_same_revert(by_rollout: &Stored, by_git: &Stored) {
    assert_eq!(shown(&by_rollout.message), shown(&by_git.message), "message: rollout (left) vs git revert (right)");
    assert_eq!(by_rollout.tree, by_git.tree, "tree: rollout (left) vs git revert (right)");
}

/// The history for the merge tests, pushed to the remote: main forks into `claim-export`
/// (adds src/export.js) while main gains docs/oncall.md; the branch is merged with --no-ff, then
/// one unrelated commit follows. Returns (merge, first parent, second parent).
fn push_merge_history(env: &Env) -> (String, String, String) {
    let scratch = Scratch::clone(env);
    scratch.git(&["checkout", "-q", "-b", "claim-export"]);
    scratch.write("src/export.js", b"export function exportClaims(claims) {\n  return JSON.stringify(claims);\n}\n");
    scratch.git(&["add", "-A"]);
    scratch.git(&["commit", "-q", "-m", "Add claim export"]);
    scratch.git(&["checkout", "-q", "main"]);
    scratch.write("docs/oncall.md", b"# On call\n\nPage #travel-pay-oncall.\n");
    scratch.git(&["add", "-A"]);
    scratch.git(&["commit", "-q", "-m", "Document the on-call rota"]);
    scratch.git(&["merge", "-q", "--no-ff", "--no-edit", "claim-export"]);
    let merge = scratch.git(&["rev-parse", "HEAD"]);
    let first = scratch.git(&["rev-parse", "HEAD^1"]);
    let second = scratch.git(&["rev-parse", "HEAD^2"]);
    scratch.write("VERSION", b"1.4.0\n");
    scratch.git(&["add", "-A"]);
    scratch.git(&["commit", "-q", "-m", "Bump the version"]);
    scratch.push();
    (merge, first, second)
}

fn files_at(repo: &Path, rev: &str) -> Vec<String> {
    git(repo, &["ls-tree", "-r", "--name-only", rev]).lines().map(str::to_string).collect()
}

/// The first line of a message, as text.
fn subject(message: &[u8]) -> String {
    String::from_utf8_lossy(message).lines().next().unwrap_or_default().to_string()
}

/// The first git release whose `git revert` titles a revert of a revert `Reapply "..."` (2.43.0);
/// older ones write `Revert "Revert "...""`. rollout writes the newer form whatever git is installed.
const GIT_WITH_REAPPLY: (u32, u32) = (2, 43);

/// (major, minor) of a `git --version` line: `git version 2.39.5`, `git version 2.39.5 (Apple
/// Git-154)`, `git version 2.45.1.windows.1`.
fn parse_git_version(line: &str) -> Option<(u32, u32)> {
    let version = line.trim().strip_prefix("git version ")?.split_whitespace().next()?;
    let mut numbers = version.split('.').map(|part| part.parse::<u32>().ok());
    Some((numbers.next()??, numbers.next()??))
}

/// Whether the system git (the one on PATH) is new enough to write a revert of a revert as
/// rollout does (git >= 2.43), so its message can be compared with rollout's byte for byte.
pub(crate) fn system_git_writes_reapply() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        let out = git_raw(&std::env::temp_dir(), &["--version"]);
        let line = String::from_utf8_lossy(&out.stdout);
        let version = parse_git_version(&line).unwrap_or_else(|| panic!("no version in `git --version`: {line:?}"));
        version >= GIT_WITH_REAPPLY
    })
}

#[test]
fn git_versions_are_read_from_git_version_lines() {
    assert_eq!(parse_git_version("git version 2.39.5\n"), Some((2, 39)));
    assert_eq!(parse_git_version("git version 2.43.0"), Some((2, 43)));
    assert_eq!(parse_git_version("git version 2.39.5 (Apple Git-154)"), Some((2, 39)));
    assert_eq!(parse_git_version("git version 2.45.1.windows.1"), Some((2, 45)));
    assert_eq!(parse_git_version("git version 2.43.0-rc1"), Some((2, 43)));
    assert_eq!(parse_git_version("git version two"), None);
    assert_eq!(parse_git_version("hub version 2.14.2"), None);
    assert!((2, 39) < GIT_WITH_REAPPLY && (2, 43) >= GIT_WITH_REAPPLY && (3, 0) >= GIT_WITH_REAPPLY);
}

#[test]
fn revert_of_the_offending_commit_matches_git_revert_no_edit_byte_for_byte() {
    let env = Env::new();
    write_runbook(&env, "revert", "");
    let offending = env.sandbox.offending.to_string();
    let (by_rollout, by_git) = both_reverts(&env, "revert", &offending, None);
    assert_same_revert(&by_rollout, &by_git);
    assert_eq!(
        shown(&by_rollout.message),
        shown(format!("Revert \"{OFFENDING_SUBJECT}\"\n\nThis reverts commit {offending}.\n").as_bytes())
    );
    let files = files_at(&env.sandbox.remote(), "main");
    assert!(
        !files.contains(&"src/pagination.js".to_string()),
        "the revert removes the file the commit added: {files:?}"
    );
}

#[test]
fn merge_revert_with_mainline_1_matches_git_revert_m_1() {
    let env = Env::new();
    let (merge, first, _) = push_merge_history(&env);
    write_runbook(&env, "revert-merge", ", mainline: 1");
    let (by_rollout, by_git) = both_reverts(&env, "revert-merge", &merge, Some(1));
    assert_same_revert(&by_rollout, &by_git);
    assert_eq!(
        shown(&by_rollout.message),
        shown(
            format!(
                "Revert \"Merge branch 'claim-export'\"\n\nThis reverts commit {merge}, reversing\nchanges made to {first}.\n"
            )
            .as_bytes()
        )
    );
    let files = files_at(&env.sandbox.remote(), "main");
    assert!(!files.contains(&"src/export.js".to_string()), "the merged branch's file is gone: {files:?}");
    assert!(files.contains(&"docs/oncall.md".to_string()), "main's own change stays: {files:?}");
    assert!(files.contains(&"VERSION".to_string()), "the later commit stays: {files:?}");
}

#[test]
fn merge_revert_with_mainline_2_matches_git_revert_m_2() {
    let env = Env::new();
    let (merge, _, second) = push_merge_history(&env);
    write_runbook(&env, "revert-merge", ", mainline: 2");
    let (by_rollout, by_git) = both_reverts(&env, "revert-merge", &merge, Some(2));
    assert_same_revert(&by_rollout, &by_git);
    assert!(
        by_rollout.message.ends_with(format!(", reversing\nchanges made to {second}.\n").as_bytes()),
        "{}",
        shown(&by_rollout.message)
    );
    let files = files_at(&env.sandbox.remote(), "main");
    assert!(files.contains(&"src/export.js".to_string()), "the branch side is kept: {files:?}");
    assert!(!files.contains(&"docs/oncall.md".to_string()), "main's side since the fork is undone: {files:?}");
}

#[test]
fn revert_of_a_revert_is_titled_reapply_and_matches_git() {
    let env = Env::new();
    write_runbook(&env, "revert", "");
    let remote = env.sandbox.remote();
    let offending = env.sandbox.offending.to_string();
    let original_tree = stored(&remote, "main").tree;

    let (first, by_git) = both_reverts(&env, "revert", &offending, None);
    assert_same_revert(&first, &by_git);
    let revert = git(&remote, &["rev-parse", "main"]);

    let (second, by_git) = both_reverts(&env, "revert", &revert, None);
    if system_git_writes_reapply() {
        assert_same_revert(&second, &by_git);
    } else {
        // git < 2.43 titles it `Revert "Revert "...""`; rollout follows git >= 2.43, whose
        // message is the recorded one below. The trees must still be the same.
        assert_eq!(second.tree, by_git.tree, "tree: rollout (left) vs git revert (right)");
        assert_eq!(
            subject(&by_git.message),
            format!("Revert \"Revert \"{OFFENDING_SUBJECT}\"\""),
            "an older git's title"
        );
    }
    assert_eq!(
        shown(&second.message),
        shown(format!("Reapply \"{OFFENDING_SUBJECT}\"\n\nThis reverts commit {revert}.\n").as_bytes()),
        "git >= 2.43's message for a revert of a revert"
    );
    assert_eq!(second.tree, original_tree, "reapplying restores the tree from before the revert");

    let reapply = git(&remote, &["rev-parse", "main"]);
    let (third, by_git) = both_reverts(&env, "revert", &reapply, None);
    assert_same_revert(&third, &by_git);
    assert_eq!(subject(&third.message), format!("Revert \"Reapply \"{OFFENDING_SUBJECT}\"\""));
}

#[test]
fn subject_is_the_first_non_blank_line_of_a_multi_line_first_paragraph_like_git() {
    let env = Env::new();
    write_runbook(&env, "revert", "");
    let cases: [(&[u8], &str); 4] = [
        (b"Fix claim totals for\nmulti-page claim lists\n\nThe body.\n", "Fix claim totals for"),
        (b"\n\n \t \nCount claims once\nacross pages\n", "Count claims once"),
        (b"\r\n  Indented subject, CRLF line ends\r\n\r\nBody.\r\n", "  Indented subject, CRLF line ends\r"),
        (b"No newline at the end", "No newline at the end"),
    ];
    for (n, (message, title)) in cases.iter().enumerate() {
        let scratch = Scratch::clone(&env);
        scratch.write(&format!("notes/{n}.txt"), format!("note {n}\n").as_bytes());
        let commit = scratch.commit_verbatim(message, &[]);
        scratch.push();
        let (by_rollout, by_git) = both_reverts(&env, "revert", &commit, None);
        assert_same_revert(&by_rollout, &by_git);
        assert_eq!(subject(&by_rollout.message), format!("Revert \"{title}\""), "message {}", shown(message));
    }
}

/// git skips only lines of ASCII blanks (space, tab, CR) before the subject; a form feed or
/// a no-break space makes a line that git takes as the subject.
#[test]
fn only_lines_git_counts_as_blank_are_skipped_before_the_subject() {
    let env = Env::new();
    write_runbook(&env, "revert", "");
    let cases: [&[u8]; 3] =
        [b"\x0c\nPaginate claims\n", b"\x0b\nPaginate claims\n", "\u{a0}\nPaginate claims\n".as_bytes()];
    let mut differences = Vec::new();
    for (n, message) in cases.iter().enumerate() {
        let scratch = Scratch::clone(&env);
        scratch.write(&format!("notes/{n}.txt"), format!("note {n}\n").as_bytes());
        let commit = scratch.commit_verbatim(message, &[]);
        scratch.push();
        let (by_rollout, by_git) = both_reverts(&env, "revert", &commit, None);
        assert_eq!(by_rollout.tree, by_git.tree);
        if by_rollout.message != by_git.message {
            differences.push(format!(
                "original {}\n  rollout: {}\n  git:     {}",
                shown(message),
                shown(&by_rollout.message),
                shown(&by_git.message)
            ));
        }
    }
    assert!(differences.is_empty(), "revert messages differ from git's:\n{}", differences.join("\n"));
}

/// A commit recorded in a legacy encoding (an `encoding` header): git re-encodes the subject
/// to UTF-8 for the revert message.
#[test]
fn subject_in_a_legacy_encoding_is_reencoded_to_utf8_like_git() {
    let env = Env::new();
    write_runbook(&env, "revert", "");
    let scratch = Scratch::clone(&env);
    scratch.write("notes/cafe.txt", b"caf\xe9\n");
    let commit = scratch.commit_verbatim(b"Caf\xe9 menu for claims\n", &["i18n.commitEncoding=ISO-8859-1"]);
    scratch.push();
    let (by_rollout, by_git) = both_reverts(&env, "revert", &commit, None);
    assert_same_revert(&by_rollout, &by_git);
    assert_eq!(subject(&by_rollout.message), "Revert \"Café menu for claims\"");
}

/// The fingerprint minus what a push legitimately changes: the remote's refs and the clone's
/// remote-tracking ref (updated like `git push` does), and any state files.
fn clone_fingerprint(env: &Env) -> BTreeMap<String, String> {
    let mut all = env.fingerprint();
    all.retain(|key, _| {
        !key.starts_with("remote ") && key != "app refs/remotes/origin/main" && !key.starts_with("state/")
    });
    let dot_git = env.sandbox.app().join(".git");
    for file in ["HEAD", "index"] {
        let bytes = std::fs::read(dot_git.join(file)).unwrap_or_default();
        all.insert(format!("app .git/{file}"), shown(&bytes).0);
    }
    all.insert(
        "app status".into(),
        git(&env.sandbox.app(), &["--no-optional-locks", "status", "--porcelain=v1", "--untracked-files=all"]),
    );
    all
}

#[test]
fn push_moves_remote_main_onto_the_old_tip_and_leaves_the_clone_untouched() {
    let env = Env::new();
    write_runbook(&env, "revert", "");
    let app = env.sandbox.app();
    let remote = env.sandbox.remote();
    let tip = env.sandbox.tip.to_string();
    let before = env.fingerprint();
    let clone_before = clone_fingerprint(&env);

    let out = env.run(&["--json", "run", "revert", "--yes", "--var", &format!("commit={}", env.sandbox.offending)]);
    out.code(0);
    let events = out.events();
    let succeeded = events.iter().find(|e| e["event"] == "step_succeeded").expect("a step_succeeded event");
    let new = succeeded["outputs"]["commit"].as_str().expect("the revert's commit id").to_string();
    assert_eq!(succeeded["outputs"]["reverted"], env.sandbox.offending.to_string());
    assert_eq!(succeeded["outputs"]["branch"], "main");

    assert_eq!(git(&remote, &["rev-parse", "refs/heads/main"]), new, "the remote's main is the revert");
    assert_eq!(stored(&remote, &new).parents, vec![tip.clone()], "its only parent is the old tip");
    assert_eq!(git(&app, &["rev-parse", "refs/remotes/origin/main"]), new, "origin/main follows, like git push");
    assert_eq!(git(&app, &["rev-parse", "refs/heads/main"]), tip, "the local branch stays");
    assert_eq!(clone_fingerprint(&env), clone_before, "work tree, index, HEAD and local branches unchanged");

    let after = env.fingerprint();
    let changed: BTreeSet<&str> =
        after.keys().chain(before.keys()).filter(|k| after.get(*k) != before.get(*k)).map(String::as_str).collect();
    assert_eq!(
        changed,
        BTreeSet::from(["app refs/remotes/origin/main", "remote refs/heads/main"]),
        "only these refs move"
    );
}

#[test]
fn conflicting_revert_fails_preflight_naming_the_paths_and_changes_nothing() {
    let env = Env::new();
    write_runbook(&env, "revert", "");
    let scratch = Scratch::clone(&env);
    let claims = std::fs::read_to_string(scratch.work.join("src/claims.js")).unwrap();
    scratch.write("src/claims.js", claims.replace("page, 10)", "page, 25)").as_bytes());
    let app_js = std::fs::read_to_string(scratch.work.join("src/app.js")).unwrap();
    scratch.write("src/app.js", app_js.replace("${c.title}: ${c.status}", "${c.title} (${c.status})").as_bytes());
    scratch.git(&["commit", "-q", "-am", "Show 25 claims a page"]);
    scratch.push();
    let offending = env.sandbox.offending.to_string();

    // git itself cannot revert it cleanly either, and stops on the same paths.
    let baseline = Scratch::clone(&env);
    assert!(!git_raw(&baseline.work, &["revert", "--no-edit", &offending]).status.success());
    assert_eq!(baseline.git(&["diff", "--name-only", "--diff-filter=U"]), "src/app.js\nsrc/claims.js");

    let before = env.fingerprint();
    let out = run_revert(&env, "revert", &offending);
    out.code(3);
    assert!(
        out.stderr.contains(&format!(
            "the revert of {} \"{OFFENDING_SUBJECT}\" does not apply cleanly onto origin/main",
            &offending[..7]
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("conflicts in src/app.js, src/claims.js\n"), "{}", out.stderr);
    assert!(out.stderr.contains("Preflight failed"), "{}", out.stderr);
    assert_eq!(env.fingerprint(), before, "nothing changed anywhere");
    let journal = env.journal();
    let finished = journal.last().expect("journal lines");
    assert_eq!(finished["event"], "run_finished");
    assert_eq!(finished["status"], "preflight_failed");
}

#[test]
fn unknown_commit_fails_preflight_with_a_clear_message() {
    let env = Env::new();
    write_runbook(&env, "revert", "");
    let before = env.fingerprint();
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let out = run_revert(&env, "revert", unknown);
    out.code(3);
    assert!(out.stderr.contains(&format!("unknown commit {unknown}")), "{}", out.stderr);
    assert!(out.stderr.contains("check the id, or push it to origin/main first"), "{}", out.stderr);
    assert_eq!(env.fingerprint(), before);
}

#[test]
fn commit_that_is_not_on_the_remote_branch_fails_preflight() {
    let env = Env::new();
    write_runbook(&env, "revert", "");
    let app = env.sandbox.app();
    std::fs::write(app.join("local.txt"), "only here\n").unwrap();
    git(&app, &["add", "local.txt"]);
    git(&app, &["commit", "-q", "-m", "Local only"]);
    let local = git(&app, &["rev-parse", "HEAD"]);
    let before = env.fingerprint();
    let out = run_revert(&env, "revert", &local);
    out.code(3);
    assert!(out.stderr.contains(&format!("commit {} is not on origin/main", &local[..7])), "{}", out.stderr);
    assert_eq!(env.fingerprint(), before);
}

#[test]
fn merge_without_mainline_fails_preflight_asking_for_mainline() {
    let env = Env::new();
    let (merge, _, _) = push_merge_history(&env);
    write_runbook(&env, "revert", "");
    let before = env.fingerprint();
    let out = run_revert(&env, "revert", &merge);
    out.code(3);
    assert!(out.stderr.contains(&format!("commit {} is a merge of 2 parents", &merge[..7])), "{}", out.stderr);
    assert!(out.stderr.contains("set `mainline`"), "{}", out.stderr);
    assert_eq!(env.fingerprint(), before);
}

#[test]
fn mainline_on_a_non_merge_fails_preflight() {
    let env = Env::new();
    write_runbook(&env, "revert-merge", ", mainline: 1");
    let before = env.fingerprint();
    let offending = env.sandbox.offending.to_string();
    let out = run_revert(&env, "revert-merge", &offending);
    out.code(3);
    assert!(
        out.stderr.contains(&format!("commit {} is not a merge: remove `mainline` from the step", &offending[..7])),
        "{}",
        out.stderr
    );
    assert_eq!(env.fingerprint(), before);
}

#[test]
fn mainline_beyond_the_merge_parents_fails_preflight() {
    let env = Env::new();
    let (merge, _, _) = push_merge_history(&env);
    write_runbook(&env, "revert-merge", ", mainline: 3");
    let before = env.fingerprint();
    let out = run_revert(&env, "revert-merge", &merge);
    out.code(3);
    assert!(out.stderr.contains("has 2 parents; mainline 3 does not exist"), "{}", out.stderr);
    assert_eq!(env.fingerprint(), before);
}

#[test]
fn dry_run_prints_the_plan_line_and_changes_nothing() {
    let env = Env::new();
    write_runbook(&env, "revert", "");
    let before = env.fingerprint();
    let offending = env.sandbox.offending.to_string();
    let out = env.run(&["run", "revert", "--dry-run", "--var", &format!("commit={offending}")]);
    out.code(0);
    let plan = format!(
        "1/1 revert: revert {} \"{OFFENDING_SUBJECT}\" onto origin/main: 3 files (+4 -10), applies cleanly\n",
        &offending[..7]
    );
    assert!(out.stderr.contains(&plan), "wanted {plan:?} in\n{}", out.stderr);
    assert!(out.stderr.contains("Dry run passed: 1 step checked, nothing changed."), "{}", out.stderr);
    assert_eq!(env.fingerprint(), before);
    assert_eq!(git(&env.sandbox.remote(), &["rev-parse", "main"]), env.sandbox.tip.to_string());
}

/// `git revert --no-edit` of a commit whose message is `message`, in a throwaway repository:
/// the revert's message bytes as git stored them, and the original's id.
fn git_revert_of(message: &str) -> (String, String) {
    let dir = TempDir::new().unwrap();
    git(dir.path(), &["init", "-q"]);
    std::fs::write(dir.path().join("f"), "a\n").unwrap();
    git(dir.path(), &["add", "f"]);
    git(dir.path(), &["commit", "-q", "-m", "base"]);
    std::fs::write(dir.path().join("f"), "b\n").unwrap();
    std::fs::write(dir.path().join("message"), message).unwrap();
    git(dir.path(), &["commit", "-q", "-a", "--cleanup=verbatim", "-F", "message"]);
    let id = git(dir.path(), &["rev-parse", "HEAD"]);
    git(dir.path(), &["revert", "--no-edit", "HEAD"]);
    (String::from_utf8(stored(dir.path(), "HEAD").message).unwrap(), id)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// rollout's revert message is git's own for any message a commit may have: blank lines
    /// first, quotes, a `Revert "` subject, tabs, non-ASCII. Where the installed git is older
    /// than 2.43, a revert of a revert differs in its title only, as recorded.
    #[test]
    fn the_revert_message_is_the_one_git_revert_writes(
        blank in proptest::sample::select(vec!["", "\n", " \n\t\n"]),
        subject in "(Revert \"){0,2}[A-Za-z0-9 \"'é→_.:-]{1,30}",
        body in proptest::option::of("[A-Za-z0-9 \n]{0,40}"),
    ) {
        let message = match &body {
            Some(body) => format!("{blank}{subject}\n\n{body}\n"),
            None => format!("{blank}{subject}\n"),
        };
        let (theirs, id) = git_revert_of(&message);
        let ours = rollout::revert_message(&message, &id, None);
        let reapply = ours.starts_with("Reapply \"");
        if system_git_writes_reapply() || !reapply {
            proptest::prop_assert_eq!(ours, theirs);
        } else {
            // The subject starts `Revert "`, so it is the first line git does not count as blank.
            let (_, rest) = ours.split_once('\n').unwrap();
            proptest::prop_assert_eq!(format!("Revert \"{subject}\"\n{rest}"), theirs, "git < 2.43's title");
        }
    }
}
