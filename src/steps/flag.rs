//! The `flag` step: read the flag live, show `before -> after` and fewer or more users, read
//! again before writing if anyone could have looked, write only if it differs, read it back.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::{Applied, Change, Context, Done, Held, Landed, Preview, Projected, Services, Step, snapshot};
use crate::error::Precondition;
use crate::flags::{Direction, FlagPlan, FlagService, FlagState, FlagTarget, Reach};
use crate::runbook::kinds::flag::{FlagChange, FlagGoal, FlagRestore};
use crate::runbook::resolve::Outputs;

/// What a flag step journals as its `before` and `after` (beside the snapshot's `summary`):
/// `{"flag": "checkout", "state": {…}}`, read back whole for `undo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagStepState {
    pub flag: String,
    pub state: FlagState,
}

impl FlagStepState {
    /// The snapshot a preview journals: `summary` first, then the typed state.
    fn snapshot(flag: &str, state: &FlagState) -> serde_json::Value {
        let typed = FlagStepState { flag: flag.to_string(), state: state.clone() };
        snapshot(state.summary(), serde_json::to_value(typed).unwrap_or_default())
    }
}

/// The write a flag preview planned: the state it starts from and the one it leads to.
#[derive(Debug, Clone)]
pub struct FlagWrite {
    pub before: FlagState,
    pub after: FlagState,
}

impl FlagWrite {
    /// The write a flag step's preview planned.
    fn of(preview: &Preview) -> Result<&FlagWrite> {
        match &preview.change {
            Change::Flag(write) => Ok(write),
            _ => bail!("a flag preview plans a flag write"),
        }
    }
}

pub struct FlagStep<'s> {
    service: &'s dyn FlagService,
    change: FlagChange,
}

/// The step that makes or checks `change`, on the configured flag service.
pub fn build<'s>(services: &'s Services, change: FlagChange) -> Result<Box<dyn Step + 's>> {
    Ok(Box::new(FlagStep { service: services.flags()?, change }))
}

fn outputs(before: &str, after: &str, changed: bool) -> Outputs {
    Outputs::from([
        ("before".to_string(), before.to_string()),
        ("after".to_string(), after.to_string()),
        ("changed".to_string(), changed.to_string()),
    ])
}

impl FlagStep<'_> {
    fn name(&self) -> &str {
        &self.change.flag
    }

    fn place(&self) -> String {
        format!("flag {} ({})", self.name(), self.service.describe())
    }

    fn details(&self, current: &FlagState) -> Vec<String> {
        let raw = serde_json::to_string_pretty(&current.raw).unwrap_or_default();
        std::iter::once(format!("{} as {} reports it now:", self.name(), self.service.describe()))
            .chain(raw.lines().map(|l| format!("  {l}")))
            .collect()
    }

    /// The state to start from: what an earlier step of the plan leaves, or a live read.
    fn current(&self, cx: &Context) -> Result<(FlagState, bool)> {
        match cx.projection.flag(self.name()) {
            Some(projected) => Ok((projected.clone(), false)),
            None => Ok((self.service.read(self.name())?, true)),
        }
    }

    fn expect(&self, current: &FlagState, on: bool) -> Result<Preview> {
        if current.is_on() != on {
            let wanted = if on { "on for someone" } else { "off" };
            return Err(Precondition(format!(
                "{} is {}, but this step expects it {wanted}; nothing was changed",
                self.place(),
                current.summary()
            ))
            .into());
        }
        let shown = current.summary();
        Ok(Preview {
            effect: format!("{}: {shown}, as expected (only read, never written)", self.place()),
            before: FlagStepState::snapshot(self.name(), current),
            after: FlagStepState::snapshot(self.name(), current),
            details: self.details(current),
            unchanged: Some(outputs(&shown, &shown, false)),
            reach: Some(Reach::Same),
            change: Change::Flag(FlagWrite { before: current.clone(), after: current.clone() }),
            ..Preview::default()
        })
    }

    fn set(
        &self,
        current: &FlagState,
        live: bool,
        target: FlagTarget,
        direction: Option<Direction>,
    ) -> Result<Preview> {
        // A state an earlier step will leave has no service details to plan with; the step's
        // own live preview plans it when its turn comes.
        let plan =
            if live { self.service.plan(self.name(), target, current)? } else { FlagPlan::keeping(current, target) };
        if !target.is_on() && plan.after.is_on() {
            return Err(Precondition(format!(
                "{}: turning it off would still leave it {}; change that in the flag service first",
                self.place(),
                plan.after.summary()
            ))
            .into());
        }
        let reach = Reach::between(current, &plan.after);
        let (before, after) = (current.summary(), plan.after.summary());
        let unchanged = plan.after.same_as(current);
        let against = direction.filter(|d| !unchanged && reach == d.forbids());
        if let Some(direction) = direction
            && reach == Reach::Unknown
        {
            return Err(Precondition(format!(
                "{}: {before} -> {after}: rollout cannot tell whether this gives the feature to more users or fewer, \
                 and the step says `direction: {}`; change the flag by hand, or drop `direction` to write it anyway",
                self.place(),
                direction.as_str()
            ))
            .into());
        }
        let effect = match (unchanged, against) {
            (true, _) => format!("{}: already {before}, nothing to change", self.place()),
            (false, Some(Direction::Down)) => {
                format!(
                    "{}: {before}, already at or below {}: not written (direction: down)",
                    self.place(),
                    target.summary()
                )
            }
            (false, Some(Direction::Up)) => {
                format!(
                    "{}: {before}, already at or above {}: not written (direction: up)",
                    self.place(),
                    target.summary()
                )
            }
            (false, None) => format!("{}: {before} -> {after}  [{}]", self.place(), reach.label()),
        };
        let writes = !unchanged && against.is_none();
        if writes && live {
            self.service.check_writable(self.name())?;
        }
        let mut notes = Vec::new();
        if writes && !plan.clears.is_empty() {
            let cleared: Vec<&str> = plan.clears.iter().map(|t| t.shown.as_str()).collect();
            notes.push(format!(
                "this write clears {}: rollout cannot put them back by re-enabling, which gives a share of all users",
                cleared.join("; ")
            ));
        }
        let ends = if writes { &plan.after } else { current };
        Ok(Preview {
            effect,
            before: FlagStepState::snapshot(self.name(), current),
            after: FlagStepState::snapshot(self.name(), ends),
            details: self.details(current),
            unchanged: (!writes).then(|| outputs(&before, &before, false)),
            projection: writes.then(|| Projected::Flag { name: self.name().to_string(), state: plan.after.clone() }),
            notes,
            reach: Some(if writes { reach } else { Reach::Same }),
            against_direction: against.is_some(),
            change: Change::Flag(FlagWrite { before: current.clone(), after: ends.clone() }),
        })
    }

    fn preview_from(&self, current: &FlagState, live: bool) -> Result<Preview> {
        match self.change.goal {
            FlagGoal::Expect { on } => self.expect(current, on),
            FlagGoal::Set { target, direction } => self.set(current, live, target, direction),
        }
    }
}

