//! Unleash's admin API, per project and environment: on/off per environment, a share of
//! users through the flexibleRollout strategy, changed with a JSON Patch (never a PUT).

use anyhow::{Result, anyhow};
use reqwest::Method;
use serde::Deserialize;

use super::{FlagService, FlagState, FlagTarget};
use crate::config::{FlagsConfig, HttpSettings};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client};
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
    disabled: Option<bool>,
}

impl Strategy {
    fn rollout(&self) -> Option<Percent> {
        match self.parameters.get("rollout")? {
            serde_json::Value::String(s) => s.parse().ok(),
            serde_json::Value::Number(n) => n.to_string().parse().ok(),
            _ => None,
        }
    }
}

impl Unleash {
    pub fn new(config: &FlagsConfig, http: &HttpSettings) -> Result<Unleash> {
        let url = config.url.as_deref().ok_or_else(|| anyhow!("flags provider unleash needs `url`"))?;
        let env = config.token_env.as_deref().ok_or_else(|| anyhow!("flags provider unleash needs `token_env`"))?;
        let auth = Auth::from_env(env, "Authorization", "{token}", "Unleash admin API")?;
        Ok(Unleash {
            client: Client::new("Unleash", url, http, config.allow_insecure_http, Some(auth))?,
            project: config.project.clone().unwrap_or_else(|| "default".into()),
            environment: config
                .environment
                .clone()
                .ok_or_else(|| anyhow!("flags provider unleash needs `environment`"))?,
        })
    }

    fn path(&self, name: &str, rest: &str) -> String {
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "/api/admin/projects/{}/features/{}/environments/{}{rest}",
            encode(&self.project),
            encode(name),
            encode(&self.environment)
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
        let path = self.path(name, &format!("/strategies/{}", strategy.id));
        self.client.send(Method::PATCH, &path, &[], Some(&Body::Json(patch)), &[])?.ok().map(drop)
    }
}

impl FlagService for Unleash {
    fn describe(&self) -> String {
        format!("Unleash {}/{}", self.project, self.environment)
    }

    fn read(&self, name: &str) -> Result<FlagState> {
        let (environment, raw) = self.environment(name)?;
        if !environment.enabled {
            return Ok(FlagState::plain(false, None, raw));
        }
        let active = Self::active(&environment);
        let mut state = FlagState::plain(true, None, raw);
        match active.as_slice() {
            [] => {}
            [only] if only.name == "flexibleRollout" || only.name == "default" => {
                state.percent = only.rollout().filter(|p| !p.is_full());
                let n = only.constraints.len();
                state.scope =
                    (n > 0).then(|| format!("users matching {n} constraint{}", if n == 1 { "" } else { "s" }));
            }
            [only] => state.other = Some(format!("strategy {}", only.name)),
            several => state.other = Some(format!("{} strategies", several.len())),
        }
        Ok(state)
    }

    fn check(&self, name: &str, target: FlagTarget, current: &FlagState) -> Result<()> {
        let Some(share) = target.percent() else { return Ok(()) };
        if share.hundredths() % 100 != 0 {
            return Err(Precondition(format!("Unleash rollouts are whole percentages; {share}% cannot be set")).into());
        }
        let environment: Environment = serde_json::from_value(current.raw.clone())?;
        self.rollout_strategy(name, &environment).map(drop)
    }

    fn write(&self, name: &str, target: FlagTarget, _note: &str) -> Result<()> {
        if !target.enabled {
            return self.post(name, "/off", None);
        }
        let (environment, _) = self.environment(name)?;
        let share = target.percent().unwrap_or(Percent::FULL);
        match self.rollout_strategy(name, &environment) {
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
            // Turning on for everyone needs no percentage: the strategies are left as they are.
            Err(_) if target.percent().is_none() => {}
            Err(why) => return Err(why),
        }
        if environment.enabled { Ok(()) } else { self.post(name, "/on", None) }
    }
}
