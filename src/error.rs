//! Errors that know their exit code and what the operator should do next.
//! Inside the crate anyhow carries the context; at the edge this type picks the exit code.

use std::fmt;

use crate::config::ConfigError;
use crate::runbook::inputs::InputError;
use crate::yaml::Diagnostics;

/// The documented exit codes (see the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    StepFailed = 1,
    Invalid = 2,
    Preflight = 3,
    Aborted = 4,
    Locked = 5,
    Interrupted = 130,
}

impl ExitCode {
    pub const ALL: [ExitCode; 7] = [
        ExitCode::Success,
        ExitCode::StepFailed,
        ExitCode::Invalid,
        ExitCode::Preflight,
        ExitCode::Aborted,
        ExitCode::Locked,
        ExitCode::Interrupted,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// What the code means, for `--help`, the man page and the README.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Success => "every step succeeded or was skipped by the operator",
            ExitCode::StepFailed => "a step failed (its error is printed and journaled)",
            ExitCode::Invalid => "invalid input: usage, runbook, config, missing variable, no terminal without --yes",
            ExitCode::Preflight => {
                "preflight failed: a step cannot succeed; nothing changed but mitigation steps run first"
            }
            ExitCode::Aborted => "the operator aborted (or stdin closed at a prompt)",
            ExitCode::Locked => "another run holds the lock for this runbook",
            ExitCode::Interrupted => {
                "interrupted: Ctrl-C, SIGTERM, or a lost terminal (SIGHUP); the journal says where"
            }
        }
    }
}

/// An error on its way to the operator: what failed, the exit code, and hints.
#[derive(Debug)]
pub struct Error {
    pub code: ExitCode,
    pub error: anyhow::Error,
    pub hints: Vec<String>,
}

impl Error {
    pub fn new(code: ExitCode, error: impl Into<anyhow::Error>) -> Self {
        Error { code, error: error.into(), hints: Vec::new() }
    }

    /// Usage, runbook, config or variable errors (exit 2).
    pub fn invalid(error: impl Into<anyhow::Error>) -> Self {
        Self::new(ExitCode::Invalid, error)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        let code =
            if error.downcast_ref::<Interrupted>().is_some() { ExitCode::Interrupted } else { ExitCode::StepFailed };
        Error::new(code, error)
    }
}

// The model layers (runbook, config, yaml) report their own errors; they become exit codes and
// hints here, and only here.

/// Problems found in a runbook or config file (exit 2).
impl From<Diagnostics> for Error {
    fn from(found: Diagnostics) -> Self {
        Error::invalid(found)
    }
}

/// No config to load (exit 2), with how to give one.
impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Self {
        match error {
            ConfigError::Invalid(found) => found.into(),
            ConfigError::NotFound(_) => Error::invalid(error).with_hint(
                "pass -C path/to/rollout.yaml, or try `rollout rehearse --severity critical` to see the shipped runbooks work",
            ),
            ConfigError::NoSuchFile(_) => Error::invalid(error),
        }
    }
}

/// Inputs that cannot be settled (exit 2), with what to pass instead.
impl From<InputError> for Error {
    fn from(error: InputError) -> Self {
        let hint = match &error {
            InputError::Unknown { runbook, known, .. } if known.is_empty() => {
                Some(format!("runbook {runbook} takes no inputs"))
            }
            InputError::Unknown { runbook, known, .. } => {
                Some(format!("runbook {runbook} takes: {}", known.join(", ")))
            }
            InputError::Missing { names, .. } => Some(format!(
                "pass {}",
                names.iter().map(|name| format!("--var {name}=...")).collect::<Vec<_>>().join(" ")
            )),
            InputError::NotKeyValue(_) | InputError::BadValue { .. } => None,
        };
        let error = Error::invalid(error);
        match hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    }
}

/// A read-only check found that a step cannot succeed (exit 3 before anything changed).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Precondition(pub String);

impl Precondition {
    /// Whether this error, or anything in its chain, is a failed precondition.
    pub fn is_in(error: &anyhow::Error) -> bool {
        error.chain().any(|cause| cause.is::<Precondition>())
    }
}

/// A step failed after what it starts may have been received (a pipeline run that may be
/// going, a message that may have been posted): retrying the step would do it twice, so the
/// engine does not (the error inside says what happened).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Started(pub anyhow::Error);

