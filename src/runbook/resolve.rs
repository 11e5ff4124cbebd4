//! Turns a step's YAML into a concrete action: templates rendered with inputs and earlier
//! outputs, then typed (state, percent, mainline), so steps only see checked values.

use std::collections::HashMap;

use indexmap::IndexMap;

use super::kinds::ci::CiRequest;
use super::kinds::flag::{FlagChange, FlagRestore};
use super::kinds::gate::GateRequest;
use super::kinds::manual::ManualRequest;
use super::kinds::notify::NotifyRequest;
use super::kinds::revert::RevertRequest;
use super::template::{Ref, Template};
use super::{LoadedRunbook, Text, inputs::Inputs};
use crate::echo;
use crate::yaml::Diagnostic;

/// A finished step's outputs, for `{{ steps.<id>.<output> }}`.
pub type Outputs = IndexMap<String, String>;

/// What templates may read: the inputs and the outputs of steps that have finished.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub inputs: &'a Inputs,
    pub outputs: &'a HashMap<String, Outputs>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Flag(FlagChange),
    /// Built by `undo` from a journal, never resolved from a runbook.
    Restore(Box<FlagRestore>),
    Revert(RevertRequest),
    Ci(CiRequest),
    Gate(Box<GateRequest>),
    Manual(ManualRequest),
    Notify(NotifyRequest),
}

/// Why a step cannot be resolved yet, or at all.
#[derive(Debug, Clone)]
pub enum Unresolved {
    /// It reads the output of a step that has not produced it (not run yet, skipped, failed).
    Waiting(Ref),
    /// A rendered value has the wrong type for its field.
    Invalid(Diagnostic),
}

/// Why it cannot be resolved, in one line.
impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresolved::Waiting(reference) => write!(f, "it needs {reference}, which is not known"),
            Unresolved::Invalid(diagnostic) => write!(f, "{diagnostic}"),
        }
    }
}

/// Renders the fields of one step's kind, at `path` (`steps[i].<kind>`).
pub(in crate::runbook) struct Renderer<'a> {
    runbook: &'a LoadedRunbook,
    scope: Scope<'a>,
    pub(in crate::runbook) path: String,
}

impl Renderer<'_> {
    pub(in crate::runbook) fn text(&self, field: &str, text: &Text) -> Result<String, Unresolved> {
        let path = format!("{}.{field}", self.path);
        let template = Template::parse(&text.0).map_err(|why| self.invalid(&path, why))?;
        template
            .render(|r| match r {
                Ref::Input(name) => self.scope.inputs.get(name).cloned(),
                Ref::Output { step, output } => self.scope.outputs.get(step).and_then(|o| o.get(output)).cloned(),
            })
            .map_err(Unresolved::Waiting)
    }

    pub(in crate::runbook) fn typed<T>(
        &self,
        field: &str,
        text: &Text,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, Unresolved> {
        let value = self.text(field, text)?;
        parse(&value).map_err(|why| {
            let from = if Template::parse(&text.0).is_ok_and(|t| !t.is_literal()) {
                format!(" (rendered from `{}`)", echo::clip(&text.0))
            } else {
                String::new()
            };
            self.invalid(&format!("{}.{field}", self.path), format!("{why}{from}"))
        })
    }

    pub(in crate::runbook) fn invalid(&self, path: &str, why: String) -> Unresolved {
        Unresolved::Invalid(self.runbook.source.at_value(path, format!("{path}: {why}")))
    }
}

/// Render and type-check step `index` of the runbook.
pub fn action(runbook: &LoadedRunbook, index: usize, scope: Scope) -> Result<Action, Unresolved> {
    let step = &runbook.runbook.steps[index];
    let r = Renderer { runbook, scope, path: format!("steps[{index}].{}", step.kind().as_str()) };
    step.kind.resolve(&r, &step.common)
}
