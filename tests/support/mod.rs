//! The hermetic test harness: the built binary run with a cleared environment, a temp HOME
//! and state dir, in a sandbox workspace (git clone and remote, flagd file, deploy script).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rollout::Sandbox;
use sha2::{Digest, Sha256};

/// The binary under test; `ROLLOUT_TEST_BIN` points the suite at another build (e.g. an
/// older commit's, to show that a regression test fails without its fix).
pub fn bin() -> std::path::PathBuf {
    std::env::var_os("ROLLOUT_TEST_BIN").map_or_else(|| env!("CARGO_BIN_EXE_rollout").into(), Into::into)
}
pub const FLAG: &str = "travel_pay_claim_status";

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn from(output: Output) -> Outcome {
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Assert the exit code, showing both streams when it differs.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Outcome {
        assert_eq!(self.code, expected, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    /// The JSON events on stdout.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect()
    }
}

/// A temp HOME, state dir and workspace; with `sandbox()`, a full rollout workspace.
pub struct Env {
    pub home: tempfile::TempDir,
    pub sandbox: Sandbox,
    /// Variables (tokens, webhooks) that every run of this workspace gets.
    vars: Vec<(String, String)>,
}

impl Env {
    /// A workspace with the shipped runbooks, the flag on for everyone, and a 0-second deploy.
    pub fn new() -> Env {
        let sandbox = Sandbox::create().expect("sandbox");
        sandbox.write_flags(&[FLAG.to_string()]).expect("flags");
        for name in ["critical", "high", "low"] {
            let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks").join(format!("{name}.yaml"));
            std::fs::copy(from, sandbox.path().join("runbooks").join(format!("{name}.yaml"))).expect("copy runbook");
        }
        Env { home: tempfile::tempdir().expect("home"), sandbox, vars: Vec::new() }
    }

    /// `Env::new()` with this `rollout.yaml`; add runbooks and variables with the builders.
    pub fn workspace(config_yaml: &str) -> Env {
        let env = Env::new();
        env.write("rollout.yaml", config_yaml);
        env
    }

    /// Add (or replace) `runbooks/<name>.yaml`.
    pub fn runbook(self, name: &str, yaml: &str) -> Env {
        self.write(&format!("runbooks/{name}.yaml"), yaml);
        self
    }

    /// Give every run of this workspace the variable `name=value`.
    pub fn var(mut self, name: &str, value: &str) -> Env {
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    pub fn dir(&self) -> &Path {
        self.sandbox.path()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir().join(relative)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home.path().join("state")
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap_or_default()
    }

    /// The command, hermetic: only PATH and the workspace's own variables are set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin());
        command
            .args(args)
            .current_dir(self.dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("ROLLOUT_STATE_DIR", self.state_dir())
            .env("ROLLOUT_REHEARSAL_DEPLOY_SECONDS", "0")
            .env("NO_COLOR", "1")
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Run with stdin closed (not a terminal).
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_with(args, &[])
    }

    /// Run with stdin closed and these extra environment variables (tokens, webhooks).
    pub fn run_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Outcome {
        let mut command = self.command(args);
        command.envs(vars.iter().copied()).stdin(Stdio::null());
        Outcome::from(command.output().expect("run rollout"))
    }

    /// Everything the newest run left behind as text: its journal.
    pub fn journal_text(&self) -> String {
        std::fs::read_to_string(self.newest_journal()).unwrap_or_default()
    }

    /// Run with `input` piped to stdin and the session marked interactive.
    pub fn answer(&self, args: &[&str], input: &str) -> Outcome {
        let mut child = self
            .command(args)
            .env("ROLLOUT_FORCE_INTERACTIVE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rollout");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        Outcome::from(child.wait_with_output().expect("wait rollout"))
    }

    /// The journal lines of the newest run, parsed.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.newest_journal()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    pub fn newest_journal(&self) -> PathBuf {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.state_dir().join("runs"))
            .expect("journal folder")
            .map(|e| e.unwrap().path())
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).unwrap());
        files.pop().expect("a journal")
    }

    /// The flag's state as the flag file says: (defaultVariant, targeting).
    pub fn flag(&self) -> serde_json::Value {
        let document: serde_json::Value = serde_json::from_str(&self.read("flags.json")).unwrap();
        document["flags"][FLAG].clone()
    }

    /// Every ref of the clone and the remote, and a hash of every file outside .git and state.
    pub fn fingerprint(&self) -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        for (label, path) in [("app", self.sandbox.app()), ("remote", self.sandbox.remote())] {
            let repo = git2::Repository::open(&path).unwrap();
            for reference in repo.references().unwrap() {
                let reference = reference.unwrap();
                let target = reference
                    .target()
                    .map(|o| o.to_string())
                    .unwrap_or_else(|| reference.symbolic_target().ok().flatten().unwrap_or_default().to_string());
                all.insert(format!("{label} {}", reference.name().unwrap()), target);
            }
        }
        hash_files(self.dir(), self.dir(), &mut all);
        all
    }
}

fn hash_files(root: &Path, dir: &Path, into: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name == ".git" || name == "remote.git" {
            continue;
        }
        if path.is_dir() {
            hash_files(root, &path, into);
        } else {
            let digest = Sha256::digest(std::fs::read(&path).unwrap());
            into.insert(path.strip_prefix(root).unwrap().display().to_string(), format!("{digest:x}"));
        }
    }
}

/// Run git in `dir` with a fixed identity, whatever its exit status.
pub fn git_output(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git")
}

/// Run git in `dir` with a fixed identity; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_output(dir, args);
    assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
pub mod background;
pub mod buildkite;
pub mod datadog;
pub mod exporter;
pub mod fault_proxy;
pub mod flipper;
pub mod ga4;
pub mod git_remote;
pub mod github;
pub mod gitlab;
pub mod http_server;
pub mod jenkins;
pub mod launchdarkly;
pub mod netns;
pub mod postgres;
pub mod ssh;
