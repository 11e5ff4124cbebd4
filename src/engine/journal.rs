//! The journal: every event of a run appended to `<state dir>/runs/<run_id>.jsonl`
//! and fsynced before the run goes on, so a crash or Ctrl-C leaves an exact record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where journals and locks live: `$ROLLOUT_STATE_DIR`, else the user's state folder.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROLLOUT_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|home| home.join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("rollout")
}

pub fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Create the journal of a new run; refuses to reuse an existing file.
    pub fn create(state_dir: &Path, run_id: &str) -> Result<Journal> {
        let dir = runs_dir(state_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the journal folder {}", dir.display()))?;
        let path = dir.join(format!("{run_id}.jsonl"));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create the journal {}", path.display()))?;
        File::open(&dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))?;
        Ok(Journal { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one line and make it durable before returning.
    pub fn append(&self, line: &str) -> Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        (&self.file)
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("cannot write the journal {}", self.path.display()))
    }
}
