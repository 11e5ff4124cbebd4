//! Every check a runbook can pass without touching a service: ids, kinds, types,
//! template names, and whether the config has what its steps need.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use super::resolve::{flag_target, input_variable, parse_mainline, parse_state};
use super::template::{Ref, Template};
use super::{CiSpec, FlagSpec, InputType, LoadedRunbook, RevertSpec, StepKind, Text, inputs};
use crate::config::Config;
use crate::echo;
use crate::percent::Percent;
use crate::yaml::Diagnostic;

const MAX_RETRIES: u32 = 10;
/// The longest runbook name (its file name without .yaml), which is part of journal file names.
pub const MAX_NAME_BYTES: usize = 100;

fn is_identifier(text: &str, dashes: bool) -> bool {
    let mut bytes = text.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (dashes && b == b'-'))
}

/// A ci input's name: what GitHub allows for a workflow input, and a safe variable name.
fn is_ci_input_name(text: &str) -> bool {
    let mut bytes = text.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// How a field's value is checked when it has no template in it.
type LiteralCheck = dyn Fn(&str) -> Result<(), String>;

struct Checker<'a> {
    runbook: &'a LoadedRunbook,
    /// Each step id and the first step that has it.
    ids: HashMap<&'a str, usize>,
    problems: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn new(runbook: &'a LoadedRunbook) -> Checker<'a> {
        let mut ids = HashMap::with_capacity(runbook.runbook.steps.len());
        for (i, step) in runbook.runbook.steps.iter().enumerate() {
            ids.entry(step.id.as_str()).or_insert(i);
        }
        Checker { runbook, ids, problems: Vec::new() }
    }

    fn at_key(&mut self, path: &str, message: String) {
        let message = format!("{}: {message}", echo::clip(path));
        self.problems.push(self.runbook.source.at_key(path, message));
    }

    fn at_value(&mut self, path: &str, message: String) {
        let message = format!("{}: {message}", echo::clip(path));
        self.problems.push(self.runbook.source.at_value(path, message));
    }

    /// Parse a templated field, check its references, and type-check it when it is literal.
    fn text(&mut self, step: usize, path: &str, text: &Text, literal: Option<&LiteralCheck>) {
        let template = match Template::parse(&text.0) {
            Ok(template) => template,
            Err(why) => return self.at_value(path, why),
        };
        for reference in template.refs() {
            if let Some(why) = self.unknown_reference(step, reference) {
                self.at_value(path, why);
            }
        }
        if let (true, Some(check)) = (template.is_literal(), literal)
            && let Err(why) = check(&text.0)
        {
            self.at_value(path, why);
        }
    }

    fn unknown_reference(&self, step: usize, reference: &Ref) -> Option<String> {
        let book = &self.runbook.runbook;
        let shown = || echo::clip(&reference.to_string()).into_owned();
        match reference {
            Ref::Input(name) if book.inputs.contains_key(name) => None,
            Ref::Input(_) => Some(format!(
                "unknown template name `{}`: {}",
                shown(),
                if book.inputs.is_empty() {
                    "this runbook declares no inputs".to_string()
                } else {
                    let names = book.inputs.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
                    format!("its inputs are {}", echo::clip(&names))
                }
            )),
            Ref::Output { step: id, output } => {
                let Some(&index) = self.ids.get(id.as_str()) else {
                    return Some(format!("unknown template name `{}`: no step has id `{}`", shown(), echo::clip(id)));
                };
                if index >= step {
                    return Some(format!(
                        "`{}` reads step `{}`, which runs after this one; a step can only read earlier steps",
                        shown(),
                        echo::clip(id)
                    ));
                }
                let kind = book.steps[index].kind();
                (!kind.outputs().contains(&output.as_str())).then(|| {
                    let outputs = kind.outputs();
                    format!(
                        "unknown template name `{}`: a {} step's outputs are {}",
                        shown(),
                        kind.as_str(),
                        if outputs.is_empty() { "none".to_string() } else { outputs.join(", ") }
                    )
                })
            }
        }
    }

    fn name(&mut self) {
        let name = &self.runbook.name;
        if name.len() > MAX_NAME_BYTES {
            let why = format!(
                "the file name `{}` is too long: a runbook name is at most {MAX_NAME_BYTES} bytes, as it is part of the journal's file names",
                echo::clip(name)
            );
            self.problems.push(self.runbook.source.at_start(why));
        }
    }

    fn inputs(&mut self) {
        for (name, spec) in &self.runbook.runbook.inputs {
            let path = format!("inputs.{name}");
            if !is_identifier(name, false) {
                self.at_key(
                    &path,
                    "input names are lowercase letters, digits and _, starting with a letter or _".into(),
                );
            }
            if let Some(default) = &spec.default
                && let Err(why) = inputs::check_value(spec.kind, &default.0)
            {
                self.at_value(
                    &format!("{path}.default"),
                    format!("default does not match type {}: {why}", spec.kind.as_str()),
                );
            }
        }
    }

    fn step(&mut self, i: usize) {
        let step = &self.runbook.runbook.steps[i];
        let path = format!("steps[{i}]");
        if !is_identifier(&step.id, true) {
            self.at_value(
                &format!("{path}.id"),
                format!(
                    "step id `{}` must be lowercase letters, digits, _ and -, starting with a letter or _",
                    echo::clip(&step.id)
                ),
            );
        }
        let first = self.ids[step.id.as_str()];
        if first != i {
            let why = format!("step id `{}` is already used by steps[{first}]", echo::clip(&step.id));
            self.at_value(&format!("{path}.id"), why);
        }
        if step.retries > MAX_RETRIES {
            self.at_value(&format!("{path}.retries"), format!("at most {MAX_RETRIES} retries"));
        }
        let kinds = step.kinds();
        if kinds.len() != 1 {
            let found = if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" and ")
            };
            let why = format!(
                "a step needs exactly one of flag, revert, ci, manual, notify; step `{}` has {found}",
                echo::clip(&step.id)
            );
            return self.at_key(&path, why);
        }
        if let Some(flag) = &step.flag {
            self.flag(i, &format!("{path}.flag"), flag);
        }
        if let Some(revert) = &step.revert {
            self.revert(i, &format!("{path}.revert"), revert);
        }
        if let Some(ci) = &step.ci {
            self.ci(i, &format!("{path}.ci"), ci);
        }
        if let Some(manual) = &step.manual {
            self.text(i, &format!("{path}.manual.instructions"), &manual.instructions, None);
        }
        if let Some(notify) = &step.notify {
            self.text(i, &format!("{path}.notify.message"), &notify.message, None);
        }
    }

    fn flag(&mut self, i: usize, p: &str, flag: &FlagSpec) {
        let not_empty: &LiteralCheck = &|v| if v.trim().is_empty() { Err("empty flag name".into()) } else { Ok(()) };
        self.text(i, &format!("{p}.name"), &flag.name, Some(not_empty));
        if let Some(state) = &flag.state {
            self.text(i, &format!("{p}.state"), state, Some(&|v| parse_state(v).map(drop)));
        }
        if let Some(percent) = &flag.percent {
            self.text(i, &format!("{p}.percent"), percent, Some(&|v| v.parse::<Percent>().map(drop)));
        }
        if let Some(expect) = &flag.expect {
            self.text(i, &format!("{p}.expect"), expect, Some(&|v| parse_state(v).map(drop)));
            if flag.state.is_some() || flag.percent.is_some() || flag.direction.is_some() {
                self.at_key(p, "`expect` only checks the flag: it takes no state, percent or direction".into());
            }
        } else {
            let literal_state = flag.state.as_ref().and_then(|s| parse_state(&s.0).ok());
            let has_percent = flag.percent.as_ref().map(|_| Percent::FULL);
            if let Err(why) = flag_target(literal_state.or(flag.state.as_ref().map(|_| true)), has_percent) {
                self.at_key(p, why);
            }
        }
    }

    fn revert(&mut self, i: usize, p: &str, revert: &RevertSpec) {
        let commit_check: &LiteralCheck = &|v| inputs::check_value(InputType::Commit, v).map(drop);
        match (&revert.commit, &revert.commits) {
            (Some(commit), None) => self.text(i, &format!("{p}.commit"), commit, Some(commit_check)),
            (None, Some(commits)) if !commits.is_empty() => {
                for (n, commit) in commits.iter().enumerate() {
                    self.text(i, &format!("{p}.commits[{n}]"), commit, Some(commit_check));
                }
            }
            (None, Some(_)) => self.at_key(&format!("{p}.commits"), "name at least one commit".into()),
            _ => self.at_key(
                p,
                "a revert names `commit` (one commit or a range A..B) or `commits` (a list), not both".into(),
            ),
        }
        if let Some(mainline) = &revert.mainline {
            self.text(i, &format!("{p}.mainline"), mainline, Some(&|v| parse_mainline(v).map(drop)));
        }
        if let Some(branch) = &revert.branch {
            self.text(i, &format!("{p}.branch"), branch, Some(&check_branch));
        }
    }

    fn ci(&mut self, i: usize, p: &str, ci: &CiSpec) {
        let not_empty: &LiteralCheck =
            &|v| if v.trim().is_empty() { Err("empty pipeline name".into()) } else { Ok(()) };
        self.text(i, &format!("{p}.pipeline"), &ci.pipeline, Some(not_empty));
        if let Some(git_ref) = &ci.git_ref {
            self.text(i, &format!("{p}.ref"), git_ref, None);
        }
        let mut variables: HashMap<String, &str> = HashMap::new();
        for (key, value) in &ci.inputs {
            let path = format!("{p}.inputs.{key}");
            if !is_ci_input_name(key) {
                let why = "a ci input's name is letters, digits, _ and -, starting with a letter or _";
                self.at_key(&path, why.into());
            } else {
                match variables.entry(input_variable(key)) {
                    Entry::Vacant(slot) => {
                        slot.insert(key);
                    }
                    Entry::Occupied(first) => {
                        let why = format!(
                            "`{key}` and `{}` would both be {} for a command pipeline: rename one",
                            first.get(),
                            first.key()
                        );
                        self.at_key(&path, why);
                    }
                }
            }
            self.text(i, &path, value, None);
        }
    }
}

