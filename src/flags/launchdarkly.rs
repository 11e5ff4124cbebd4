//! LaunchDarkly's REST API v2: read a flag's environment, change it with a semantic patch
//! (`turnFlagOff`, `turnFlagOn`, fallthrough rollout weights) whose comment names the run.

use anyhow::{Result, anyhow};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{FlagService, FlagState, FlagTarget};
use crate::config::{FlagsConfig, HttpSettings};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client};
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
struct Environment {
    on: bool,
    #[serde(default)]
    fallthrough: Fallthrough,
    #[serde(default)]
    rules: Vec<serde_json::Value>,
    #[serde(default)]
    targets: Vec<serde_json::Value>,
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
    pub fn new(config: &FlagsConfig, http: &HttpSettings) -> Result<LaunchDarkly> {
        let env =
            config.token_env.as_deref().ok_or_else(|| anyhow!("flags provider launchdarkly needs `token_env`"))?;
        let auth = Auth::from_env(env, "Authorization", "{token}", "LaunchDarkly")?;
        let url = config.url.as_deref().unwrap_or(DEFAULT_URL);
        Ok(LaunchDarkly {
            client: Client::new("LaunchDarkly", url, http, config.allow_insecure_http, Some(auth))?,
            project: config.project.clone().ok_or_else(|| anyhow!("flags provider launchdarkly needs `project`"))?,
            environment: config
                .environment
                .clone()
                .ok_or_else(|| anyhow!("flags provider launchdarkly needs `environment`"))?,
        })
    }

    fn path(&self, name: &str) -> String {
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!("/api/v2/flags/{}/{}", encode(&self.project), encode(name))
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
        let (flag, document) = self.flag(name)?;
        let (on, _) = self.boolean(name, &flag)?;
        let environment = self.environment(name, &flag)?;
        let raw = document.get("environments").and_then(|e| e.get(&self.environment)).cloned().unwrap_or_default();
        if !environment.on {
            return Ok(FlagState::plain(false, None, raw));
        }
        let mut other =
            (!environment.rules.is_empty() || !environment.targets.is_empty()).then(|| "targeting rules".to_string());
        let percent = match (&environment.fallthrough.variation, &environment.fallthrough.rollout) {
            (Some(index), _) if *index == on => None,
            (Some(_), _) => {
                other = Some("serving false to everyone".into());
                None
            }
            (None, Some(rollout)) => {
                let total: u32 = rollout.variations.iter().map(|w| w.weight).sum();
                let share: u32 = rollout.variations.iter().filter(|w| w.variation == on).map(|w| w.weight).sum();
                Percent::from_hundredths((share * 10_000).checked_div(total).unwrap_or(0)).filter(|p| !p.is_full())
            }
            (None, None) => None,
        };
        Ok(FlagState { other, ..FlagState::plain(true, percent, raw) })
    }

    fn write(&self, name: &str, target: FlagTarget, note: &str) -> Result<()> {
        let (flag, _) = self.flag(name)?;
        let (on, off) = self.boolean(name, &flag)?;
        let (on_id, off_id) = (&flag.variations[on].id, &flag.variations[off].id);
        let instructions = match (target.enabled, target.percent()) {
            (false, _) => json!([{ "kind": "turnFlagOff" }]),
            (true, None) => {
                json!([{ "kind": "turnFlagOn" }, { "kind": "updateFallthroughVariationOrRollout", "variationId": on_id }])
            }
            (true, Some(share)) => {
                let weight = share.hundredths() * 10;
                json!([
                    { "kind": "turnFlagOn" },
                    { "kind": "updateFallthroughVariationOrRollout", "rolloutWeights": { on_id.as_str(): weight, off_id.as_str(): 100_000 - weight } }
                ])
            }
        };
        let body = json!({ "environmentKey": self.environment, "comment": note, "instructions": instructions });
        self.client
            .send(Method::PATCH, &self.path(name), &[], Some(&Body::JsonAs(SEMANTIC_PATCH, body)), &[])?
            .ok()
            .map(drop)
    }
}