impl Step for FlagStep<'_> {
    fn preview(&self, cx: &Context) -> Result<Preview> {
        let (current, live) = self.current(cx)?;
        self.preview_from(&current, live)
    }

    fn recheck(&self, _cx: &Context, confirmed: &Preview) -> Result<Option<Preview>> {
        let fresh = self.preview_from(&self.service.read(self.name())?, true)?;
        let moved = FlagWrite::of(&fresh)?.before.summary() != FlagWrite::of(confirmed)?.before.summary()
            || fresh.effect != confirmed.effect;
        Ok(moved.then_some(fresh))
    }

    fn apply(&self, cx: &Context, preview: &Preview) -> Result<Applied> {
        let FlagGoal::Set { target, .. } = self.change.goal else { bail!("a flag check writes nothing") };
        let write = FlagWrite::of(preview)?;
        self.service.write(self.name(), target, &format!("rollout run {}", cx.run_id))?;
        let outputs = outputs(&write.before.summary(), &write.after.summary(), true);
        Ok(Applied { outputs, landed: Landed::Flag(write.after.clone()) })
    }

    fn verify(&self, _cx: &Context, applied: &Applied) -> Result<()> {
        let Landed::Flag(wanted) = &applied.landed else { return Ok(()) };
        let (now, wanted) = (self.service.read(self.name())?.summary(), wanted.summary());
        if now != wanted {
            bail!("{} was written but now reports {now}, not {wanted}", self.place());
        }
        Ok(())
    }

    fn outcome(&self, outputs: &Outputs) -> String {
        let said = |key: &str| outputs.get(key).map(String::as_str).unwrap_or_default();
        format!("flag {}: {} -> {} (read back)", self.name(), said("before"), said("after"))
    }

    /// The flag read now against the state the step left it in.
    fn holds(&self, _cx: &Context, done: Done) -> Result<Held> {
        let left = FlagStepState::deserialize(done.after)
            .map_err(|e| anyhow::anyhow!("the journal's state of flag {} does not read: {e}", self.name()))?;
        let now = self.service.read(self.name())?;
        Ok(if now.same_as(&left.state) {
            Held::Holds(format!("{}: {}, as the run left it", self.place(), now.summary()))
        } else {
            Held::Drifted(format!(
                "{} is now {}; the run left it {}",
                self.place(),
                now.summary(),
                left.state.summary()
            ))
        })
    }
}

/// Puts a flag back exactly as an earlier run found it, through the service's own representation
/// journaled then: gates, strategies and their constraints, targeting, percentages.
pub struct RestoreStep<'s> {
    service: &'s dyn FlagService,
    restore: FlagRestore,
}

/// The step that puts `restore`'s flag back, on the configured flag service.
pub fn build_restore<'s>(services: &'s Services, restore: FlagRestore) -> Result<Box<dyn Step + 's>> {
    Ok(Box::new(RestoreStep { service: services.flags()?, restore }))
}

