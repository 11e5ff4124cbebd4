//! LaunchDarkly's REST API v2: read a flag's environment, change it with a semantic patch
//! (`turnFlagOff`, `turnFlagOn`, fallthrough rollout weights) whose comment names the run.

use anyhow::{Result, anyhow, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{FlagPlan, FlagService, FlagState, FlagTarget, Targeting};
use crate::config::{HttpSettings, LaunchdarklyConfig};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client, segment};
use crate::percent::Percent;

const DEFAULT_URL: &str = "https://app.launchdarkly.com";
const SEMANTIC_PATCH: &str = "application/json; domain-model=launchdarkly.semanticpatch";

pub struct LaunchDarkly {
    client: Client,
    project: String,
    environment: String,
}

#[derive(Debug, Deserialize)]
struct Flag {
    variations: Vec<Variation>,
    environments: std::collections::HashMap<String, Environment>,
}

#[derive(Debug, Deserialize)]
struct Variation {
    #[serde(rename = "_id", default)]
    id: String,
    value: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Environment {
    on: bool,
    #[serde(default)]
    fallthrough: Fallthrough,
    #[serde(default)]
    off_variation: Option<usize>,
    #[serde(default)]
    rules: Vec<serde_json::Value>,
    #[serde(default)]
    targets: Vec<serde_json::Value>,
    #[serde(default)]
    context_targets: Vec<serde_json::Value>,
    #[serde(default)]
    prerequisites: Vec<serde_json::Value>,
}

impl Environment {
    /// Who gets the feature when the flag is `on` or not: the fallthrough's share of the true
    /// variation, and the targets, rules and prerequisites shown as they are. Off serves the
    /// off variation to everyone: anything but `false` is on for someone.
    fn state(&self, on: bool, flag: &Flag, (on_index, off_index): (usize, usize), raw: serde_json::Value) -> FlagState {
        let mut state = FlagState::off(raw);
        if !on {
            if self.off_variation != Some(off_index) {
                let served = self.off_variation.and_then(|i| flag.variations.get(i)).map(|v| v.value.clone());
                let shown = served.as_ref().map_or("no off variation (SDKs serve the code's default)".into(), |v| {
                    format!("the off variation serves {v}")
                });
                state.targeting.push(Targeting::new(shown, &served.unwrap_or_default()));
            }
            return state;
        }
        state.share = match (&self.fallthrough.variation, &self.fallthrough.rollout) {
            (Some(index), _) if *index == on_index => Percent::FULL,
            (Some(_), _) => Percent::ZERO,
            (None, Some(rollout)) => {
                let total: u128 = rollout.variations.iter().map(|w| u128::from(w.weight)).sum();
                let share: u128 =
                    rollout.variations.iter().filter(|w| w.variation == on_index).map(|w| u128::from(w.weight)).sum();
                Percent::from_ratio(share, total).unwrap_or(Percent::ZERO)
            }
            (None, None) => Percent::ZERO,
        };
        for (what, items) in [
            ("individual targets", &self.targets),
            ("context targets", &self.context_targets),
            ("targeting rules", &self.rules),
            ("prerequisites", &self.prerequisites),
        ] {
            if !items.is_empty() {
                let value = serde_json::Value::Array(items.clone());
                state.targeting.push(Targeting::new(format!("{} {what} {value}", items.len()), &value));
            }
        }
        state
    }
}

#[derive(Debug, Default, Deserialize)]
struct Fallthrough {
    variation: Option<usize>,
    rollout: Option<Rollout>,
}

#[derive(Debug, Deserialize)]
struct Rollout {
    variations: Vec<Weighted>,
}

#[derive(Debug, Deserialize)]
struct Weighted {
    variation: usize,
    weight: u32,
}

impl LaunchDarkly {
    pub fn new(config: &LaunchdarklyConfig, http: &HttpSettings) -> Result<LaunchDarkly> {
        let auth = Auth::from_env(&config.token_env, "Authorization", "{token}", "LaunchDarkly")?;
        let url = config.url.as_deref().unwrap_or(DEFAULT_URL);
        Ok(LaunchDarkly {
            client: Client::new("LaunchDarkly", url, http, config.allow_insecure_http, Some(auth))?,
            project: config.project.clone(),
            environment: config.environment.clone(),
        })
    }

