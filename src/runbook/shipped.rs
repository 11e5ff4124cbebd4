//! The runbooks shipped inside the binary, the release plan's rollback process,
//! used by `rehearse` and `list` when no rollout.yaml is found.

use std::path::PathBuf;

use super::{LoadedRunbook, Severity};
use crate::yaml::{Diagnostics, Source};

const SHIPPED: [(&str, &str); 3] = [
    ("critical", include_str!("../../runbooks/critical.yaml")),
    ("high", include_str!("../../runbooks/high.yaml")),
    ("low", include_str!("../../runbooks/low.yaml")),
];

/// Every shipped runbook, named `<shipped>/critical.yaml` and so on in diagnostics.
pub fn all() -> Result<Vec<LoadedRunbook>, Diagnostics> {
    SHIPPED
        .iter()
        .map(|(name, text)| {
            LoadedRunbook::from_source(Source::new(PathBuf::from(format!("<shipped>/{name}.yaml")), text.to_string()))
        })
        .collect()
}

pub fn for_severity(severity: Severity) -> Result<LoadedRunbook, Diagnostics> {
    let (name, text) = SHIPPED.iter().find(|(name, _)| *name == severity.as_str()).copied().unwrap_or(SHIPPED[0]);
    LoadedRunbook::from_source(Source::new(PathBuf::from(format!("<shipped>/{name}.yaml")), text.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_shipped_runbook_loads_and_matches_its_severity() {
        let all = super::all().unwrap();
        assert_eq!(all.len(), 3);
        for runbook in all {
            assert_eq!(runbook.runbook.severity.map(|s| s.as_str()), Some(runbook.name.as_str()));
        }
    }
}
