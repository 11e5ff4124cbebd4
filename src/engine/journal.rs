//! The journal: every event of a run appended to `<state dir>/runs/<run_id>.jsonl` and fsynced
//! before the run goes on; the state folder's files are the user's alone (0600, folders 0700).

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::event::{EVENTS, Record};

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

/// The state folder of rehearsals, inside the real one: their journals stay after the sandbox
/// is gone, and `rollout runs` lists them as rehearsals.
pub fn rehearsals_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("rehearsals")
}

/// Create `dir` and any missing parents, each 0700 whatever the umask; folders that already
/// exist are left as they are.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).collect();
    for folder in missing.into_iter().rev() {
        match DirBuilder::new().mode(0o700).create(folder) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            created => created.and_then(|()| std::fs::set_permissions(folder, Permissions::from_mode(0o700))),
        }
        .with_context(|| format!("cannot create the folder {}", folder.display()))?;
    }
    Ok(())
}

/// Create a new file, 0600 whatever the umask; `Err` with `AlreadyExists` if anything is there.
pub fn create_private_file(path: &Path, options: &mut OpenOptions) -> std::io::Result<File> {
    let file = options.create_new(true).mode(0o600).open(path)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(file)
}

#[derive(Debug)]
pub struct Journal {
    /// None for a dry run whose state folder would not take a journal.
    file: Option<(PathBuf, File)>,
    /// Lines it holds: the next line's place (its `seq` in the shared journal).
    lines: std::cell::Cell<i32>,
}

impl Journal {
    /// Create the journal of a new run; refuses to reuse an existing file.
    pub fn create(state_dir: &Path, run_id: &str) -> Result<Journal> {
        let dir = runs_dir(state_dir);
        create_private_dir(&dir)?;
        let path = dir.join(format!("{run_id}.jsonl"));
        let file = create_private_file(&path, OpenOptions::new().append(true))
            .with_context(|| format!("cannot create the journal {}", path.display()))?;
        File::open(&dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))?;
        Ok(Journal { file: Some((path, file)), lines: Default::default() })
    }

    /// The journal of an earlier run, to go on appending to (`rollout resume`). A last line cut
    /// short by a crash is ended first, so that the next record starts a line of its own.
    pub fn reopen(state_dir: &Path, run_id: &str) -> Result<Journal> {
        let path = runs_dir(state_dir).join(format!("{run_id}.jsonl"));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .with_context(|| format!("cannot open the journal {}", path.display()))?;
        let bytes = std::fs::read(&path).unwrap_or_default();
        let torn = bytes.last().is_some_and(|b| *b != b'\n');
        let journal = Journal { file: Some((path, file)), lines: std::cell::Cell::new(places(&bytes)) };
        if torn {
            let (path, file) = journal.file.as_ref().expect("just opened");
            (&*file)
                .write_all(b"\n")
                .and_then(|()| file.sync_data())
                .with_context(|| format!("cannot write the journal {}", path.display()))?;
        }
        Ok(journal)
    }

    /// No journal: events go to the terminal (and `--json`) only. For dry runs, which change
    /// nothing and so may go on when the state folder is read-only.
    pub fn unwritten() -> Journal {
        Journal { file: None, lines: Default::default() }
    }

    /// Append one line and make it durable before returning; its place in the journal.
    pub fn append(&self, line: &str) -> Result<i32> {
        let seq = self.lines.get();
        let Some((path, file)) = &self.file else { return Ok(seq) };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        (&*file)
            .write_all(&bytes)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot write the journal {}", path.display()))?;
        self.lines.set(seq + 1);
        Ok(seq)
    }

    /// Its file; None when it is not written (a dry run's may not be).
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
    }
}

/// The journal's path, or that there is none.
impl fmt::Display for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some((path, _)) => write!(f, "{}", path.display()),
            None => f.write_str("none (not written: the state folder is not writable)"),
        }
    }
}

