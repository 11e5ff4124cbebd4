//! The closed set of step kinds. Each kind's module holds its YAML fields, name, outputs,
//! service, checks and rendering; the enums here dispatch to them with exhaustive matches.

pub mod ci;
pub mod flag;
pub mod gate;
pub mod manual;
pub mod notify;
pub mod revert;

use super::StepCommon;
use super::resolve::{Action, Renderer, Unresolved};
use super::validate::Checker;

pub use ci::CiSpec;
pub use flag::FlagSpec;
pub use gate::GateSpec;
pub use manual::ManualSpec;
pub use notify::NotifySpec;
pub use revert::RevertSpec;

/// What one kind of step brings.
pub(in crate::runbook) trait Kind {
    /// Its key in a step, and its `kind` in the journal.
    const NAME: &'static str;
    /// What it does, one line, for `--help` and the man page.
    const SUMMARY: &'static str;
    /// What `{{ steps.<id>.<output> }}` may read of it.
    const OUTPUTS: &'static [&'static str];
    /// The service it acts through, if any.
    const SERVICE: Option<Service>;
    /// Its time is the operator's, already spent at the prompt, so it is not shown.
    const PACED_BY_OPERATOR: bool = false;
    /// What it is rendered into.
    type Request;
    /// Every check of its fields that needs no service; `path` is `steps[i].<kind>`.
    fn check(&self, c: &mut Checker, i: usize, path: &str);
    /// Its templates rendered and typed.
    fn resolve(&self, r: &Renderer, common: &StepCommon) -> Result<Self::Request, Unresolved>;
}

/// A step's one kind, with its fields.
#[derive(Debug, Clone)]
pub enum StepKindSpec {
    Flag(FlagSpec),
    Revert(RevertSpec),
    Ci(CiSpec),
    Gate(GateSpec),
    Manual(ManualSpec),
    Notify(NotifySpec),
}

impl StepKindSpec {
    pub fn kind(&self) -> StepKind {
        match self {
            StepKindSpec::Flag(_) => StepKind::Flag,
            StepKindSpec::Revert(_) => StepKind::Revert,
            StepKindSpec::Ci(_) => StepKind::Ci,
            StepKindSpec::Gate(_) => StepKind::Gate,
            StepKindSpec::Manual(_) => StepKind::Manual,
            StepKindSpec::Notify(_) => StepKind::Notify,
        }
    }

    pub(in crate::runbook) fn check(&self, c: &mut Checker, i: usize, path: &str) {
        match self {
            StepKindSpec::Flag(spec) => spec.check(c, i, path),
            StepKindSpec::Revert(spec) => spec.check(c, i, path),
            StepKindSpec::Ci(spec) => spec.check(c, i, path),
            StepKindSpec::Gate(spec) => spec.check(c, i, path),
            StepKindSpec::Manual(spec) => spec.check(c, i, path),
            StepKindSpec::Notify(spec) => spec.check(c, i, path),
        }
    }

    pub(in crate::runbook) fn resolve(&self, r: &Renderer, common: &StepCommon) -> Result<Action, Unresolved> {
        Ok(match self {
            StepKindSpec::Flag(spec) => Action::Flag(spec.resolve(r, common)?),
            StepKindSpec::Revert(spec) => Action::Revert(spec.resolve(r, common)?),
            StepKindSpec::Ci(spec) => Action::Ci(spec.resolve(r, common)?),
            StepKindSpec::Gate(spec) => Action::Gate(Box::new(spec.resolve(r, common)?)),
            StepKindSpec::Manual(spec) => Action::Manual(spec.resolve(r, common)?),
            StepKindSpec::Notify(spec) => Action::Notify(spec.resolve(r, common)?),
        })
    }
}

/// The kinds of step without their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Flag,
    Revert,
    Ci,
    Gate,
    Manual,
    Notify,
}

impl StepKind {
    pub const ALL: [StepKind; 6] =
        [StepKind::Flag, StepKind::Revert, StepKind::Ci, StepKind::Gate, StepKind::Manual, StepKind::Notify];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Flag => FlagSpec::NAME,
            StepKind::Revert => RevertSpec::NAME,
            StepKind::Ci => CiSpec::NAME,
            StepKind::Gate => GateSpec::NAME,
            StepKind::Manual => ManualSpec::NAME,
            StepKind::Notify => NotifySpec::NAME,
        }
    }

    /// What it does, one line.
    pub fn summary(self) -> &'static str {
        match self {
            StepKind::Flag => FlagSpec::SUMMARY,
            StepKind::Revert => RevertSpec::SUMMARY,
            StepKind::Ci => CiSpec::SUMMARY,
            StepKind::Gate => GateSpec::SUMMARY,
            StepKind::Manual => ManualSpec::SUMMARY,
            StepKind::Notify => NotifySpec::SUMMARY,
        }
    }

    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            StepKind::Flag => FlagSpec::OUTPUTS,
            StepKind::Revert => RevertSpec::OUTPUTS,
            StepKind::Ci => CiSpec::OUTPUTS,
            StepKind::Gate => GateSpec::OUTPUTS,
            StepKind::Manual => ManualSpec::OUTPUTS,
            StepKind::Notify => NotifySpec::OUTPUTS,
        }
    }

    /// Whether the step's time is the operator's (a manual step's), and so not shown.
    pub fn paced_by_operator(self) -> bool {
        match self {
            StepKind::Flag => FlagSpec::PACED_BY_OPERATOR,
            StepKind::Revert => RevertSpec::PACED_BY_OPERATOR,
            StepKind::Ci => CiSpec::PACED_BY_OPERATOR,
            StepKind::Gate => GateSpec::PACED_BY_OPERATOR,
            StepKind::Manual => ManualSpec::PACED_BY_OPERATOR,
            StepKind::Notify => NotifySpec::PACED_BY_OPERATOR,
        }
    }

    /// The service a kind of step needs: the one table of it.
    pub fn service(self) -> Option<Service> {
        match self {
            StepKind::Flag => FlagSpec::SERVICE,
            StepKind::Revert => RevertSpec::SERVICE,
            StepKind::Ci => CiSpec::SERVICE,
            StepKind::Gate => GateSpec::SERVICE,
            StepKind::Manual => ManualSpec::SERVICE,
            StepKind::Notify => NotifySpec::SERVICE,
        }
    }
}

/// A service a step acts through, set up from the config section of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Flags,
    Git,
    Ci,
    Metrics,
    Notify,
}

impl Service {
    /// Its name in the run header: the config section, for the services the header shows.
    pub fn label(self) -> Option<&'static str> {
        (self != Service::Notify).then(|| self.section())
    }

    /// The config section it is set up from.
    pub fn section(self) -> &'static str {
        match self {
            Service::Flags => "flags",
            Service::Git => "git",
            Service::Ci => "ci",
            Service::Metrics => "metrics",
            Service::Notify => "notify",
        }
    }
}

fn yes() -> bool {
    true
}
