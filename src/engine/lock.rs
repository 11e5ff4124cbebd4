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

/// Who holds a lock, as it names itself in the lock file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub started: String,
    pub run_id: String,
    /// Whether a process holds the OS lock now (read by `holders`, never written).
    #[serde(skip)]
    pub held: bool,
}

/// `run R by user@host (pid N) since T`, every part made printable (a lock file is text from
/// outside this process: another host's, in a shared state folder).
impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |text: &str| crate::untrusted::one_line(text).into_owned();
        write!(
            f,
            "run {} by {}@{} (pid {}) since {}",
            shown(&self.run_id),
            shown(&self.user),
            shown(&self.host),
            self.pid,
            shown(&self.started)
        )
    }
}

/// Whether the run a lock names is still going: the OS lock says, whatever its pid now is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// Its OS lock is held, by a process on this host.
    Running,
    /// Its OS lock is free: the run crashed (or was killed) without emptying its lock file.
    Gone,
    /// Its OS lock is held, by the run named on another host (a shared state folder).
    Elsewhere(String),
}

impl Holder {
    pub fn liveness(&self) -> Liveness {
        match (self.held, self.host == host()) {
            (false, _) => Liveness::Gone,
            (true, true) => Liveness::Running,
            (true, false) => Liveness::Elsewhere(self.host.clone()),
        }
    }
}

/// Whether a process holds the OS lock of `file`, found with a shared lock taken and given back
/// at once (a run starting meanwhile waits a moment for it: see `RunLock::acquire`).
fn is_held(file: &File) -> bool {
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

/// Every lock in the state folder that names a holder: a run releases its lock by emptying
/// it, so a holder named is a run going on (its OS lock held) or one that crashed.
pub fn holders(state_dir: &Path) -> Vec<(PathBuf, Holder)> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("locks")) else { return Vec::new() };
    let mut found = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        let Ok((mut file, _)) = open(&path) else { continue };
        let mut text = Vec::new();
        if file.read_to_end(&mut text).is_err() {
            continue;
        }
        if let Ok(mut holder) = serde_json::from_slice::<Holder>(&text) {
            holder.held = is_held(&file);
            found.push((path, holder));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Held for the length of a run; released (and emptied) when dropped.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    /// The holder the lock still named when it was taken: a run whose process is gone.
    pub taken_over: Option<Holder>,
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
pub fn user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|u| !u.is_empty()))
        .or_else(|| User::from_uid(Uid::current()).ok().flatten().map(|u| u.name))
        .unwrap_or_else(|| format!("uid {}", Uid::current()))
}

/// The machine this runs on.
pub fn host() -> String {
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
                .map(|h| h.to_string())
                .unwrap_or_else(|_| "another rollout process".into());
            Error::new(ExitCode::Locked, anyhow!("runbook {runbook} is locked by {holder}"))
                .with_hint(format!("wait for that run to finish, or ask its holder; the lock is {}", path.display()))
        }
        TryLockError::Error(cause) => Error::from(anyhow!("cannot lock {}: {cause}", path.display())).with_hint(
            "the state folder must be on a filesystem with file locks: set ROLLOUT_STATE_DIR to a local folder",
        ),
    }
}

/// Rollout writes nothing but holders into its locks: anything else there is left alone. The
/// holder a lock still names was a run that ended without releasing it.
fn left_behind(file: &mut File, path: &Path) -> anyhow::Result<Option<Holder>> {
    let mut text = Vec::new();
    file.read_to_end(&mut text).with_context(|| format!("cannot read the lock {}", path.display()))?;
    if text.trim_ascii().is_empty() {
        return Ok(None);
    }
    match serde_json::from_slice::<Holder>(&text) {
        Ok(holder) => Ok(Some(holder)),
        Err(_) => bail!(
            "{} is not a rollout lock (it holds something else): left as it is; move it away if it is not needed",
            path.display()
        ),
    }
}

impl RunLock {
    pub fn acquire(state_dir: &Path, config: &Path, runbook: &LoadedRunbook, run_id: &str) -> Result<RunLock, Error> {
        let path = path(state_dir, config, runbook);
        journal::create_private_dir(path.parent().unwrap_or(state_dir))?;
        let (mut file, created) = open(&path)?;
        // Someone looking at the lock (`rollout runs`) holds it shared for an instant: a run
        // waits that long before it is refused.
        let mut tries = 0;
        while let Err(error) = file.try_lock() {
            tries += 1;
            if tries == 5 || !matches!(error, TryLockError::WouldBlock) {
                return Err(refusal(error, &mut file, &path, &runbook.name));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let taken_over = if created { None } else { left_behind(&mut file, &path)? };
        let holder = Holder {
            user: user(),
            host: host(),
            pid: std::process::id(),
            started: jiff::Timestamp::now().to_string(),
            run_id: run_id.to_string(),
            held: true,
        };
        let text = serde_json::to_string(&holder).unwrap_or_default();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write the lock {}", path.display()))?;
        Ok(RunLock { file, taken_over })
    }
}

/// A runbook's lock taken by `rollout unlock`: held while the operator decides, so that no run
/// can take it meanwhile, and removed while still held.
#[derive(Debug)]
pub struct Unlocking {
    file: File,
    path: PathBuf,
    /// The holder the lock names: the run that left it.
    pub holder: Holder,
}

/// Take the lock at `path` to remove it: None when there is none or it names no holder; exit 5
/// when a process holds it (the run it names is going, here or on another host).
pub fn take_to_remove(path: &Path, runbook: &str) -> Result<Option<Unlocking>, Error> {
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let (mut file, _) = open(path)?;
    if let Err(error) = file.try_lock() {
        return Err(refusal(error, &mut file, path, runbook)
            .with_hint("unlock removes only a lock no process holds: wait for that run, or stop it first"));
    }
    let Some(holder) = left_behind(&mut file, path)? else { return Ok(None) };
    Ok(Some(Unlocking { file, path: path.to_path_buf(), holder }))
}

impl Unlocking {
    /// Remove the lock file, still holding its OS lock: the next run creates a new one.
    pub fn remove(self) -> Result<(), Error> {
        std::fs::remove_file(&self.path).with_context(|| format!("cannot remove the lock {}", self.path.display()))?;
        drop(self.file);
        Ok(())
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