/// How many places a journal's bytes hold: its lines, a torn last one included (it has its
/// place, which the next line after it does not take).
pub fn places(bytes: &[u8]) -> i32 {
    let torn = bytes.last().is_some_and(|b| *b != b'\n');
    (bytes.iter().filter(|b| **b == b'\n').count() + usize::from(torn)) as i32
}

/// A journal as read back: its records, and what was skipped on the way.
#[derive(Debug, Default)]
pub struct Read {
    pub records: Vec<Record>,
    /// A line that is not JSON: the last one cut short by a crash, or one garbled.
    pub warnings: Vec<String>,
}

/// Read the journal at `path`. A line that is not JSON (the last one, cut short by a crash,
/// even inside a character), or a known event that does not read, is skipped with a warning;
/// an event this version does not know (a newer rollout's) is skipped silently.
pub fn read(path: &Path) -> Result<Read> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(read_bytes(&bytes, path))
}

/// `read` of a journal's bytes, `path` naming it in warnings.
pub fn read_bytes(bytes: &[u8], path: &Path) -> Read {
    let complete = bytes.ends_with(b"\n");
    let lines: Vec<(usize, &[u8])> = bytes.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()).collect();
    let last = lines.last().map(|(number, _)| *number);
    let mut read = Read::default();
    for (number, line) in lines {
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(value) => {
                let name = value["event"].as_str().unwrap_or_default().to_string();
                match serde_json::from_value::<Record>(value) {
                    Ok(record) => read.records.push(record),
                    // A known event that does not read is something lost, never silently.
                    Err(error) if EVENTS.contains(&name.as_str()) => read.warnings.push(format!(
                        "{}: line {} is a `{name}` event that does not read ({error}): skipped",
                        path.display(),
                        number + 1
                    )),
                    Err(_) => {}
                }
            }
            Err(_) if Some(number) == last && !complete => read.warnings.push(format!(
                "{}: its last line was cut short (the run stopped while writing it): skipped",
                path.display()
            )),
            Err(_) => read.warnings.push(format!("{}: line {} is not JSON: skipped", path.display(), number + 1)),
        }
    }
    read
}

/// A run's journal, real or rehearsal, with `rehearsal` telling which; `run` is its id, or the
/// start of one id. `None` when no journal matches; an `Err` when several do.
pub fn find(state_dir: &Path, run: &str) -> Result<Option<(PathBuf, bool)>> {
    if run.is_empty() || run.contains(['/', '\\']) || run.starts_with('.') {
        anyhow::bail!(
            "`{}` is not a run id: `rollout runs` lists them",
            crate::untrusted::one_line(&crate::echo::clip(run))
        );
    }
    let mut found = Vec::new();
    for (dir, rehearsal) in [(runs_dir(state_dir), false), (runs_dir(&rehearsals_dir(state_dir)), true)] {
        let exact = dir.join(format!("{run}.jsonl"));
        if std::fs::symlink_metadata(&exact).is_ok_and(|m| m.file_type().is_symlink()) {
            anyhow::bail!("{} is a symbolic link: rollout reads only journals it wrote", exact.display());
        }
        if exact.is_file() {
            return Ok(Some((exact, rehearsal)));
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
            if name.starts_with(run) && name.ends_with(".jsonl") && regular {
                found.push((path, rehearsal));
            }
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => {
            let mut ids: Vec<String> = found
                .iter()
                .filter_map(|(p, rehearsal)| {
                    let id = p.file_stem()?.to_string_lossy().into_owned();
                    Some(if *rehearsal { format!("{id} (rehearsal)") } else { id })
                })
                .collect();
            ids.sort();
            let more = if n > 10 { format!(", and {} more", n - 10) } else { String::new() };
            ids.truncate(10);
            anyhow::bail!(
                "{n} runs start with `{}`: {}{more}; give more of the id",
                crate::untrusted::one_line(&crate::echo::clip(run)),
                ids.join(", ")
            )
        }
    }
}
