//! Fuzz target: arbitrary bytes to rollout's `scalars` reader (see src/fuzz.rs); it must read
//! or refuse them, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rollout::fuzz::scalars(data);
});
