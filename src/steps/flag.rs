//! The `flag` step: read the flag live, show `before -> after`, write only if it differs,
//! then read it back. The full before-state is recorded so it can be put back.

use anyhow::{Result, bail};

use super::{Context, Preview, Projected, Step, snapshot};
use crate::flags::{FlagService, FlagState};
use crate::runbook::resolve::{FlagChange, Outputs};

pub struct FlagStep<'s> {
    pub service: &'s dyn FlagService,
    pub change: FlagChange,
}

impl FlagStep<'_> {
    fn outputs(before: String, after: String, changed: bool) -> Outputs {
        Outputs::from([
            ("before".to_string(), before),
            ("after".to_string(), after),
            ("changed".to_string(), changed.to_string()),
        ])
    }
}

impl Step for FlagStep<'_> {
    fn preview(&self, cx: &Context) -> Result<Preview> {
        let name = &self.change.flag;
        let target = self.change.target;
        let projected = cx.projection.flag(name).cloned();
        let live = projected.is_none();
        let current = match projected {
            Some(projected) => projected,
            None => self.service.read(name)?,
        };
        let after_state = FlagState::plain(target.enabled, target.percent(), serde_json::Value::Null);
        let unchanged = target.is_met_by(&current).then(|| Self::outputs(current.summary(), target.summary(), false));
        // A state an earlier step will leave has no service details to check against; the
        // step's own live preview checks it when its turn comes.
        if unchanged.is_none() && live {
            self.service.check(name, target, &current)?;
        }
        let effect = if unchanged.is_some() {
            format!("flag {name} ({}): already {}, nothing to change", self.service.describe(), current.summary())
        } else {
            format!("flag {name} ({}): {} -> {}", self.service.describe(), current.summary(), target.summary())
        };
        let raw = serde_json::to_string_pretty(&current.raw).unwrap_or_default();
        Ok(Preview {
            effect,
            before: snapshot(current.summary(), serde_json::json!({ "flag": name, "state": current })),
            after: snapshot(target.summary(), serde_json::json!({ "flag": name, "state": after_state })),
            details: std::iter::once(format!("{name} as {} reports it now:", self.service.describe()))
                .chain(raw.lines().map(|l| format!("  {l}")))
                .collect(),
            unchanged,
            projection: Some(Projected::Flag { name: name.clone(), state: after_state }),
        })
    }

    fn apply(&self, cx: &Context, preview: &Preview) -> Result<Outputs> {
        self.service.write(&self.change.flag, self.change.target, &format!("rollout run {}", cx.run_id))?;
        let before = preview.before.get("summary").and_then(|s| s.as_str()).unwrap_or_default();
        Ok(Self::outputs(before.to_string(), self.change.target.summary(), true))
    }

    fn verify(&self, _cx: &Context, _outputs: &Outputs) -> Result<()> {
        let name = &self.change.flag;
        let now = self.service.read(name)?;
        if !self.change.target.is_met_by(&now) {
            bail!(
                "flag {name} was written but {} now reports {}, not {}",
                self.service.describe(),
                now.summary(),
                self.change.target.summary()
            );
        }
        Ok(())
    }
}
