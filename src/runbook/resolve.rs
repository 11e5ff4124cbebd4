//! Turns a step's YAML into a concrete action: templates rendered with inputs and earlier
//! outputs, then typed (state, percent, mainline), so steps only see checked values.

use std::collections::HashMap;
use std::time::Duration;

use indexmap::IndexMap;

use super::template::{Ref, Template};
use super::{LoadedRunbook, StepSpec, Text, inputs::Inputs};
use crate::echo;
use crate::flags::{Direction, FlagTarget};
use crate::percent::Percent;
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
    Revert(RevertRequest),
    Ci(CiRequest),
    Manual(ManualRequest),
    Notify(NotifyRequest),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlagChange {
    pub flag: String,
    pub goal: FlagGoal,
}

/// What a `flag` step does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FlagGoal {
    /// Write `target` unless it holds; a direction refuses to move the other way.
    Set { target: FlagTarget, direction: Option<Direction> },
    /// Only read: the feature must be on for someone (`true`) or off.
    Expect { on: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RevertRequest {
    /// Revisions or ranges, as written.
    pub commits: Vec<String>,
    pub squash: bool,
    pub mainline: Option<u32>,
    pub push: bool,
    pub branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CiRequest {
    pub pipeline: String,
    pub git_ref: Option<String>,
    pub inputs: IndexMap<String, String>,
    pub wait: bool,
    pub timeout: Option<Duration>,
}

/// The environment variable a `command` pipeline reads a ci input from: `deploy-env` is
/// `ROLLOUT_INPUT_DEPLOY_ENV`.
pub fn input_variable(key: &str) -> String {
    format!("ROLLOUT_INPUT_{}", key.to_ascii_uppercase().replace('-', "_"))
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManualRequest {
    pub instructions: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotifyRequest {
    pub message: String,
    pub required: bool,
}

/// Why a step cannot be resolved yet, or at all.
#[derive(Debug, Clone)]
pub enum Unresolved {
    /// It reads the output of a step that has not produced it (not run yet, skipped, failed).
    Waiting(Ref),
    /// A rendered value has the wrong type for its field.
    Invalid(Diagnostic),
}

/// `on`/`off` (or `true`/`false`) as a boolean.
pub fn parse_state(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("`{}` is not a flag state: use on or off", echo::clip(text))),
    }
}

/// A merge commit's parent number, 1-based as in `git revert -m`.
pub fn parse_mainline(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => {
            Err(format!("`{}` is not a parent number: mainline counts from 1, like git revert -m 1", echo::clip(text)))
        }
    }
}

/// The flag target a `state` and `percent` pair asks for.
pub fn flag_target(state: Option<bool>, percent: Option<Percent>) -> Result<FlagTarget, String> {
    match (state, percent) {
        (Some(false), Some(_)) => {
            Err("state: off with a percent is contradictory: drop the percent, or use state: on".into())
        }
        (None, None) => Err("a flag step needs `state: on|off`, `percent`, or both".into()),
        (state, percent) => Ok(FlagTarget::new(state.unwrap_or(true), percent)),
    }
}

struct Renderer<'a> {
    runbook: &'a LoadedRunbook,
    scope: Scope<'a>,
    path: String,
}

impl Renderer<'_> {
    fn text(&self, field: &str, text: &Text) -> Result<String, Unresolved> {
        let path = format!("{}.{field}", self.path);
        let template = Template::parse(&text.0).map_err(|why| self.invalid(&path, why))?;
        template
            .render(|r| match r {
                Ref::Input(name) => self.scope.inputs.get(name).cloned(),
                Ref::Output { step, output } => self.scope.outputs.get(step).and_then(|o| o.get(output)).cloned(),
            })
            .map_err(Unresolved::Waiting)
    }

    fn typed<T>(&self, field: &str, text: &Text, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, Unresolved> {
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

    fn invalid(&self, path: &str, why: String) -> Unresolved {
        Unresolved::Invalid(self.runbook.source.at_value(path, format!("{path}: {why}")))
    }
}

/// Render and type-check step `index` of the runbook.
pub fn action(runbook: &LoadedRunbook, index: usize, scope: Scope) -> Result<Action, Unresolved> {
    let step: &StepSpec = &runbook.runbook.steps[index];
    let at = |kind: &str| Renderer { runbook, scope, path: format!("steps[{index}].{kind}") };
    if let Some(flag) = &step.flag {
        let r = at("flag");
        let name = r.text("name", &flag.name)?;
        if let Some(expect) = &flag.expect {
            let on = r.typed("expect", expect, parse_state)?;
            return Ok(Action::Flag(FlagChange { flag: name, goal: FlagGoal::Expect { on } }));
        }
        let state = flag.state.as_ref().map(|s| r.typed("state", s, parse_state)).transpose()?;
        let percent = flag.percent.as_ref().map(|p| r.typed("percent", p, |v| v.parse::<Percent>())).transpose()?;
        let target = flag_target(state, percent).map_err(|why| r.invalid(&r.path, why))?;
        let goal = FlagGoal::Set { target, direction: flag.direction };
        return Ok(Action::Flag(FlagChange { flag: name, goal }));
    }
    if let Some(revert) = &step.revert {
        let r = at("revert");
        let mut commits = Vec::new();
        if let Some(commit) = &revert.commit {
            commits.push(r.text("commit", commit)?);
        }
        for (i, commit) in revert.commits.iter().flatten().enumerate() {
            commits.push(r.text(&format!("commits[{i}]"), commit)?);
        }
        return Ok(Action::Revert(RevertRequest {
            commits,
            squash: revert.squash,
            mainline: revert.mainline.as_ref().map(|m| r.typed("mainline", m, parse_mainline)).transpose()?,
            push: revert.push,
            branch: revert.branch.as_ref().map(|b| r.text("branch", b)).transpose()?,
        }));
    }
    if let Some(ci) = &step.ci {
        let r = at("ci");
        let mut inputs = IndexMap::new();
        for (key, value) in &ci.inputs {
            inputs.insert(key.clone(), r.text(&format!("inputs.{key}"), value)?);
        }
        return Ok(Action::Ci(CiRequest {
            pipeline: r.text("pipeline", &ci.pipeline)?,
            git_ref: ci.git_ref.as_ref().map(|g| r.text("ref", g)).transpose()?,
            inputs,
            wait: ci.wait,
            timeout: ci.timeout.or(step.timeout),
        }));
    }
    if let Some(notify) = &step.notify {
        let message = at("notify").text("message", &notify.message)?;
        return Ok(Action::Notify(NotifyRequest { message, required: notify.required }));
    }
    let manual = step.manual.as_ref().map(|m| at("manual").text("instructions", &m.instructions)).transpose()?;
    Ok(Action::Manual(ManualRequest { instructions: manual.unwrap_or_default() }))
}
