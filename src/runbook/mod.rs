//! Runbooks: the YAML model, loading with locations, validation, typed inputs and templates.
//! A loaded runbook has passed every check that needs no service.

pub mod duration;
pub mod inputs;
pub mod resolve;
pub mod shipped;
pub mod template;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};

use crate::cli::Severity;
use crate::yaml::{Diagnostic, Diagnostics, Source};

/// `runbooks/<name>.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    pub version: u32,
    #[serde(default)]
    pub severity: Option<Severity>,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub inputs: IndexMap<String, InputSpec>,
    #[serde(deserialize_with = "crate::yaml::every")]
    pub steps: Vec<StepSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: InputType,
    #[serde(default)]
    pub default: Option<Text>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    #[default]
    String,
    Integer,
    Percent,
    Commit,
    Boolean,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Percent => "percent",
            InputType::Commit => "commit",
            InputType::Boolean => "boolean",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub retries: u32,
    #[serde(default, deserialize_with = "duration::step_timeout")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[serde(default)]
    pub flag: Option<FlagSpec>,
    #[serde(default)]
    pub revert: Option<RevertSpec>,
    #[serde(default)]
    pub ci: Option<CiSpec>,
    #[serde(default)]
    pub manual: Option<ManualSpec>,
    #[serde(default)]
    pub notify: Option<NotifySpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    Abort,
    Continue,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSpec {
    pub name: Text,
    #[serde(default)]
    pub state: Option<Text>,
    #[serde(default)]
    pub percent: Option<Text>,
    /// `down` never gives more users the feature, `up` never fewer.
    #[serde(default)]
    pub direction: Option<crate::flags::Direction>,
    /// Only check, never write: the feature must be `on` for someone, or `off`.
    #[serde(default)]
    pub expect: Option<Text>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevertSpec {
    /// One commit, or a range `A..B`.
    #[serde(default)]
    pub commit: Option<Text>,
    /// Several commits (or ranges); reverted newest first, like `git revert`.
    #[serde(default)]
    pub commits: Option<Vec<Text>>,
    /// One combined revert commit instead of one per commit.
    #[serde(default)]
    pub squash: bool,
    #[serde(default)]
    pub mainline: Option<Text>,
    #[serde(default = "yes")]
    pub push: bool,
    #[serde(default)]
    pub branch: Option<Text>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiSpec {
    pub pipeline: Text,
    #[serde(rename = "ref", default)]
    pub git_ref: Option<Text>,
    #[serde(default)]
    pub inputs: IndexMap<String, Text>,
    #[serde(default = "yes")]
    pub wait: bool,
    #[serde(default, deserialize_with = "duration::step_timeout")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualSpec {
    pub instructions: Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    pub message: Text,
    /// A failed post fails the step (by default it only warns).
    #[serde(default)]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// The kinds of step, each with the outputs later steps may reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Flag,
    Revert,
    Ci,
    Manual,
    Notify,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Flag => "flag",
            StepKind::Revert => "revert",
            StepKind::Ci => "ci",
            StepKind::Manual => "manual",
            StepKind::Notify => "notify",
        }
    }

    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            StepKind::Flag => &["before", "after", "changed"],
            StepKind::Revert => &["commit", "commits", "reverted", "remote", "branch", "previous"],
            StepKind::Ci => &["run_id", "url", "conclusion", "commit", "log_tail"],
            StepKind::Manual => &[],
            StepKind::Notify => &["delivered"],
        }
    }
}

impl StepSpec {
    /// The kinds this step declares; validation insists on exactly one.
    pub fn kinds(&self) -> Vec<StepKind> {
        let mut kinds = Vec::new();
        if self.flag.is_some() {
            kinds.push(StepKind::Flag);
        }
        if self.revert.is_some() {
            kinds.push(StepKind::Revert);
        }
        if self.ci.is_some() {
            kinds.push(StepKind::Ci);
        }
        if self.manual.is_some() {
            kinds.push(StepKind::Manual);
        }
        if self.notify.is_some() {
            kinds.push(StepKind::Notify);
        }
        kinds
    }

    /// The step's kind (validated runbooks have exactly one).
    pub fn kind(&self) -> StepKind {
        self.kinds().first().copied().unwrap_or(StepKind::Manual)
    }
}

/// A YAML scalar kept as its text: `5`, `true` and `"{{ inputs.x }}"` all arrive as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    /// The scalar's source text, never YAML's reading of it: `0x10` stays `0x10` (not 16),
    /// so that a value is checked as written, like the same value given with `--var`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// A runbook that parsed and passed validation, with its source for later diagnostics.
#[derive(Debug, Clone)]
pub struct LoadedRunbook {
    pub name: String,
    pub source: Source,
    pub runbook: Runbook,
}

impl LoadedRunbook {
    pub fn from_source(source: Source) -> Result<LoadedRunbook, Diagnostics> {
        let runbook: Runbook = source.parse()?;
        let name = source.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let loaded = LoadedRunbook { name, source, runbook };
        let problems = validate::runbook(&loaded);
        if problems.is_empty() { Ok(loaded) } else { Err(Diagnostics(problems)) }
    }

    pub fn load(path: &Path) -> Result<LoadedRunbook, Diagnostics> {
        let source = Source::read(path).map_err(|d| Diagnostics(vec![d]))?;
        Self::from_source(source)
    }

    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.runbook.steps.iter().position(|s| s.id == id)
    }
}

/// The `.yaml`/`.yml` files of a runbooks folder, sorted by name.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

/// Every runbook in a folder; the diagnostics of those that fail to load.
pub fn load_all(dir: &Path) -> Result<(Vec<LoadedRunbook>, Vec<Diagnostic>), std::io::Error> {
    let mut loaded = Vec::new();
    let mut problems = Vec::new();
    for file in files_in(dir)? {
        match LoadedRunbook::load(&file) {
            Ok(runbook) => loaded.push(runbook),
            Err(Diagnostics(diagnostics)) => problems.extend(diagnostics),
        }
    }
    Ok((loaded, problems))
}
