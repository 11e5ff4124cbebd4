//! Runbooks: the YAML model, loading with locations, validation, typed inputs and templates.
//! A loaded runbook has passed every check that needs no service.

pub mod inputs;
pub mod kinds;
pub mod resolve;
pub mod shipped;
pub mod template;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};

mod severity;
use crate::duration;
use crate::yaml::{Diagnostic, Diagnostics, Source};
pub use kinds::{CiSpec, FlagSpec, GateSpec, ManualSpec, NotifySpec, RevertSpec, Service, StepKind, StepKindSpec};
pub use severity::Severity;

/// `runbooks/<name>.yaml`; read with its steps as written (`S` = the private `StepYaml`),
/// then checked, and kept with each step's one kind (`S` = [`StepSpec`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct Runbook<S = StepSpec> {
    pub version: u32,
    #[serde(default)]
    pub severity: Option<Severity>,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub inputs: IndexMap<String, InputSpec>,
    /// When the steps that only reduce exposure may run: before the rest is checked (the
    /// default), or only once every step has been.
    #[serde(default)]
    pub preflight: PreflightOrder,
    /// Every step that changes something needs this approval (a step's own `approval` wins).
    #[serde(default)]
    pub approval: Option<Approval>,
    #[serde(deserialize_with = "crate::yaml::every")]
    pub steps: Vec<S>,
}

/// A second engineer's approval, needed before a step acts (on a shared state backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// How many other engineers must approve.
    #[serde(default = "one")]
    pub min: u32,
    /// Whether the engineer running it may approve it too.
    #[serde(default)]
    pub allow_self: bool,
}

fn one() -> u32 {
    1
}

/// The order of the preflight and the first steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreflightOrder {
    /// The leading steps that only reduce exposure (flag steps with `direction: down`) are
    /// checked first and may run while the rest of the preflight goes on in the background.
    #[default]
    MitigationFirst,
    /// Every step is checked before the first one runs.
    AllFirst,
}

impl<S> Runbook<S> {
    /// The same runbook with each step converted.
    fn map_steps<T>(self, convert: impl FnMut(S) -> T) -> Runbook<T> {
        let Runbook { version, severity, title, description, inputs, preflight, approval, steps } = self;
        let steps = steps.into_iter().map(convert).collect();
        Runbook { version, severity, title, description, inputs, preflight, approval, steps }
    }
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

/// A step as written: serde cannot combine `flatten` with `deny_unknown_fields`, so the kinds
/// are Options here (boxed: a step holds one), and [`StepYaml::split`] turns them into one
/// [`StepKindSpec`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepYaml {
    id: String,
    name: String,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    retries: u32,
    #[serde(default, deserialize_with = "duration::step_timeout")]
    timeout: Option<Duration>,
    #[serde(default)]
    on_failure: OnFailure,
    #[serde(default)]
    approval: Option<Approval>,
    #[serde(default)]
    flag: Option<Box<FlagSpec>>,
    #[serde(default)]
    revert: Option<Box<RevertSpec>>,
    #[serde(default)]
    ci: Option<Box<CiSpec>>,
    #[serde(default)]
    gate: Option<Box<GateSpec>>,
    #[serde(default)]
    manual: Option<Box<ManualSpec>>,
    #[serde(default)]
    notify: Option<Box<NotifySpec>>,
}

impl StepYaml {
    /// The common fields, and the one kind (or why there is not exactly one).
    fn split(self) -> DraftStep {
        let StepYaml {
            id,
            name,
            optional,
            retries,
            timeout,
            on_failure,
            approval,
            flag,
            revert,
            ci,
            gate,
            manual,
            notify,
        } = self;
        let mut kinds: Vec<StepKindSpec> = [
            flag.map(|spec| StepKindSpec::Flag(*spec)),
            revert.map(|spec| StepKindSpec::Revert(*spec)),
            ci.map(|spec| StepKindSpec::Ci(*spec)),
            gate.map(|spec| StepKindSpec::Gate(*spec)),
            manual.map(|spec| StepKindSpec::Manual(*spec)),
            notify.map(|spec| StepKindSpec::Notify(*spec)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let common = StepCommon { id, name, optional, retries, timeout, on_failure, approval };
        let kind = match kinds.len() {
            1 => Ok(kinds.remove(0)),
            0 => Err(kind_problem(&common, "none")),
            _ => Err(kind_problem(&common, &kinds.iter().map(|k| k.kind().as_str()).collect::<Vec<_>>().join(" and "))),
        };
        DraftStep { common, kind }
    }
}

fn kind_problem(common: &StepCommon, found: &str) -> String {
    let names = StepKind::ALL.map(StepKind::as_str).join(", ");
    format!("a step needs exactly one of {names}; step `{}` has {found}", crate::echo::clip(&common.id))
}

/// A step before validation: its kind is missing or ambiguous when `kind` is an error.
#[derive(Debug)]
pub(in crate::runbook) struct DraftStep {
    pub common: StepCommon,
    pub kind: Result<StepKindSpec, String>,
}

/// What every step has, whatever its kind.
#[derive(Debug, Clone)]
pub struct StepCommon {
    pub id: String,
    pub name: String,
    pub optional: bool,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub on_failure: OnFailure,
    /// The step's own approval, if it says.
    pub approval: Option<Approval>,
}

/// A validated step: the common fields and its one kind.
#[derive(Debug, Clone)]
pub struct StepSpec {
    pub common: StepCommon,
    pub kind: StepKindSpec,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    Abort,
    Continue,
}

impl StepSpec {
    pub fn kind(&self) -> StepKind {
        self.kind.kind()
    }

    /// The approval this step needs: its own, else the runbook's for a step that changes
    /// something (a flag, a revert, a pipeline run).
    pub fn approval(&self, runbook: Option<Approval>) -> Option<Approval> {
        let changes = matches!(self.kind(), StepKind::Flag | StepKind::Revert | StepKind::Ci);
        self.common.approval.or(runbook.filter(|_| changes))
    }

    /// It can only reduce exposure: a flag step with `direction: down` (never more users).
    pub fn only_reduces_exposure(&self) -> bool {
        matches!(&self.kind, StepKindSpec::Flag(flag) if flag.direction == Some(kinds::flag::Direction::Down) && flag.expect.is_none())
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
        let draft = source.parse::<Runbook<StepYaml>>()?.map_steps(StepYaml::split);
        let name = source.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let problems = validate::runbook(&source, &name, &draft);
        if !problems.is_empty() {
            return Err(Diagnostics(problems));
        }
        let runbook = draft.map_steps(|DraftStep { common, kind }| StepSpec { common, kind: kind.expect("validated") });
        Ok(LoadedRunbook { name, source, runbook })
    }

    pub fn load(path: &Path) -> Result<LoadedRunbook, Diagnostics> {
        let source = Source::read(path).map_err(|d| Diagnostics(vec![d]))?;
        Self::from_source(source)
    }

    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.runbook.steps.iter().position(|s| s.common.id == id)
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
