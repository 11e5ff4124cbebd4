//! Errors that know their exit code and what the operator should do next.
//! Inside the crate anyhow carries the context; at the edge this type picks the exit code.

use std::fmt;

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
                "preflight failed: a read-only check shows a step cannot succeed; nothing was changed"
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

/// A step failed while its pipeline run may still be going: retrying the step would start a
/// second run, so the engine does not (the error inside says what happened).
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
