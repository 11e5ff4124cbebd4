//! `rollout completions SHELL` and `rollout man`: generated from the clap definition,
//! so they never drift from the real options.

use crate::cli::{self, ENVIRONMENT, FILES};
use crate::error::{Error, ExitCode};
use crate::ui::Ui;

pub fn completions(ui: &Ui, shell: clap_complete::Shell) -> Result<ExitCode, Error> {
    let mut buffer = Vec::new();
    clap_complete::generate(shell, &mut cli::command(), "rollout", &mut buffer);
    ui.stdout(String::from_utf8_lossy(&buffer).trim_end());
    Ok(ExitCode::Success)
}

pub fn man(ui: &Ui) -> Result<ExitCode, Error> {
    let mut buffer = Vec::new();
    let man = clap_mangen::Man::new(cli::command());
    let failed = |e: std::io::Error| Error::from(anyhow::Error::from(e));
    man.render_title(&mut buffer).map_err(failed)?;
    man.render_name_section(&mut buffer).map_err(failed)?;
    man.render_synopsis_section(&mut buffer).map_err(failed)?;
    man.render_description_section(&mut buffer).map_err(failed)?;
    man.render_options_section(&mut buffer).map_err(failed)?;
    man.render_subcommands_section(&mut buffer).map_err(failed)?;
    buffer.extend(reference_sections().into_bytes());
    man.render_version_section(&mut buffer).map_err(failed)?;
    ui.stdout(String::from_utf8_lossy(&buffer).trim_end());
    Ok(ExitCode::Success)
}

/// EXIT STATUS, STEP KINDS, ENVIRONMENT and FILES in roff, from the tables `--help` prints too.
fn reference_sections() -> String {
    let escape = |text: &str| text.replace('\\', "\\\\").replace('-', "\\-");
    let mut roff = String::from(".SH \"EXIT STATUS\"\n");
    for code in crate::error::ExitCode::ALL {
        roff.push_str(&format!(".TP\n{}\n{}\n", code.code(), escape(code.meaning())));
    }
    roff.push_str(".SH \"STEP KINDS\"\n");
    for (name, summary) in cli::step_kinds() {
        roff.push_str(&format!(".TP\n\\fB{name}\\fR\n{}\n", escape(summary)));
    }
    for (title, rows) in [("ENVIRONMENT", ENVIRONMENT), ("FILES", FILES)] {
        roff.push_str(&format!(".SH {title}\n"));
        for (name, meaning) in rows {
            roff.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", escape(name), escape(meaning)));
        }
    }
    roff
}
