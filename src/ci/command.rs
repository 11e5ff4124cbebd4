//! The `command` CI provider: runs the configured argv (no shell) in the config's folder with
//! ROLLOUT_PIPELINE, ROLLOUT_REF and ROLLOUT_INPUT_<NAME> set; exit status 0 means success.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, PipeReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{PipelineRequest, Pipelines, RunHandle, RunState, Verdict};
use crate::config::CommandConfig;
use crate::error::Precondition;

const TAIL_LINES: usize = 20;
/// The most characters of one line kept in the tail; a longer line is read whole and cut.
const LINE_CHARS: usize = 2000;
/// The most bytes of one line held: past `LINE_CHARS` by more than any secret, so that a secret
/// the cut would halve is scrubbed first.
const LINE_BYTES: u64 = 16 * 1024;

type Tail = Arc<Mutex<VecDeque<String>>>;

/// How long one poll waits for the command to end: its end is seen at once, and Ctrl-C and
/// the progress line are attended to between polls.
const POLL_WAIT: Duration = Duration::from_millis(250);

struct Running {
    pid: u32,
    /// The exit status, sent by the thread that waits on the child (no polling).
    exited: Receiver<std::io::Result<ExitStatus>>,
    tail: Tail,
    reader: JoinHandle<()>,
}

/// Wait on `child` in a thread of its own; its exit status arrives on the receiver.
fn wait_in_thread(mut child: Child) -> Receiver<std::io::Result<ExitStatus>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    receiver
}

pub struct CommandPipeline {
    argv: Vec<String>,
    dir: PathBuf,
    runs: Mutex<HashMap<String, Running>>,
}

impl CommandPipeline {
    pub fn new(config: &CommandConfig, config_dir: &Path) -> CommandPipeline {
        CommandPipeline { argv: config.argv.clone(), dir: config_dir.to_path_buf(), runs: Mutex::new(HashMap::new()) }
    }

    /// What is known of a command this process did not start (its pid read back from a journal):
    /// its output went to the rollout process that started it, so neither its end nor its log is.
    fn gone(pid: &str) -> String {
        format!(
            "the ci command with pid {pid} was not started by this rollout process: its output and exit status went to the process that started it and are gone; check whether it still runs (ps -p {pid}) and what it did before going on"
        )
    }

    fn shown(&self) -> String {
        self.argv.join(" ")
    }

    /// The program to run, found the way it will be run: a path with a slash from the config's
    /// folder (the command's working directory), a bare name on PATH, where, as execvp does,
    /// only an executable file counts.
    fn program(&self) -> Result<PathBuf, Precondition> {
        let program = Path::new(&self.argv[0]);
        let fix = "check ci.command in rollout.yaml";
        if program.components().count() > 1 {
            let path = self.dir.join(program);
            return match std::fs::metadata(&path) {
                Ok(meta) if executable(&meta) => Ok(path),
                Ok(meta) if meta.is_file() => Err(Precondition(format!(
                    "the ci command {} is not executable: chmod +x it, or run it through its interpreter (command: [sh, {}])",
                    path.display(),
                    self.argv[0]
                ))),
                _ => Err(Precondition(format!("the ci command {} does not exist: {fix}", path.display()))),
            };
        }
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(program))
            .find(|path| path.metadata().is_ok_and(|meta| executable(&meta)))
            .ok_or_else(|| Precondition(format!("the ci command `{}` is not found on PATH: {fix}", self.argv[0])))
    }

    /// A script the interpreter will open, when it is missing. The rule, kept simple: when the
    /// program is an interpreter (sh, bash, python3, ...), its first argument that is not an
    /// option is its script, if it looks like a path (it has a slash or an extension, and no
    /// spaces); nothing is checked after an option whose letters include c, e or m (`sh -c`,
    /// `perl -e`, `python3 -m`: code or a module follow, not a file).
    fn missing_script(&self) -> Option<Precondition> {
        let name = Path::new(&self.argv[0]).file_name()?.to_str()?;
        if !INTERPRETERS.contains(&name) {
            return None;
        }
        let mut args = self.argv[1..].iter();
        let script = loop {
            let arg = args.next()?;
            match arg.strip_prefix('-') {
                Some(letters) if !letters.starts_with('-') && letters.contains(['c', 'e', 'm']) => return None,
                Some(_) => continue,
                None => break arg,
            }
        };
        let path = Path::new(script);
        let looks_like_path =
            (script.contains('/') || path.extension().is_some()) && !script.contains(char::is_whitespace);
        (looks_like_path && !self.dir.join(path).is_file()).then(|| {
            Precondition(format!(
                "the ci command's script {script} is not in {}: {name} would fail to open it; check ci.command in rollout.yaml",
                self.dir.display()
            ))
        })
    }
}

