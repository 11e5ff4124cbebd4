//! Flipper's HTTP API (as vets-api mounts it): the boolean gate for on/off for everyone,
//! `percentage_of_actors` for a share of logged-in users. Disabling clears every gate.

use anyhow::{Result, anyhow};
use reqwest::Method;
use serde::Deserialize;

use super::{FlagService, FlagState, FlagTarget};
use crate::config::{FlagsConfig, HttpSettings};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client};
use crate::percent::Percent;

pub struct Flipper {
    client: Client,
}

#[derive(Debug, Deserialize)]
struct Feature {
    #[serde(default)]
    gates: Vec<Gate>,
}

#[derive(Debug, Deserialize)]
struct Gate {
    key: String,
    #[serde(default)]
    value: serde_json::Value,
}

/// A gate value as Flipper reports it: numbers may arrive as strings, sets as arrays.
fn gate_percent(value: &serde_json::Value) -> Option<Percent> {
    match value {
        serde_json::Value::Number(n) => n.to_string().parse().ok(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|p: &Percent| p.hundredths() > 0)
}

fn is_set(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Array(items) => !items.is_empty(),
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Null => false,
        serde_json::Value::String(s) => !s.is_empty() && s != "false" && s != "0",
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        serde_json::Value::Object(o) => !o.is_empty(),
    }
}

impl Flipper {
    pub fn new(config: &FlagsConfig, http: &HttpSettings) -> Result<Flipper> {
        let url = config.url.as_deref().ok_or_else(|| anyhow!("flags provider flipper needs `url`"))?;
        let auth = config
            .token_env
            .as_deref()
            .map(|env| {
                let header = config.auth_header.as_deref().unwrap_or("Authorization");
                let format = config.auth_format.as_deref().unwrap_or("Bearer {token}");
                Auth::from_env(env, header, format, "Flipper")
            })
            .transpose()?;
        Ok(Flipper { client: Client::new("Flipper", url, http, config.allow_insecure_http, auth)? })
    }

    fn path(name: &str, gate: &str) -> String {
        let name = url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>();
        format!("/features/{name}{gate}")
    }

    fn call(&self, method: Method, name: &str, gate: &str, body: Option<&Body>) -> Result<()> {
        self.client.send(method, &Self::path(name, gate), &[], body, &[])?.ok().map(drop)
    }
}

impl FlagService for Flipper {
    fn describe(&self) -> String {
        format!("Flipper {}", self.client.base())
    }

    fn read(&self, name: &str) -> Result<FlagState> {
        let response = self.client.get(&Self::path(name, ""), &[])?;
        if response.status == reqwest::StatusCode::NOT_FOUND {
            let said = response.service_message().map(|m| format!(" ({m})")).unwrap_or_default();
            return Err(
                Precondition(format!("flag {name} does not exist in Flipper at {}{said}", self.client.base())).into()
            );
        }
        let response = response.ok()?;
        let (feature, raw): (Feature, serde_json::Value) = response.json_and_raw()?;
        let gate = |key: &str| feature.gates.iter().find(|g| g.key == key).map(|g| &g.value);
        let boolean = gate("boolean").is_some_and(is_set);
        let share = gate("percentage_of_actors").and_then(gate_percent);
        let mut others = Vec::new();
        for (key, label) in [("actors", "actors"), ("groups", "groups"), ("percentage_of_time", "percentage of time")] {
            if gate(key).is_some_and(is_set) {
                others.push(label);
            }
        }
        let other = (!boolean && !others.is_empty()).then(|| format!("gates for {}", others.join(", ")));
        let enabled = boolean || share.is_some() || other.is_some();
        Ok(FlagState { other, ..FlagState::plain(enabled, if boolean { None } else { share }, raw) })
    }

    fn write(&self, name: &str, target: FlagTarget, _note: &str) -> Result<()> {
        match (target.enabled, target.percent()) {
            (false, _) => self.call(Method::DELETE, name, "/boolean", None),
            (true, None) => self.call(Method::POST, name, "/boolean", None),
            (true, Some(share)) => {
                // The boolean gate wins over any percentage, and deleting it clears every gate:
                // so off first (never a moment at 100%), then the share.
                if self.read(name)?.target() == FlagTarget::new(true, None) {
                    self.call(Method::DELETE, name, "/boolean", None)?;
                }
                let form = Body::Form(vec![("percentage".into(), share.to_string())]);
                self.call(Method::POST, name, "/percentage_of_actors", Some(&form))
            }
        }
    }
}
