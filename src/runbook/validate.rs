//! Every check a runbook can pass without touching a service: ids, kinds, types,
//! template names, and whether the config has what its steps need.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use super::template::{Ref, Template};
use super::{DraftStep, LoadedRunbook, Runbook, Service, Text, inputs};
use crate::config::{Config, MetricsConfig};
use crate::echo;
use crate::yaml::{Diagnostic, Source};

const MAX_RETRIES: u32 = 10;
/// The longest runbook name (its file name without .yaml), which is part of journal file names.
pub const MAX_NAME_BYTES: usize = 100;

/// A step id, an input name: lowercase letters, digits and `_` (and `-` with `dashes`), from a
/// letter or `_`.
pub fn is_identifier(text: &str, dashes: bool) -> bool {
    let mut bytes = text.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (dashes && b == b'-'))
}

/// How a field's value is checked when it has no template in it.
pub(in crate::runbook) type LiteralCheck = dyn Fn(&str) -> Result<(), String>;

pub(in crate::runbook) struct Checker<'a> {
    source: &'a Source,
    name: &'a str,
    book: &'a Runbook<DraftStep>,
    /// Each step id and the first step that has it.
    ids: HashMap<&'a str, usize>,
    problems: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn new(source: &'a Source, name: &'a str, book: &'a Runbook<DraftStep>) -> Checker<'a> {
        let mut ids = HashMap::with_capacity(book.steps.len());
        for (i, step) in book.steps.iter().enumerate() {
            ids.entry(step.common.id.as_str()).or_insert(i);
        }
        Checker { source, name, book, ids, problems: Vec::new() }
    }

    pub(in crate::runbook) fn at_key(&mut self, path: &str, message: String) {
        let message = format!("{}: {message}", echo::clip(path));
        self.problems.push(self.source.at_key(path, message));
    }

    /// The runbook's severity: set for an incident runbook.
    pub(in crate::runbook) fn severity(&self) -> Option<super::Severity> {
        self.book.severity
    }

    /// The id of the first step after `step` that reduces exposure (a flag turned off, or with
    /// `direction: down`).
    pub(in crate::runbook) fn mitigation_after(&self, step: usize) -> Option<&'a str> {
        self.book.steps.iter().skip(step + 1).find_map(|later| match &later.kind {
            Ok(super::StepKindSpec::Flag(flag)) if flag.expect.is_none() => {
                let off = flag.state.as_ref().is_some_and(|s| super::kinds::flag::parse_state(&s.0) == Ok(false));
                (off || flag.direction == Some(super::kinds::flag::Direction::Down)).then_some(later.common.id.as_str())
            }
            _ => None,
        })
    }

    fn at_value(&mut self, path: &str, message: String) {
        let message = format!("{}: {message}", echo::clip(path));
        self.problems.push(self.source.at_value(path, message));
    }

    /// Parse a templated field, check its references, and type-check it when it is literal.
    pub(in crate::runbook) fn text(&mut self, step: usize, path: &str, text: &Text, literal: Option<&LiteralCheck>) {
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
        let book = self.book;
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
                let Ok(kind) = &book.steps[index].kind else { return None };
                let kind = kind.kind();
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
        let name = self.name;
        if name.len() > MAX_NAME_BYTES {
            let why = format!(
                "the file name `{}` is too long: a runbook name is at most {MAX_NAME_BYTES} bytes, as it is part of the journal's file names",
                echo::clip(name)
            );
            self.problems.push(self.source.at_start(why));
        }
    }

    fn inputs(&mut self) {
        for (name, spec) in &self.book.inputs {
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
        let step = &self.book.steps[i];
        let path = format!("steps[{i}]");
        self.common(i, &path, step);
        let kind = match &step.kind {
            Ok(kind) => kind,
            Err(why) => return self.at_key(&path, why.clone()),
        };
        kind.check(self, i, &format!("{path}.{}", kind.kind().as_str()));
    }

    /// The id and retries, which every kind of step has.
    fn common(&mut self, i: usize, path: &str, step: &DraftStep) {
        let id = &step.common.id;
        if !is_identifier(id, true) {
            self.at_value(
                &format!("{path}.id"),
                format!(
                    "step id `{}` must be lowercase letters, digits, _ and -, starting with a letter or _",
                    echo::clip(id)
                ),
            );
        }
        let first = self.ids[id.as_str()];
        if first != i {
            let why = format!("step id `{}` is already used by steps[{first}]", echo::clip(id));
            self.at_value(&format!("{path}.id"), why);
        }
        if step.common.retries > MAX_RETRIES {
            self.at_value(&format!("{path}.retries"), format!("at most {MAX_RETRIES} retries"));
        }
    }
}

/// Everything wrong with a runbook on its own; empty when it is valid.
pub(super) fn runbook(source: &Source, name: &str, book: &Runbook<DraftStep>) -> Vec<Diagnostic> {
    let mut c = Checker::new(source, name, book);
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

/// Steps whose service the config does not configure, and gates whose source it does not name.
pub fn against_config(runbook: &LoadedRunbook, config: &Config) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for (i, step) in runbook.runbook.steps.iter().enumerate() {
        let kind = step.kind();
        if let super::StepKindSpec::Gate(gate) = &step.kind {
            problems.extend(gate_against_config(runbook, config, i, gate));
        }
        if let Some(approval) = step.approval(runbook.runbook.approval) {
            let path = if step.common.approval.is_some() { format!("steps[{i}].approval") } else { "approval".into() };
            if approval.min == 0 || approval.min > 10 {
                problems.push(runbook.source.at_key(&path, format!("{path}.min: from 1 to 10 engineers")));
            }
            if config.state == crate::config::StateConfig::Local {
                problems.push(runbook.source.at_key(
                    &path,
                    format!(
                        "{path}: step `{}` needs approval, which another engineer gives through a shared state backend: {} keeps its state in local files (set `state: {{ backend: postgres, ... }}`)",
                        echo::clip(&step.common.id),
                        config.path.display()
                    ),
                ));
            }
        }
        let Some(service) = kind.service().filter(|s| !configured(config, *s)) else { continue };
        let path = format!("steps[{i}].{}", kind.as_str());
        problems.push(runbook.source.at_key(
            &path,
            format!(
                "{path}: step `{}` needs the `{}` section of {}, which it does not have",
                echo::clip(&step.common.id),
                service.section(),
                config.path.display()
            ),
        ));
    }
    problems
}

