//! Every check a runbook can pass without touching a service: ids, kinds, types,
//! template names, and whether the config has what its steps need.

use super::resolve::{flag_target, parse_mainline, parse_state};
use super::source::Diagnostic;
use super::template::{Ref, Template};
use super::{LoadedRunbook, StepKind, Text, inputs};
use crate::config::Config;
use crate::percent::Percent;

const MAX_RETRIES: u32 = 10;

fn is_identifier(text: &str, dashes: bool) -> bool {
    let mut bytes = text.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (dashes && b == b'-'))
}

/// How a field's value is checked when it has no template in it.
type LiteralCheck = dyn Fn(&str) -> Result<(), String>;

struct Checker<'a> {
    runbook: &'a LoadedRunbook,
    problems: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at_key(&mut self, path: &str, message: String) {
        self.problems.push(self.runbook.source.at_key(path, format!("{path}: {message}")));
    }

    fn at_value(&mut self, path: &str, message: String) {
        self.problems.push(self.runbook.source.at_value(path, format!("{path}: {message}")));
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
        match reference {
            Ref::Input(name) if book.inputs.contains_key(name) => None,
            Ref::Input(name) => Some(format!(
                "unknown template name `inputs.{name}`: {}",
                if book.inputs.is_empty() {
                    "this runbook declares no inputs".to_string()
                } else {
                    format!("its inputs are {}", book.inputs.keys().cloned().collect::<Vec<_>>().join(", "))
                }
            )),
            Ref::Output { step: id, output } => {
                let Some(index) = book.steps.iter().position(|s| &s.id == id) else {
                    return Some(format!("unknown template name `{reference}`: no step has id `{id}`"));
                };
                if index >= step {
                    return Some(format!(
                        "`{reference}` reads step `{id}`, which runs after this one; a step can only read earlier steps"
                    ));
                }
                let kind = book.steps[index].kind();
                (!kind.outputs().contains(&output.as_str())).then(|| {
                    let outputs = kind.outputs();
                    format!(
                        "unknown template name `{reference}`: a {} step's outputs are {}",
                        kind.as_str(),
                        if outputs.is_empty() { "none".to_string() } else { outputs.join(", ") }
                    )
                })
            }
        }
    }
}

/// Everything wrong with a runbook on its own; empty when it is valid.
pub fn runbook(runbook: &LoadedRunbook) -> Vec<Diagnostic> {
    let mut c = Checker { runbook, problems: Vec::new() };
    let book = &runbook.runbook;
    if book.version != 1 {
        c.at_value("version", format!("unsupported runbook version {}: this rollout reads version 1", book.version));
    }
    for (name, spec) in &book.inputs {
        let path = format!("inputs.{name}");
        if !is_identifier(name, false) {
            c.at_key(&path, "input names are lowercase letters, digits and _, starting with a letter or _".into());
        }
        if let Some(default) = &spec.default
            && let Err(why) = inputs::check_value(spec.kind, &default.0)
        {
            c.at_value(
                &format!("{path}.default"),
                format!("default does not match type {}: {why}", spec.kind.as_str()),
            );
        }
    }
    if book.steps.is_empty() {
        c.at_key("steps", "a runbook needs at least one step".into());
    }
    for (i, step) in book.steps.iter().enumerate() {
        let path = format!("steps[{i}]");
        if !is_identifier(&step.id, true) {
            c.at_value(
                &format!("{path}.id"),
                format!(
                    "step id `{}` must be lowercase letters, digits, _ and -, starting with a letter or _",
                    step.id
                ),
            );
        }
        if let Some(first) = book.steps[..i].iter().position(|s| s.id == step.id) {
            c.at_value(&format!("{path}.id"), format!("step id `{}` is already used by steps[{first}]", step.id));
        }
        if step.retries > MAX_RETRIES {
            c.at_value(&format!("{path}.retries"), format!("at most {MAX_RETRIES} retries"));
        }
        let kinds = step.kinds();
        if kinds.len() != 1 {
            let found = if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" and ")
            };
            c.at_key(
                &path,
                format!("a step needs exactly one of flag, revert, ci, manual, notify; step `{}` has {found}", step.id),
            );
            continue;
        }
        if let Some(flag) = &step.flag {
            let p = format!("{path}.flag");
            c.text(
                i,
                &format!("{p}.name"),
                &flag.name,
                Some(&|v| if v.trim().is_empty() { Err("empty flag name".into()) } else { Ok(()) }),
            );
            if let Some(state) = &flag.state {
                c.text(i, &format!("{p}.state"), state, Some(&|v| parse_state(v).map(drop)));
            }
            if let Some(percent) = &flag.percent {
                c.text(i, &format!("{p}.percent"), percent, Some(&|v| v.parse::<Percent>().map(drop)));
            }
            if let Some(expect) = &flag.expect {
                c.text(i, &format!("{p}.expect"), expect, Some(&|v| parse_state(v).map(drop)));
                if flag.state.is_some() || flag.percent.is_some() || flag.direction.is_some() {
                    c.at_key(&p, "`expect` only checks the flag: it takes no state, percent or direction".into());
                }
            } else {
                let literal_state = flag.state.as_ref().and_then(|s| parse_state(&s.0).ok());
                let has_percent = flag.percent.as_ref().map(|_| Percent::FULL);
                if let Err(why) = flag_target(literal_state.or(flag.state.as_ref().map(|_| true)), has_percent) {
                    c.at_key(&p, why);
                }
            }
        }
        if let Some(revert) = &step.revert {
            let p = format!("{path}.revert");
            let commit_check: &LiteralCheck = &|v| inputs::check_value(super::InputType::Commit, v).map(drop);
            match (&revert.commit, &revert.commits) {
                (Some(commit), None) => c.text(i, &format!("{p}.commit"), commit, Some(commit_check)),
                (None, Some(commits)) if !commits.is_empty() => {
                    for (n, commit) in commits.iter().enumerate() {
                        c.text(i, &format!("{p}.commits[{n}]"), commit, Some(commit_check));
                    }
                }
                (None, Some(_)) => c.at_key(&format!("{p}.commits"), "name at least one commit".into()),
                _ => c.at_key(
                    &p,
                    "a revert names `commit` (one commit or a range A..B) or `commits` (a list), not both".into(),
                ),
            }
            if let Some(mainline) = &revert.mainline {
                c.text(i, &format!("{p}.mainline"), mainline, Some(&|v| parse_mainline(v).map(drop)));
            }
            if let Some(branch) = &revert.branch {
                c.text(i, &format!("{p}.branch"), branch, Some(&check_branch));
            }
        }
        if let Some(ci) = &step.ci {
            let p = format!("{path}.ci");
            c.text(
                i,
                &format!("{p}.pipeline"),
                &ci.pipeline,
                Some(&|v| if v.trim().is_empty() { Err("empty pipeline name".into()) } else { Ok(()) }),
            );
            if let Some(git_ref) = &ci.git_ref {
                c.text(i, &format!("{p}.ref"), git_ref, None);
            }
            for (key, value) in &ci.inputs {
                c.text(i, &format!("{p}.inputs.{key}"), value, None);
            }
        }
        if let Some(manual) = &step.manual {
            c.text(i, &format!("{path}.manual.instructions"), &manual.instructions, None);
        }
        if let Some(notify) = &step.notify {
            c.text(i, &format!("{path}.notify.message"), &notify.message, None);
        }
    }
    c.problems
}

fn check_branch(name: &str) -> Result<(), String> {
    if git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid branch name"))
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
                    step.id,
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
    use crate::runbook::source::Source;
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
}
