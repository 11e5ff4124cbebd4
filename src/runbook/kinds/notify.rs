//! The `notify` step kind: a message posted to the webhook of the config's `notify` section.
//! A failed post only warns unless the step is `required`.

use serde::Deserialize;

use super::{Kind, Service};
use crate::runbook::resolve::{Renderer, Unresolved};
use crate::runbook::validate::Checker;
use crate::runbook::{StepCommon, Text};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    pub message: Text,
    /// A failed post fails the step (by default it only warns).
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotifyRequest {
    pub message: String,
    pub required: bool,
}

impl Kind for NotifySpec {
    const NAME: &'static str = "notify";
    const SUMMARY: &'static str = "post a message with the run's progress to a webhook";
    const OUTPUTS: &'static [&'static str] = &["delivered"];
    const SERVICE: Option<Service> = Some(Service::Notify);
    type Request = NotifyRequest;

    fn check(&self, c: &mut Checker, i: usize, p: &str) {
        c.text(i, &format!("{p}.message"), &self.message, None);
    }

    fn resolve(&self, r: &Renderer, _: &StepCommon) -> Result<NotifyRequest, Unresolved> {
        Ok(NotifyRequest { message: r.text("message", &self.message)?, required: self.required })
    }
}
