//! Unleash's admin API, per project and environment: on/off per environment, a share of
//! users through the flexibleRollout strategy, changed with a JSON Patch (never a PUT).

use anyhow::Result;
use reqwest::Method;
use serde::Deserialize;

use super::{FlagPlan, FlagService, FlagState, FlagTarget, Targeting};
use crate::config::{HttpSettings, UnleashConfig};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client, segment};
use crate::percent::Percent;

pub struct Unleash {
    client: Client,
    project: String,
    environment: String,
}

#[derive(Debug, Deserialize)]
struct Environment {
    enabled: bool,
    #[serde(default)]
    strategies: Vec<Strategy>,
    #[serde(default)]
    variants: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct Strategy {
    id: String,
    name: String,
    #[serde(default)]
    parameters: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    constraints: Vec<serde_json::Value>,
    #[serde(default)]
    segments: Vec<serde_json::Value>,
    #[serde(default)]
    variants: Vec<serde_json::Value>,
    #[serde(default)]
    disabled: Option<bool>,
}

impl Strategy {
    /// The share a rollout strategy gives: `default` gives everyone; None when unreadable.
    fn rollout(&self) -> Option<Percent> {
        match (self.name.as_str(), self.parameters.get("rollout")) {
            ("default", _) => Some(Percent::FULL),
            (_, Some(serde_json::Value::String(s))) => Percent::parse_decimal(s),
            (_, Some(serde_json::Value::Number(n))) => Percent::parse_decimal(&n.to_string()),
            _ => None,
        }
    }

    /// What restoring a strategy puts back, field by field.
    fn settings(&self) -> Vec<(&'static str, serde_json::Value)> {
        let mut settings = vec![
            ("parameters", serde_json::Value::Object(self.parameters.clone())),
            ("constraints", serde_json::Value::Array(self.constraints.clone())),
            ("variants", serde_json::Value::Array(self.variants.clone())),
        ];
        settings.extend(self.disabled.map(|disabled| ("disabled", serde_json::Value::Bool(disabled))));
        settings
    }

    fn is_rollout(&self) -> bool {
        matches!(self.name.as_str(), "flexibleRollout" | "default") && self.disabled != Some(true)
    }

    /// `users matching 2 constraints and 1 segment`, when not everyone.
    fn scope(&self) -> Option<String> {
        let count = |n: usize, what: &str| (n > 0).then(|| format!("{n} {what}{}", if n == 1 { "" } else { "s" }));
        let parts: Vec<String> = [count(self.constraints.len(), "constraint"), count(self.segments.len(), "segment")]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| format!("users matching {}", parts.join(" and ")))
    }

    fn as_targeting(&self) -> Targeting {
        let value = serde_json::json!({
            "id": self.id, "name": self.name, "parameters": self.parameters, "constraints": self.constraints,
            "segments": self.segments, "variants": self.variants, "disabled": self.disabled,
        });
        let disabled = if self.disabled == Some(true) { "disabled " } else { "" };
        let parameters = serde_json::Value::Object(self.parameters.clone());
        let scope = self.scope().map(|s| format!(" for {s}")).unwrap_or_default();
        Targeting::new(format!("{disabled}strategy {} {parameters}{scope}", self.name), &value)
    }
}

impl Environment {
    /// Who gets the feature once the environment is on: the one rollout strategy as the share,
    /// every other strategy and any variants as targeting, shown as they are.
    fn when_on(&self, raw: serde_json::Value) -> FlagState {
        let rollouts: Vec<&Strategy> = self.strategies.iter().filter(|s| s.is_rollout()).collect();
        let modelled = match rollouts.as_slice() {
            [only] if only.rollout().is_some() => Some(only.id.as_str()),
            _ => None,
        };
        let mut state = FlagState::off(raw);
        if self.strategies.is_empty() {
            state.share = Percent::FULL;
        }
        for strategy in &self.strategies {
            if Some(strategy.id.as_str()) == modelled {
                state.share = strategy.rollout().unwrap_or(Percent::ZERO);
                state.scope = strategy.scope();
                if !strategy.variants.is_empty() {
                    let variants = serde_json::Value::Array(strategy.variants.clone());
                    state.targeting.push(Targeting::new(format!("strategy variants {variants}"), &variants));
                }
            } else {
                state.targeting.push(strategy.as_targeting());
            }
        }
        if !self.variants.is_empty() {
            let variants = serde_json::Value::Array(self.variants.clone());
            state.targeting.push(Targeting::new(format!("variants {variants}"), &variants));
        }
        state
    }
}

