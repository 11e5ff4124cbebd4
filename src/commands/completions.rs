//! `rollout completions SHELL` and `rollout man`: generated from the clap definition,
//! so they never drift from the real options.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, ExitCode};
use crate::ui::Ui;

pub fn completions(ui: &Ui, shell: clap_complete::Shell) -> Result<ExitCode, Error> {
    let mut buffer = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "rollout", &mut buffer);
    ui.stdout(String::from_utf8_lossy(&buffer).trim_end());
    Ok(ExitCode::Success)
}

pub fn man(ui: &Ui) -> Result<ExitCode, Error> {
    let mut buffer = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buffer).map_err(|e| Error::from(anyhow::Error::from(e)))?;
    ui.stdout(String::from_utf8_lossy(&buffer).trim_end());
    Ok(ExitCode::Success)
}