/// A gate's source must be configured; a GA4 gate's query must be one its realtime reports
/// answer, over at most their 30 minutes; only a GA4 gate has a `report`.
fn gate_against_config(
    runbook: &LoadedRunbook,
    config: &Config,
    i: usize,
    gate: &super::kinds::gate::GateSpec,
) -> Vec<Diagnostic> {
    use crate::metrics::ga4::{REALTIME_MINUTES, query::Query};
    let at = |field: &str, why: String| {
        let path = format!("steps[{i}].gate.{field}");
        runbook.source.at_value(&path, format!("{path}: {why}"))
    };
    if config.metrics.is_empty() {
        return Vec::new();
    }
    let Some(source) = config.metrics.get(&gate.source) else {
        let names = config.metrics.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        let why = format!(
            "{} names no metrics source `{}`: its sources are {}",
            config.path.display(),
            echo::clip(&gate.source),
            echo::clip(&names)
        );
        return vec![at("source", why)];
    };
    let mut problems = Vec::new();
    if !matches!(source, MetricsConfig::Ga4(_)) {
        if gate.report.is_some() {
            problems.push(at("report", "only a gate on a ga4 source has a standard-report query".into()));
        }
        return problems;
    }
    // A query with `${{ }}` is checked when the source reads it, rendered.
    let literal = |text: &Text| Template::parse(&text.0).is_ok_and(|t| t.is_literal());
    if literal(&gate.query) {
        match Query::parse(&gate.query.0) {
            Err(why) => problems.push(at("query", why)),
            Ok(query) => problems.extend(query.realtime_problem().map(|why| at("query", why))),
        }
    }
    if let Some(report) = gate.report.as_ref().filter(|r| literal(r))
        && let Err(why) = Query::parse(&report.0)
    {
        problems.push(at("report", why));
    }
    if gate.window.is_some_and(|w| w.as_secs().div_ceil(60) > REALTIME_MINUTES) {
        let why = format!("a ga4 gate's window is at most {REALTIME_MINUTES}m: its realtime reports cover no more");
        problems.push(at("window", why));
    }
    problems
}

/// Whether the config has the section a service is set up from.
fn configured(config: &Config, service: Service) -> bool {
    match service {
        Service::Flags => config.flags.is_some(),
        Service::Git => config.git.is_some(),
        Service::Ci => config.ci.is_some(),
        Service::Metrics => !config.metrics.is_empty(),
        Service::Notify => config.notify.is_some(),
    }
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
                "r.yaml:8:5: steps[0]: unknown field `nmae`, expected one of `id`, `name`, `optional`, `retries`, `timeout`, `on_failure`, `approval`, `flag`, `revert`, `ci`, `gate`, `manual`, `notify`",
                "r.yaml:12:5: steps[1]: unknown field `retires`, expected one of `id`, `name`, `optional`, `retries`, `timeout`, `on_failure`, `approval`, `flag`, `revert`, `ci`, `gate`, `manual`, `notify`",
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

    #[test]
    fn gates_are_checked_for_their_conditions_and_never_hold_up_a_rollback() {
        let text = format!(
            "{HEAD}  - id: g\n    name: n\n    gate: {{ source: errors, query: q, no_data: fail }}\n  - id: h\n    name: n\n    gate: {{ source: errors, query: q, below: 5, fail_below: 1, for: 1m, count: 2, no_data: ask, threshold: 3 }}\n"
        );
        let found = problems(&text);
        assert!(found.iter().any(|p| p.contains("unknown field `threshold`")), "{found:?}");
        let text = format!(
            "{HEAD}  - id: g\n    name: n\n    gate: {{ source: errors, query: q, no_data: fail }}\n  - id: h\n    name: n\n    gate: {{ source: errors, query: q, below: x, fail_below: 1, for: 1m, count: 2, no_data: ask }}\n"
        );
        let found = problems(&text);
        assert!(found.iter().any(|p| p.contains("a gate needs a success condition")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("a gate needs `for`")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("`for` or `count`, not both")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("with `below`, the failure threshold is `fail_above`")), "{found:?}");
        assert!(found.iter().any(|p| p.contains("steps[1].gate.below: `x` is not a number")), "{found:?}");

        let incident = "version: 1\nseverity: critical\ntitle: t\nsteps:\n  - id: spike\n    name: n\n    gate: { source: errors, query: q, above: 5, count: 1, no_data: pass }\n  - id: off\n    name: n\n    flag: { name: f, state: off }\n";
        let found = problems(incident);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("this gate comes before `off`, which reduces exposure"), "{found:?}");
        assert_eq!(
            problems(&incident.replace("no_data: pass", "no_data: pass, holds_rollback: true")),
            Vec::<String>::new()
        );
        // After the mitigation, or in a runbook that is not an incident's, a gate holds nothing up.
        assert_eq!(problems(&incident.replace("severity: critical\n", "")), Vec::<String>::new());
    }
}