impl Unleash {
    pub fn new(config: &UnleashConfig, http: &HttpSettings) -> Result<Unleash> {
        let auth = Auth::from_env(&config.token_env, "Authorization", "{token}", "Unleash admin API")?;
        Ok(Unleash {
            client: Client::new("Unleash", &config.url, http, config.allow_insecure_http, Some(auth))?,
            project: config.project.clone().unwrap_or_else(|| "default".into()),
            environment: config.environment.clone(),
        })
    }

    fn path(&self, name: &str, rest: &str) -> String {
        format!(
            "/api/admin/projects/{}/features/{}/environments/{}{rest}",
            segment(&self.project),
            segment(name),
            segment(&self.environment)
        )
    }

    fn environment(&self, name: &str) -> Result<(Environment, serde_json::Value)> {
        let response = self.client.get(&self.path(name, ""), &[])?;
        if response.status == reqwest::StatusCode::NOT_FOUND {
            let said = response.service_message().map(|m| format!(": {m}")).unwrap_or_default();
            return Err(Precondition(format!(
                "flag {name} was not found in Unleash project {} environment {}{said}",
                self.project, self.environment
            ))
            .into());
        }
        let response = response.ok()?;
        response.json_and_raw()
    }

    /// Once on, everyone gets the feature, through nothing rollout does not model.
    fn everyone(environment: &Environment) -> bool {
        let on = environment.when_on(serde_json::Value::Null);
        on.share.is_full() && on.scope.is_none() && on.targeting.is_empty()
    }

    fn active(environment: &Environment) -> Vec<&Strategy> {
        environment.strategies.iter().filter(|s| s.disabled != Some(true)).collect()
    }

    /// The one strategy a percentage can be written to, or why there is none.
    fn rollout_strategy<'e>(&self, name: &str, environment: &'e Environment) -> Result<Option<&'e Strategy>> {
        match Self::active(environment).as_slice() {
            [] => Ok(None),
            [only] if only.name == "flexibleRollout" => Ok(Some(only)),
            [only] => Err(Precondition(format!(
                "flag {name} in {} uses the {} strategy, which has no percentage: give it a flexibleRollout strategy in Unleash first",
                self.environment, only.name
            ))
            .into()),
            several => Err(Precondition(format!(
                "flag {name} in {} has {} strategies ({}): rollout changes the percentage of a flag with a single flexibleRollout strategy only, so that it never guesses which one you mean",
                self.environment,
                several.len(),
                several.iter().map(|s| format!("{} {}", s.name, s.id)).collect::<Vec<_>>().join(", ")
            ))
            .into()),
        }
    }

    fn post(&self, name: &str, rest: &str, body: Option<&Body>) -> Result<()> {
        // on and off can be repeated safely; a new strategy must not be added twice.
        if body.is_some() {
            self.client.send_once(Method::POST, &self.path(name, rest), &[], body, &[])?.ok().map(drop)
        } else {
            self.client.send(Method::POST, &self.path(name, rest), &[], None, &[])?.ok().map(drop)
        }
    }

    fn patch_rollout(&self, name: &str, strategy: &Strategy, share: Percent) -> Result<()> {
        let patch = serde_json::json!([{ "op": "replace", "path": "/parameters/rollout", "value": share.to_string() }]);
        let path = self.path(name, &format!("/strategies/{}", segment(&strategy.id)));
        self.client.send(Method::PATCH, &path, &[], Some(&Body::Json(patch)), &[])?.ok().map(drop)
    }
}

impl FlagService for Unleash {
    fn describe(&self) -> String {
        format!("Unleash {}/{}", self.project, self.environment)
    }

    fn read(&self, name: &str) -> Result<FlagState> {
        let (_, raw) = self.environment(name)?;
        self.model(name, &raw)
    }

    fn model(&self, _name: &str, raw: &serde_json::Value) -> Result<FlagState> {
        let environment: Environment = serde_json::from_value(raw.clone())?;
        if !environment.enabled {
            return Ok(FlagState::off(raw.clone()));
        }
        Ok(environment.when_on(raw.clone()))
    }

