//! Where journals and locks live: the state folder's files always, and with `state: { backend:
//! postgres }` a database the team shares too, which the local journal is copied to, in order.

pub mod postgres;

use std::cell::{Cell, RefCell};
use std::path::Path;

use anyhow::{Context, anyhow};

use crate::config::{Config, StateConfig};
use crate::engine::journal;
use crate::error::Error;
use crate::ui::Ui;
use postgres::{Events, Line, Target};

/// The shared backend a config names, connected and at this rollout's schema; None for local.
pub fn shared(config: &Config) -> Result<Option<Target>, Error> {
    let StateConfig::Postgres { url_env, schema, .. } = &config.state else { return Ok(None) };
    Ok(Some(Target::from_env(url_env, schema)?))
}

/// A connection to `target`, its schema created or brought up to date first.
pub fn connect(target: &Target) -> Result<::postgres::Client, Error> {
    let mut client = target.connect()?;
    postgres::migrate(target, &mut client)?;
    Ok(client)
}

/// A run's journal on the shared backend: each line the local journal took, sent in order;
/// what could not be sent yet waits for the next try.
pub struct SharedJournal {
    events: Events,
    run_id: String,
    host: String,
    pending: RefCell<Vec<Line>>,
    /// Whether the operator was told that the shared journal is behind.
    warned: Cell<bool>,
}

impl std::fmt::Debug for SharedJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedJournal {{ {:?}, run {} }}", self.events.target, self.run_id)
    }
}

impl SharedJournal {
    pub fn new(target: &Target, client: ::postgres::Client, run_id: &str, host: &str) -> SharedJournal {
        SharedJournal {
            events: Events::new(target.clone(), client),
            run_id: run_id.to_string(),
            host: host.to_string(),
            pending: RefCell::default(),
            warned: Cell::new(false),
        }
    }

    /// Send the line at `seq` (and any still waiting); a failure is told once and kept for later.
    pub fn push(&self, ui: &Ui, seq: i32, text: &str) {
        self.pending.borrow_mut().push(Line { seq, text: text.to_string() });
        if let Err(error) = self.flush()
            && !self.warned.replace(true)
        {
            ui.warn(format!(
                "{error:#}: the shared journal is behind; this run's events are in its local journal, and go to the shared one before the next step"
            ));
        }
    }

    /// Send what waits; Ok once the shared journal has every line so far.
    pub fn flush(&self) -> Result<(), Error> {
        let lines = self.pending.borrow().clone();
        if lines.is_empty() {
            return Ok(());
        }
        self.events.append(&self.run_id, &self.host, &lines)?;
        self.pending.borrow_mut().drain(..lines.len());
        self.warned.set(false);
        Ok(())
    }

    /// Queue what the local journal at `path` has and the shared one lacks, and send it: a run
    /// taken up again (here, or elsewhere after its host went) starts complete. Refused when
    /// the two differ: another host took the run up, and this machine's copy is not its journal.
    pub fn send_missing(&self, path: &Path) -> Result<(), Error> {
        let mut client = connect(&self.events.target)?;
        let Some(lines) = missing(&self.events.target, &mut client, path, &self.run_id)? else {
            return Err(anyhow::anyhow!(
                "run {}: this machine's journal ({}) differs from the shared one: another host took the run up; `rollout runs {0}` shows it",
                self.run_id,
                path.display()
            )
            .into());
        };
        self.pending.borrow_mut().extend(lines);
        self.flush()
    }

    /// The decisions on plan `digest` of `run_id`'s `step`.
    pub fn decisions(&self, run_id: &str, step: &str, digest: &str) -> Result<Vec<postgres::Decision>, Error> {
        self.events.with(|target, client| postgres::decisions(target, client, run_id, step, digest))
    }

    /// How many lines the shared journal still lacks.
    pub fn behind(&self) -> usize {
        self.pending.borrow().len()
    }

    pub fn shown(&self) -> String {
        format!("{}, schema {}", self.events.target.shown, self.events.target.schema)
    }
}

/// Copy into the state folder what the shared journal has and this machine's journals lack
/// (other hosts' runs, and what they added to runs started here): returns the events copied.
pub fn download(target: &Target, client: &mut ::postgres::Client, state_dir: &Path) -> Result<usize, Error> {
    let dir = journal::runs_dir(state_dir);
    journal::create_private_dir(&dir)?;
    let mut copied = 0;
    for (run_id, count) in postgres::runs(target, client)? {
        if !is_run_id(&run_id) {
            continue;
        }
        let path = dir.join(format!("{run_id}.jsonl"));
        let have = journal::places(&std::fs::read(&path).unwrap_or_default());
        if have >= count {
            continue;
        }
        let lines = postgres::lines(target, client, &run_id, have)?;
        let mut text = Vec::new();
        if std::fs::read(&path).unwrap_or_default().last().is_some_and(|b| *b != b'\n') {
            text.push(b'\n');
        }
        let mut seq = have;
        for line in &lines {
            // A place the shared journal lacks (a line torn here) stays an empty line.
            while seq < line.seq {
                text.push(b'\n');
                seq += 1;
            }
            text.extend_from_slice(line.text.as_bytes());
            text.push(b'\n');
            seq += 1;
        }
        append_private(&path, &text)?;
        copied += lines.len();
    }
    Ok(copied)
}

