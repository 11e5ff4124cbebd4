//! A PostgreSQL server of a test's own (the binaries scripts/services found, in PG_BIN), in a
//! temp folder on a free port, which the test may stop and start again: the shared state's faults.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NEEDS: &str = "PG_BIN is not set: run scripts/test (scripts/services finds PostgreSQL)";
const PASSWORD: &str = "own-cluster-password";

pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
    /// Where it listens besides 127.0.0.1 (veth addresses of the tests' network namespaces).
    also: Vec<String>,
}

/// `program` from PG_BIN, as the `postgres` user when this runs as root (PostgreSQL refuses root).
fn as_postgres(program: &str) -> Command {
    let path = PathBuf::from(std::env::var("PG_BIN").expect(NEEDS)).join(program);
    if nix::unistd::Uid::effective().is_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

impl Cluster {
    /// A new cluster, started, with a database `rollout` its role `rollout` owns.
    pub fn start() -> Cluster {
        Cluster::listening(&[])
    }

    /// `start`, listening on `also` too, and taking logins from their /16 (the tests'
    /// network namespaces); a connection silent for about 4 s is taken for dead.
    pub fn listening(also: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        if nix::unistd::Uid::effective().is_root() {
            let postgres = nix::unistd::User::from_name("postgres").unwrap().expect("a postgres user");
            nix::unistd::chown(dir.path(), Some(postgres.uid), Some(postgres.gid)).unwrap();
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let initdb = as_postgres("initdb")
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["--no-locale", "-E", "UTF8", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"])
            .output()
            .unwrap();
        assert!(initdb.status.success(), "initdb: {}", String::from_utf8_lossy(&initdb.stderr));
        if let Some(address) = also.first() {
            let net: Vec<&str> = address.split('.').take(2).collect();
            let line = format!("host all all {}.0.0/16 scram-sha-256\n", net.join("."));
            let hba = dir.path().join("data/pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).unwrap();
            text.push_str(&line);
            std::fs::write(&hba, text).unwrap();
        }
        let also = also.iter().map(|a| a.to_string()).collect();
        let mut cluster = Cluster { dir, port, server: None, also };
        cluster.up();
        let created = as_postgres("psql")
            .args(["-q", "-X", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(cluster.dir.path())
            .args(["-p", &port.to_string(), "-d", "postgres"])
            .args([
                "-c",
                &format!("CREATE ROLE rollout LOGIN PASSWORD '{PASSWORD}'"),
                "-c",
                "CREATE DATABASE rollout OWNER rollout",
            ])
            .output()
            .unwrap();
        assert!(created.status.success(), "psql: {}", String::from_utf8_lossy(&created.stderr));
        cluster
    }

    pub fn url(&self) -> String {
        self.url_at("127.0.0.1")
    }

    /// Its URL through `address`.
    pub fn url_at(&self, address: &str) -> String {
        format!("postgres://rollout:{PASSWORD}@{address}:{}/rollout", self.port)
    }

    /// Start the server (again) and wait until it takes connections.
    pub fn up(&mut self) {
        let server = as_postgres("postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                &format!("listen_addresses={}", [vec!["127.0.0.1".to_string()], self.also.clone()].concat().join(",")),
            ])
            .args([
                "-c",
                "fsync=off",
                "-c",
                "tcp_keepalives_idle=2",
                "-c",
                "tcp_keepalives_interval=1",
                "-c",
                "tcp_keepalives_count=2",
                "-k",
            ])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = || {
            let probe =
                as_postgres("pg_isready").args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()]).status();
            probe.is_ok_and(|s| s.success())
        };
        while !ready() {
            assert!(Instant::now() < deadline, "the test's PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the server (a fast shutdown: every connection is cut) and wait until it is gone.
    pub fn down(&mut self) {
        if let Some(mut server) = self.server.take() {
            let pid = nix::unistd::Pid::from_raw(server.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let _ = server.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.down();
    }
}
