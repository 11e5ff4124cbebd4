//! Real smart-protocol git remotes: `git daemon` per test serving bare copies of the sandbox
//! remote (hooks and config refuse pushes), and the nginx + git-http-backend of scripts/services.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::{Env, git};

/// How long a server may take to accept its first connection.
pub const STARTUP: Duration = Duration::from_secs(20);

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it, then it is let go).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Poll until 127.0.0.1:`port` accepts a connection. `Err` with the reason if `child` exits
/// first or the deadline passes.
pub fn wait_for_port(child: &mut Child, port: u16, deadline: Instant) -> Result<(), String> {
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited ({status}) before listening on 127.0.0.1:{port}"));
        }
        if TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("not listening on 127.0.0.1:{port} after {STARTUP:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill a child started in its own process group, with everything it spawned, and reap it.
pub fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    }
    let _ = child.wait();
}

/// git with a clean environment (no system or user config, no prompts), in `dir`.
pub fn git_command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Other Engineer")
        .env("GIT_AUTHOR_EMAIL", "other@example.com")
        .env("GIT_COMMITTER_NAME", "Other Engineer")
        .env("GIT_COMMITTER_EMAIL", "other@example.com");
    command
}

/// A bare copy of `source` (a repository path) at `destination`.
pub fn bare_copy(source: &Path, destination: &Path) {
    git(
        destination.parent().expect("a parent folder"),
        &["clone", "-q", "--bare", &source.to_string_lossy(), &destination.to_string_lossy()],
    );
}

/// Point the clone's `origin` at `url`.
pub fn set_origin(clone: &Path, url: &str) {
    git(clone, &["remote", "set-url", "origin", url]);
}

/// `git daemon` serving every bare repository under its own temp folder, pushes enabled.
pub struct GitDaemon {
    child: Child,
    base: TempDir,
    pub port: u16,
}

impl GitDaemon {
    /// Start it on a free port and wait until it accepts connections.
    pub fn start() -> GitDaemon {
        let base = tempfile::Builder::new().prefix("rollout-git-daemon-").tempdir().expect("daemon folder");
        let log_path = base.path().join("daemon.log");
        let mut failures = Vec::new();
        // Another process may take the port between free_port() and the daemon's bind: retry.
        for _ in 0..5 {
            let port = free_port();
            let log = File::create(&log_path).expect("daemon log");
            let mut child = Command::new("git")
                .args([
                    "daemon",
                    "--enable=receive-pack",
                    "--export-all",
                    &format!("--base-path={}", base.path().display()),
                    "--listen=127.0.0.1",
                    &format!("--port={port}"),
                    "--reuseaddr",
                    "--informative-errors",
                    "--verbose",
                ])
                .current_dir(base.path())
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", base.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("daemon log"))
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("spawn git daemon (is git installed?)");
            match wait_for_port(&mut child, port, Instant::now() + STARTUP) {
                Ok(()) => return GitDaemon { child, base, port },
                Err(why) => {
                    kill_group(&mut child);
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    failures.push(format!("git daemon on port {port}: {why}\n{log}"));
                }
            }
        }
        panic!("git daemon did not start:\n{}", failures.join("\n"));
    }

    /// `git://127.0.0.1:PORT/NAME.git`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }

    /// The bare repository NAME.git on the server's disk.
    pub fn repo(&self, name: &str) -> PathBuf {
        self.base.path().join(format!("{name}.git"))
    }

    /// Serve a bare copy of `source` as NAME.git; returns its path.
    pub fn create_from(&self, name: &str, source: &Path) -> PathBuf {
        let repo = self.repo(name);
        bare_copy(source, &repo);
        repo
    }

    /// Serve the sandbox's remote as `app.git` and point the sandbox clone's origin at it.
    /// Returns the URL.
    pub fn serve_sandbox(&self, env: &Env) -> String {
        self.create_from("app", &env.sandbox.remote());
        let url = self.url("app");
        set_origin(&env.sandbox.app(), &url);
        url
    }

