//! Fuzz target: arbitrary bytes to rollout's `runbook` reader (see src/fuzz.rs); it must read
//! or refuse them, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rollout::fuzz::runbook(data);
});
