//! The `ci` step kind: its YAML fields, checks and rendering into a [`CiRequest`].
//! Its service is the pipelines of the config's `ci` section.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use super::{Kind, Service, yes};
use crate::duration;
use crate::runbook::resolve::{Renderer, Unresolved};
use crate::runbook::validate::{Checker, LiteralCheck};
use crate::runbook::{StepCommon, Text};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiSpec {
    pub pipeline: Text,
    #[serde(rename = "ref", default)]
    pub git_ref: Option<Text>,
    #[serde(default)]
    pub inputs: IndexMap<String, Text>,
    #[serde(default = "yes")]
    pub wait: bool,
    #[serde(default, deserialize_with = "duration::step_timeout")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CiRequest {
    pub pipeline: String,
    pub git_ref: Option<String>,
    pub inputs: IndexMap<String, String>,
    pub wait: bool,
    pub timeout: Option<Duration>,
}

/// The environment variable a `command` pipeline reads a ci input from: `deploy-env` is
/// `ROLLOUT_INPUT_DEPLOY_ENV`.
pub fn input_variable(key: &str) -> String {
    format!("ROLLOUT_INPUT_{}", key.to_ascii_uppercase().replace('-', "_"))
}

/// A ci input's name: what GitHub allows for a workflow input, and a safe variable name.
fn is_ci_input_name(text: &str) -> bool {
    let mut bytes = text.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Kind for CiSpec {
    const NAME: &'static str = "ci";
    const SUMMARY: &'static str = "trigger a pipeline run and wait for its verdict; never triggered twice";
    const OUTPUTS: &'static [&'static str] = &["run_id", "url", "conclusion", "commit", "log_tail"];
    const SERVICE: Option<Service> = Some(Service::Ci);
    type Request = CiRequest;

    fn check(&self, c: &mut Checker, i: usize, p: &str) {
        let not_empty: &LiteralCheck =
            &|v| if v.trim().is_empty() { Err("empty pipeline name".into()) } else { Ok(()) };
        c.text(i, &format!("{p}.pipeline"), &self.pipeline, Some(not_empty));
        if let Some(git_ref) = &self.git_ref {
            c.text(i, &format!("{p}.ref"), git_ref, None);
        }
        let mut variables: HashMap<String, &str> = HashMap::new();
        for (key, value) in &self.inputs {
            let path = format!("{p}.inputs.{key}");
            if !is_ci_input_name(key) {
                let why = "a ci input's name is letters, digits, _ and -, starting with a letter or _";
                c.at_key(&path, why.into());
            } else if let Some(why) = shared_variable(&mut variables, key) {
                c.at_key(&path, why);
            }
            c.text(i, &path, value, None);
        }
    }

    /// The ci block's `timeout`, or else the step's.
    fn resolve(&self, r: &Renderer, common: &StepCommon) -> Result<CiRequest, Unresolved> {
        let mut inputs = IndexMap::new();
        for (key, value) in &self.inputs {
            inputs.insert(key.clone(), r.text(&format!("inputs.{key}"), value)?);
        }
        Ok(CiRequest {
            pipeline: r.text("pipeline", &self.pipeline)?,
            git_ref: self.git_ref.as_ref().map(|g| r.text("ref", g)).transpose()?,
            inputs,
            wait: self.wait,
            timeout: self.timeout.or(common.timeout),
        })
    }
}

/// Why `key` cannot be used: an earlier input of `variables` has the same variable.
fn shared_variable<'a>(variables: &mut HashMap<String, &'a str>, key: &'a str) -> Option<String> {
    match variables.entry(input_variable(key)) {
        Entry::Vacant(slot) => {
            slot.insert(key);
            None
        }
        Entry::Occupied(first) => Some(format!(
            "`{key}` and `{}` would both be {} for a command pipeline: rename one",
            first.get(),
            first.key()
        )),
    }
}