    /// Install `script` as the server-side hook `hook` (e.g. `pre-receive`) of NAME.git.
    pub fn install_hook(&self, name: &str, hook: &str, script: &str) {
        let path = self.repo(name).join("hooks").join(hook);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A pre-receive hook that prints `lines` (one `remote: ` line each on the client) and
    /// exits 1 for any push that updates refs/heads/BRANCH; other pushes go through.
    pub fn reject_pushes_to(&self, name: &str, branch: &str, lines: &[&str]) {
        let echoes: String = lines.iter().map(|l| format!("    echo '{}'\n", l.replace('\'', "'\\''"))).collect();
        self.install_hook(
            name,
            "pre-receive",
            &format!(
                "#!/bin/sh\nwhile read -r old new ref; do\n  if [ \"$ref\" = refs/heads/{branch} ]; then\n{echoes}    exit 1\n  fi\ndone\nexit 0\n"
            ),
        );
    }

    /// `receive.denyNonFastForwards = true` in NAME.git: even a forced push cannot rewrite.
    pub fn deny_non_fast_forwards(&self, name: &str) {
        git(&self.repo(name), &["config", "receive.denyNonFastForwards", "true"]);
    }

    /// A ref of NAME.git, if it exists.
    pub fn rev(&self, name: &str, reference: &str) -> Option<String> {
        let output = git_command(&self.repo(name))
            .args(["rev-parse", "--verify", "--quiet", &format!("{reference}^{{commit}}")])
            .output()
            .expect("run git rev-parse");
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Every ref of NAME.git: `(name, id)` sorted by name.
    pub fn refs(&self, name: &str) -> Vec<(String, String)> {
        let listing = git(&self.repo(name), &["for-each-ref", "--format=%(refname) %(objectname)"]);
        let mut refs: Vec<(String, String)> = listing
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(name, id)| (name.to_string(), id.to_string()))
            .collect();
        refs.sort();
        refs
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// A throwaway working clone of any URL, for pushing "someone else's" commits with the git CLI.
pub struct WorkClone {
    _dir: TempDir,
    pub work: PathBuf,
}

impl WorkClone {
    pub fn clone(url: &str) -> WorkClone {
        let dir = tempfile::tempdir().expect("work clone folder");
        let work = dir.path().join("work");
        let output = git_command(dir.path()).args(["clone", "-q", url, "work"]).output().expect("run git clone");
        assert!(output.status.success(), "git clone {url}: {}", String::from_utf8_lossy(&output.stderr));
        WorkClone { _dir: dir, work }
    }

    /// git in the clone as "Other Engineer"; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        self.git_with(&[], args)
    }

    /// git with the author and committer dates set to `epoch` (seconds, UTC): commits whose
    /// dates tie or run against history, as skewed clocks make them.
    pub fn git_at(&self, epoch: i64, args: &[&str]) -> String {
        let date = format!("@{epoch} +0000");
        self.git_with(&[("GIT_AUTHOR_DATE", &date), ("GIT_COMMITTER_DATE", &date)], args)
    }

    fn git_with(&self, vars: &[(&str, &str)], args: &[&str]) -> String {
        let output = git_command(&self.work).envs(vars.iter().copied()).args(args).output().expect("run git");
        assert!(
            output.status.success(),
            "git {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.work.join(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.work.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Commit everything with `subject`; returns the new commit's id.
    pub fn commit(&self, subject: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", subject]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Commit everything with `subject`, dated `epoch`; returns the new commit's id.
    pub fn commit_at(&self, epoch: i64, subject: &str) -> String {
        self.git(&["add", "-A"]);
        self.git_at(epoch, &["commit", "-q", "-m", subject]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// The committer date of `rev`, in seconds.
    pub fn time_of(&self, rev: &str) -> i64 {
        self.git(&["log", "-1", "--format=%ct", rev]).parse().expect("a commit time")
    }

    /// Push main to origin with the git CLI.
    pub fn push(&self) {
        self.git(&["push", "-q", "origin", "main"]);
    }
}

/// The git HTTP server scripts/services started (GIT_HTTP_URL, _ROOT, _USER, _TOKEN, _LOG).
pub struct GitHttp {
    pub url: String,
    pub root: PathBuf,
    pub user: String,
    pub token: String,
    pub log: PathBuf,
}

impl GitHttp {
    pub fn from_env() -> GitHttp {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: needs git-http: run scripts/test"))
        };
        GitHttp {
            url: var("GIT_HTTP_URL"),
            root: PathBuf::from(var("GIT_HTTP_ROOT")),
            user: var("GIT_HTTP_USER"),
            token: var("GIT_HTTP_TOKEN"),
            log: PathBuf::from(var("GIT_HTTP_LOG")),
        }
    }

    /// A new repository (a bare copy of the sandbox remote) under a name of its own; the
    /// clone's origin points at it, with `user@` in the URL if given. Returns (name, URL).
    pub fn serve(&self, env: &Env, user: Option<&str>) -> (String, String) {
        let name = format!("app-{:016x}", rand::random::<u64>());
        bare_copy(&env.sandbox.remote(), &self.root.join(format!("{name}.git")));
        let base = match user {
            Some(user) => self.url.replacen("://", &format!("://{user}@"), 1),
            None => self.url.clone(),
        };
        let url = format!("{base}/{name}.git");
        set_origin(&env.sandbox.app(), &url);
        (name, url)
    }

    pub fn main(&self, name: &str) -> String {
        git(&self.root.join(format!("{name}.git")), &["rev-parse", "main"])
    }

    /// How many requests for this repository the server's access log holds.
    pub fn requests(&self, name: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains(&format!("/{name}.git/"))).count()
    }
}
