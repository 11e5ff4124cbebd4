//! One run per runbook at a time: an OS lock on `<state dir>/locks/<runbook>.lock`, which
//! names its holder (user, host, pid, time, run) so that the refused operator knows whom to ask.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ExitCode};

#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    user: String,
    host: String,
    pid: u32,
    started: String,
    run_id: String,
}

/// Held for the length of a run; released (and emptied) when dropped.
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

impl RunLock {
    pub fn acquire(state_dir: &Path, runbook: &str, run_id: &str) -> Result<RunLock, Error> {
        let dir = state_dir.join("locks");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the lock folder {}", dir.display()))
            .map_err(Error::from)?;
        let path = dir.join(format!("{runbook}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock {}", path.display()))
            .map_err(Error::from)?;
        if file.try_lock().is_err() {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = serde_json::from_str::<Holder>(&text)
                .map(|h| format!("run {} by {}@{} (pid {}) since {}", h.run_id, h.user, h.host, h.pid, h.started))
                .unwrap_or_else(|_| "another rollout process".into());
            return Err(Error::new(ExitCode::Locked, anyhow!("runbook {runbook} is locked by {holder}"))
                .with_hint(format!("wait for that run to finish, or ask its holder; the lock is {}", path.display())));
        }
        let holder = Holder {
            user: std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into()),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            started: jiff::Timestamp::now().to_string(),
            run_id: run_id.to_string(),
        };
        let text = serde_json::to_string(&holder).unwrap_or_default();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write the lock {}", path.display()))
            .map_err(Error::from)?;
        Ok(RunLock { file })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}
