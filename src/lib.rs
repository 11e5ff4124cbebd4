//! rollout walks a team's rollback runbook one confirmed step at a time: feature flags,
//! git reverts and CI/CD pipelines, with every event journaled. `run` is the whole program.

pub mod ci;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod flags;
pub mod git;
pub mod interrupt;
pub mod percent;
pub mod runbook;
pub mod sandbox;
pub mod steps;
pub mod ui;

use std::ffi::OsString;

use clap::Parser;

/// Parse `args`, run the command, and return the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return error.exit_code();
        }
    };
    let ui = ui::Ui::new(&cli);
    match commands::dispatch(cli, &ui) {
        Ok(code) => code.code(),
        Err(error) => {
            ui.error(&error);
            error.code.code()
        }
    }
}
