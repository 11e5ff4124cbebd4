//! Feature-flag services behind one trait: read a flag's state, change it.
//! One module per service; steps never name a vendor.

pub mod flagd;
pub mod flipper;
pub mod launchdarkly;
pub mod unleash;

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::config::{FlagProvider, FlagsConfig, HttpSettings};
use crate::percent::Percent;

/// A flag's state as the service reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagState {
    pub enabled: bool,
    /// Share of users who get the feature when enabled; None means everyone.
    pub percent: Option<Percent>,
    /// Targeting this model does not capture (rules, segments), described for the operator;
    /// a flag with such targeting never counts as being in a plain target state.
    pub other: Option<String>,
    /// Who the percentage applies to, when not everyone (e.g. users matching a constraint);
    /// shown, and kept as it is by every write.
    pub scope: Option<String>,
    /// The service's own representation, kept whole so that it can be put back exactly.
    pub raw: serde_json::Value,
}

impl FlagState {
    pub fn summary(&self) -> String {
        let base = match (&self.other, self.enabled) {
            (Some(other), true) => format!("on, {other}"),
            _ => self.target().summary(),
        };
        match (&self.scope, self.enabled) {
            (Some(scope), true) => format!("{base} ({scope})"),
            _ => base,
        }
    }

    /// A state with nothing beyond on/off and a percentage.
    pub fn plain(enabled: bool, percent: Option<Percent>, raw: serde_json::Value) -> FlagState {
        FlagState { enabled, percent, other: None, scope: None, raw }
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
    /// 0% is the same as off.
    pub fn new(enabled: bool, percent: Option<Percent>) -> FlagTarget {
        let enabled = enabled && percent.is_none_or(|p| p.hundredths() > 0);
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
    /// Check, from the state just read, that the target can be written (e.g. a percentage the
    /// service can hold); reads nothing more.
    fn check(&self, _flag: &str, _target: FlagTarget, _current: &FlagState) -> Result<()> {
        Ok(())
    }
    /// Change the flag to the target state; `note` names the run for the service's audit log.
    fn write(&self, flag: &str, target: FlagTarget, note: &str) -> Result<()>;
}

/// The configured flag service.
pub fn service(config: &FlagsConfig, config_dir: &Path, http: &HttpSettings) -> Result<Box<dyn FlagService>> {
    Ok(match config.provider {
        FlagProvider::Flagd => Box::new(flagd::FlagdFile::new(config, config_dir)?),
        FlagProvider::Flipper => Box::new(flipper::Flipper::new(config, http)?),
        FlagProvider::Unleash => Box::new(unleash::Unleash::new(config, http)?),
        FlagProvider::Launchdarkly => Box::new(launchdarkly::LaunchDarkly::new(config, http)?),
    })
}
