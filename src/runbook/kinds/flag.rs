//! The `flag` step kind: its YAML fields, checks and rendering into a [`FlagChange`].
//! Its service is the flag service of the config's `flags` section.

use serde::{Deserialize, Serialize};

use super::{Kind, Service};
use crate::echo;
use crate::percent::Percent;
use crate::runbook::resolve::{Renderer, Unresolved};
use crate::runbook::validate::{Checker, LiteralCheck};
use crate::runbook::{StepCommon, Text};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSpec {
    pub name: Text,
    #[serde(default)]
    pub state: Option<Text>,
    #[serde(default)]
    pub percent: Option<Text>,
    /// `down` never gives more users the feature, `up` never fewer.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// Only check, never write: the feature must be `on` for someone, or `off`.
    #[serde(default)]
    pub expect: Option<Text>,
}

/// Put a flag back exactly as an earlier run found it (`rollout undo`): never written from a
/// runbook, only built from a journal.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagRestore {
    pub flag: String,
    /// The state the run found, read back from its journal, to put back.
    pub to: crate::flags::FlagState,
    /// The state the run left: anything else now means someone changed the flag since.
    pub left: crate::flags::FlagState,
    /// The run whose change is undone, for messages and the service's audit log.
    pub run: String,
    /// Put it back even if it changed since the run left it.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlagChange {
    pub flag: String,
    pub goal: FlagGoal,
}

/// What a `flag` step does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FlagGoal {
    /// Write `target` unless it holds; a direction refuses to move the other way.
    Set { target: FlagTarget, direction: Option<Direction> },
    /// Only read: the feature must be on for someone (`true`) or off.
    Expect { on: bool },
}

/// `on`/`off` (or `true`/`false`) as a boolean.
pub fn parse_state(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("`{}` is not a flag state: use on or off", echo::clip(text))),
    }
}

/// The flag target a `state` and `percent` pair asks for.
pub fn flag_target(state: Option<bool>, percent: Option<Percent>) -> Result<FlagTarget, String> {
    match (state, percent) {
        (Some(false), Some(_)) => {
            Err("state: off with a percent is contradictory: drop the percent, or use state: on".into())
        }
        (None, None) => Err("a flag step needs `state: on|off`, `percent`, or both".into()),
        (state, percent) => Ok(FlagTarget::new(state.unwrap_or(true), percent)),
    }
}

impl Kind for FlagSpec {
    const NAME: &'static str = "flag";
    const SUMMARY: &'static str =
        "turn a feature toggle on, off or to a share of users (direction: down|up never goes the other way)";
    const OUTPUTS: &'static [&'static str] = &["before", "after", "changed"];
    const SERVICE: Option<Service> = Some(Service::Flags);
    type Request = FlagChange;

    fn check(&self, c: &mut Checker, i: usize, p: &str) {
        let not_empty: &LiteralCheck = &|v| if v.trim().is_empty() { Err("empty flag name".into()) } else { Ok(()) };
        c.text(i, &format!("{p}.name"), &self.name, Some(not_empty));
        if let Some(state) = &self.state {
            c.text(i, &format!("{p}.state"), state, Some(&|v| parse_state(v).map(drop)));
        }
        if let Some(percent) = &self.percent {
            c.text(i, &format!("{p}.percent"), percent, Some(&|v| v.parse::<Percent>().map(drop)));
        }
        if let Some(expect) = &self.expect {
            c.text(i, &format!("{p}.expect"), expect, Some(&|v| parse_state(v).map(drop)));
            if self.state.is_some() || self.percent.is_some() || self.direction.is_some() {
                c.at_key(p, "`expect` only checks the flag: it takes no state, percent or direction".into());
            }
        } else {
            let literal_state = self.state.as_ref().and_then(|s| parse_state(&s.0).ok());
            let has_percent = self.percent.as_ref().map(|_| Percent::FULL);
            if let Err(why) = flag_target(literal_state.or(self.state.as_ref().map(|_| true)), has_percent) {
                c.at_key(p, why);
            }
        }
    }

    fn resolve(&self, r: &Renderer, _: &StepCommon) -> Result<FlagChange, Unresolved> {
        let name = r.text("name", &self.name)?;
        if let Some(expect) = &self.expect {
            let on = r.typed("expect", expect, parse_state)?;
            return Ok(FlagChange { flag: name, goal: FlagGoal::Expect { on } });
        }
        let state = self.state.as_ref().map(|s| r.typed("state", s, parse_state)).transpose()?;
        let percent = self.percent.as_ref().map(|p| r.typed("percent", p, |v| v.parse::<Percent>())).transpose()?;
        let target = flag_target(state, percent).map_err(|why| r.invalid(&r.path, why))?;
        Ok(FlagChange { flag: name, goal: FlagGoal::Set { target, direction: self.direction } })
    }
}

/// Which way a `flag` step may move a feature: `down` never gives more users the feature,
/// `up` never fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Down,
    Up,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Down => "down",
            Direction::Up => "up",
        }
    }
}

/// What a `flag` step asks for: off, on for everyone, or on for a share of users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagTarget {
    share: Percent,
}

impl FlagTarget {
    pub const OFF: FlagTarget = FlagTarget { share: Percent::ZERO };

    /// 100% is the same as everyone; 0% is the same as off.
    pub fn new(enabled: bool, percent: Option<Percent>) -> FlagTarget {
        FlagTarget { share: if enabled { percent.unwrap_or(Percent::FULL) } else { Percent::ZERO } }
    }

    pub fn is_on(&self) -> bool {
        !self.share.is_zero()
    }

    /// 0 for off, 100 for everyone.
    pub fn share(&self) -> Percent {
        self.share
    }

    /// The share, when it is neither off nor everyone.
    pub fn partial(&self) -> Option<Percent> {
        (!self.share.is_zero() && !self.share.is_full()).then_some(self.share)
    }
}
