//! The `notify` step: post the step's message and the run's progress to the team's webhook,
//! once: a failed post warns unless the step is `required`, and one that may have arrived is never sent again.

use anyhow::Result;
use serde_json::json;

use super::{Applied, Context, Preview, Services, Step, snapshot};
use crate::error::{Interrupted, Started};
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

    /// Why this post is not sent, and what comes of it: the journal says an earlier attempt
    /// may have been received (its answer was lost or was a 5xx, or the run stopped while it
    /// was out). A required step waits for the operator to skip it; another goes on.
    fn posted_before(&self, cx: &Context) -> Option<String> {
        let then = if self.request.required {
            ": skip this step once you have checked the channel"
        } else {
            "; the run goes on (delivered: unknown)"
        };
        cx.earlier_run.as_ref().map(|_| {
            format!(
                "an earlier attempt's message may have been posted to {}, so it is not posted again{then}",
                self.webhook.describe()
            )
        })
    }

    /// The step's end when the post failed: a warning and `delivered` false (or unknown, when
    /// it may have arrived), or the error when the step is required.
    fn undelivered(&self, cx: &Context, error: anyhow::Error) -> Result<Applied> {
        let unknown = Started::is_in(&error);
        if self.request.required || Interrupted::is_in(&error) {
            // Still `Started` when it was (the context keeps it): the engine journals it unsettled.
            return Err(error.context(format!("the notification to {} failed", self.webhook.describe())));
        }
        let (value, said) =
            if unknown { ("unknown", "may not have been delivered") } else { ("false", "was not delivered") };
        cx.ui.warn(format!("the notification {said} ({error:#}); the run goes on"));
        Ok(delivered(value))
    }
}

/// The step's one output: whether the webhook took the message (`true`, `false`, `unknown`).
fn delivered(value: &str) -> Applied {
    Applied::outputs(Outputs::from([("delivered".to_string(), value.to_string())]))
}

impl Step for NotifyStep<'_> {
    fn preview(&self, cx: &Context) -> Result<Preview> {
        let required = if self.request.required { " (required)" } else { "" };
        let effect = self
            .posted_before(cx)
            .unwrap_or_else(|| format!("post to {}{required}: {}", self.webhook.describe(), self.request.message));
        Ok(Preview {
            effect,
            before: snapshot("not sent", json!({})),
            after: snapshot("sent", json!({ "message": self.request.message })),
            details: self.text(cx).lines().map(str::to_string).collect(),
            unchanged: None,
            projection: None,
            ..Preview::default()
        })
    }

    fn apply(&self, cx: &Context, _preview: &Preview) -> Result<Applied> {
        if let Some(why) = self.posted_before(cx) {
            if self.request.required {
                return Err(Started(anyhow::anyhow!("{why}")).into());
            }
            cx.ui.warn(why);
            return Ok(delivered("unknown"));
        }
        match self.webhook.post(&self.text(cx)) {
            Ok(()) => Ok(delivered("true")),
            Err(error) => self.undelivered(cx, error),
        }
    }

    fn verify(&self, _cx: &Context, _applied: &Applied) -> Result<()> {
        Ok(())
    }
}