    /// Off keeps the strategies (turning the environment on brings them back); a share is
    /// written to the one flexibleRollout strategy, keeping its constraints.
    fn plan(&self, name: &str, target: FlagTarget, current: &FlagState) -> Result<FlagPlan> {
        if !target.is_on() {
            return Ok(FlagPlan { after: FlagState::off(serde_json::Value::Null), clears: Vec::new() });
        }
        let share = target.share();
        if share.hundredths().is_none_or(|h| h % 100 != 0) {
            return Err(Precondition(format!("Unleash rollouts are whole percentages; {share}% cannot be set")).into());
        }
        let environment: Environment = serde_json::from_value(current.raw.clone())?;
        let on = environment.when_on(current.raw.clone());
        if !(share.is_full() && Self::everyone(&environment)) {
            self.rollout_strategy(name, &environment)?;
        }
        Ok(FlagPlan::keeping(&on, target))
    }

    fn write(&self, name: &str, target: FlagTarget, _note: &str) -> Result<()> {
        if !target.is_on() {
            return self.post(name, "/off", None);
        }
        let (environment, _) = self.environment(name)?;
        let share = target.share();
        match self.rollout_strategy(name, &environment) {
            // Everyone already gets it once on (a `default` strategy): only the switch is left.
            _ if share.is_full() && Self::everyone(&environment) => {}
            Ok(Some(strategy)) if strategy.rollout() != Some(share) => self.patch_rollout(name, strategy, share)?,
            Ok(Some(_)) => {}
            Ok(None) => {
                let strategy = serde_json::json!({
                    "name": "flexibleRollout",
                    "constraints": [],
                    "parameters": { "rollout": share.to_string(), "stickiness": "default", "groupId": name },
                });
                self.post(name, "/strategies", Some(&Body::Json(strategy)))?;
            }
            Err(why) => return Err(why),
        }
        if environment.enabled { Ok(()) } else { self.post(name, "/on", None) }
    }

    /// Put back a state read earlier (for `undo`): each recorded strategy's parameters,
    /// constraints and variants by JSON Patch (a recorded strategy since deleted is added
    /// again), strategies added since deleted, and the environment's switch, off first or on last.
    fn restore(&self, name: &str, state: &FlagState, _note: &str) -> Result<()> {
        let recorded: Environment = serde_json::from_value(state.raw.clone())?;
        let (current, _) = self.environment(name)?;
        if !recorded.enabled && current.enabled {
            self.post(name, "/off", None)?;
        }
        for added in current.strategies.iter().filter(|s| !recorded.strategies.iter().any(|r| r.id == s.id)) {
            let path = self.path(name, &format!("/strategies/{}", segment(&added.id)));
            self.client.send(Method::DELETE, &path, &[], None, &[])?.ok()?;
        }
        for strategy in &recorded.strategies {
            match current.strategies.iter().find(|s| s.id == strategy.id) {
                Some(now) if now.settings() == strategy.settings() => {}
                Some(_) => {
                    let patch: Vec<_> = strategy
                        .settings()
                        .into_iter()
                        .map(|(field, value)| serde_json::json!({ "op": "add", "path": format!("/{field}"), "value": value }))
                        .collect();
                    let path = self.path(name, &format!("/strategies/{}", segment(&strategy.id)));
                    self.client.send(Method::PATCH, &path, &[], Some(&Body::Json(patch.into())), &[])?.ok()?;
                }
                None => {
                    let mut body = serde_json::Map::from_iter([("name".to_string(), serde_json::json!(strategy.name))]);
                    body.extend(strategy.settings().into_iter().map(|(field, value)| (field.to_string(), value)));
                    self.post(name, "/strategies", Some(&Body::Json(body.into())))?;
                }
            }
        }
        if recorded.enabled && !current.enabled { self.post(name, "/on", None) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_journaled_state_reads_back_with_its_strategies() {
        let raw = json!({ "enabled": true, "strategies": [
            { "id": "a", "name": "flexibleRollout", "parameters": { "rollout": "33", "stickiness": "default" },
              "constraints": [{ "contextName": "region", "operator": "IN", "values": ["eu"] }] },
            { "id": "b", "name": "userWithId", "parameters": { "userIds": "1,2" } },
        ] });
        let state = serde_json::from_value::<Environment>(raw.clone()).unwrap().when_on(raw);
        assert_eq!(
            state.summary(),
            r#"on, 33% of users matching 1 constraint + strategy userWithId {"userIds":"1,2"}"#
        );
        crate::flags::assert_reads_back(&state);
    }
}
