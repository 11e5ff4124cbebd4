//! An incident's severity: a runbook declares the one it handles, and `incident --severity`
//! picks the runbook by it.

/// How bad the incident is; `incident --severity` takes the same names (a clap value enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Low => "low",
        }
    }
}
