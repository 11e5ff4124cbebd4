//! One run per runbook of a config at a time: an OS lock on `<state dir>/locks/<runbook>-<key>.lock`,
//! which names its holder (user, host, pid, time, run) so that the refused operator knows whom to ask.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use nix::fcntl::OFlag;
use nix::unistd::{Uid, User};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::journal;
use crate::error::{Error, ExitCode};
use crate::runbook::LoadedRunbook;

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

/// The lock of `runbook` run with the config at `config`: the runbook's name to read, and a
/// key made of both canonical paths, so that another config's (or folder's) runbook of the
/// same name is another lock.
pub fn path(state_dir: &Path, config: &Path, runbook: &LoadedRunbook) -> PathBuf {
    let canonical = |p: &Path| std::fs::canonicalize(p).or_else(|_| std::path::absolute(p)).unwrap_or(p.into());
    let mut key = Sha256::new();
    key.update(canonical(config).as_os_str().as_encoded_bytes());
    key.update(b"\0");
    key.update(canonical(&runbook.source.path).as_os_str().as_encoded_bytes());
    let key: String = key.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    let name: String = runbook.name.chars().take(64).collect();
    state_dir.join("locks").join(format!("{name}-{key}.lock"))
}

/// Who runs this: `$USER`, `$LOGNAME`, else the OS account.
pub(super) fn user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|u| !u.is_empty()))
        .or_else(|| User::from_uid(Uid::current()).ok().flatten().map(|u| u.name))
        .unwrap_or_else(|| format!("uid {}", Uid::current()))
}

/// The machine this runs on.
pub(super) fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Open the lock without following a symbolic link, creating it (0600) if it is not there;
/// `true` when this call created it. A FIFO planted there cannot block the open.
fn open(path: &Path) -> anyhow::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits());
    match journal::create_private_file(path, &mut options.clone()) {
        Ok(file) => return Ok((file, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create the lock {}", path.display())),
    }
    let file = options.open(path).map_err(|e| match e.raw_os_error() {
        Some(code) if code == nix::errno::Errno::ELOOP as i32 => {
            anyhow!("the lock {} is a symbolic link: rollout does not follow it", path.display())
        }
        _ => anyhow!(e).context(format!("cannot open the lock {}", path.display())),
    })?;
    if !file.metadata().with_context(|| format!("cannot read the lock {}", path.display()))?.is_file() {
        bail!("the lock {} is not a regular file", path.display());
    }
    Ok((file, false))
}

/// Why the lock was not taken: held by another run (exit 5, naming it), or the filesystem
/// could not lock at all (its cause, exit 1).
fn refusal(error: TryLockError, file: &mut File, path: &Path, runbook: &str) -> Error {
    match error {
        TryLockError::WouldBlock => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = serde_json::from_str::<Holder>(&text)
                .map(|h| format!("run {} by {}@{} (pid {}) since {}", h.run_id, h.user, h.host, h.pid, h.started))
                .unwrap_or_else(|_| "another rollout process".into());
            Error::new(ExitCode::Locked, anyhow!("runbook {runbook} is locked by {holder}"))
                .with_hint(format!("wait for that run to finish, or ask its holder; the lock is {}", path.display()))
        }
        TryLockError::Error(cause) => Error::from(anyhow!("cannot lock {}: {cause}", path.display())).with_hint(
            "the state folder must be on a filesystem with file locks: set ROLLOUT_STATE_DIR to a local folder",
        ),
    }
}

/// Rollout writes nothing but holders into its locks: anything else there is left alone.
fn check_is_a_lock(file: &mut File, path: &Path) -> anyhow::Result<()> {
    let mut text = Vec::new();
    file.read_to_end(&mut text).with_context(|| format!("cannot read the lock {}", path.display()))?;
    if !text.trim_ascii().is_empty() && serde_json::from_slice::<Holder>(&text).is_err() {
        bail!(
            "{} is not a rollout lock (it holds something else): left as it is; move it away if it is not needed",
            path.display()
        );
    }
    Ok(())
}

impl RunLock {
    pub fn acquire(state_dir: &Path, config: &Path, runbook: &LoadedRunbook, run_id: &str) -> Result<RunLock, Error> {
        let path = path(state_dir, config, runbook);
        journal::create_private_dir(path.parent().unwrap_or(state_dir))?;
        let (mut file, created) = open(&path)?;
        if let Err(error) = file.try_lock() {
            return Err(refusal(error, &mut file, &path, &runbook.name));
        }
        if !created {
            check_is_a_lock(&mut file, &path)?;
        }
        let holder = Holder {
            user: user(),
            host: host(),
            pid: std::process::id(),
            started: jiff::Timestamp::now().to_string(),
            run_id: run_id.to_string(),
        };
        let text = serde_json::to_string(&holder).unwrap_or_default();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write the lock {}", path.display()))?;
        Ok(RunLock { file })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filesystem_that_cannot_lock_is_an_error_with_its_cause_not_a_held_lock() {
        let mut file = tempfile::tempfile().unwrap();
        let cause = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOLCK as i32);
        let error = refusal(TryLockError::Error(cause), &mut file, Path::new("/state/locks/x.lock"), "x");
        assert_eq!(error.code, ExitCode::StepFailed);
        assert!(error.to_string().contains("cannot lock /state/locks/x.lock: No locks available"), "{error}");
        let held = refusal(TryLockError::WouldBlock, &mut file, Path::new("/state/locks/x.lock"), "x");
        assert_eq!(held.code, ExitCode::Locked);
    }
}
