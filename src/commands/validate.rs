//! `rollout validate [FILE]...`: check the config and runbooks without running anything;
//! each problem is printed as `file:line:column: message` (with `--json`, as one object a line).

use std::path::Path;

use anyhow::anyhow;

use crate::cli::ValidateArgs;
use crate::config::Config;
use crate::error::{Error, ExitCode};
use crate::runbook::{self, LoadedRunbook, validate};
use crate::ui::Ui;
use crate::yaml::{Diagnostic, Diagnostics, Source};

/// What a check found: the problems stay data (file, line, column, message) until printed.
#[derive(Default)]
struct Report {
    checked: Vec<String>,
    problems: Vec<Diagnostic>,
    runbooks: Vec<LoadedRunbook>,
}

impl Report {
    fn runbook(&mut self, result: Result<LoadedRunbook, Diagnostics>, config: Option<&Config>) {
        match result {
            Ok(loaded) => {
                let against = config.map(|c| validate::against_config(&loaded, c)).unwrap_or_default();
                if against.is_empty() {
                    self.checked.push(format!(
                        "{} ({} steps)",
                        loaded.source.path.display(),
                        loaded.runbook.steps.len()
                    ));
                }
                self.problems.extend(against);
                self.runbooks.push(loaded);
            }
            Err(Diagnostics(found)) => self.problems.extend(found),
        }
    }

    /// Checks across runbooks, once each has been checked on its own.
    fn finish(&mut self) {
        self.problems.extend(validate::severity_clashes(&self.runbooks));
    }
}

/// `--json`: one object per problem, `{"file", "line", "column", "message"}`.
fn problem_json(problem: &Diagnostic) -> String {
    serde_json::json!({
        "file": problem.file.display().to_string(),
        "line": problem.loc.line,
        "column": problem.loc.column,
        "message": problem.message,
    })
    .to_string()
}

fn is_runbook(source: &Source) -> bool {
    source.has("steps")
}

pub fn validate(ui: &Ui, config: Option<&Path>, cwd: &Path, args: &ValidateArgs) -> Result<ExitCode, Error> {
    let mut report = Report::default();
    if args.files.is_empty() {
        let path = Config::find(config, cwd).ok_or_else(|| {
            Error::invalid(anyhow!("no rollout.yaml in {} or any folder above it, and no files given", cwd.display()))
                .with_hint("pass the files to check (rollout validate runbooks/*.yaml), or -C path/to/rollout.yaml")
        })?;
        match Config::load(&path) {
            Ok(config) => {
                report.checked.push(path.display().to_string());
                match runbook::files_in(&config.runbooks) {
                    Ok(files) if files.is_empty() => report.problems.push(Diagnostic {
                        file: config.path.clone(),
                        loc: crate::yaml::Loc { line: 1, column: 1 },
                        message: format!("the runbooks folder {} has no .yaml files", config.runbooks.display()),
                    }),
                    Ok(files) => {
                        for file in files {
                            report.runbook(LoadedRunbook::load(&file), Some(&config));
                        }
                    }
                    Err(e) => {
                        return Err(Error::invalid(anyhow!(
                            "cannot read the runbooks folder {}: {e}",
                            config.runbooks.display()
                        )));
                    }
                }
            }
            Err(Diagnostics(found)) => report.problems.extend(found),
        }
    } else {
        let config = Config::find(config, cwd).and_then(|p| Config::load(&p).ok());
        for file in &args.files {
            let source = match Source::read(file) {
                Ok(source) => source,
                Err(diagnostic) => {
                    report.problems.push(diagnostic);
                    continue;
                }
            };
            if is_runbook(&source) {
                report.runbook(LoadedRunbook::from_source(source), config.as_ref());
            } else {
                match Config::from_source(&source) {
                    Ok(_) => report.checked.push(file.display().to_string()),
                    Err(Diagnostics(found)) => report.problems.extend(found),
                }
            }
        }
    }
    report.finish();
    if ui.json() {
        for problem in &report.problems {
            ui.stdout(problem_json(problem));
        }
    }
    for problem in &report.problems {
        ui.always(problem);
    }
    if report.problems.is_empty() {
        for checked in &report.checked {
            ui.say(format!("{} {checked}", ui.good("ok")));
        }
        Ok(ExitCode::Success)
    } else {
        let count = report.problems.len();
        ui.always(format!("{} {count} problem{} found", ui.bad("✗"), if count == 1 { "" } else { "s" }));
        Ok(ExitCode::Invalid)
    }
}
