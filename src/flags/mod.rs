//! Feature-flag services behind one trait: read who gets a feature, plan a change, write it.
//! One module per service; steps never name a vendor. What rollout cannot model counts as on.

pub mod flagd;
pub mod flipper;
pub mod launchdarkly;
pub mod unleash;

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::{FlagsConfig, HttpSettings};
use crate::percent::Percent;

/// Targeting rollout does not model (Flipper actors, an Unleash strategy it cannot read, a
/// LaunchDarkly rule, flagd rules): shown as it is, and always counted as on for someone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Targeting {
    /// What it is, for the operator: `actors (3: User;1, User;2, User;3)`.
    pub shown: String,
    /// Its exact value as the service reports it (compact JSON), so that two different
    /// targetings never compare equal.
    pub exact: String,
}

impl Targeting {
    pub fn new(shown: impl Into<String>, exact: &serde_json::Value) -> Targeting {
        Targeting { shown: shown.into(), exact: exact.to_string() }
    }
}

/// Who gets a feature, as the service reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagState {
    /// The share of users the modelled rollout gives the feature: 0 is none, 100 all (of `scope`).
    pub share: Percent,
    /// Who the share is taken of, when not all users (e.g. users matching a constraint).
    pub scope: Option<String>,
    /// Everything else that can give someone the feature.
    pub targeting: Vec<Targeting>,
    /// The service's own representation, kept whole so that it can be put back exactly.
    pub raw: serde_json::Value,
    /// The representation's text as the service holds it, when that is a file (a flagd
    /// entry): put back byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl FlagState {
    /// Off, on for everyone, or on for a share of all users, and nothing else.
    pub fn plain(target: FlagTarget, raw: serde_json::Value) -> FlagState {
        FlagState { share: target.share(), scope: None, targeting: Vec::new(), raw, source: None }
    }

    pub fn off(raw: serde_json::Value) -> FlagState {
        FlagState::plain(FlagTarget::OFF, raw)
    }

    /// On for someone: a share above 0, or targeting rollout does not model.
    pub fn is_on(&self) -> bool {
        !self.share.is_zero() || !self.targeting.is_empty()
    }

    /// Everyone gets it, whatever else is set.
    fn is_everyone(&self) -> bool {
        self.share.is_full() && self.scope.is_none()
    }

    /// `off`, `on, 100%`, `on, 5% of users matching 1 constraint`, `on, 5% + actors (2: …)`,
    /// `on for some: expression {…}`.
    pub fn summary(&self) -> String {
        // Both are the service's words: shown, never obeyed by the terminal.
        let scope = self.scope.as_ref().map(|s| format!(" of {}", crate::untrusted::printable(s))).unwrap_or_default();
        let extra: Vec<_> = self.targeting.iter().map(|t| crate::untrusted::printable(&t.shown)).collect();
        match (self.share.is_zero(), extra.is_empty()) {
            (true, true) => "off".into(),
            (false, true) => format!("on, {}%{scope}", self.share),
            (true, false) => format!("on for some: {}", extra.join("; ")),
            (false, false) => format!("on, {}%{scope} + {}", self.share, extra.join("; ")),
        }
    }

    /// Modelled state equal, whatever the raw representation.
    pub fn same_as(&self, other: &FlagState) -> bool {
        self.share == other.share && self.scope == other.scope && self.targeting == other.targeting
    }
}

/// A state written to the journal and read back: equal whole, raw representation included.
#[cfg(test)]
pub(crate) fn assert_reads_back(state: &FlagState) {
    let json = serde_json::to_string(state).unwrap();
    assert_eq!(&serde_json::from_str::<FlagState>(&json).unwrap(), state, "{json}");
}

/// What a change does to the set of users who get the feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    Fewer,
    More,
    Same,
    Unknown,
}

impl Reach {
    /// Compare who gets the feature before and after. Shares of one rollout are nested (a
    /// user in 5% is in 50%), so only the shares and the targeting kept or dropped matter;
    /// anything else is unknown, never guessed.
    pub fn between(before: &FlagState, after: &FlagState) -> Reach {
        let (was, will) = (before.is_on(), after.is_on());
        if before.same_as(after) || (!was && !will) || (before.is_everyone() && after.is_everyone()) {
            return Reach::Same;
        }
        if !will {
            return Reach::Fewer;
        }
        if !was || after.is_everyone() {
            return Reach::More;
        }
        if before.scope != after.scope {
            return Reach::Unknown;
        }
        let kept = |from: &FlagState, to: &FlagState| to.targeting.iter().all(|t| from.targeting.contains(t));
        if after.share <= before.share && kept(before, after) {
            Reach::Fewer
        } else if after.share >= before.share && kept(after, before) {
            Reach::More
        } else {
            Reach::Unknown
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Fewer => "fewer",
            Reach::More => "more",
            Reach::Same => "same",
            Reach::Unknown => "unknown",
        }
    }

    /// For the preview line, readable without colour: `▼ fewer users`.
    pub fn label(self) -> &'static str {
        match self {
            Reach::Fewer => "▼ fewer users",
            Reach::More => "▲ MORE users",
            Reach::Same => "= the same users",
            Reach::Unknown => "? an unknown share of users",
        }
    }
}

// `FlagTarget` and `Direction` are the model's (runbook/kinds/flag.rs); what they mean
// for a flag's state and reach is worked out here.
pub use crate::runbook::kinds::flag::{Direction, FlagTarget};

