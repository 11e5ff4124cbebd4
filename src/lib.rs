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
pub mod http;
pub mod interrupt;
pub mod notify;
pub mod percent;
pub mod redact;
pub mod runbook;
pub mod sandbox;
pub mod steps;
pub mod ui;

use std::ffi::OsString;

use clap::Parser;

/// A crash report that, like everything else, never shows a secret.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("rollout crashed{place}: {}", redact::scrub(&message));
        eprintln!("the journal holds every event up to here; please report this crash");
    }));
}

/// Parse `args`, run the command, and return the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    install_panic_hook();
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