/// What `upload` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Uploaded {
    pub events: usize,
    pub runs: usize,
    /// Runs whose local events differ from the shared journal's at the same place (another
    /// host took the run up meanwhile): those are left as they are.
    pub differing: Vec<String>,
}

/// Send the shared journal every event of this machine's journals that it lacks.
pub fn upload(target: &Target, client: &mut ::postgres::Client, state_dir: &Path) -> Result<Uploaded, Error> {
    let host = crate::engine::lock::host();
    let mut done = Uploaded::default();
    let Ok(entries) = std::fs::read_dir(journal::runs_dir(state_dir)) else { return Ok(done) };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let Some(run_id) =
            path.file_stem().and_then(|s| s.to_str()).filter(|_| path.extension().is_some_and(|e| e == "jsonl"))
        else {
            continue;
        };
        match missing(target, client, &path, run_id)? {
            None => done.differing.push(run_id.to_string()),
            Some(lines) if lines.is_empty() => {}
            Some(lines) => {
                postgres::append(target, client, run_id, &host, &lines)?;
                done.events += lines.len();
                done.runs += 1;
            }
        }
    }
    Ok(done)
}

/// Send the shared journal what the journal at `path` (run `run_id`) has and it lacks.
pub fn send_run(target: &Target, path: &Path, run_id: &str) -> Result<(), Error> {
    let mut client = connect(target)?;
    if let Some(lines) = missing(target, &mut client, path, run_id)?.filter(|l| !l.is_empty()) {
        postgres::append(target, &mut client, run_id, &crate::engine::lock::host(), &lines)?;
    }
    Ok(())
}

/// The whole events of the journal at `path` that the shared journal lacks; None when an
/// event it has differs from the one here at the same place (another host took the run up).
fn missing(
    target: &Target,
    client: &mut ::postgres::Client,
    path: &Path,
    run_id: &str,
) -> Result<Option<Vec<Line>>, Error> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let shared: std::collections::HashMap<i32, String> =
        postgres::lines(target, client, run_id, 0)?.into_iter().map(|l| (l.seq, l.text)).collect();
    let mut lacking = Vec::new();
    for (seq, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let seq = seq as i32;
        // Only whole events: a torn or garbled line is not sent.
        let Ok(text) = std::str::from_utf8(line) else { continue };
        if serde_json::from_str::<serde_json::Value>(text).is_err() {
            continue;
        }
        match shared.get(&seq) {
            Some(theirs) if theirs != text => return Ok(None),
            Some(_) => {}
            None => lacking.push(Line { seq, text: text.to_string() }),
        }
    }
    Ok(Some(lacking))
}

/// The shared journal's run whose id is `run`, or starts with it.
pub fn find_run(target: &Target, client: &mut ::postgres::Client, run: &str) -> Result<String, Error> {
    let ids: Vec<String> = postgres::runs(target, client)?.into_iter().map(|(id, _)| id).collect();
    if ids.iter().any(|id| id == run) {
        return Ok(run.to_string());
    }
    let matching: Vec<&String> = ids.iter().filter(|id| id.starts_with(run)).collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::invalid(anyhow!(
            "the shared journal has no run {}: `rollout runs` lists them",
            crate::untrusted::one_line(&crate::echo::clip(run))
        ))),
        many => Err(Error::invalid(anyhow!(
            "{} runs start with `{}`: give more of the id",
            many.len(),
            crate::untrusted::one_line(&crate::echo::clip(run))
        ))),
    }
}

/// A run id as rollout makes them: nothing that could name another file.
fn is_run_id(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('.') && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

fn append_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.append(true);
    let mut file = match journal::create_private_file(path, &mut options.clone()) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            options.open(path).with_context(|| format!("cannot open {}", path.display()))?
        }
        Err(e) => return Err(anyhow::Error::from(e).context(format!("cannot create {}", path.display())).into()),
    };
    file.write_all(bytes)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Before a command reads journals: bring this machine's copy up to date from the shared
/// journal of the config found here, if it has one. Shown, never fatal: what is here is read.
pub fn refresh(ui: &Ui, config: Option<&Path>, cwd: &Path) {
    let Some(path) = Config::find(config, cwd) else { return };
    let Ok(config) = Config::load(&path) else { return };
    let refreshed = shared(&config).and_then(|target| {
        let Some(target) = target else { return Ok(None) };
        let mut client = connect(&target)?;
        download(&target, &mut client, &journal::state_dir()).map(|n| Some((target, n)))
    });
    if let Err(error) = refreshed {
        ui.warn(format!("{:#}: showing this machine's journals only", error.error));
    }
}
