//! The integration tests: one binary, every module a capability.

#[path = "../support/mod.rs"]
mod support;

mod contract;
mod prompts;
mod revert;
mod walk;
