//! The `notify` step: post the step's message and the run's progress to the team's webhook.
//! A failed post warns and lets the run go on, unless the step is `required`.

use anyhow::Result;
use serde_json::json;

use super::{Applied, Context, Preview, Services, Step, snapshot};
use crate::notify::Webhook;
use crate::runbook::kinds::notify::NotifyRequest;
use crate::runbook::resolve::Outputs;

pub struct NotifyStep<'s> {
    webhook: &'s Webhook,
    request: NotifyRequest,
}

/// The step that posts `request`'s message to the configured webhook.
pub fn build<'s>(services: &'s Services, request: NotifyRequest) -> Result<Box<dyn Step + 's>> {
    Ok(Box::new(NotifyStep { webhook: services.webhook()?, request }))
}

impl NotifyStep<'_> {
    fn text(&self, cx: &Context) -> String {
        format!("{}\n{}", self.request.message, cx.progress)
    }
}

impl Step for NotifyStep<'_> {
    fn preview(&self, cx: &Context) -> Result<Preview> {
        let required = if self.request.required { " (required)" } else { "" };
        Ok(Preview {
            effect: format!("post to {}{required}: {}", self.webhook.describe(), self.request.message),
            before: snapshot("not sent", json!({})),
            after: snapshot("sent", json!({ "message": self.request.message })),
            details: self.text(cx).lines().map(str::to_string).collect(),
            unchanged: None,
            projection: None,
            ..Preview::default()
        })
    }

    fn apply(&self, cx: &Context, _preview: &Preview) -> Result<Applied> {
        match self.webhook.post(&self.text(cx)) {
            Ok(()) => Ok(Applied::outputs(Outputs::from([("delivered".to_string(), "true".to_string())]))),
            Err(error) if !self.request.required => {
                cx.ui.warn(format!("the notification was not delivered ({error:#}); the run goes on"));
                Ok(Applied::outputs(Outputs::from([("delivered".to_string(), "false".to_string())])))
            }
            Err(error) => Err(error.context(format!("the notification to {} failed", self.webhook.describe()))),
        }
    }

    fn verify(&self, _cx: &Context, _applied: &Applied) -> Result<()> {
        Ok(())
    }
}