/// Everything wrong with a runbook on its own; empty when it is valid.
pub fn runbook(runbook: &LoadedRunbook) -> Vec<Diagnostic> {
    let mut c = Checker::new(runbook);
    let book = &runbook.runbook;
    if book.version != 1 {
        c.at_value("version", format!("unsupported runbook version {}: this rollout reads version 1", book.version));
    }
    c.name();
    c.inputs();
    if book.steps.is_empty() {
        c.at_key("steps", "a runbook needs at least one step".into());
    }
    for i in 0..book.steps.len() {
        c.step(i);
    }
    c.problems
}

/// Runbooks of one folder that have the same `severity`, which `incident` could not choose
/// between: each one after the first is reported, naming the first.
pub fn severity_clashes<'a>(runbooks: impl IntoIterator<Item = &'a LoadedRunbook>) -> Vec<Diagnostic> {
    let mut first: HashMap<(PathBuf, &str), &LoadedRunbook> = HashMap::new();
    let mut problems = Vec::new();
    for runbook in runbooks {
        let Some(severity) = runbook.runbook.severity else { continue };
        let folder = runbook.source.path.parent().unwrap_or(Path::new("."));
        let folder = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
        match first.entry((folder, severity.as_str())) {
            Entry::Vacant(slot) => {
                slot.insert(runbook);
            }
            Entry::Occupied(other) => problems.push(runbook.source.at_value(
                "severity",
                format!(
                    "severity: {} is also the severity of {}: `rollout incident --severity {0}` needs exactly one runbook with it",
                    severity.as_str(),
                    other.get().source.path.display()
                ),
            )),
        }
    }
    problems
}

