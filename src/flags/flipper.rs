//! Flipper's HTTP API (as vets-api mounts it): the boolean gate for everyone,
//! `percentage_of_actors` for a share of logged-in users; every other gate is shown, never guessed.

use anyhow::Result;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{FlagPlan, FlagService, FlagState, FlagTarget, Targeting};
use crate::config::{FlipperConfig, HttpSettings};
use crate::error::Precondition;
use crate::http::{Auth, Body, Client, segment};
use crate::percent::Percent;

/// How many actor ids a summary shows before `…`.
const ACTORS_SHOWN: usize = 3;

pub struct Flipper {
    client: Client,
}

#[derive(Debug, Deserialize)]
struct Feature {
    /// Flipper's own verdict: `on`, `off` or `conditional`.
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    gates: Vec<Gate>,
}

#[derive(Debug, Deserialize)]
struct Gate {
    key: String,
    #[serde(default)]
    value: Value,
}

/// A gate holds something: not null, `false`, `"0"`, `""`, `[]` or `{}`.
fn is_set(value: &Value) -> bool {
    match value {
        Value::Array(items) => !items.is_empty(),
        Value::Bool(b) => *b,
        Value::Null => false,
        Value::String(s) => !s.is_empty() && s != "false" && Percent::parse_decimal(s) != Some(Percent::ZERO),
        Value::Number(n) => n.as_f64().is_none_or(|n| n != 0.0),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A percentage gate's value, exactly as stored (`"33.333"`); None if it is not a plain decimal.
fn gate_percent(value: &Value) -> Option<Percent> {
    match value {
        Value::Null => Some(Percent::ZERO),
        Value::Number(n) => Percent::parse_decimal(&n.to_string()),
        Value::String(s) => Percent::parse_decimal(s),
        _ => None,
    }
}

fn list(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect()
}

impl Feature {
    fn gate(&self, key: &str) -> Option<&Value> {
        self.gates.iter().find(|g| g.key == key).map(|g| &g.value)
    }

    /// The ids of the actors gate or the names of the groups gate.
    fn members(&self, gate: &str) -> Vec<String> {
        self.gate(gate).map(list).unwrap_or_default()
    }

    fn boolean(&self) -> bool {
        self.gate("boolean").is_some_and(is_set)
    }

    /// Who gets the feature: the boolean gate or `percentage_of_actors` as the share, every
    /// other gate that is set as targeting, and Flipper's own `state` as the last word on off.
    fn state(&self, raw: Value) -> FlagState {
        let mut targeting = Vec::new();
        let mut share = Percent::ZERO;
        for gate in self.gates.iter().filter(|g| is_set(&g.value)) {
            let value = &gate.value;
            match gate.key.as_str() {
                "boolean" => share = Percent::FULL,
                "percentage_of_actors" => match gate_percent(value) {
                    Some(percent) => share = share.max(percent),
                    None => targeting.push(Targeting::new(format!("percentage of actors {value}"), value)),
                },
                "actors" => {
                    let ids = list(value);
                    let more = if ids.len() > ACTORS_SHOWN { ", …" } else { "" };
                    let first = ids.iter().take(ACTORS_SHOWN).cloned().collect::<Vec<_>>().join(", ");
                    targeting.push(Targeting::new(format!("actors ({}: {first}{more})", ids.len()), value));
                }
                "groups" => targeting.push(Targeting::new(format!("groups ({})", list(value).join(", ")), value)),
                "percentage_of_time" => {
                    let shown = gate_percent(value).map_or_else(|| value.to_string(), |p| format!("{p}%"));
                    targeting.push(Targeting::new(format!("percentage of time {shown}"), value));
                }
                "expression" => targeting.push(Targeting::new(format!("expression {value}"), value)),
                other => targeting.push(Targeting::new(format!("gate {other} {value}"), value)),
            }
        }
        let mut state = FlagState { share, scope: None, targeting, raw, source: None };
        // Flipper knows its gates better than this reading: a feature it does not call off is on.
        if let Some(said) = self.state.as_deref().filter(|s| *s != "off")
            && !state.is_on()
        {
            state.targeting.push(Targeting::new(format!("Flipper reports state {said}"), &Value::from(said)));
        }
        state
    }
}

impl Flipper {
    pub fn new(config: &FlipperConfig, http: &HttpSettings) -> Result<Flipper> {
        let auth = config
            .token_env
            .as_deref()
            .map(|env| {
                let header = config.auth_header.as_deref().unwrap_or("Authorization");
                let format = config.auth_format.as_deref().unwrap_or("Bearer {token}");
                Auth::from_env(env, header, format, "Flipper")
            })
            .transpose()?;
        Ok(Flipper { client: Client::new("Flipper", &config.url, http, config.allow_insecure_http, auth)? })
    }

    fn path(name: &str, gate: &str) -> String {
        format!("/features/{}{gate}", segment(name))
    }

    fn call(&self, method: Method, name: &str, gate: &str, body: Option<&Body>) -> Result<()> {
        self.client.send(method, &Self::path(name, gate), &[], body, &[])?.ok().map(drop)
    }

    /// Disable the members of an actors or groups gate that are not `wanted`, enable the rest.
    fn put_members(&self, name: &str, gate: &str, param: &str, was: &[String], wanted: &[String]) -> Result<()> {
        let form = |member: &String| Body::Form(vec![(param.into(), member.clone())]);
        for member in was.iter().filter(|m| !wanted.contains(m)) {
            self.call(Method::DELETE, name, &format!("/{gate}"), Some(&form(member)))?;
        }
        for member in wanted.iter().filter(|m| !was.contains(m)) {
            self.call(Method::POST, name, &format!("/{gate}"), Some(&form(member)))?;
        }
        Ok(())
    }

    /// Enable a gate with `body`, or disable it when there is none and it is set now.
    fn put_gate(&self, name: &str, gate: &str, body: Option<Body>, current: &Feature) -> Result<()> {
        match body {
            Some(body) => self.call(Method::POST, name, &format!("/{gate}"), Some(&body)),
            None if current.gate(gate).is_some_and(is_set) => {
                self.call(Method::DELETE, name, &format!("/{gate}"), None)
            }
            None => Ok(()),
        }
    }

    fn feature(&self, name: &str) -> Result<(Feature, Value)> {
        let response = self.client.get(&Self::path(name, ""), &[])?;
        if response.status == reqwest::StatusCode::NOT_FOUND {
            let said = response.service_message().map(|m| format!(" ({m})")).unwrap_or_default();
            return Err(
                Precondition(format!("flag {name} does not exist in Flipper at {}{said}", self.client.base())).into()
            );
        }
        response.ok()?.json_and_raw()
    }
}

impl FlagService for Flipper {
    fn describe(&self) -> String {
        format!("Flipper {}", self.client.base())
    }

    fn read(&self, name: &str) -> Result<FlagState> {
        let (feature, raw) = self.feature(name)?;
        Ok(feature.state(raw))
    }

    fn model(&self, _name: &str, raw: &Value) -> Result<FlagState> {
        let feature: Feature = serde_json::from_value(raw.clone())?;
        Ok(feature.state(raw.clone()))
    }

    /// `DELETE .../boolean` clears every gate and `POST .../boolean` every other gate; a
    /// percentage alone keeps the other gates (Flipper ORs them).
    fn plan(&self, _name: &str, target: FlagTarget, current: &FlagState) -> Result<FlagPlan> {
        let feature: Feature = serde_json::from_value(current.raw.clone())?;
        Ok(match target.partial() {
            Some(_) if !feature.boolean() => FlagPlan::keeping(current, target),
            _ => FlagPlan::replacing(current, target),
        })
    }

    fn write(&self, name: &str, target: FlagTarget, _note: &str) -> Result<()> {
        match target.partial() {
            None if target.is_on() => self.call(Method::POST, name, "/boolean", None),
            None => self.call(Method::DELETE, name, "/boolean", None),
            Some(share) => {
                // The boolean gate wins over any percentage: off first (never a moment at
                // 100%), then the share. Only when it is set, since deleting it clears every gate.
                if self.feature(name)?.0.boolean() {
                    self.call(Method::DELETE, name, "/boolean", None)?;
                }
                let form = Body::Form(vec![("percentage".into(), share.to_string())]);
                self.call(Method::POST, name, "/percentage_of_actors", Some(&form))
            }
        }
    }

    /// Put back a state read earlier (for `undo`), gate by gate: what the recorded gates lack
    /// is disabled, what they hold is enabled, and the boolean gate comes last (enabling it
    /// clears every other gate, disabling it clears them all, so that one goes first).
    fn restore(&self, name: &str, state: &FlagState, _note: &str) -> Result<()> {
        let recorded: Feature = serde_json::from_value(state.raw.clone())?;
        let mut current = self.feature(name)?.0;
        if current.boolean() && !recorded.boolean() {
            self.call(Method::DELETE, name, "/boolean", None)?;
            current = Feature { state: None, gates: Vec::new() };
        }
        for (gate, param) in [("actors", "flipper_id"), ("groups", "name")] {
            self.put_members(name, gate, param, &current.members(gate), &recorded.members(gate))?;
        }
        for gate in ["percentage_of_actors", "percentage_of_time"] {
            let share = recorded.gate(gate).filter(|v| is_set(v)).and_then(gate_percent);
            let form = share.map(|share| Body::Form(vec![("percentage".into(), share.to_string())]));
            self.put_gate(name, gate, form, &current)?;
        }
        let expression = recorded.gate("expression").filter(|v| is_set(v)).map(|e| Body::Json(e.clone()));
        self.put_gate(name, "expression", expression, &current)?;
        if recorded.boolean() && !current.boolean() {
            self.call(Method::POST, name, "/boolean", None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feature(state: &str, gates: Value) -> FlagState {
        let raw = json!({ "key": "f", "state": state, "gates": gates });
        serde_json::from_value::<Feature>(raw.clone()).unwrap().state(raw)
    }

    #[test]
    fn every_gate_that_is_set_is_shown_and_counts_as_on() {
        let state = feature(
            "conditional",
            json!([
                { "key": "boolean", "value": null },
                { "key": "expression", "value": { "Equal": [{ "Property": ["plan"] }, "basic"] } },
                { "key": "actors", "value": ["User;1", "User;2", "User;3", "User;4"] },
                { "key": "percentage_of_actors", "value": "33.333" },
                { "key": "percentage_of_time", "value": null },
                { "key": "groups", "value": ["admins"] },
            ]),
        );
        assert_eq!(
            state.summary(),
            r#"on, 33.333% + expression {"Equal":[{"Property":["plan"]},"basic"]}; actors (4: User;1, User;2, User;3, …); groups (admins)"#
        );
        crate::flags::assert_reads_back(&state);
    }

    #[test]
    fn an_expression_alone_is_on_and_flippers_state_has_the_last_word() {
        let expression = feature("conditional", json!([{ "key": "expression", "value": { "Equal": [1, 1] } }]));
        assert!(expression.is_on(), "{}", expression.summary());
        let unreadable = feature("conditional", json!([{ "key": "percentage_of_actors", "value": "abc" }]));
        assert_eq!(unreadable.summary(), r#"on for some: percentage of actors "abc""#);
        let mystery = feature("conditional", json!([]));
        assert_eq!(mystery.summary(), "on for some: Flipper reports state conditional");
        assert_eq!(feature("off", json!([{ "key": "percentage_of_actors", "value": "0" }])).summary(), "off");
    }
}
