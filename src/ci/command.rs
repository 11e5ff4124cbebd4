//! The `command` CI provider: runs the configured argv (no shell) in the config's folder with
//! ROLLOUT_PIPELINE, ROLLOUT_REF and ROLLOUT_INPUT_<NAME> set; exit status 0 means success.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{PipelineRequest, Pipelines, RunHandle, RunState, Verdict};
use crate::config::CiConfig;
use crate::error::Precondition;

const TAIL_LINES: usize = 20;

type Tail = Arc<Mutex<VecDeque<String>>>;

struct Running {
    child: Child,
    tail: Tail,
    readers: Vec<JoinHandle<()>>,
}

pub struct CommandPipeline {
    argv: Vec<String>,
    dir: PathBuf,
    runs: Mutex<HashMap<String, Running>>,
}

impl CommandPipeline {
    pub fn new(config: &CiConfig, config_dir: &Path) -> Result<CommandPipeline> {
        let argv = config
            .command
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| anyhow!("ci provider command needs `command`"))?;
        Ok(CommandPipeline { argv, dir: config_dir.to_path_buf(), runs: Mutex::new(HashMap::new()) })
    }

    fn shown(&self) -> String {
        self.argv.join(" ")
    }

    /// The program to run, found the way the OS will find it.
    fn program(&self) -> Option<PathBuf> {
        let program = Path::new(&self.argv[0]);
        if program.components().count() > 1 {
            let path = self.dir.join(program);
            return path.is_file().then_some(path);
        }
        std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|p| p.is_file())
    }
}

fn read_into(stream: impl Read + Send + 'static, tail: Tail) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
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
        if self.program().is_none() {
            return Err(Precondition(format!(
                "the ci command `{}` is not found (looked in {} and PATH); check ci.command in rollout.yaml",
                self.argv[0],
                self.dir.display()
            ))
            .into());
        }
        Ok(format!(
            "runs `{}` with ROLLOUT_PIPELINE={} ROLLOUT_REF={}",
            self.shown(),
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
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (name, value) in &request.inputs {
            command.env(format!("ROLLOUT_INPUT_{}", name.to_ascii_uppercase().replace('-', "_")), value);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start the ci command `{}` in {}", self.shown(), self.dir.display()))?;
        let tail: Tail = Arc::default();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(read_into(out, tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(read_into(err, tail.clone()));
        }
        let id = child.id().to_string();
        crate::interrupt::track_group(child.id() as i32);
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), Running { child, tail, readers });
        Ok(RunHandle { id, url: None })
    }

    fn poll(&self, run: &RunHandle) -> Result<RunState> {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let running = runs
            .get_mut(&run.id)
            .ok_or_else(|| anyhow!("no ci command with pid {} was started by this run", run.id))?;
        let Some(status) = running.child.try_wait()? else {
            let last = running.tail.lock().unwrap_or_else(|e| e.into_inner()).back().cloned();
            return Ok(RunState::Running(last));
        };
        let Running { tail, readers, child } = runs.remove(&run.id).expect("present above");
        drop(runs);
        crate::interrupt::forget_group(child.id() as i32);
        // The command has ended; what it started in the background may keep its output open,
        // so its last lines are collected for a moment, not waited for.
        let until = Instant::now() + Duration::from_millis(300);
        while readers.iter().any(|r| !r.is_finished()) && Instant::now() < until {
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
        let Some(mut running) = self.runs.lock().unwrap_or_else(|e| e.into_inner()).remove(&run.id) else {
            return format!("the ci command (pid {}) had already ended", run.id);
        };
        let group = Pid::from_raw(running.child.id() as i32);
        crate::interrupt::forget_group(group.as_raw());
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = running.child.try_wait() {
                return format!("the ci command (pid {}) was stopped", run.id);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = running.child.wait();
        format!("the ci command (pid {}) did not stop on SIGTERM and was killed", run.id)
    }

    fn poll_interval(&self, _polls: u32) -> Duration {
        Duration::from_millis(100)
    }
}