    fn path(&self, name: &str) -> String {
        format!("/api/v2/flags/{}/{}", segment(&self.project), segment(name))
    }

    fn flag(&self, name: &str) -> Result<(Flag, serde_json::Value)> {
        let response = self.client.get(&self.path(name), &[("env", &self.environment)])?;
        if response.status == reqwest::StatusCode::NOT_FOUND {
            let said = response.service_message().map(|m| format!(": {m}")).unwrap_or_default();
            return Err(Precondition(format!(
                "flag {name} was not found in LaunchDarkly project {}{said}",
                self.project
            ))
            .into());
        }
        let response = response.ok()?;
        response.json_and_raw()
    }

    fn patch(&self, name: &str, note: &str, instructions: serde_json::Value) -> Result<()> {
        let body = json!({ "environmentKey": self.environment, "comment": note, "instructions": instructions });
        self.client
            .send(Method::PATCH, &self.path(name), &[], Some(&Body::JsonAs(SEMANTIC_PATCH, body)), &[])?
            .ok()
            .map(drop)
    }

    /// The ids of the `true` and `false` variations of a boolean flag.
    fn boolean(&self, name: &str, flag: &Flag) -> Result<(usize, usize)> {
        let find = |wanted: bool| flag.variations.iter().position(|v| v.value.as_bool() == Some(wanted));
        match (find(true), find(false)) {
            (Some(on), Some(off)) => Ok((on, off)),
            _ => Err(Precondition(format!("flag {name} is not a boolean flag: it needs a true and a false variation"))
                .into()),
        }
    }

    fn environment<'f>(&self, name: &str, flag: &'f Flag) -> Result<&'f Environment> {
        flag.environments.get(&self.environment).ok_or_else(|| {
            Precondition(format!(
                "flag {name} has no environment {} in LaunchDarkly project {}",
                self.environment, self.project
            ))
            .into()
        })
    }
}

impl FlagService for LaunchDarkly {
    fn describe(&self) -> String {
        format!("LaunchDarkly {}/{}", self.project, self.environment)
    }

    fn read(&self, name: &str) -> Result<FlagState> {
        let (_, document) = self.flag(name)?;
        self.model(name, &document)
    }

    fn model(&self, name: &str, raw: &serde_json::Value) -> Result<FlagState> {
        let flag: Flag = serde_json::from_value(raw.clone())?;
        let variations = self.boolean(name, &flag)?;
        let environment = self.environment(name, &flag)?;
        Ok(environment.state(environment.on, &flag, variations, raw.clone()))
    }

    /// Off serves the off variation and keeps the rules; on sets the fallthrough and keeps
    /// the targets and rules, which LaunchDarkly evaluates first.
    fn plan(&self, name: &str, target: FlagTarget, current: &FlagState) -> Result<FlagPlan> {
        let flag: Flag = serde_json::from_value(current.raw.clone())?;
        let variations = self.boolean(name, &flag)?;
        let environment = self.environment(name, &flag)?;
        if !target.is_on() {
            let after = environment.state(false, &flag, variations, serde_json::Value::Null);
            return Ok(FlagPlan { after, clears: Vec::new() });
        }
        let on = environment.state(true, &flag, variations, serde_json::Value::Null);
        Ok(FlagPlan::keeping(&on, target))
    }

