//! A real SSH git remote per test: `sshd` (root only) on a free 127.0.0.1 port with its own
//! config and host key in a temp folder, an `ssh-agent` holding test keys, and known_hosts.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::git_remote::{STARTUP, free_port, kill_group, wait_for_port};

pub const SSHD: &str = "/usr/sbin/sshd";

/// Run an OpenSSH tool; panics with its stderr on failure.
fn run(command: &mut Command) -> String {
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether this process runs as root (sshd needs it to switch users).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// An ed25519 key pair without a passphrase.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: PathBuf,
    /// The `ssh-ed25519 AAAA... comment` line.
    pub public: String,
}

impl KeyPair {
    /// `ssh-keygen` a new key at `path` (and `path.pub`).
    pub fn generate(path: &Path) -> KeyPair {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "rollout-test", "-f"]).arg(path));
        let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key").trim().to_string();
        KeyPair { private: path.to_path_buf(), public }
    }
}

/// `sshd -D` on 127.0.0.1 with a config, host key and authorized_keys of its own; logs in as
/// root by key only.
pub struct Sshd {
    child: Child,
    dir: TempDir,
    pub port: u16,
    /// `ssh-ed25519 AAAA...` of the host key.
    pub host_key: String,
}

impl Sshd {
    /// Start it with these public keys authorized for root; waits until it accepts connections.
    pub fn start(authorized: &[&KeyPair]) -> Sshd {
        assert!(is_root(), "sshd tests run as root (sshd switches users): run scripts/test as root");
        assert!(Path::new(SSHD).exists(), "no {SSHD}: install openssh-server (scripts/services start does)");
        // sshd's compiled-in privilege separation folder; the package's service would make it.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::Builder::new().prefix("rollout-sshd-").tempdir().expect("sshd folder");
        let host_key = KeyPair::generate(&dir.path().join("host_ed25519"));
        let host_key = host_key.public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let keys: String = authorized.iter().map(|k| format!("{}\n", k.public)).collect();
        std::fs::write(dir.path().join("authorized_keys"), keys).unwrap();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "\
ListenAddress 127.0.0.1
HostKey {dir}/host_ed25519
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthenticationMethods publickey
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
PermitUserEnvironment no
AllowTcpForwarding no
X11Forwarding no
LogLevel VERBOSE
",
                dir = dir.path().display()
            ),
        )
        .unwrap();
        let log_path = dir.path().join("sshd.log");
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let log = File::create(&log_path).expect("sshd log");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .args(["-p", &port.to_string()])
                .env_clear()
                .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("spawn sshd");
            match wait_for_port(&mut child, port, Instant::now() + STARTUP) {
                Ok(()) => return Sshd { child, dir, port, host_key },
                Err(why) => {
                    kill_group(&mut child);
                    failures.push(format!(
                        "sshd on port {port}: {why}\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    ));
                }
            }
        }
        panic!("sshd did not start:\n{}", failures.join("\n"));
    }

    /// `ssh://root@127.0.0.1:PORT/ABSOLUTE/PATH`.
    pub fn url(&self, repo: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, repo.display())
    }

    /// The known_hosts line for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key)
    }

    /// What sshd logged so far (connections, accepted and refused keys).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// `~/.ssh/known_hosts` in `home` with exactly these lines (none: an empty file).
pub fn write_known_hosts(home: &Path, lines: &[String]) {
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::write(ssh.join("known_hosts"), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

/// `ssh-agent -D` listening on a socket in its own temp folder.
pub struct Agent {
    child: Child,
    _dir: TempDir,
    pub socket: PathBuf,
}

impl Agent {
    pub fn start() -> Agent {
        let dir = tempfile::Builder::new().prefix("rollout-agent-").tempdir().expect("agent folder");
        let socket = dir.path().join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn ssh-agent");
        let deadline = Instant::now() + STARTUP;
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("ssh-agent exited ({status}) before making {}", socket.display());
            }
            if Instant::now() >= deadline {
                kill_group(&mut child);
                panic!("ssh-agent made no socket in {STARTUP:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { child, _dir: dir, socket }
    }

    /// `ssh-add` the key.
    pub fn add(&self, key: &KeyPair) {
        run(Command::new("ssh-add").arg("-q").arg(&key.private).env("SSH_AUTH_SOCK", &self.socket));
    }

    /// The socket path as SSH_AUTH_SOCK wants it.
    pub fn sock(&self) -> String {
        self.socket.display().to_string()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