impl RestoreStep<'_> {
    fn place(&self) -> String {
        format!("flag {} ({})", self.restore.flag, self.service.describe())
    }

    fn preview_from(&self, now: &FlagState) -> Result<Preview> {
        let FlagRestore { flag, to, left, run, force } = &self.restore;
        // What is shown and confirmed is what the service will be given: the journaled
        // representation, read as the service reads it, must be the state the journal says.
        let written = self.service.model(flag, &to.raw)?;
        if !written.same_as(to) {
            return Err(Precondition(format!(
                "the journal says run {run} found {} {}, but the state it keeps for it reads as {}: not put back",
                self.place(),
                to.summary(),
                written.summary()
            ))
            .into());
        }
        let write = Change::Flag(FlagWrite { before: now.clone(), after: to.clone() });
        let snapshots = (FlagStepState::snapshot(flag, now), FlagStepState::snapshot(flag, to));
        if now.raw == to.raw && now.source == to.source {
            let shown = now.summary();
            return Ok(Preview {
                effect: format!("{}: already {shown}, as run {run} found it: nothing to change", self.place()),
                before: snapshots.0,
                after: snapshots.1,
                unchanged: Some(outputs(&shown, &shown, false)),
                reach: Some(Reach::Same),
                change: write,
                ..Preview::default()
            });
        }
        let moved = !now.same_as(left);
        if moved && !force {
            return Err(Precondition(format!(
                "{} is now {}, not {} as run {run} left it: someone changed it since; nothing was changed \
                 (--force puts it back as the run found it anyway)",
                self.place(),
                now.summary(),
                left.summary()
            ))
            .into());
        }
        let reach = Reach::between(now, to);
        let mut notes = Vec::new();
        if moved {
            notes.push(format!("it changed since run {run} left it {} (--force)", left.summary()));
        }
        let raw = |state: &FlagState| serde_json::to_string_pretty(&state.raw).unwrap_or_default();
        let details = std::iter::once(format!("{flag} now:"))
            .chain(raw(now).lines().map(|l| format!("  {l}")))
            .chain(std::iter::once(format!("{flag} as run {run} found it, to be put back:")))
            .chain(raw(to).lines().map(|l| format!("  {l}")))
            .collect();
        Ok(Preview {
            effect: format!(
                "{}: {} -> {}, as run {run} found it  [{}]",
                self.place(),
                now.summary(),
                to.summary(),
                reach.label()
            ),
            before: snapshots.0,
            after: snapshots.1,
            details,
            notes,
            reach: Some(reach),
            projection: Some(Projected::Flag { name: flag.clone(), state: to.clone() }),
            change: write,
            ..Preview::default()
        })
    }
}

impl Step for RestoreStep<'_> {
    /// From what an earlier undo step of the plan leaves, else a live read.
    fn preview(&self, cx: &Context) -> Result<Preview> {
        match cx.projection.flag(&self.restore.flag) {
            Some(projected) => self.preview_from(projected),
            None => self.preview_from(&self.service.read(&self.restore.flag)?),
        }
    }

    fn recheck(&self, _cx: &Context, confirmed: &Preview) -> Result<Option<Preview>> {
        let now = self.service.read(&self.restore.flag)?;
        (now.raw != FlagWrite::of(confirmed)?.before.raw).then(|| self.preview_from(&now)).transpose()
    }

    fn apply(&self, cx: &Context, preview: &Preview) -> Result<Applied> {
        let write = FlagWrite::of(preview)?;
        self.service.restore(&self.restore.flag, &write.after, &format!("rollout run {} (undo)", cx.run_id))?;
        let outputs = outputs(&write.before.summary(), &write.after.summary(), true);
        Ok(Applied { outputs, landed: Landed::Flag(write.after.clone()) })
    }

    fn verify(&self, _cx: &Context, applied: &Applied) -> Result<()> {
        let Landed::Flag(wanted) = &applied.landed else { return Ok(()) };
        let now = self.service.read(&self.restore.flag)?;
        if !now.same_as(wanted) {
            bail!("{} was put back but now reports {}, not {}", self.place(), now.summary(), wanted.summary());
        }
        Ok(())
    }

    fn outcome(&self, outputs: &Outputs) -> String {
        let said = |key: &str| outputs.get(key).map(String::as_str).unwrap_or_default();
        format!("flag {}: {} -> {} (put back, read back)", self.restore.flag, said("before"), said("after"))
    }

    fn question(&self) -> &'static str {
        "Put it back?"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::Targeting;

    #[test]
    fn the_journaled_shape_is_kept_and_reads_back() {
        let state = FlagState {
            share: crate::percent::Percent::from_ratio(1, 3).unwrap(),
            scope: Some("users matching 1 constraint".into()),
            targeting: vec![Targeting::new("groups (admins)", &serde_json::json!(["admins"]))],
            raw: serde_json::json!({ "gates": [] }),
            source: Some("{ \"gates\": [] }".into()),
        };
        let snapshot = FlagStepState::snapshot("checkout", &state);
        let keys: Vec<&String> = snapshot.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["summary", "flag", "state"]);
        assert_eq!(snapshot["summary"], state.summary());
        let read = FlagStepState::deserialize(&snapshot).unwrap();
        assert_eq!(read, FlagStepState { flag: "checkout".into(), state });
    }
}
