//! `rollout list`: the runbooks, their inputs and their steps, on stdout, as text or with
//! `--json` one object per runbook (the shipped ones, clearly marked, when no rollout.yaml is found).

use std::path::Path;

use serde_json::{Value, json};

use crate::config::Config;
use crate::error::{Error, ExitCode};
use crate::runbook::{self, LoadedRunbook, shipped};
use crate::ui::Ui;
use crate::yaml::Diagnostics;

fn show(ui: &Ui, loaded: &LoadedRunbook) {
    let book = &loaded.runbook;
    let severity = book.severity.map(|s| format!(" [severity {}]", s.as_str())).unwrap_or_default();
    ui.stdout(format!("{}{severity}: {}  ({})", ui.bold(&loaded.name), book.title, loaded.source.path.display()));
    if let Some(description) = &book.description {
        ui.stdout(format!("  {}", description.trim()));
    }
    if !book.inputs.is_empty() {
        ui.stdout("  inputs:");
        let width = book.inputs.keys().map(String::len).max().unwrap_or(0);
        for (name, spec) in &book.inputs {
            let default =
                spec.default.as_ref().map(|d| format!(" (default {d})")).unwrap_or_else(|| " (required)".into());
            let description = spec.description.as_deref().map(|d| format!(" {d}")).unwrap_or_default();
            ui.stdout(format!("    {name:width$}  {:7}{description}{default}", spec.kind.as_str()));
        }
    }
    ui.stdout("  steps:");
    let width = book.steps.iter().map(|s| s.common.id.len()).max().unwrap_or(0);
    for (i, step) in book.steps.iter().enumerate() {
        let optional = if step.common.optional { " (optional)" } else { "" };
        ui.stdout(format!(
            "    {}. {:width$}  {:6}  {}{optional}",
            i + 1,
            step.common.id,
            step.kind().as_str(),
            step.common.name
        ));
    }
}

/// The `--json` object of one runbook.
fn object(loaded: &LoadedRunbook, shipped: bool) -> Value {
    let book = &loaded.runbook;
    let inputs: Vec<Value> = book
        .inputs
        .iter()
        .map(|(name, spec)| {
            json!({
                "name": name,
                "type": spec.kind.as_str(),
                "required": spec.default.is_none(),
                "default": spec.default.as_ref().map(|d| d.0.as_str()),
                "description": spec.description,
            })
        })
        .collect();
    let steps: Vec<Value> = book
        .steps
        .iter()
        .map(
            |step| json!({ "id": step.common.id, "name": step.common.name, "kind": step.kind().as_str(), "optional": step.common.optional }),
        )
        .collect();
    json!({
        "name": loaded.name,
        "title": book.title,
        "severity": book.severity.map(|s| s.as_str()),
        "description": book.description.as_deref().map(str::trim),
        "file": loaded.source.path,
        "shipped": shipped,
        "inputs": inputs,
        "steps": steps,
    })
}

pub fn list(ui: &Ui, config: Option<&Path>, cwd: &Path) -> Result<ExitCode, Error> {
    let found = Config::find(config, cwd);
    let shipped_only = found.is_none();
    let (loaded, problems) = match found {
        Some(path) => {
            let config = Config::load(&path)?;
            runbook::load_all(&config.runbooks).map_err(|e| {
                Error::invalid(anyhow::anyhow!("cannot read the runbooks folder {}: {e}", config.runbooks.display()))
            })?
        }
        None => {
            ui.say("no rollout.yaml found: these are the runbooks shipped with rollout (rollout rehearse runs them)");
            (shipped::all()?, Vec::new())
        }
    };
    for (i, runbook) in loaded.iter().enumerate() {
        if ui.json() {
            ui.stdout(object(runbook, shipped_only));
            continue;
        }
        if i > 0 {
            ui.stdout("");
        }
        show(ui, runbook);
    }
    if problems.is_empty() {
        Ok(ExitCode::Success)
    } else {
        Err(Error::from(Diagnostics(problems))
            .with_hint("these runbooks are not listed; `rollout validate` checks them all"))
    }
}
