//! Runs of the binary in the background, with deadlines: stdin piped and kept open until
//! closed, stdout and stderr collected as they come, killed if dropped while running.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Env, Outcome};

/// How long a test waits for rollout to print or end before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut stream = stream;
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buffer[..n]),
            }
        }
    })
}

/// A run of the binary in the background: stdin piped and kept open until closed or dropped,
/// stdout and stderr collected as they come.
pub struct Background {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Background {
    pub fn spawn(mut command: Command) -> Background {
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn rollout");
        let stdout: Arc<Mutex<Vec<u8>>> = Arc::default();
        let stderr: Arc<Mutex<Vec<u8>>> = Arc::default();
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Background { stdin: child.stdin.take(), child, stdout, stderr, readers, started: Instant::now() }
    }

    /// With the interactive hook: piped stdin counts as a terminal.
    pub fn interactive(env: &Env, args: &[&str]) -> Background {
        let mut command = env.command(args);
        command.env("ROLLOUT_FORCE_INTERACTIVE", "1");
        Background::spawn(command)
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Type `text`; a process that has already ended is judged by its outcome, not here.
    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        let _ = stdin.write_all(text.as_bytes()).and_then(|()| stdin.flush());
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// kill -9, and wait until the process is gone: what a crash or a lost machine leaves.
    pub fn kill_hard(mut self) -> String {
        kill(self.pid(), Signal::SIGKILL).expect("send SIGKILL");
        let _ = self.child.wait();
        self.stderr()
    }

    pub fn interrupt(&self) {
        kill(self.pid(), Signal::SIGINT).expect("send SIGINT");
    }

    /// Wait until stderr contains `text`; panics with the output so far at the deadline.
    pub fn wait_for_stderr(&mut self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.stderr().contains(text) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rollout ended ({status}) before printing {text:?}\n--- stderr\n{}", self.stderr());
            }
            assert!(Instant::now() < deadline, "no {text:?} on stderr in time\n--- stderr\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait for the exit, at most `within`; kills the process and panics past that.
    /// stdin stays open unless it was closed before.
    pub fn finish(self, within: Duration) -> Outcome {
        self.finish_timed(within).0
    }

    /// `finish`, with how long the run took from its start.
    pub fn finish_timed(mut self, within: Duration) -> (Outcome, Duration) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("rollout did not end within {within:?}\n--- stderr\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = self.started.elapsed();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let take = |buffer: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned();
        (Outcome { code: status.code().unwrap_or(-1), stdout: take(&self.stdout), stderr: take(&self.stderr) }, took)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