fn check_branch(name: &str) -> Result<(), String> {
    if git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
        Ok(())
    } else {
        Err(format!("`{}` is not a valid branch name", echo::clip(name)))
    }
}

/// Steps whose service the config does not configure.
pub fn against_config(runbook: &LoadedRunbook, config: &Config) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for (i, step) in runbook.runbook.steps.iter().enumerate() {
        let (missing, kind) = match step.kind() {
            StepKind::Flag => (config.flags.is_none(), "flags"),
            StepKind::Revert => (config.git.is_none(), "git"),
            StepKind::Ci => (config.ci.is_none(), "ci"),
            StepKind::Notify => (config.notify.is_none(), "notify"),
            StepKind::Manual => (false, ""),
        };
        if missing {
            let path = format!("steps[{i}].{}", step.kind().as_str());
            problems.push(runbook.source.at_key(
                &path,
                format!(
                    "{path}: step `{}` needs the `{kind}` section of {}, which it does not have",
                    echo::clip(&step.id),
                    config.path.display()
                ),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Source;
    use std::path::PathBuf;

    fn problems(text: &str) -> Vec<String> {
        let source = Source::new(PathBuf::from("r.yaml"), text.to_string());
        match LoadedRunbook::from_source(source) {
            Ok(_) => Vec::new(),
            Err(d) => d.0.iter().map(|d| d.to_string()).collect(),
        }
    }

    const HEAD: &str =
        "version: 1\ntitle: t\ninputs:\n  flag: { default: f }\n  pct: { type: percent, default: 5 }\nsteps:\n";

    #[test]
    fn a_valid_runbook_has_no_problems() {
        let text = format!(
            "{HEAD}  - id: off\n    name: n\n    flag: {{ name: \"{{{{ inputs.flag }}}}\", state: off }}\n  - id: deploy-fix\n    name: d\n    ci: {{ pipeline: deploy.yml, ref: main, timeout: 45m }}\n  - id: after\n    name: a\n    manual: {{ instructions: \"run {{{{ steps.deploy-fix.url }}}}\" }}\n"
        );
        assert_eq!(problems(&text), Vec::<String>::new());
    }

    #[test]
    fn three_typos_are_three_diagnostics_in_one_pass() {
        let text = format!(
            "{HEAD}  - id: a\n    nmae: n\n    manual: {{ instructions: x }}\n  - id: b\n    name: n\n    retires: 2\n    manual: {{ instructions: x }}\n  - id: c\n    name: n\n    manual: {{ instrutions: x }}\n"
        );
        assert_eq!(
            problems(&text),
            [
                "r.yaml:8:5: steps[0]: unknown field `nmae`, expected one of `id`, `name`, `optional`, `retries`, `timeout`, `on_failure`, `flag`, `revert`, `ci`, `manual`, `notify`",
                "r.yaml:12:5: steps[1]: unknown field `retires`, expected one of `id`, `name`, `optional`, `retries`, `timeout`, `on_failure`, `flag`, `revert`, `ci`, `manual`, `notify`",
                "r.yaml:16:15: steps[2].manual: unknown field `instrutions`, expected `instructions`",
            ]
        );
    }

    #[test]
    fn template_names_are_checked_with_their_location() {
        let text =
            format!("{HEAD}  - id: a\n    name: n\n    flag: {{ name: \"{{{{ inputs.flg }}}}\", state: off }}\n");
        assert_eq!(
            problems(&text),
            ["r.yaml:9:19: steps[0].flag.name: unknown template name `inputs.flg`: its inputs are flag, pct"]
        );
    }

    #[test]
    fn later_steps_and_unknown_outputs_are_refused() {
        let text = format!(
            "{HEAD}  - id: a\n    name: n\n    manual: {{ instructions: \"{{{{ steps.b.commit }}}}\" }}\n  - id: b\n    name: n\n    revert: {{ commit: HEAD }}\n  - id: c\n    name: n\n    manual: {{ instructions: \"{{{{ steps.b.url }}}}\" }}\n"
        );
        let found = problems(&text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("runs after this one"), "{found:?}");
        assert!(
            found[1].contains("a revert step's outputs are commit, commits, reverted, remote, branch"),
            "{found:?}"
        );
    }

    #[test]
    fn kinds_types_and_ids_are_checked() {
        let text = format!(
            "{HEAD}  - id: a\n    name: n\n  - id: a\n    name: n\n    flag: {{ name: f, state: off, percent: 5 }}\n  - id: Bad\n    name: n\n    flag: {{ name: f, percent: 120 }}\n"
        );
        let found = problems(&text);
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].starts_with("r.yaml:7:5: steps[0]: a step needs exactly one"), "{found:?}");
        assert!(found[1].contains("already used by steps[0]"), "{found:?}");
        assert!(found[2].contains("contradictory"), "{found:?}");
        assert!(found[3].contains("step id `Bad`"), "{found:?}");
        assert!(found[4].contains("outside 0–100"), "{found:?}");
    }

    #[test]
    fn values_are_checked_as_written_not_as_yaml_reads_them() {
        let text = format!(
            "{HEAD}  - id: a\n    name: n\n    flag: {{ name: f, percent: 0x10 }}\n  - id: b\n    name: n\n    flag: {{ name: f, percent: 2.50 }}\n"
        );
        assert_eq!(
            problems(&text),
            [
                "r.yaml:9:31: steps[0].flag.percent: `0x10` is not a percentage: use a number from 0 to 100 with at most two decimals, like 5 or 2.5"
            ]
        );
    }

    #[test]
    fn ci_inputs_that_would_share_a_variable_are_refused() {
        let text = format!(
            "{HEAD}  - id: a\n    name: n\n    ci: {{ pipeline: p, inputs: {{ deploy-env: x, DEPLOY_ENV: y, ok: z }} }}\n"
        );
        assert_eq!(
            problems(&text),
            [
                "r.yaml:9:49: steps[0].ci.inputs.DEPLOY_ENV: `DEPLOY_ENV` and `deploy-env` would both be ROLLOUT_INPUT_DEPLOY_ENV for a command pipeline: rename one"
            ]
        );
    }
}