impl Started {
    pub fn is_in(error: &anyhow::Error) -> bool {
        error.downcast_ref::<Started>().is_some()
    }
}

/// The operator pressed Ctrl-C (or the process got SIGTERM, or lost its terminal) while a
/// step waited.
#[derive(Debug, thiserror::Error)]
#[error("{} {}", if crate::interrupt::hung_up() { "the terminal was lost (SIGHUP): stopped" } else { "interrupted" }, .0)]
pub struct Interrupted(pub String);

impl Interrupted {
    pub fn is_in(error: &anyhow::Error) -> bool {
        error.chain().any(|cause| cause.is::<Interrupted>())
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::Config;
    use crate::runbook::{LoadedRunbook, inputs};
    use crate::yaml::Source;

    fn shown(error: impl Into<Error>) -> (ExitCode, String, Vec<String>) {
        let error = error.into();
        (error.code, error.to_string(), error.hints)
    }

    fn runbook(inputs: &str) -> LoadedRunbook {
        let text = format!(
            "version: 1\ntitle: T\n{inputs}steps:\n  - id: a\n    name: A\n    manual: {{ instructions: go }}\n"
        );
        LoadedRunbook::from_source(Source::new(PathBuf::from("/rb/fix.yaml"), text)).unwrap()
    }

    fn resolved(runbook: &LoadedRunbook, vars: &[&str]) -> (ExitCode, String, Vec<String>) {
        let vars: Vec<String> = vars.iter().map(|v| v.to_string()).collect();
        shown(inputs::resolve(runbook, &vars).unwrap_err())
    }

    #[test]
    fn input_errors_keep_their_messages_hints_and_exit_code() {
        let none = runbook("");
        let some = runbook("inputs:\n  share: { type: percent }\n  flag: { type: string }\n");
        let no_hint = |message: &str| (ExitCode::Invalid, message.to_string(), Vec::<String>::new());
        let hint = |message: &str, hint: &str| (ExitCode::Invalid, message.to_string(), vec![hint.to_string()]);
        assert_eq!(
            resolved(&none, &["oops"]),
            no_hint("--var oops: expected K=V, like --var flag=travel_pay_claim_status")
        );
        assert_eq!(
            resolved(&none, &["x=1"]),
            hint("--var x: runbook fix has no input `x`", "runbook fix takes no inputs")
        );
        assert_eq!(
            resolved(&some, &[" y =1"]),
            hint("--var y: runbook fix has no input `y`", "runbook fix takes: share, flag")
        );
        assert_eq!(
            resolved(&some, &["share=150"]).1,
            format!(
                "input `share` (percent, from --var): {}",
                inputs::check_value(crate::runbook::InputType::Percent, "150").unwrap_err()
            )
        );
        assert_eq!(
            resolved(&runbook("inputs:\n  share: { type: percent }\n  flag: { type: string }\n"), &[]),
            hint(
                "missing variables: runbook fix needs share, flag and has no default",
                "pass --var share=... --var flag=..."
            )
        );
        assert_eq!(
            resolved(&runbook("inputs:\n  flag: { type: string }\n"), &[]),
            hint("missing variable: runbook fix needs flag and has no default", "pass --var flag=...")
        );
    }

    #[test]
    fn config_errors_keep_their_messages_hints_and_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            shown(Config::discover(None, dir.path()).unwrap_err()),
            (
                ExitCode::Invalid,
                format!("no rollout.yaml in {} or any folder above it", dir.path().display()),
                vec!["pass -C path/to/rollout.yaml, or try `rollout rehearse --severity critical` to see the shipped runbooks work".to_string()]
            )
        );
        let missing = dir.path().join("nope.yaml");
        assert_eq!(
            shown(Config::discover(Some(Path::new("nope.yaml")), dir.path()).unwrap_err()),
            (ExitCode::Invalid, format!("config file {} does not exist", missing.display()), Vec::new())
        );
        std::fs::write(dir.path().join("rollout.yaml"), "version: 7\n").unwrap();
        let error = Error::from(Config::discover(None, dir.path()).unwrap_err());
        assert_eq!(error.code, ExitCode::Invalid);
        assert!(error.hints.is_empty());
        assert!(error.error.downcast_ref::<Diagnostics>().is_some(), "{error}");
    }
}
