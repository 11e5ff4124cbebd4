//! The integration tests: one binary, every module a capability.

#[path = "../support/mod.rs"]
mod support;

mod buildbot;
mod ci;
mod contract;
mod exposure;
mod faults;
mod flagd;
mod flags;
mod ga4;
mod gates;
mod github_openapi;
#[cfg(target_os = "linux")]
mod hygiene;
mod inputs;
mod launchdarkly_api;
mod leaks;
mod mitigation;
mod notify;
mod outages;
mod output;
mod prompts;
mod regression;
mod remotes;
mod restore;
mod resume;
mod revert;
mod screens;
#[cfg(target_os = "linux")]
mod shared;
mod state;
mod story;
mod undo;
mod unleash;
mod walk;