    fn write(&self, name: &str, target: FlagTarget, note: &str) -> Result<()> {
        let (flag, _) = self.flag(name)?;
        let (on, off) = self.boolean(name, &flag)?;
        let (on_id, off_id) = (&flag.variations[on].id, &flag.variations[off].id);
        let instructions = match (target.is_on(), target.partial()) {
            (false, _) => json!([{ "kind": "turnFlagOff" }]),
            (true, None) => {
                json!([{ "kind": "turnFlagOn" }, { "kind": "updateFallthroughVariationOrRollout", "variationId": on_id }])
            }
            (true, Some(share)) => {
                let weight =
                    share.hundredths().ok_or_else(|| anyhow!("{share}% is finer than LaunchDarkly's thousandths"))?
                        * 10;
                json!([
                    { "kind": "turnFlagOn" },
                    { "kind": "updateFallthroughVariationOrRollout", "rolloutWeights": { on_id.as_str(): weight, off_id.as_str(): 100_000 - weight } }
                ])
            }
        };
        self.patch(name, note, instructions)
    }

    /// Put back a state read earlier (for `undo`): the environment's on/off and its
    /// fallthrough (one variation or the recorded weights), in one semantic patch.
    fn restore(&self, name: &str, state: &FlagState, note: &str) -> Result<()> {
        let recorded: Flag = serde_json::from_value(state.raw.clone())?;
        let environment = self.environment(name, &recorded)?;
        let id = |index: usize| {
            recorded
                .variations
                .get(index)
                .map(|v| v.id.clone())
                .ok_or_else(|| anyhow!("flag {name} has no variation {index}"))
        };
        let fallthrough = match (&environment.fallthrough.variation, &environment.fallthrough.rollout) {
            (Some(index), _) => json!({ "kind": "updateFallthroughVariationOrRollout", "variationId": id(*index)? }),
            (None, Some(rollout)) => {
                let weights: serde_json::Map<String, serde_json::Value> = rollout
                    .variations
                    .iter()
                    .map(|w| Ok((id(w.variation)?, json!(w.weight))))
                    .collect::<Result<_>>()?;
                json!({ "kind": "updateFallthroughVariationOrRollout", "rolloutWeights": weights })
            }
            (None, None) => bail!("the recorded state of flag {name} has no fallthrough to put back"),
        };
        let switch = json!({ "kind": if environment.on { "turnFlagOn" } else { "turnFlagOff" } });
        self.patch(name, note, json!([fallthrough, switch]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(environment: serde_json::Value) -> FlagState {
        let flag: Flag = serde_json::from_value(json!({
            "variations": [{ "_id": "t", "value": true }, { "_id": "f", "value": false }],
            "environments": { "production": environment },
        }))
        .unwrap();
        let environment = &flag.environments["production"];
        environment.state(environment.on, &flag, (0, 1), serde_json::Value::Null)
    }

    #[test]
    fn rules_targets_and_prerequisites_are_shown_and_count_as_on() {
        let rules = state(json!({
            "on": true, "offVariation": 1, "fallthrough": { "variation": 1 },
            "rules": [{ "variation": 0, "clauses": [{ "attribute": "email", "op": "endsWith", "values": ["@va.gov"] }] }],
            "prerequisites": [{ "key": "other", "variation": 0 }],
        }));
        assert!(rules.is_on());
        assert!(rules.summary().starts_with(r#"on for some: 1 targeting rules [{"#), "{}", rules.summary());
        assert!(rules.summary().contains(r#"1 prerequisites [{"key":"other","variation":0}]"#), "{}", rules.summary());
        let rollout = state(json!({
            "on": true, "offVariation": 1,
            "fallthrough": { "rollout": { "variations": [{ "variation": 0, "weight": 33333 }, { "variation": 1, "weight": 66667 }] } },
        }));
        assert_eq!(rollout.summary(), "on, 33.333%");
        let off = state(json!({ "on": false, "offVariation": 1, "fallthrough": { "variation": 0 } }));
        assert_eq!(off.summary(), "off");
        for state in [rules, rollout, off] {
            crate::flags::assert_reads_back(&state);
        }
    }
}
