//! The `manual` step kind: instructions the operator carries out and confirms.
//! It needs no service and has no outputs.

use serde::Deserialize;

use super::{Kind, Service};
use crate::runbook::resolve::{Renderer, Unresolved};
use crate::runbook::validate::Checker;
use crate::runbook::{StepCommon, Text};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualSpec {
    pub instructions: Text,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManualRequest {
    pub instructions: String,
}

impl Kind for ManualSpec {
    const NAME: &'static str = "manual";
    const SUMMARY: &'static str = "instructions the operator carries out and confirms";
    const OUTPUTS: &'static [&'static str] = &[];
    const SERVICE: Option<Service> = None;
    const PACED_BY_OPERATOR: bool = true;
    type Request = ManualRequest;

    fn check(&self, c: &mut Checker, i: usize, p: &str) {
        c.text(i, &format!("{p}.instructions"), &self.instructions, None);
    }

    fn resolve(&self, r: &Renderer, _: &StepCommon) -> Result<ManualRequest, Unresolved> {
        Ok(ManualRequest { instructions: r.text("instructions", &self.instructions)? })
    }
}