fn executable(meta: &std::fs::Metadata) -> bool {
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

/// Programs whose first argument is the script they run.
const INTERPRETERS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "python", "python3", "node", "ruby", "perl"];

/// Read the command's output (stdout and stderr share the pipe, so its lines come in the order
/// they were written) into the tail, each line scrubbed of secrets before it is cut.
fn read_into(stream: PipeReader, tail: Tail) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            if matches!((&mut reader).take(LINE_BYTES).read_until(b'\n', &mut bytes), Ok(0) | Err(_)) {
                break;
            }
            if !bytes.ends_with(b"\n") {
                // The rest of an over-long line is read and dropped (an error ends the next read).
                let _ = reader.skip_until(b'\n');
            }
            let line = String::from_utf8_lossy(&bytes);
            let line = crate::redact::scrub(line.trim_end_matches(['\n', '\r']));
            let line = match line.char_indices().nth(LINE_CHARS) {
                Some((cut, _)) => format!("{}…", &line[..cut]),
                None => line.into_owned(),
            };
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    })
}

fn tail_text(tail: &Tail) -> String {
    tail.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect::<Vec<_>>().join("\n")
}

impl Pipelines for CommandPipeline {
    fn describe(&self) -> String {
        format!("command `{}`", self.shown())
    }

    fn check(&self, request: &PipelineRequest) -> Result<String> {
        self.program()?;
        if let Some(missing) = self.missing_script() {
            return Err(missing.into());
        }
        Ok(format!(
            "runs with ROLLOUT_PIPELINE={} ROLLOUT_REF={}",
            request.pipeline,
            request.git_ref.as_deref().unwrap_or("")
        ))
    }

    fn trigger(&self, request: &PipelineRequest) -> Result<RunHandle> {
        let mut command = Command::new(&self.argv[0]);
        command
            .args(&self.argv[1..])
            .current_dir(&self.dir)
            .env("ROLLOUT_PIPELINE", &request.pipeline)
            .env("ROLLOUT_REF", request.git_ref.as_deref().unwrap_or(""))
            .env("ROLLOUT_RUN_ID", &request.run_id)
            .process_group(0);
        let (output, input) = std::io::pipe().context("cannot make a pipe for the ci command's output")?;
        command.stdin(Stdio::null()).stdout(input.try_clone()?).stderr(input);
        for (name, value) in &request.inputs {
            command.env(crate::runbook::kinds::ci::input_variable(name), value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start the ci command `{}` in {}", self.shown(), self.dir.display()))?;
        // The command holds copies of the pipe's writing end: dropped, so that the reader sees
        // the end of the output once the program and what it started have closed theirs.
        drop(command);
        let tail: Tail = Arc::default();
        let reader = read_into(output, tail.clone());
        let pid = child.id();
        let id = pid.to_string();
        crate::interrupt::track_group(pid as i32);
        let exited = wait_in_thread(child);
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), Running { pid, exited, tail, reader });
        Ok(RunHandle { id, url: None })
    }

    fn poll(&self, run: &RunHandle) -> Result<RunState> {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let running = runs.get_mut(&run.id).ok_or_else(|| anyhow!("{}", Self::gone(&run.id)))?;
        let status = match running.exited.recv_timeout(POLL_WAIT) {
            Ok(status) => status?,
            Err(RecvTimeoutError::Timeout) => {
                let last = running.tail.lock().unwrap_or_else(|e| e.into_inner()).back().cloned();
                return Ok(RunState::Running(last));
            }
            Err(RecvTimeoutError::Disconnected) => return Err(anyhow!("lost the wait on the ci command {}", run.id)),
        };
        let Running { tail, reader, pid, .. } = runs.remove(&run.id).expect("present above");
        drop(runs);
        crate::interrupt::forget_group(pid as i32);
        // The command has ended; what it started in the background may keep its output open,
        // so its last lines are collected for a moment, not waited for.
        let until = Instant::now() + Duration::from_millis(300);
        while !reader.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let verdict = |conclusion: String| Verdict { conclusion, log_tail: tail_text(&tail), ..Verdict::default() };
        Ok(match status.code() {
            Some(0) => RunState::Succeeded(verdict("success".into())),
            Some(code) => RunState::Failed(verdict(format!("exit code {code}"))),
            None => RunState::Cancelled(verdict("killed by a signal".into())),
        })
    }

