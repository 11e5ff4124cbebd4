//! Typed runbook inputs: defaults, `--var K=V`, and the checks that run
//! before the first step (unknown name, wrong type, missing value).

use indexmap::IndexMap;

use super::{InputType, LoadedRunbook};
use crate::echo;
use crate::percent::Percent;

/// Input values after checking, in their canonical text form (`5` for 5%, `true`).
pub type Inputs = IndexMap<String, String>;

/// Check one value against its type and return its canonical form.
pub fn check_value(kind: InputType, raw: &str) -> Result<String, String> {
    let shown = echo::clip(raw);
    match kind {
        InputType::String => one_line(raw).map(|()| raw.to_string()),
        InputType::Integer => {
            raw.trim().parse::<i64>().map(|n| n.to_string()).map_err(|_| format!("`{shown}` is not an integer"))
        }
        InputType::Percent => raw.parse::<Percent>().map(|p| p.to_string()),
        InputType::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok("true".into()),
            "false" | "no" | "off" | "0" => Ok("false".into()),
            _ => Err(format!("`{shown}` is not a boolean: use true or false")),
        },
        InputType::Commit => {
            let value = raw.trim();
            if value.is_empty() || value.starts_with('-') || value.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                Err(format!(
                    "`{shown}` is not a commit: give a commit id, tag or other revision, without spaces and not starting with -"
                ))
            } else {
                Ok(value.to_string())
            }
        }
    }
}

/// A string input is one line of text: a newline or an escape could print fake lines into a
/// pipeline's log or the terminal. The value itself is not echoed, for the same reason.
fn one_line(raw: &str) -> Result<(), String> {
    match raw.chars().enumerate().find(|(_, c)| c.is_control()) {
        None => Ok(()),
        Some((at, c)) => Err(format!(
            "it has a control character (U+{:04X}, character {}): a string input is one line of text",
            u32::from(c),
            at + 1
        )),
    }
}

/// Why the inputs of a run could not be settled; the edge maps it to an exit code and hints.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A `--var` without `=`.
    #[error("--var {}: expected K=V, like --var flag=travel_pay_claim_status", echo::clip(.0))]
    NotKeyValue(String),
    /// A `--var` naming an input the runbook does not declare; `known` are the ones it does.
    #[error("--var {}: runbook {runbook} has no input `{}`", echo::clip(.key), echo::clip(.key))]
    Unknown { key: String, runbook: String, known: Vec<String> },
    /// A value (given or default) that does not fit the input's type.
    #[error("input `{name}` ({}, from {origin}): {why}", .kind.as_str())]
    BadValue { name: String, kind: InputType, origin: &'static str, why: String },
    /// Inputs with neither a `--var` nor a default.
    #[error(
        "missing variable{}: runbook {runbook} needs {} and has no default",
        if .names.len() > 1 { "s" } else { "" },
        .names.join(", ")
    )]
    Missing { runbook: String, names: Vec<String> },
}

/// Defaults overlaid with `--var K=V`; every input must end up with a valid value.
pub fn resolve(runbook: &LoadedRunbook, vars: &[String]) -> Result<Inputs, InputError> {
    let specs = &runbook.runbook.inputs;
    let mut given: IndexMap<String, String> = IndexMap::new();
    for var in vars {
        let Some((key, value)) = var.split_once('=') else {
            return Err(InputError::NotKeyValue(var.clone()));
        };
        let key = key.trim();
        if !specs.contains_key(key) {
            return Err(InputError::Unknown {
                key: key.to_string(),
                runbook: runbook.name.clone(),
                known: specs.keys().cloned().collect(),
            });
        }
        given.insert(key.to_string(), value.to_string());
    }

    let mut inputs = Inputs::new();
    let mut missing = Vec::new();
    for (name, spec) in specs {
        let (raw, origin) = match (given.get(name), &spec.default) {
            (Some(value), _) => (value.clone(), "--var"),
            (None, Some(default)) => (default.0.clone(), "default"),
            (None, None) => {
                missing.push(name.clone());
                continue;
            }
        };
        let value = check_value(spec.kind, &raw).map_err(|why| InputError::BadValue {
            name: name.clone(),
            kind: spec.kind,
            origin,
            why,
        })?;
        inputs.insert(name.clone(), value);
    }
    if !missing.is_empty() {
        return Err(InputError::Missing { runbook: runbook.name.clone(), names: missing });
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_made_canonical() {
        assert_eq!(check_value(InputType::Percent, "5%").unwrap(), "5");
        assert_eq!(check_value(InputType::Boolean, "Yes").unwrap(), "true");
        assert_eq!(check_value(InputType::Integer, " 42 ").unwrap(), "42");
        assert!(check_value(InputType::Percent, "150").is_err());
        assert!(check_value(InputType::Integer, "4.2").is_err());
        assert!(check_value(InputType::Commit, "abc def").is_err());
        assert!(check_value(InputType::Boolean, "maybe").is_err());
        assert_eq!(check_value(InputType::String, "fix/ééé").unwrap(), "fix/ééé");
    }

    #[test]
    fn string_inputs_with_control_characters_are_refused_without_echoing_them() {
        for bad in ["main\nROLLOUT_OK=1", "a\rb", "\u{1b}[2J", "tab\there", "x\u{85}"] {
            let why = check_value(InputType::String, bad).unwrap_err();
            assert!(why.contains("control character") && !why.contains(bad), "{why}");
        }
        assert!(check_value(InputType::String, "main\nx").unwrap_err().contains("U+000A, character 5"));
    }
}
