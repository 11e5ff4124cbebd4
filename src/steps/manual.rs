//! The `manual` step: show the instructions; the operator confirms when the work is done.
//! Nothing is read or written.

use anyhow::Result;

use super::{Applied, Context, Preview, Step, snapshot};
use crate::runbook::kinds::manual::ManualRequest;
use crate::runbook::resolve::Outputs;

pub struct ManualStep {
    request: ManualRequest,
}

/// The step that shows `request`'s instructions; it needs no service.
pub fn build(request: ManualRequest) -> Result<Box<dyn Step>> {
    Ok(Box::new(ManualStep { request }))
}

impl Step for ManualStep {
    fn preview(&self, _cx: &Context) -> Result<Preview> {
        Ok(Preview {
            effect: self.request.instructions.clone(),
            before: snapshot("to do", serde_json::json!({})),
            after: snapshot("done by the operator", serde_json::json!({ "instructions": self.request.instructions })),
            details: vec!["A manual step changes nothing by itself: answer yes once the work above is done.".into()],
            unchanged: None,
            projection: None,
            ..Preview::default()
        })
    }

    fn apply(&self, _cx: &Context, _preview: &Preview) -> Result<Applied> {
        Ok(Applied::outputs(Outputs::new()))
    }

    fn verify(&self, _cx: &Context, _applied: &Applied) -> Result<()> {
        Ok(())
    }

    fn outcome(&self, _outputs: &Outputs) -> String {
        "done, as the operator confirmed".into()
    }

    fn question(&self) -> &'static str {
        "Done?"
    }
}
