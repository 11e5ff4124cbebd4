//! Feature-flag services behind one trait: read a flag's state, change it.
//! One module per service; steps never name a vendor.

pub mod flagd;

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::config::{FlagProvider, FlagsConfig};
use crate::percent::Percent;

/// A flag's state as the service reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagState {
    pub enabled: bool,
    /// Share of users who get the feature when enabled; None means everyone.
    pub percent: Option<Percent>,
    /// Targeting this model does not capture (rules, segments), described for the operator.
    pub other: Option<String>,
    /// The service's own representation, kept whole so that it can be put back exactly.
    pub raw: serde_json::Value,
}

impl FlagState {
    pub fn summary(&self) -> String {
        match (&self.other, self.enabled) {
            (Some(other), true) => format!("on, {other}"),
            _ => self.target().summary(),
        }
    }

    /// The state reduced to what a step can ask for.
    pub fn target(&self) -> FlagTarget {
        FlagTarget::new(self.enabled, self.percent)
    }
}

/// What a `flag` step asks for: off, on for everyone, or on for a share of users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagTarget {
    pub enabled: bool,
    percent: Option<Percent>,
}

impl FlagTarget {
    /// 100% is the same as everyone; a disabled flag has no percentage.
    pub fn new(enabled: bool, percent: Option<Percent>) -> FlagTarget {
        let percent = if enabled { percent.filter(|p| !p.is_full()) } else { None };
        FlagTarget { enabled, percent }
    }

    /// The share of users, or None for everyone (or off).
    pub fn percent(&self) -> Option<Percent> {
        self.percent
    }

    pub fn is_met_by(&self, state: &FlagState) -> bool {
        state.other.is_none() && state.target() == *self
    }

    pub fn summary(&self) -> String {
        match (self.enabled, self.percent) {
            (false, _) => "off".into(),
            (true, None) => "on, 100%".into(),
            (true, Some(p)) => format!("on, {p}%"),
        }
    }
}

/// A flag service: where the flags live and how to read and change one.
pub trait FlagService {
    /// Where the flags live, for messages: `flagd file flags.json`.
    fn describe(&self) -> String;
    /// The flag's current state; an unknown flag is a failed precondition.
    fn read(&self, flag: &str) -> Result<FlagState>;
    /// Change the flag to the target state.
    fn write(&self, flag: &str, target: FlagTarget) -> Result<()>;
}

/// The configured flag service.
pub fn service(config: &FlagsConfig, config_dir: &Path) -> Result<Box<dyn FlagService>> {
    match config.provider {
        FlagProvider::Flagd => Ok(Box::new(flagd::FlagdFile::new(config, config_dir)?)),
        other => anyhow::bail!(
            "flags provider `{}` is not available in this build of rollout; use `flagd` or a newer rollout",
            other.as_str()
        ),
    }
}