    fn stop_waiting(&self, run: &RunHandle) -> String {
        let Some(running) = self.runs.lock().unwrap_or_else(|e| e.into_inner()).remove(&run.id) else {
            return format!("the ci command (pid {}) had already ended", run.id);
        };
        let group = Pid::from_raw(running.pid as i32);
        crate::interrupt::forget_group(group.as_raw());
        let _ = killpg(group, Signal::SIGTERM);
        if running.exited.recv_timeout(Duration::from_secs(3)).is_ok() {
            return format!("the ci command (pid {}) was stopped", run.id);
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = running.exited.recv();
        format!("the ci command (pid {}) did not stop on SIGTERM and was killed", run.id)
    }

    /// Each poll waits for the end itself (`POLL_WAIT`): no pause between them.
    fn poll_interval(&self, _polls: u32) -> Duration {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(argv: &[&str], dir: &Path) -> CommandPipeline {
        CommandPipeline {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            dir: dir.to_path_buf(),
            runs: Mutex::default(),
        }
    }

    #[test]
    fn a_journaled_command_is_followed_by_the_process_that_started_it_and_gone_for_any_other() {
        let dir = tempfile::tempdir().unwrap();
        let started = pipeline(&["sh", "-c", "echo deployed"], dir.path());
        let request = PipelineRequest {
            pipeline: "deploy".into(),
            git_ref: None,
            inputs: Default::default(),
            run_id: "r1".into(),
            timeout: Duration::from_secs(10),
        };
        let run = started.trigger(&request).unwrap();
        let journaled = RunHandle::journaled(&run.id, run.url.as_deref().unwrap_or_default());
        let later = pipeline(&["sh", "-c", "echo deployed"], dir.path()).poll(&journaled).unwrap_err();
        assert!(format!("{later:#}").contains("not started by this rollout process"), "{later:#}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let verdict = loop {
            match started.poll(&journaled).unwrap() {
                RunState::Succeeded(verdict) => break verdict,
                RunState::Running(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(verdict.log_tail, "deployed");
    }

    #[test]
    fn an_over_long_line_is_scrubbed_then_cut_and_the_next_line_kept() {
        crate::redact::register("tail-secret-0123456789");
        let (output, mut input) = std::io::pipe().unwrap();
        let tail: Tail = Arc::default();
        let reader = read_into(output, tail.clone());
        let long = format!("{}tail-secret-0123456789{}\n", "a".repeat(LINE_CHARS - 5), "b".repeat(40_000));
        std::io::Write::write_all(&mut input, format!("{long}next line\r\n").as_bytes()).unwrap();
        drop(input);
        reader.join().unwrap();
        let lines: Vec<String> = tail.lock().unwrap().iter().cloned().collect();
        assert_eq!(lines, [format!("{}***bb…", "a".repeat(LINE_CHARS - 5)), "next line".to_string()]);
    }

    #[test]
    fn a_script_is_the_first_path_like_argument_after_an_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("deploy.sh"), "").unwrap();
        let missing = |argv: &[&str]| pipeline(argv, dir.path()).missing_script().is_some();
        for argv in [&["sh", "nope.sh"][..], &["bash", "-x", "ci/deploy"], &["/usr/bin/python3", "-u", "nope.py"]] {
            assert!(missing(argv), "{argv:?}");
        }
        for argv in [
            &["sh", "deploy.sh"][..],
            &["sh", "-c", "./nope.sh && echo done"],
            &["bash", "-ec", "nope.sh"],
            &["python3", "-m", "nope.py"],
            &["perl", "-e", "print 'x.pl'"],
            &["make", "nope.mk"],
            &["sh", "deploy"],
        ] {
            assert!(!missing(argv), "{argv:?}");
        }
    }
}