impl Direction {
    /// The reach that goes against this direction.
    pub fn forbids(self) -> Reach {
        match self {
            Direction::Down => Reach::More,
            Direction::Up => Reach::Fewer,
        }
    }
}

impl FlagTarget {
    pub fn summary(&self) -> String {
        FlagState::plain(*self, serde_json::Value::Null).summary()
    }
}

/// What writing a target to a flag will leave, worked out from the state just read.
#[derive(Debug, Clone)]
pub struct FlagPlan {
    /// The state the write leaves (for Flipper: the actors a percentage step keeps).
    pub after: FlagState,
    /// Targeting the write removes, each shown as it is.
    pub clears: Vec<Targeting>,
}

impl FlagPlan {
    /// The write replaces everything with the plain target.
    pub fn replacing(current: &FlagState, target: FlagTarget) -> FlagPlan {
        FlagPlan { after: FlagState::plain(target, serde_json::Value::Null), clears: current.targeting.clone() }
    }

    /// The write changes the share and keeps the scope and every other targeting.
    pub fn keeping(current: &FlagState, target: FlagTarget) -> FlagPlan {
        let after = FlagState { share: target.share(), raw: serde_json::Value::Null, source: None, ..current.clone() };
        FlagPlan { after, clears: Vec::new() }
    }
}

/// A flag service: where the flags live and how to read and change one.
pub trait FlagService: Send {
    /// Where the flags live, for messages: `flagd /srv/flags.json`.
    fn describe(&self) -> String;
    /// Where the flags live in full, for the run header: the URL, or the absolute path.
    fn location(&self) -> String {
        self.describe()
    }
    /// The flag's current state; an unknown flag is a failed precondition.
    fn read(&self, flag: &str) -> Result<FlagState>;
    /// Who would get the feature if the service held `raw` (a state `read` returned, read back
    /// from a journal): what undo shows before it writes `raw` back.
    fn model(&self, flag: &str, raw: &serde_json::Value) -> Result<FlagState>;
    /// What writing `target` would leave, from the state just read; reads nothing more. A
    /// target the service cannot hold is a failed precondition.
    fn plan(&self, flag: &str, target: FlagTarget, current: &FlagState) -> Result<FlagPlan>;
    /// Checks that need no change but may touch the service (a file's folder is writable).
    fn check_writable(&self, _flag: &str) -> Result<()> {
        Ok(())
    }
    /// Change the flag to the target state; `note` names the run for the service's audit log.
    fn write(&self, flag: &str, target: FlagTarget, note: &str) -> Result<()>;
    /// Put back a state `read` returned earlier, exactly, from the service's own representation
    /// kept in it (for `undo`); `note` names the run for the audit log.
    fn restore(&self, flag: &str, state: &FlagState, note: &str) -> Result<()>;
}

/// The configured flag service.
pub fn service(config: &FlagsConfig, config_dir: &Path, http: &HttpSettings) -> Result<Box<dyn FlagService>> {
    Ok(match config {
        FlagsConfig::Flagd(config) => Box::new(flagd::FlagdFile::new(config, config_dir)),
        FlagsConfig::Flipper(config) => Box::new(flipper::Flipper::new(config, http)?),
        FlagsConfig::Unleash(config) => Box::new(unleash::Unleash::new(config, http)?),
        FlagsConfig::Launchdarkly(config) => Box::new(launchdarkly::LaunchDarkly::new(config, http)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(share: &str, targeting: &[&str]) -> FlagState {
        FlagState {
            share: Percent::parse_decimal(share).unwrap(),
            scope: None,
            targeting: targeting.iter().map(|t| Targeting::new(*t, &serde_json::json!(t))).collect(),
            raw: serde_json::Value::Null,
            source: None,
        }
    }

    #[test]
    fn reach_compares_nested_shares_and_kept_targeting() {
        use Reach::*;
        for (before, after, reach) in [
            (state("100", &[]), state("0", &[]), Fewer),
            (state("5", &[]), state("50", &[]), More),
            (state("50", &[]), state("5", &[]), Fewer),
            (state("5", &[]), state("5", &[]), Same),
            (state("0", &[]), state("5", &[]), More),
            (state("0", &["actors"]), state("0", &[]), Fewer),
            (state("5", &["actors"]), state("5", &[]), Fewer),
            (state("5", &["actors"]), state("50", &["actors"]), More),
            (state("5", &["actors"]), state("50", &[]), Unknown),
            (state("0", &["expression"]), state("5", &[]), Unknown),
            (state("10", &["groups"]), state("100", &[]), More),
            (state("100", &["groups"]), state("100", &[]), Same),
        ] {
            assert_eq!(Reach::between(&before, &after), reach, "{} -> {}", before.summary(), after.summary());
        }
    }

    #[test]
    fn summaries_show_everything_that_is_set() {
        assert_eq!(state("0", &[]).summary(), "off");
        assert_eq!(state("100", &[]).summary(), "on, 100%");
        assert_eq!(state("33.333", &[]).summary(), "on, 33.333%");
        assert_eq!(state("0", &["expression {}"]).summary(), "on for some: expression {}");
        assert_eq!(
            state("5", &["actors (1: User;1)", "groups (beta)"]).summary(),
            "on, 5% + actors (1: User;1); groups (beta)"
        );
    }
}
