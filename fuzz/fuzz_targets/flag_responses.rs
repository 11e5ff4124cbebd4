//! Fuzz target: arbitrary bodies to the flag services' readers (flagd, Flipper, Unleash,
//! LaunchDarkly; see src/fuzz.rs); each must read or refuse them, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // The services read their token from the environment when they are set up; nothing
        // else runs yet.
        unsafe { std::env::set_var("FUZZ_TOKEN", "fuzz-token-0123456789") };
    },
    |data: &[u8]| {
        rollout::fuzz::flag_responses(data);
    }
);
