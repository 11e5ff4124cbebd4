//! rollout walks a team's rollback runbook one confirmed step at a time: feature flags,
//! git reverts and CI/CD pipelines, with every event journaled. `run` is the whole program.

mod backoff;
mod ci;
mod cli;
mod commands;
mod config;
mod duration;
mod echo;
mod engine;
mod error;
mod flags;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;
mod git;
mod http;
mod interrupt;
mod metrics;
mod notify;
mod percent;
mod redact;
mod runbook;
mod sandbox;
mod state;
mod steps;
mod ui;
mod untrusted;
mod yaml;

// What the integration tests drive directly; everything else is private to the binary.
pub use cli::{ENVIRONMENT, FILES};
pub use config::{FlagdConfig, FlipperConfig, HttpSettings, LaunchdarklyConfig, UnleashConfig};
pub use engine::journal;
pub use engine::state::RunState;
pub use error::{ExitCode, Precondition};
pub use flags::flagd::FlagdFile;
pub use flags::flipper::Flipper;
pub use flags::launchdarkly::LaunchDarkly;
pub use flags::unleash::Unleash;
pub use flags::{FlagService, FlagTarget};
pub use git::message::revert_message;
pub use sandbox::{IDENTITY, OFFENDING_SUBJECT, Sandbox};

use std::ffi::OsString;
use std::io::Write;

use clap::FromArgMatches;

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
        // Written with errors ignored: a hook that panicked on a closed stderr would abort.
        let _ = writeln!(
            std::io::stderr(),
            "rollout crashed{place}: {}\nthe journal holds every event up to here; please report this crash",
            redact::scrub(&message)
        );
    }));
}

/// Parse `args`, run the command, and return the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    install_panic_hook();
    let parsed = cli::command().try_get_matches_from(args).and_then(|m| cli::Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return error.exit_code();
        }
    };
    let ui = ui::Ui::new(&cli);
    let code = match commands::dispatch(cli, &ui) {
        Ok(code) => code.code(),
        Err(error) => {
            ui.error(&error);
            error.code.code()
        }
    };
    git::remove_left();
    code
}
